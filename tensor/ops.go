package tensor

import "fmt"

// run checks that every operand lives on one backend, carries operand
// errors forward, gives the node's fresh result its storage and hands the
// node to the backend — or, when an operand is a graph value being
// captured, records it in that graph instead (see Capture).
func run(n *Node) *Tensor {
	g := materialize(n.Dst, n.Src)
	if n.Dst.err != nil {
		if g != nil {
			g.fail(n.Dst.err)
		}
		return n.Dst
	}
	if g != nil {
		g.record(n)
		return n.Dst
	}
	b := n.Dst.st.backend
	if err := b.Run(n); err != nil {
		n.Dst.err = fmt.Errorf("%s on %s: %w", n.Name(), b.Name(), err)
	}
	return n.Dst
}

// materialize checks the operands of an op writing dst, carries their
// errors into dst and, when dst is a fresh result (no storage yet), gives
// it storage: a new graph value when an operand is one, else memory from
// the operands' backend. It returns the graph being captured, if any.
// Operands on different backends, from two graphs or on released storage
// are errors carried by dst, not panics.
func materialize(dst *Tensor, srcs []*Tensor) *Graph {
	var b Backend
	var g *Graph
	fail := func(err error) {
		if dst.err == nil {
			dst.err = err
		}
	}
	ops := srcs
	if dst.st != nil {
		ops = append([]*Tensor{dst}, srcs...)
	}
	for _, s := range ops {
		if s == nil || s.st == nil {
			continue
		}
		if b == nil {
			b = s.st.backend
		} else if s.st.backend != b {
			fail(fmt.Errorf("tensor: operands on %s and %s", b.Name(), s.st.backend.Name()))
		}
		if v := valueOf(s); v != nil {
			if g != nil && v.g != g {
				fail(fmt.Errorf("tensor: operands from two graphs (%s and %s)", g.name, v.g.name))
			}
			g = v.g
		}
		if s.st.freed {
			fail(fmt.Errorf("%v: %w", s, ErrReleased))
		}
		if s.err != nil {
			fail(s.err)
		}
	}
	if dst.st == nil {
		switch {
		case g != nil:
			dst.st = g.newValue(dst.dtype, dst.shape).st
		case b == nil:
			fail(fmt.Errorf("tensor: op without operands"))
			dst.st = NewHostStorage(CPU(), nil)
		default:
			st, err := alloc(b, dst.dtype, dst.shape)
			if err != nil {
				fail(err)
			}
			dst.st = st
		}
	} else if g != nil && valueOf(dst) == nil {
		fail(fmt.Errorf("tensor: writing a captured value into %v, which is not part of the graph", dst))
	}
	return g
}

// newOut describes an op's result; it gets its storage in run, from the
// operands (see materialize).
func newOut(like *Tensor, dt DType, shape ...int) *Tensor {
	for _, d := range shape {
		if d < 0 {
			shapePanic("tensor: negative dimension in %v", shape)
		}
	}
	return &Tensor{dtype: dt, shape: append([]int(nil), shape...), strides: ContiguousStrides(shape), err: like.err}
}

func floatOperand(op string, t *Tensor) {
	if !t.dtype.IsFloat() {
		shapePanic("tensor.%s: %v operand, want a float type", op, t.dtype)
	}
}

// Contiguous returns the tensor itself when it is dense row-major, else a
// dense copy.
func (t *Tensor) Contiguous() *Tensor {
	if t.IsContiguous() {
		return t
	}
	return t.Cast(t.dtype)
}

// Cast returns a dense copy converted to dt (F32, F16 and BF16 convert among
// themselves; other types copy as is).
func (t *Tensor) Cast(dt DType) *Tensor {
	if dt != t.dtype && !(dt.IsFloat() && t.dtype.IsFloat()) {
		shapePanic("tensor.Cast: %v to %v", t.dtype, dt)
	}
	out := newOut(t, dt, t.shape...)
	return run(&Node{Op: OpCopy, Dst: out, Src: []*Tensor{t}})
}

