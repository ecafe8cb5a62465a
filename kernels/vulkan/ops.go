//go:build cgo && !novulkan

package vulkan

import (
	"errors"
	"fmt"

	"github.com/unclip-go/unclip/tensor"
)

// Run records one op. Operands that a shader needs in another form (F32,
// dense) are converted first with ops of this same backend.
func (b *Backend) Run(n *tensor.Node) error {
	// Temporaries an op makes for itself (dense or float32 copies of its
	// operands) are scratch: released as soon as the op is recorded, their
	// memory reused once the batch has finished — not left to the
	// collector, and not part of any graph's plan.
	b.scratchMu.Lock()
	b.depth++
	b.scratchMu.Unlock()
	err := b.run(n)
	b.scratchMu.Lock()
	b.depth--
	var tmp []*tensor.Storage
	if b.depth == 0 {
		tmp, b.scratch = b.scratch, nil
	}
	b.scratchMu.Unlock()
	if rec := b.recording; rec != nil && b.warm == nil {
		// The recorded commands read them on every run.
		rec.scratch = append(rec.scratch, tmp...)
		return err
	}
	b.freeScratch(tmp)
	return err
}

func (b *Backend) run(n *tensor.Node) error {
	if n.Dst.Numel() == 0 {
		return nil
	}
	if dt := n.Dst.DType(); (dt == tensor.F16 || dt == tensor.BF16) && !b.native16(n) {
		return b.viaF32(n)
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

// dstCode is the shader code of a float destination (F32, F16 or BF16).
func dstCode(op string, t *tensor.Tensor) (uint32, error) {
	if !t.DType().IsFloat() {
		return 0, fmt.Errorf("%s into %v (only float results)", op, t.DType())
	}
	return dtCode(t.DType())
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
	count := dst.Numel()
	return b.launch(n, launch{
		shader: "copy", dst: dst, srcs: []*tensor.Tensor{src},
		push: func(off []uint32) any {
			pc := copyPush{N: uint32(count), Rank: uint32(len(shape)), Ddt: ddt, Sdt: sdt, Doff: off[0], Soff: off[1]}
			setInts(pc.Shape[:], shape)
			setInts(pc.Dstr[:], st[0])
			setInts(pc.Sstr[:], st[1])
			return pc
		},
		grid: b.linear(count, 256),
	})
}

func (b *Backend) unaryOp(n *tensor.Node) error {
	ddt, err := dstCode("unary", n.Dst)
	if err != nil {
		return err
	}
	x, sdt, err := act(n.Src[0])
	if err != nil {
		return err
	}
	if n.Int[0] < int(tensor.UnarySiLU) || n.Int[0] > int(tensor.UnarySigmoid) {
		return fmt.Errorf("unknown unary kind %d", n.Int[0])
	}
	count := n.Dst.Numel()
	return b.launch(n, launch{
		shader: "unary", dst: n.Dst, srcs: []*tensor.Tensor{x},
		push: func(off []uint32) any {
			return unaryPush{N: uint32(count), Kind: uint32(n.Int[0]), Doff: off[0], Soff: off[1], F0: n.Float[0], F1: n.Float[1]}
		},
		grid: b.linear(count, 256),
		spec: dtSpec(0, sdt, ddt),
	})
}

func (b *Backend) binaryOp(n *tensor.Node) error {
	ddt, err := dstCode("binary", n.Dst)
	if err != nil {
		return err
	}
	if n.Int[0] < int(tensor.BinaryAdd) || n.Int[0] > int(tensor.BinaryDiv) {
		return fmt.Errorf("unknown binary kind %d", n.Int[0])
	}
	xy, sdt, err := sameFloat(false, n.Src[0], n.Src[1])
	if err != nil {
		return err
	}
	x, y := xy[0], xy[1]
	shape, st := collapse(n.Dst.Shape(), x.Strides(), y.Strides())
	if len(shape) > maxRank {
		x, y = x.Contiguous(), y.Contiguous()
		if err := errors.Join(x.Err(), y.Err()); err != nil {
			return err
		}
		shape, st = collapse(n.Dst.Shape(), x.Strides(), y.Strides())
	}
	count := n.Dst.Numel()
	return b.launch(n, launch{
		shader: "binary", dst: n.Dst, srcs: []*tensor.Tensor{x, y},
		push: func(off []uint32) any {
			pc := binaryPush{N: uint32(count), Kind: uint32(n.Int[0]), Rank: uint32(len(shape)), Doff: off[0], Aoff: off[1], Boff: off[2]}
			setInts(pc.Shape[:], shape)
			setInts(pc.Astr[:], st[0])
			setInts(pc.Bstr[:], st[1])
			return pc
		},
		grid: b.linear(count, 256),
		spec: dtSpec(0, sdt, ddt),
	})
}

// native16 reports whether op n writes its 16-bit (F16 or BF16)
// destination itself. Copy and Embedding move 16-bit values as they are;
// every other shader computes in float32 and rounds once on store (see
// STORE_DST in common.glsl). Only the scheduler step is F32-only.
func (b *Backend) native16(n *tensor.Node) bool {
	return n.Op != tensor.OpSchedulerStep
}

// dtSpec returns the specialization constants of a pipeline: spec (ids
// 0..4: workgroup and kernel sizes) followed by the dtype codes of the
// weights (id 5), the main source (6) and the destination (7).
func dtSpec(wdt, sdt, ddt uint32, spec ...uint32) []uint32 {
	out := make([]uint32, 8)
	copy(out, spec)
	out[5], out[6], out[7] = wdt, sdt, ddt
	return out
}

// act returns t dense in its own float type (F32, F16 or BF16) with the
// type's shader code: the shaders widen 16-bit values as they load them.
func act(t *tensor.Tensor) (*tensor.Tensor, uint32, error) {
	if !t.DType().IsFloat() {
		return nil, 0, fmt.Errorf("%v operand, want a float type", t.DType())
	}
	c := t.Contiguous()
	if err := c.Err(); err != nil {
		return nil, 0, err
	}
	code, err := dtCode(c.DType())
	return c, code, err
}

// sameFloat returns ts unchanged when they share one float type, else
// converted to F32 (dense when dense is set, strided otherwise), with the
// code of the common type.
func sameFloat(dense bool, ts ...*tensor.Tensor) ([]*tensor.Tensor, uint32, error) {
	out := make([]*tensor.Tensor, len(ts))
	same := true
	for _, t := range ts {
		if !t.DType().IsFloat() {
			return nil, 0, fmt.Errorf("%v operand, want a float type", t.DType())
		}
		same = same && t.DType() == ts[0].DType()
	}
	for i, t := range ts {
		var err error
		switch {
		case same && dense:
			out[i] = t.Contiguous()
			err = out[i].Err()
		case same:
			out[i], err = t, t.Err()
		case dense:
			out[i], err = dense32(t)
		default:
			out[i], err = view32(t)
		}
		if err != nil {
			return nil, 0, err
		}
	}
	code, err := dtCode(out[0].DType())
	return out, code, err
}

// viaF32 runs op n into a float32 temporary and rounds the result once
// into n's 16-bit destination: the semantics of the CPU reference
// (accumulation, softmax and norm statistics in float32). Sources are
// read as they are (16-bit operands are converted by the kernels).
func (b *Backend) viaF32(n *tensor.Node) error {
	if n.Op == tensor.OpSchedulerStep {
		return fmt.Errorf("scheduler_step into %v (only F32 results)", n.Dst.DType())
	}
	tmp := tensor.New(b, tensor.F32, n.Dst.Shape()...)
	if err := tmp.Err(); err != nil {
		return err
	}
	m := *n
	m.Dst = tmp
	if err := b.Run(&m); err != nil {
		return err
	}
	return b.copyOp(n, n.Dst, tmp)
}

// SupportsF16 reports whether F16 activation storage is worthwhile on this
// device: it has 16-bit storage buffer access (storageBuffer16BitAccess)
// or 16-bit float arithmetic (shaderFloat16). Every op accepts F16
// operands and F16 results on any device (halves are packed two to a
// 32-bit word where the device lacks those features); this answers whether
// a CLI should pick --precision fp16 for the device.
func (b *Backend) SupportsF16() bool {
	return b.phys.caps.storage16 || b.phys.caps.float16
}

// SupportsBF16 reports whether the device has VK_KHR_shader_bfloat16.
// BF16 operands and results work on every device (stored as packed 16-bit
// words, computed in float32).
func (b *Backend) SupportsBF16() bool { return b.phys.caps.bfloat16 }
