//go:build cgo && !novulkan

package vulkan

import (
	"fmt"

	"github.com/unclip-go/unclip/tensor"
)

// Run records one op. Operands that a shader needs in another form (F32,
// dense) are converted first with ops of this same backend.
func (b *Backend) Run(n *tensor.Node) error {
	if n.Dst.Numel() == 0 {
		return nil
	}
	switch n.Op {
	case tensor.OpCopy:
		return b.copyOp(n, n.Dst, n.Src[0])
	case tensor.OpUnary:
		return b.unaryOp(n)
	case tensor.OpBinary:
		return b.binaryOp(n)
	case tensor.OpMatMul:
		return b.matmulOp(n)
	case tensor.OpLayerNorm:
		return b.layerNormOp(n)
	case tensor.OpGroupNorm:
		return b.groupNormOp(n)
	case tensor.OpSoftmax:
		return b.softmaxOp(n)
	case tensor.OpAttention:
		return b.attentionOp(n)
	case tensor.OpEmbedding:
		return b.embeddingOp(n)
	case tensor.OpConv2d:
		return b.conv2dOp(n)
	case tensor.OpAvgPool2d:
		return b.avgPoolOp(n)
	case tensor.OpUpsampleNearest:
		return b.nearestOp(n)
	case tensor.OpUpsampleBicubic:
		return b.bicubicOp(n)
	case tensor.OpSchedulerStep:
		return b.schedulerStepOp(n)
	}
	return fmt.Errorf("%s: unsupported op %v", b.name, n.Op)
}

// dtCode is a dtype's code in the shaders (common.glsl).
func dtCode(d tensor.DType) (uint32, error) {
	switch d {
	case tensor.F32:
		return 0, nil
	case tensor.F16:
		return 1, nil
	case tensor.BF16:
		return 2, nil
	case tensor.I32:
		return 3, nil
	case tensor.I64:
		return 4, nil
	case tensor.Bool:
		return 5, nil
	}
	return 0, fmt.Errorf("unsupported dtype %v", d)
}

// dense32 returns t as a dense F32 tensor (itself when it already is).
func dense32(t *tensor.Tensor) (*tensor.Tensor, error) {
	if t.DType() == tensor.F32 && t.IsContiguous() {
		return t, t.Err()
	}
	c := t.Cast(tensor.F32)
	return c, c.Err()
}

// view32 returns t as F32, keeping its strides when it already is F32.
func view32(t *tensor.Tensor) (*tensor.Tensor, error) {
	if t.DType() == tensor.F32 {
		return t, t.Err()
	}
	c := t.Cast(tensor.F32)
	return c, c.Err()
}

func needF32(op string, t *tensor.Tensor) error {
	if t.DType() != tensor.F32 {
		return fmt.Errorf("%s into %v (only F32 results)", op, t.DType())
	}
	return nil
}

// collapse drops size-1 dimensions and merges neighbours that are
// contiguous in every operand, returning the reduced shape and strides.
func collapse(shape []int, strides ...[]int) ([]int, [][]int) {
	var s []int
	st := make([][]int, len(strides))
	for i, d := range shape {
		if d == 1 {
			continue
		}
		if len(s) > 0 {
			last := len(s) - 1
			merge := true
			for k := range strides {
				if st[k][last] != strides[k][i]*d {
					merge = false
					break
				}
			}
			if merge {
				s[last] *= d
				for k := range strides {
					st[k][last] = strides[k][i]
				}
				continue
			}
		}
		s = append(s, d)
		for k := range strides {
			st[k] = append(st[k], strides[k][i])
		}
	}
	return s, st
}

const maxRank = 6

// copyOp writes src into the view dst (same shape, any strides).
func (b *Backend) copyOp(n *tensor.Node, dst, src *tensor.Tensor) error {
	dd, sd := dst.DType(), src.DType()
	if dd != sd && !(dd.IsFloat() && sd.IsFloat()) {
		return fmt.Errorf("copy %v into %v", sd, dd)
	}
	shape, st := collapse(dst.Shape(), dst.Strides(), src.Strides())
	if len(shape) > maxRank {
		// Split the leading dimension and copy each slice.
		lead := dst.Dim(0)
		for i := 0; i < lead; i++ {
			if err := b.copyOp(n, dst.Index(0, i), src.Index(0, i)); err != nil {
				return err
			}
		}
		return nil
	}
	ddt, err := dtCode(dd)
	if err != nil {
		return err
	}
	sdt, err := dtCode(sd)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	ops, err := b.operands(dst, src)
	if err != nil {
		return err
	}
	count := dst.Numel()
	var pc push
	pc.i(count, len(shape)).u(ddt, sdt, ops[0].off, ops[1].off)
	var sh, ds, ss [maxRank]int
	copy(sh[:], shape)
	copy(ds[:], st[0])
	copy(ss[:], st[1])
	pc.i(sh[:]...).i(ds[:]...).i(ss[:]...)
	gx, gy := b.groups(count, 256)
	return b.dispatch(n, "copy", ops, &pc, gx, gy, 1)
}

func (b *Backend) unaryOp(n *tensor.Node) error {
	if err := needF32("unary", n.Dst); err != nil {
		return err
	}
	x, err := dense32(n.Src[0])
	if err != nil {
		return err
	}
	if n.Int[0] < int(tensor.UnarySiLU) || n.Int[0] > int(tensor.UnarySigmoid) {
		return fmt.Errorf("unknown unary kind %d", n.Int[0])
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	ops, err := b.operands(n.Dst, x)
	if err != nil {
		return err
	}
	count := n.Dst.Numel()
	var pc push
	pc.i(count, n.Int[0]).u(ops[0].off, ops[1].off).f(n.Float[0], n.Float[1])
	gx, gy := b.groups(count, 256)
	return b.dispatch(n, "unary", ops, &pc, gx, gy, 1)
}

func (b *Backend) binaryOp(n *tensor.Node) error {
	if err := needF32("binary", n.Dst); err != nil {
		return err
	}
	if n.Int[0] < int(tensor.BinaryAdd) || n.Int[0] > int(tensor.BinaryDiv) {
		return fmt.Errorf("unknown binary kind %d", n.Int[0])
	}
	x, err := view32(n.Src[0])
	if err != nil {
		return err
	}
	y, err := view32(n.Src[1])
	if err != nil {
		return err
	}
	shape, st := collapse(n.Dst.Shape(), x.Strides(), y.Strides())
	if len(shape) > maxRank {
		if x, err = dense32(x.Contiguous()); err != nil {
			return err
		}
		if y, err = dense32(y.Contiguous()); err != nil {
			return err
		}
		shape, st = collapse(n.Dst.Shape(), x.Strides(), y.Strides())
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	ops, err := b.operands(n.Dst, x, y)
	if err != nil {
		return err
	}
	count := n.Dst.Numel()
	var pc push
	pc.i(count, n.Int[0], len(shape)).u(ops[0].off, ops[1].off, ops[2].off)
	var sh, as, bs [maxRank]int
	copy(sh[:], shape)
	copy(as[:], st[0])
	copy(bs[:], st[1])
	pc.i(sh[:]...).i(as[:]...).i(bs[:]...)
	gx, gy := b.groups(count, 256)
	return b.dispatch(n, "binary", ops, &pc, gx, gy, 1)
}