// CopyInto writes src (broadcast to dst's shape) into the view dst, which may
// be strided (a Narrow of a larger tensor, for instance). Both must live on
// one backend. It returns an error when a backend fails or either operand
// already carries one.
func CopyInto(dst, src *Tensor) error {
	if dst.dtype != src.dtype && !(dst.dtype.IsFloat() && src.dtype.IsFloat()) {
		shapePanic("tensor.CopyInto: %v into %v", src.dtype, dst.dtype)
	}
	src = src.Expand(dst.shape...)
	n := &Node{Op: OpCopy, Dst: dst, Src: []*Tensor{src}}
	prev := dst.err
	g := materialize(dst, n.Src)
	if err := dst.err; err != nil {
		dst.err = prev
		if g != nil {
			g.fail(err)
		}
		return err
	}
	if g != nil {
		g.record(n)
		return nil
	}
	if err := dst.st.backend.Run(n); err != nil {
		return fmt.Errorf("%s on %s: %w", n.Name(), dst.st.backend.Name(), err)
	}
	return nil
}

// Concat joins tensors of equal shape except in dimension dim.
func Concat(dim int, ts ...*Tensor) *Tensor {
	if len(ts) == 0 {
		shapePanic("tensor.Concat: no tensors")
	}
	dim = ts[0].axis(dim)
	shape := ts[0].Shape()
	total := 0
	for _, t := range ts {
		if len(t.shape) != len(shape) || t.dtype != ts[0].dtype {
			shapePanic("tensor.Concat: %v and %v", ts[0], t)
		}
		for i := range shape {
			if i != dim && t.shape[i] != shape[i] {
				shapePanic("tensor.Concat: shapes %v and %v along %d", ts[0].shape, t.shape, dim)
			}
		}
		total += t.shape[dim]
	}
	shape[dim] = total
	out := newOut(ts[0], ts[0].dtype, shape...)
	materialize(out, ts)
	off := 0
	for _, t := range ts {
		if out.err == nil && t.err != nil {
			out.err = t.err
		}
		if out.err == nil && t.shape[dim] > 0 {
			if err := CopyInto(out.Narrow(dim, off, t.shape[dim]), t); err != nil {
				out.err = err
			}
		}
		off += t.shape[dim]
	}
	return out
}

// ---- elementwise ----

func unary(t *Tensor, k UnaryKind, f0, f1 float32) *Tensor {
	floatOperand("unary", t)
	out := newOut(t, t.dtype, t.shape...)
	n := &Node{Op: OpUnary, Dst: out, Src: []*Tensor{t}}
	n.Int[0] = int(k)
	n.Float[0], n.Float[1] = f0, f1
	return run(n)
}

// SiLU returns x·sigmoid(x).
func SiLU(x *Tensor) *Tensor { return unary(x, UnarySiLU, 0, 0) }

// GELU returns the exact (erf) GELU.
func GELU(x *Tensor) *Tensor { return unary(x, UnaryGELU, 0, 0) }

// QuickGELU returns x·sigmoid(1.702·x), CLIP's activation.
func QuickGELU(x *Tensor) *Tensor { return unary(x, UnaryQuickGELU, 0, 0) }

// Sigmoid returns 1/(1+exp(−x)).
func Sigmoid(x *Tensor) *Tensor { return unary(x, UnarySigmoid, 0, 0) }

// Exp returns eˣ.
func Exp(x *Tensor) *Tensor { return unary(x, UnaryExp, 0, 0) }

// Neg returns −x.
func Neg(x *Tensor) *Tensor { return unary(x, UnaryNeg, 0, 0) }

// Affine returns x·scale + shift.
func Affine(x *Tensor, scale, shift float32) *Tensor { return unary(x, UnaryAffine, scale, shift) }

// Scale returns x·s.
func Scale(x *Tensor, s float32) *Tensor { return unary(x, UnaryAffine, s, 0) }

// Clamp limits x to [lo, hi].
func Clamp(x *Tensor, lo, hi float32) *Tensor { return unary(x, UnaryClamp, lo, hi) }

func binary(a, b *Tensor, k BinaryKind) *Tensor {
	floatOperand("binary", a)
	floatOperand("binary", b)
	dt := a.dtype
	if b.dtype != dt {
		dt = F32
		if a.dtype != F32 {
			a = a.Cast(F32)
		}
		if b.dtype != F32 {
			b = b.Cast(F32)
		}
	}
	shape := BroadcastShape(a.shape, b.shape)
	out := newOut(a, dt, shape...)
	n := &Node{Op: OpBinary, Dst: out, Src: []*Tensor{a.Expand(shape...), b.Expand(shape...)}}
	n.Int[0] = int(k)
	return run(n)
}

