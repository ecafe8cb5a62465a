package tensor

// AttentionOptions are the optional parts of MultiHeadAttention.
type AttentionOptions struct {
	// Scale multiplies the scores q·k.
	Scale float32
	// Causal hides key j from query i when j > i (not with prefix keys).
	Causal bool
	// Bias is an F32 additive bias on the scores that broadcasts to
	// (B, H, Lq, Lp+Lk), or, with prefix keys, to (B, H, Lq, Lp): a bias
	// over the prefix keys alone (the others get none).
	Bias *Tensor
	// PrefixK and PrefixV, (B, H, Lp, D) and (B, H, Lp, Dv), are keys and
	// values attended before k and v, as if concatenated in front of them
	// (diffusers' added-KV attention), without the concatenation.
	PrefixK, PrefixV *Tensor
	// MergeHeads lays the result out as (B, Lq, H·Dv), the heads merged as
	// an output projection reads them, instead of (B, H, Lq, Dv).
	MergeHeads bool
}

// MultiHeadAttention is softmax(q·kᵀ·scale + bias)·v per batch and head for
// q (B, H, Lq, D), k (B, H, Lk, D) and v (B, H, Lk, Dv), views with any
// strides (SplitHeads' permuted views need no copy), with the options' prefix
// keys, bias, causal mask and result layout. Its node is an OpAttention:
// Src q, k, v, bias (or nil) and, with prefix keys, PrefixK and PrefixV;
// Float[0] the scale; Int[0] 1 when causal; Int[1] 1 when the heads are
// merged.
func MultiHeadAttention(q, k, v *Tensor, o AttentionOptions) *Tensor {
	for _, t := range []*Tensor{q, k, v, o.PrefixK, o.PrefixV} {
		if t == nil {
			continue
		}
		floatOperand("MultiHeadAttention", t)
		if t.Rank() != 4 {
			shapePanic("tensor.MultiHeadAttention: q %v, k %v, v %v and prefix keys and values must be (B, H, L, D)", q.shape, k.shape, v.shape)
		}
	}
	bsz, h, lq, d := q.Dim(0), q.Dim(1), q.Dim(2), q.Dim(3)
	lk, dv := k.Dim(2), v.Dim(3)
	if k.Dim(0) != bsz || k.Dim(1) != h || k.Dim(3) != d || v.Dim(0) != bsz || v.Dim(1) != h || v.Dim(2) != lk {
		shapePanic("tensor.MultiHeadAttention: q %v, k %v, v %v", q.shape, k.shape, v.shape)
	}
	lp := 0
	if (o.PrefixK == nil) != (o.PrefixV == nil) {
		shapePanic("tensor.MultiHeadAttention: prefix keys and values go together")
	}
	if kp, vp := o.PrefixK, o.PrefixV; kp != nil {
		lp = kp.Dim(2)
		if kp.Dim(0) != bsz || kp.Dim(1) != h || kp.Dim(3) != d || vp.Dim(0) != bsz || vp.Dim(1) != h || vp.Dim(2) != lp || vp.Dim(3) != dv {
			shapePanic("tensor.MultiHeadAttention: prefix keys %v and values %v for q %v, v %v", kp.shape, vp.shape, q.shape, v.shape)
		}
		if o.Causal {
			shapePanic("tensor.MultiHeadAttention: a causal mask with prefix keys")
		}
	}
	shape := []int{bsz, h, lq, dv}
	if o.MergeHeads {
		shape = []int{bsz, lq, h * dv}
	}
	out := newOut(q, q.dtype, shape...)
	src := []*Tensor{q, k, v, nil}
	if b := o.Bias; b != nil {
		if b.dtype != F32 {
			shapePanic("tensor.MultiHeadAttention: bias must be F32, got %v", b.dtype)
		}
		// A last dimension of Lp (Lk > 0) makes a bias over the prefix
		// keys alone; one of 1 broadcasts over every key (but when Lp is 1
		// too, it is taken as the prefix key's).
		lb := lp + lk
		if lp > 0 && lk > 0 && b.Rank() > 0 && b.Dim(-1) == lp {
			lb = lp
		}
		if !broadcastsTo(b.shape, []int{bsz, h, lq, lb}) {
			if lp > 0 {
				shapePanic("tensor.MultiHeadAttention: bias %v broadcasts neither to (B, H, Lq, Lp+Lk) = %v nor, over the prefix keys alone, to (B, H, Lq, Lp) = %v",
					b.shape, []int{bsz, h, lq, lp + lk}, []int{bsz, h, lq, lp})
			}
			shapePanic("tensor.MultiHeadAttention: bias %v does not broadcast to (B, H, Lq, Lk) = %v", b.shape, []int{bsz, h, lq, lk})
		}
		src[3] = b.Expand(bsz, h, lq, lb)
	}
	if o.PrefixK != nil {
		src = append(src, o.PrefixK, o.PrefixV)
	}
	n := &Node{Op: OpAttention, Dst: out, Src: src}
	n.Float[0] = o.Scale
	if o.Causal {
		n.Int[0] = 1
	}
	if o.MergeHeads {
		n.Int[1] = 1
	}
	return run(n)
}

// AttentionPrefix returns an OpAttention node's prefix keys and values
// (MultiHeadAttention's PrefixK and PrefixV), or nils.
func (n *Node) AttentionPrefix() (k, v *Tensor) {
	if len(n.Src) > 5 && n.Src[4] != nil {
		return n.Src[4], n.Src[5]
	}
	return nil, nil
}

// PrefixOnlyBias reports whether an OpAttention node's bias covers the
// prefix keys alone (its last dimension is Lp, and keys follow the prefix)
// rather than every key.
func (n *Node) PrefixOnlyBias() bool {
	kp, _ := n.AttentionPrefix()
	b := n.Src[3]
	return b != nil && kp != nil && n.Src[1].Dim(2) > 0 && b.Dim(3) == kp.Dim(2)
}

// broadcastsTo reports whether Expand can take shape s to shape to.
func broadcastsTo(s, to []int) bool {
	if len(s) > len(to) {
		return false
	}
	lead := len(to) - len(s)
	for i, d := range s {
		if d != 1 && d != to[lead+i] {
			return false
		}
	}
	return true
}
