//go:build cgo && !novulkan

package vulkan

import (
	"errors"
	"fmt"

	"github.com/unclip-go/unclip/tensor"
)

// matmulOp records Dst[z] = A[z]·B[z] (+ bias), then the epilogue, with A
// and B strided views broadcast to Dst's batch shape.
func (b *Backend) matmulOp(n *tensor.Node) error {
	ddt, err := dstCode("matmul", n.Dst)
	if err != nil {
		return err
	}
	// a and b stay in their float type: matmul.comp converts 16-bit
	// values as it loads them.
	x, y := n.Src[0], n.Src[1]
	adt, err := floatCode(x)
	if err != nil {
		return err
	}
	bdt, err := floatCode(y)
	if err != nil {
		return err
	}
	var bias *tensor.Tensor
	var wdt uint32
	if len(n.Src) > 2 && n.Src[2] != nil {
		if bias, wdt, err = act(n.Src[2]); err != nil {
			return err
		}
	}
	r := x.Rank()
	m, k, nn := x.Dim(-2), x.Dim(-1), y.Dim(-1)
	batch := n.Dst.Shape()[:r-2]
	xs, ys := x.Strides(), y.Strides()
	bshape, bst := collapse(batch, xs[:r-2], ys[:r-2])
	if len(bshape) > 3 {
		x, y = x.Contiguous(), y.Contiguous()
		if err := errors.Join(x.Err(), y.Err()); err != nil {
			return err
		}
		xs, ys = x.Strides(), y.Strides()
		bshape, bst = collapse(batch, xs[:r-2], ys[:r-2])
	}
	nb := 1
	for _, d := range batch {
		nb *= d
	}
	if nb > int(b.maxGroup[2]) {
		return fmt.Errorf("batch of %d matrices exceeds the device's %d workgroups in z", nb, b.maxGroup[2])
	}
	var bdim, abs, bbs [3]int
	bdim = [3]int{1, 1, 1}
	lead := 3 - len(bshape)
	for i, d := range bshape {
		bdim[lead+i], abs[lead+i], bbs[lead+i] = d, bst[0][i], bst[1][i]
	}
	srcs, flags, err := epilogue(n, []*tensor.Tensor{x, y}, bias)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	ops, err := b.operands(n.Dst, srcs...)
	if err != nil {
		return err
	}
	var pc push
	pc.i(m, nn, k).u(flags, ops[0].off, ops[1].off, ops[2].off, ops[3].off)
	pc.i(xs[r-2], xs[r-1], ys[r-2], ys[r-1]).i(bdim[:]...).i(abs[:]...).i(bbs[:]...).u(adt, bdt, ops[4].off)
	return b.dispatch(n, "matmul", ops, &pc, (nn+63)/64, (m+63)/64, nb, dtSpec(wdt, 0, ddt)...)
}

// epilogue returns the sources of a matmul or conv2d dispatch — srcs, then
// the bias and the residual, each bound to the first source when absent —
// and the shaders' epilogue flags word (common.glsl).
func epilogue(n *tensor.Node, srcs []*tensor.Tensor, bias *tensor.Tensor) ([]*tensor.Tensor, uint32, error) {
	var flags uint32
	if kind := n.Activation(); kind != 0 {
		if !tensor.EpilogueActivation(kind) {
			return nil, 0, fmt.Errorf("unary kind %d in an epilogue", kind)
		}
		flags |= uint32(kind) << 8
	}
	bias0, res0 := srcs[0], srcs[0]
	if bias != nil {
		bias0 = bias
		flags |= 1
	}
	if res := n.Residual(); res != nil {
		if !tensor.SameShape(res.Shape(), n.Dst.Shape()) {
			return nil, 0, fmt.Errorf("residual %v for a %v result", res.Shape(), n.Dst.Shape())
		}
		if res.DType() != n.Dst.DType() {
			res = res.Cast(n.Dst.DType())
		} else {
			res = res.Contiguous()
		}
		if err := res.Err(); err != nil {
			return nil, 0, err
		}
		res0 = res
		flags |= 2
	}
	return append(srcs, bias0, res0), flags, nil
}

// conv2dOp records the convolution as an implicit GEMM per image.
func (b *Backend) conv2dOp(n *tensor.Node) error {
	ddt, err := dstCode("conv2d", n.Dst)
	if err != nil {
		return err
	}
	x, sdt, err := act(n.Src[0])
	if err != nil {
		return err
	}
	w := n.Src[1].Contiguous() // converted in the shader when 16-bit
	if err := w.Err(); err != nil {
		return err
	}
	wdt, err := floatCode(w)
	if err != nil {
		return err
	}
	var bias *tensor.Tensor
	var bdt uint32
	if len(n.Src) > 2 && n.Src[2] != nil {
		if bias, bdt, err = act(n.Src[2]); err != nil {
			return err
		}
	}
	xs, ws, ds := x.Shape(), w.Shape(), n.Dst.Shape()
	bsz, c, h, wd := xs[0], xs[1], xs[2], xs[3]
	o, kh, kw := ws[0], ws[2], ws[3]
	oh, ow := ds[2], ds[3]
	if bsz > int(b.maxGroup[2]) {
		return fmt.Errorf("batch of %d images exceeds the device's %d workgroups in z", bsz, b.maxGroup[2])
	}
	srcs, flags, err := epilogue(n, []*tensor.Tensor{x, w}, bias)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	ops, err := b.operands(n.Dst, srcs...)
	if err != nil {
		return err
	}
	var pc push
	pc.i(o, c*kh*kw, oh*ow).u(flags).i(c, h, wd, ow, n.Int[0], n.Int[1], n.Int[2], n.Int[3])
	pc.u(ops[0].off, ops[1].off, ops[2].off, ops[3].off, wdt, ops[4].off)
	return b.dispatch(n, "conv2d", ops, &pc, (oh*ow+63)/64, (o+63)/64, bsz, dtSpec(bdt, sdt, ddt, uint32(kh), uint32(kw))...)
}

// floatCode is the shader dtype code of a float operand.
func floatCode(t *tensor.Tensor) (uint32, error) {
	if !t.DType().IsFloat() {
		return 0, fmt.Errorf("%v operand, want a float type", t.DType())
	}
	return dtCode(t.DType())
}