// Add returns a + b with numpy broadcasting.
func Add(a, b *Tensor) *Tensor { return binary(a, b, BinaryAdd) }

// Sub returns a − b with numpy broadcasting.
func Sub(a, b *Tensor) *Tensor { return binary(a, b, BinarySub) }

// Mul returns a · b with numpy broadcasting.
func Mul(a, b *Tensor) *Tensor { return binary(a, b, BinaryMul) }

// Div returns a / b with numpy broadcasting.
func Div(a, b *Tensor) *Tensor { return binary(a, b, BinaryDiv) }

// ---- linear algebra ----

// MatMul returns a·b for a (..., M, K) and b (..., K, N); the batch
// dimensions broadcast. Transposed operands are views (b.T()), not copies.
func MatMul(a, b *Tensor) *Tensor { return matmul(a, b, nil) }

func matmul(a, b, bias *Tensor) *Tensor {
	floatOperand("MatMul", a)
	floatOperand("MatMul", b)
	if a.Rank() < 2 || b.Rank() < 2 {
		shapePanic("tensor.MatMul: operands %v and %v need rank ≥ 2", a.shape, b.shape)
	}
	m, k := a.Dim(-2), a.Dim(-1)
	k2, nn := b.Dim(-2), b.Dim(-1)
	if k != k2 {
		shapePanic("tensor.MatMul: %v · %v: inner dimensions %d and %d", a.shape, b.shape, k, k2)
	}
	if bias != nil && (bias.Rank() != 1 || bias.Dim(0) != nn) {
		shapePanic("tensor.MatMul: bias %v for %d columns", bias.shape, nn)
	}
	batch := BroadcastShape(a.shape[:a.Rank()-2], b.shape[:b.Rank()-2])
	dt := F32
	if a.dtype == b.dtype {
		dt = a.dtype
	}
	out := newOut(a, dt, append(append([]int(nil), batch...), m, nn)...)
	src := []*Tensor{a.Expand(append(append([]int(nil), batch...), m, k)...), b.Expand(append(append([]int(nil), batch...), k, nn)...)}
	if bias != nil {
		src = append(src, bias)
	}
	return run(&Node{Op: OpMatMul, Dst: out, Src: src})
}

// Linear returns x·wᵀ + bias for x (..., in), w (out, in) and bias (out)
// or nil: the torch.nn.Linear convention.
func Linear(x, w, bias *Tensor) *Tensor {
	in := x.Dim(-1)
	if w.Rank() != 2 || w.Dim(1) != in {
		shapePanic("tensor.Linear: input %v, weight %v", x.shape, w.shape)
	}
	if x.Rank() > 2 && !x.IsContiguous() {
		// A strided batch (such as a transposed feature map's tokens) is
		// read in place, the weight broadcast over it, instead of being
		// copied to flatten it.
		return matmul(x, w.T(), bias)
	}
	lead := x.Shape()[:x.Rank()-1]
	y := matmul(x.Reshape(-1, in), w.T(), bias)
	return y.Reshape(append(lead, w.Dim(0))...)
}

// ---- normalisation ----

// LayerNorm normalises over the last dimension: (x − mean)/√(var + eps)·w + b
// with the biased variance; w and b have the size of the last dimension
// (b may be nil).
func LayerNorm(x, w, b *Tensor, eps float32) *Tensor {
	floatOperand("LayerNorm", x)
	c := x.Dim(-1)
	if w.Rank() != 1 || w.Dim(0) != c || (b != nil && (b.Rank() != 1 || b.Dim(0) != c)) {
		shapePanic("tensor.LayerNorm: input %v, weight %v", x.shape, w.shape)
	}
	out := newOut(x, x.dtype, x.shape...)
	src := []*Tensor{x, w}
	if b != nil {
		src = append(src, b)
	}
	n := &Node{Op: OpLayerNorm, Dst: out, Src: src}
	n.Float[0] = eps
	return run(n)
}

// GroupNorm normalises x (N, C, *) over groups of C/groups channels and all
// spatial positions, then applies the per-channel affine w, b; with silu
// set, SiLU follows (the fused form every U-Net resnet uses).
func GroupNorm(x *Tensor, groups int, w, b *Tensor, eps float32, silu bool) *Tensor {
	return run(groupNormNode("GroupNorm", x, groups, w, b, eps, silu))
}

