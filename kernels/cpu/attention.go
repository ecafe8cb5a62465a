package cpu

import (
	"fmt"
	"math"

	"github.com/unclip-go/unclip/tensor"
)

// attentionOp computes softmax(q·kᵀ·scale + bias)·v one query row at a time,
// materialising one row of scores: the reference for OpAttention, prefix
// keys and values (Src[4], Src[5], attended before k and v), a bias over
// the prefix keys alone and merged heads (Int[1]) included.
func attentionOp(n *tensor.Node) error {
	if n.Dst.DType() != tensor.F32 {
		return fmt.Errorf("cpu: attention into %v", n.Dst.DType())
	}
	q, k, v := f32(n.Src[0]), f32(n.Src[1]), f32(n.Src[2])
	var bias view
	hasBias := n.Src[3] != nil
	if hasBias {
		bias = f32(n.Src[3])
	}
	y := out(n.Dst)
	bsz, h, lq, d := q.shape[0], q.shape[1], q.shape[2], q.shape[3]
	lk, dv := k.shape[2], v.shape[3]
	var kpd, vpd []float32
	lp := 0
	if kpt, vpt := n.AttentionPrefix(); kpt != nil {
		kp, vp := f32(kpt), f32(vpt)
		lp = kp.shape[2]
		kpd, vpd = kp.dense(), vp.dense()
	}
	prefixBias := n.PrefixOnlyBias()
	merged := n.Int[1] == 1
	scale := n.Float[0]
	causal := n.Int[0] == 1
	qd, kd, vd := q.dense(), k.dense(), v.dense()
	// key returns the key and value rows of key j (prefix keys first).
	key := func(bh, j int) (kr, vr []float32) {
		if j < lp {
			return kpd[(bh*lp+j)*d : (bh*lp+j+1)*d], vpd[(bh*lp+j)*dv : (bh*lp+j+1)*dv]
		}
		j -= lp
		return kd[(bh*lk+j)*d : (bh*lk+j+1)*d], vd[(bh*lk+j)*dv : (bh*lk+j+1)*dv]
	}
	nk := lp + lk
	parallelFor(bsz*h*lq, bsz*h*lq*nk*(d+dv), func(lo, hi int) {
		s := make([]float32, nk)
		p := make([]float32, nk)
		for r := lo; r < hi; r++ {
			bh, i := r/lq, r%lq
			b, hh := bh/h, bh%h
			qr := qd[r*d : r*d+d]
			for j := 0; j < nk; j++ {
				if causal && j > i {
					s[j] = float32(math.Inf(-1))
					continue
				}
				kr, _ := key(bh, j)
				s[j] = dot(qr, kr) * scale
				if hasBias && (!prefixBias || j < lp) {
					s[j] += bias.d[bias.off+b*bias.strides[0]+hh*bias.strides[1]+i*bias.strides[2]+j*bias.strides[3]]
				}
			}
			softmaxRow(p, s)
			o := r * dv
			if merged {
				o = ((b*lq+i)*h + hh) * dv
			}
			yr := y[o : o+dv]
			clear(yr)
			for j := 0; j < nk; j++ {
				pj := p[j]
				if pj == 0 {
					continue
				}
				_, vr := key(bh, j)
				for c, x := range vr {
					yr[c] += pj * x
				}
			}
		}
	})
	return nil
}

// embeddingOp gathers rows of a table.
func embeddingOp(n *tensor.Node) error {
	table := n.Src[0]
	ids := n.Src[1].Contiguous()
	vocab, dim := table.Dim(0), table.Dim(1)
	var idx []int64
	switch ids.DType() {
	case tensor.I64:
		idx = tensor.Int64View(ids.Storage().Host)[ids.Offset() : ids.Offset()+ids.Numel()]
	case tensor.I32:
		for _, v := range tensor.Int32View(ids.Storage().Host)[ids.Offset() : ids.Offset()+ids.Numel()] {
			idx = append(idx, int64(v))
		}
	}
	for _, id := range idx {
		if id < 0 || id >= int64(vocab) {
			return fmt.Errorf("cpu: embedding id %d out of range [0, %d)", id, vocab)
		}
	}
	for r, id := range idx {
		src := table.Narrow(0, int(id), 1)
		dst := n.Dst.Reshape(-1, dim).Narrow(0, r, 1)
		if err := copyOp(dst, src); err != nil {
			return err
		}
	}
	return nil
}
