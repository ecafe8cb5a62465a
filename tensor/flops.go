package tensor

// FLOPs is the arithmetic of one node: 2 per multiply-add for MatMul,
// Conv2d and Attention, one per output element for the rest (memory-bound
// ops, where it only weighs in when nothing else runs). It sizes work for
// estimates such as progress ETAs, not for kernel rates.
func (n *Node) FLOPs() int64 {
	out := int64(n.Dst.Numel())
	switch n.Op {
	case OpMatMul:
		a := n.Src[0].shape
		return 2 * out * int64(a[len(a)-1])
	case OpConv2d:
		w := n.Src[1].shape // (O, C/groups, KH, KW)
		return 2 * out * int64(w[1]) * int64(w[2]) * int64(w[3])
	case OpAttention:
		q, k, v := n.Src[0].shape, n.Src[1].shape, n.Src[2].shape // (B, H, Lq, D), (B, H, Lk, D), (B, H, Lk, Dv)
		lk, dk := int64(k[len(k)-2]), int64(q[len(q)-1])
		if kp, _ := n.AttentionPrefix(); kp != nil {
			lk += int64(kp.shape[2])
		}
		rows := int64(numel(q[:len(q)-1]))
		dv := int64(v[len(v)-1])
		return 2 * rows * lk * (dk + dv)
	}
	return out
}

// FLOPs is the arithmetic of one run of the graph (see Node.FLOPs).
func (g *Graph) FLOPs() int64 {
	var s int64
	for _, n := range g.nodes {
		s += n.FLOPs()
	}
	return s
}