func groupNormNode(op string, x *Tensor, groups int, w, b *Tensor, eps float32, silu bool) *Node {
	floatOperand(op, x)
	if x.Rank() < 2 {
		shapePanic("tensor.%s: input %v", op, x.shape)
	}
	c := x.Dim(1)
	if groups <= 0 || c%groups != 0 || w.Rank() != 1 || w.Dim(0) != c || b == nil || b.Rank() != 1 || b.Dim(0) != c {
		shapePanic("tensor.%s: input %v, %d groups, weight %v", op, x.shape, groups, w.shape)
	}
	out := newOut(x, x.dtype, x.shape...)
	n := &Node{Op: OpGroupNorm, Dst: out, Src: []*Tensor{x, w, b}}
	n.Int[0] = groups
	if silu {
		n.Int[1] = 1
	}
	n.Float[0] = eps
	return n
}

// GroupNormScaleShift is GroupNorm followed by the time-embedding
// modulation of diffusers' scale-shift ResNet blocks, in one op:
// act((norm(x)·w + b)·(1 + scale) + shift), with scale and shift (N, C)
// (any strides, such as the two halves of one projection) and act SiLU when
// silu is set. Its node is OpGroupNorm with Src[3], Src[4] = scale, shift.
func GroupNormScaleShift(x *Tensor, groups int, w, b, scale, shift *Tensor, eps float32, silu bool) *Tensor {
	n := groupNormNode("GroupNormScaleShift", x, groups, w, b, eps, silu)
	nb, c := x.Dim(0), x.Dim(1)
	for _, t := range []*Tensor{scale, shift} {
		floatOperand("GroupNormScaleShift", t)
		if t.Rank() != 2 || t.Dim(0) != nb || t.Dim(1) != c {
			shapePanic("tensor.GroupNormScaleShift: input %v, scale %v, shift %v: want (%d, %d)", x.shape, scale.shape, shift.shape, nb, c)
		}
	}
	n.Src = append(n.Src, scale, shift)
	return run(n)
}

// ScaleShift returns a GroupNormScaleShift node's (N, C) scale and shift,
// or nils for a plain GroupNorm.
func (n *Node) ScaleShift() (scale, shift *Tensor) {
	if len(n.Src) > 4 && n.Src[3] != nil {
		return n.Src[3], n.Src[4]
	}
	return nil, nil
}

// Softmax normalises exp(x) over the last dimension.
func Softmax(x *Tensor) *Tensor {
	floatOperand("Softmax", x)
	out := newOut(x, x.dtype, x.shape...)
	return run(&Node{Op: OpSoftmax, Dst: out, Src: []*Tensor{x}})
}

// Attention returns softmax(q·kᵀ·scale + bias [+ causal mask])·v for
// q (B, H, Lq, D), k (B, H, Lk, D), v (B, H, Lk, Dv). bias (or nil) must
// broadcast to (B, H, Lq, Lk); with causal set, key j > query i is
// excluded. The result is (B, H, Lq, Dv).
func Attention(q, k, v, bias *Tensor, scale float32, causal bool) *Tensor {
	for _, t := range []*Tensor{q, k, v} {
		floatOperand("Attention", t)
		if t.Rank() != 4 {
			shapePanic("tensor.Attention: q %v, k %v, v %v must be (B, H, L, D)", q.shape, k.shape, v.shape)
		}
	}
	bsz, h, lq, d := q.Dim(0), q.Dim(1), q.Dim(2), q.Dim(3)
	lk := k.Dim(2)
	if k.Dim(0) != bsz || k.Dim(1) != h || k.Dim(3) != d || v.Dim(0) != bsz || v.Dim(1) != h || v.Dim(2) != lk {
		shapePanic("tensor.Attention: q %v, k %v, v %v", q.shape, k.shape, v.shape)
	}
	out := newOut(q, q.dtype, bsz, h, lq, v.Dim(3))
	src := []*Tensor{q, k, v, nil}
	if bias != nil {
		if bias.dtype != F32 {
			shapePanic("tensor.Attention: bias must be F32, got %v", bias.dtype)
		}
		src[3] = bias.Expand(bsz, h, lq, lk)
	}
	n := &Node{Op: OpAttention, Dst: out, Src: src}
	n.Float[0] = scale
	if causal {
		n.Int[0] = 1
	}
	return run(n)
}

