package tensor

// Fusion is done once, on the captured graph, so that every backend gets
// it: rewrite rules merge a node into the one that produces its input
// where a kernel can do both in one pass. A rule applies only when the
// intermediate value has no other reader, is not a graph output, and is
// written whole by one node. The rules:
//
//   - GroupNorm followed by SiLU becomes GroupNorm with its SiLU flag
//     (exact: the kernels apply SiLU to the rounded normalised value);
//   - MatMul followed by the addition of a row vector broadcast over its
//     rows becomes MatMul with a bias, and Conv2d followed by the addition
//     of a per-channel vector becomes Conv2d with a bias (the kernels add
//     the bias first and accumulate onto it: a different rounding order,
//     within float32 accuracy).
//
// Model code written against the fused ops (GroupNorm(..., silu),
// Linear with bias, Conv2d with bias) needs no rule; the rules make the
// unfused spelling cost the same.

// fuse applies the rules in one pass over the nodes.
func (g *Graph) fuse() {
	readers := map[*value]int{}
	writers := map[*value]int{}
	producer := map[*value]*Node{}
	for _, t := range g.outputs {
		if v := valueOf(t); v != nil {
			readers[v]++
		}
	}
	for _, n := range g.nodes {
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
	dead := map[*Node]bool{}
	for _, n := range g.nodes {
		switch {
		case n.Op == OpUnary && UnaryKind(n.Int[0]) == UnarySiLU:
			p := sole(n.Src[0])
			if p != nil && p.Op == OpGroupNorm && p.Int[1] == 0 && p.Dst.dtype == n.Dst.dtype {
				p.Int[1] = 1
				p.Dst = n.Dst
				dead[n] = true
			}
		case n.Op == OpBinary && BinaryKind(n.Int[0]) == BinaryAdd:
			for i := 0; i < 2; i++ {
				p := sole(n.Src[i])
				if p == nil || len(p.Src) != 2 || p.Dst.dtype != n.Dst.dtype {
					continue
				}
				if b := biasOf(p, n.Src[1-i]); b != nil {
					p.Src = append(p.Src, b)
					p.Dst = n.Dst
					dead[n] = true
					break
				}
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
