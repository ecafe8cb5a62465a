package cpu

import (
	"fmt"
	"math"

	"github.com/unclip-go/unclip/tensor"
)

// attentionOp computes softmax(q·kᵀ·scale + bias)·v one query row at a time,
// materialising one row of Lk scores.
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
	scale := n.Float[0]
	causal := n.Int[0] == 1
	qd, kd, vd := q.dense(), k.dense(), v.dense()
	parallelFor(bsz*h*lq, bsz*h*lq*lk*(d+dv), func(lo, hi int) {
		s := make([]float32, lk)
		p := make([]float32, lk)
		for r := lo; r < hi; r++ {
			bh, i := r/lq, r%lq
			b, hh := bh/h, bh%h
			qr := qd[r*d : r*d+d]
			for j := 0; j < lk; j++ {
				if causal && j > i {
					s[j] = float32(math.Inf(-1))
					continue
				}
				kr := kd[(bh*lk+j)*d : (bh*lk+j)*d+d]
				s[j] = dot(qr, kr) * scale
				if hasBias {
					s[j] += bias.d[bias.off+b*bias.strides[0]+hh*bias.strides[1]+i*bias.strides[2]+j*bias.strides[3]]
				}
			}
			softmaxRow(p, s)
			yr := y[r*dv : r*dv+dv]
			clear(yr)
			for j := 0; j < lk; j++ {
				pj := p[j]
				if pj == 0 {
					continue
				}
				vr := vd[(bh*lk+j)*dv : (bh*lk+j)*dv+dv]
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