// ---- gather ----

// Embedding gathers rows of table (V, D) at ids (any shape, I64 or I32):
// the result has shape ids.Shape() + (D). Ids out of range fail the op.
func Embedding(table, ids *Tensor) *Tensor {
	if table.Rank() != 2 || (ids.dtype != I64 && ids.dtype != I32) {
		shapePanic("tensor.Embedding: table %v, ids %v", table, ids)
	}
	out := newOut(table, table.dtype, append(ids.Shape(), table.Dim(1))...)
	return run(&Node{Op: OpEmbedding, Dst: out, Src: []*Tensor{table, ids}})
}

// ---- convolution and resampling ----

// Conv2d convolves x (N, C, H, W) with w (O, C, KH, KW) and adds bias (O)
// (or nil), with the given stride and zero padding.
func Conv2d(x, w, bias *Tensor, stride, pad int) *Tensor {
	floatOperand("Conv2d", x)
	if x.Rank() != 4 || w.Rank() != 4 || x.Dim(1) != w.Dim(1) || stride < 1 || pad < 0 {
		shapePanic("tensor.Conv2d: input %v, weight %v, stride %d, pad %d", x.shape, w.shape, stride, pad)
	}
	if bias != nil && (bias.Rank() != 1 || bias.Dim(0) != w.Dim(0)) {
		shapePanic("tensor.Conv2d: bias %v for weight %v", bias.shape, w.shape)
	}
	oh := (x.Dim(2)+2*pad-w.Dim(2))/stride + 1
	ow := (x.Dim(3)+2*pad-w.Dim(3))/stride + 1
	if oh <= 0 || ow <= 0 {
		shapePanic("tensor.Conv2d: input %v too small for weight %v", x.shape, w.shape)
	}
	dt := x.dtype
	out := newOut(x, dt, x.Dim(0), w.Dim(0), oh, ow)
	src := []*Tensor{x, w}
	if bias != nil {
		src = append(src, bias)
	}
	n := &Node{Op: OpConv2d, Dst: out, Src: src}
	n.Int[0], n.Int[1], n.Int[2], n.Int[3] = stride, stride, pad, pad
	return run(n)
}

// AvgPool2d averages k×k windows with stride k over x (N, C, H, W).
func AvgPool2d(x *Tensor, k int) *Tensor {
	floatOperand("AvgPool2d", x)
	if x.Rank() != 4 || k < 1 || x.Dim(2) < k || x.Dim(3) < k {
		shapePanic("tensor.AvgPool2d: input %v, kernel %d", x.shape, k)
	}
	out := newOut(x, x.dtype, x.Dim(0), x.Dim(1), x.Dim(2)/k, x.Dim(3)/k)
	n := &Node{Op: OpAvgPool2d, Dst: out, Src: []*Tensor{x}}
	n.Int[0] = k
	return run(n)
}

// UpsampleNearest repeats every pixel of x (N, C, H, W) f×f times.
func UpsampleNearest(x *Tensor, f int) *Tensor {
	floatOperand("UpsampleNearest", x)
	if x.Rank() != 4 || f < 1 {
		shapePanic("tensor.UpsampleNearest: input %v, factor %d", x.shape, f)
	}
	out := newOut(x, x.dtype, x.Dim(0), x.Dim(1), x.Dim(2)*f, x.Dim(3)*f)
	n := &Node{Op: OpUpsampleNearest, Dst: out, Src: []*Tensor{x}}
	n.Int[0] = f
	return run(n)
}

// UpsampleBicubic resizes x (N, C, H, W) to (N, C, oh, ow) as torch's
// F.interpolate(mode="bicubic", align_corners=False, antialias=True).
func UpsampleBicubic(x *Tensor, oh, ow int) *Tensor {
	floatOperand("UpsampleBicubic", x)
	if x.Rank() != 4 || oh < 1 || ow < 1 {
		shapePanic("tensor.UpsampleBicubic: input %v to %d×%d", x.shape, oh, ow)
	}
	out := newOut(x, x.dtype, x.Dim(0), x.Dim(1), oh, ow)
	return run(&Node{Op: OpUpsampleBicubic, Dst: out, Src: []*Tensor{x}})
}
