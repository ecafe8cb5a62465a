package tensor

// Fusion is done once, on the captured graph, so that every backend gets
// it: rewrite rules merge a node into the one that produces its input
// where a kernel can do both in one pass. A rule applies only when the
// intermediate value has no other reader, is not a graph output, and is
// written whole by one node; an operand the merged node gains (a bias, a
// residual) must be ready before that node runs. The rules:
//
//   - GroupNorm followed by SiLU becomes GroupNorm with its SiLU flag
//     (exact: the kernels apply SiLU to the rounded normalised value);
//   - MatMul followed by the addition of a row vector broadcast over its
//     rows becomes MatMul with a bias, and Conv2d followed by the addition
//     of a per-channel vector becomes Conv2d with a bias (the kernels add
//     the bias first and accumulate onto it: a different rounding order,
//     within float32 accuracy);
//   - MatMul or Conv2d followed by SiLU, GELU or QuickGELU takes the
//     activation into its epilogue (Node.Activation);
//   - MatMul or Conv2d followed by the addition of a dense tensor of its
//     result's shape takes that tensor as its epilogue residual
//     (Node.Residual): the residual connections of transformer blocks and
//     resnets. Activation and residual are applied to the float32 result
//     as the unfused ops would (exact on the CPU).
//
// Model code written against the fused ops (GroupNorm(..., silu),
// Linear with bias, Conv2d with bias) needs no rule; the rules make the
// unfused spelling cost the same.

// fuse applies the rules in one pass over the nodes.
func (g *Graph) fuse() {
	readers := map[*value]int{}
	writers := map[*value]int{}
	producer := map[*value]*Node{}
	index := map[*Node]int{}
	for _, t := range g.outputs {
		if v := valueOf(t); v != nil {
			readers[v]++
		}
	}
	for i, n := range g.nodes {
		index[n] = i
		for _, s := range n.Src {
			if v := valueOf(s); v != nil {
				readers[v]++
			}
		}
		if v := valueOf(n.Dst); v != nil {
			writers[v]++
			producer[v] = n
		}
	}
	// sole returns the node that alone produces the whole of t, read only
	// once (by the node being fused).
	sole := func(t *Tensor) *Node {
		v := valueOf(t)
		if v == nil || readers[v] != 1 || writers[v] != 1 || !whole(t, v) {
			return nil
		}
		p := producer[v]
		if p.Dst.dtype != t.dtype || !whole(p.Dst, v) {
			return nil
		}
		return p
	}
	// ready reports whether operand t can be read by p: a constant, or a
	// graph value written once, before p.
	ready := func(t *Tensor, p *Node) bool {
		v := valueOf(t)
		if v == nil {
			return true
		}
		switch writers[v] {
		case 0:
			return true
		case 1:
			return index[producer[v]] < index[p]
		}
		return false
	}
	// merge makes p write n's result.
	merge := func(p, n *Node) {
		p.Dst = n.Dst
		if v := valueOf(n.Dst); v != nil {
			producer[v] = p
		}
	}
	gemm := func(p *Node) bool { return p != nil && (p.Op == OpMatMul || p.Op == OpConv2d) }
	dead := map[*Node]bool{}
	for _, n := range g.nodes {
		switch {
		case n.Op == OpUnary:
			kind := UnaryKind(n.Int[0])
			p := sole(n.Src[0])
			if p == nil || p.Dst.dtype != n.Dst.dtype {
				continue
			}
			switch {
			case kind == UnarySiLU && p.Op == OpGroupNorm && p.Int[1] == 0:
				p.Int[1] = 1
			case EpilogueActivation(kind) && gemm(p) && p.Activation() == 0 && p.Residual() == nil:
				p.Int[EpilogueAct] = int(kind)
			default:
				continue
			}
			merge(p, n)
			dead[n] = true
		case n.Op == OpBinary && BinaryKind(n.Int[0]) == BinaryAdd:
			for i := 0; i < 2; i++ {
				p, c := sole(n.Src[i]), n.Src[1-i]
				if !gemm(p) || p.Dst.dtype != n.Dst.dtype || p.Residual() != nil || !ready(c, p) {
					continue
				}
				if b := biasOf(p, c); b != nil && p.Bias() == nil && p.Activation() == 0 {
					p.Src = append(p.Src, b)
				} else if c.dtype == n.Dst.dtype && SameShape(c.shape, n.Dst.shape) && c.IsContiguous() {
					if len(p.Src) == 2 {
						p.Src = append(p.Src, nil)
					}
					p.Src = append(p.Src, c)
				} else {
					continue
				}
				merge(p, n)
				dead[n] = true
				break
			}
		}
	}
	if len(dead) == 0 {
		return
	}
	kept := g.nodes[:0]
	for _, n := range g.nodes {
		if !dead[n] {
			kept = append(kept, n)
		}
	}
	clear(g.nodes[len(kept):])
	g.nodes = kept
}

// whole reports whether t views all of value v, densely from its start.
func whole(t *Tensor, v *value) bool {
	return t.offset == 0 && t.IsContiguous() && t.Numel()*t.dtype.Size() == v.bytes
}

// biasOf returns the bias vector that c adds to the result of p (a MatMul
// or Conv2d without bias): a vector broadcast along every dimension but
// the columns (MatMul) or the channels (Conv2d); nil when c is not one.
func biasOf(p *Node, c *Tensor) *Tensor {
	if c.dtype != F32 || !SameShape(c.shape, p.Dst.shape) {
		return nil
	}
	axis := -1
	switch p.Op {
	case OpMatMul:
		axis = len(c.shape) - 1
	case OpConv2d:
		axis = 1
	default:
		return nil
	}
	for i, s := range c.strides {
		if (i == axis) != (s != 0) && c.shape[i] != 1 {
			return nil
		}
	}
	st := 1
	if c.shape[axis] > 1 {
		st = c.strides[axis]
	}
	return &Tensor{st: c.st, dtype: c.dtype, shape: []int{c.shape[axis]}, strides: []int{st}, offset: c.offset, err: c.err}
}
