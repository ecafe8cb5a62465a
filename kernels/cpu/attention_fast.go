package cpu

import (
	"math"

	"github.com/unclip-go/unclip/tensor"
)

// attentionFast computes softmax(q·kᵀ·scale + bias [causal])·v blockwise
// (the FlashAttention scheme, transposed to suit the CPU micro-kernel).
// For a block of W = NR queries it walks the keys in blocks of KB and
//
//	Sᵀ (KB × W)  = K_blk · (scale·Q_blk)ᵀ      GEMM micro-kernel
//	(bias, causal mask added to Sᵀ)
//	online softmax down the columns of Sᵀ: running max m and sum l per
//	query; Oᵀ's columns rescaled when m grows; Sᵀ becomes Pᵀ in place
//	Oᵀ (Dv × W) += V_blkᵀ · Pᵀ                   GEMM micro-kernel
//
// Sᵀ is laid out exactly as a packed B panel, so P is never repacked; K
// and Vᵀ are packed once per task (a head, or a slice of its queries when
// there are fewer heads than workers) and Qᵀ once per query block. Only one
// KB×W score block per goroutine exists, whatever the sequence lengths.
//
// Shapes: q (B, H, Lq, D), k (B, H, Lk, D), v (B, H, Lk, Dv), bias
// broadcast to (B, H, Lq, Lp+Lk), or to (B, H, Lq, Lp) over the prefix keys
// alone, or absent; prefix keys and values kp (B, H, Lp, D), vp (B, H, Lp,
// Dv) attended before k and v (their own key blocks, packed like k's);
// Dst (B, H, Lq, Dv), or (B, Lq, H·Dv) with Int[1] set. Any strides.
//
// With a bf16 kernel mk (bfloat16 compute, see SetBF16) the products take
// bf16 operands: scale·Q, K, V and the probabilities P are rounded to bf16
// as they are packed, with float32 scores, softmax and accumulation.
func attentionFast(n *tensor.Node, mk *microKernel) error {
	q, k, v := n.Src[0], n.Src[1], n.Src[2]
	y := out(n.Dst)
	qsh := q.Shape()
	bsz, h, lq, d := qsh[0], qsh[1], qsh[2], qsh[3]
	lk, dv := k.Dim(2), v.Dim(3)
	kp, vp := n.AttentionPrefix()
	lp := 0
	if kp != nil {
		lp = kp.Dim(2)
	}
	if len(y) == 0 {
		return nil
	}
	if lk+lp == 0 {
		clear(y)
		return nil
	}
	var bias view
	hasBias := len(n.Src) > 3 && n.Src[3] != nil
	if hasBias {
		bias = f32(n.Src[3])
	}
	prefixBias := n.PrefixOnlyBias()
	merged := n.Int[1] == 1
	scale := n.Float[0]
	causal := n.Int[0] == 1
	qst, kst, vst := q.Strides(), k.Strides(), v.Strides()
	// K as A (key, d); Vᵀ as A (c, key); Qᵀ as B (d, query).
	ko, vo, qo := matOperand(k), matOperand(v), matOperand(q)
	vo.rs, vo.cs = vst[3], vst[2]
	qo.rs, qo.cs = qst[3], qst[2]
	var kpo, vpo operand
	var kpst, vpst []int
	if kp != nil {
		kpst, vpst = kp.Strides(), vp.Strides()
		kpo, vpo = matOperand(kp), matOperand(vp)
		vpo.rs, vpo.cs = vpst[3], vpst[2]
	}

	mr, w := mk.mr, mk.nr
	pv := mk.forRows(dv) // the kernel of Oᵀ += Vᵀ·Pᵀ (Dv rows)
	kbMax := ceilDiv(256, mr) * mr
	// Key blocks: the prefix keys' first, then k's; none straddles the two.
	type keyBlock struct {
		prefix     bool
		j0, kb, g0 int
	} // source, first key in it, keys, first key overall
	var blocks []keyBlock
	for j0 := 0; j0 < lp; j0 += kbMax {
		blocks = append(blocks, keyBlock{true, j0, min(kbMax, lp-j0), j0})
	}
	for j0 := 0; j0 < lk; j0 += kbMax {
		blocks = append(blocks, keyBlock{false, j0, min(kbMax, lk-j0), lp + j0})
	}
	nKB := len(blocks)
	kpSize := kbMax * d // one packed K block
	vpSize := ceilDiv(dv, pv.mr) * pv.mr * kbMax
	bh := bsz * h
	nQB := ceilDiv(lq, w)
	threads := Threads()
	if 2*bh*lq*(lp+lk)*(d+dv) < serialFlops {
		threads = 1
	}
	chunks := 1
	if threads > 1 && bh < 4*threads {
		chunks = min(nQB, ceilDiv(4*threads, bh))
	}
	const floor = -3e38 // running max before any finite score
	parallelN(bh*chunks, threads, func(t, _ int) {
		hi, ch := t/chunks, t%chunks
		b, hh := hi/h, hi%h
		q0, q1 := nQB*ch/chunks, nQB*(ch+1)/chunks
		if q1 <= q0 {
			return
		}
		kpack := getScratch(nKB * kpSize)
		vpack := getScratch(nKB * vpSize)
		qpack := getScratch(d * w)
		st := getScratch(kbMax * w)
		ot := getScratch(ceilDiv(dv, pv.mr) * pv.mr * w)
		ml := getScratch(3 * w)
		bufs := [][]float32{kpack, vpack, qpack, st, ot, ml}
		var qf, sp []float32 // Qᵀ in float32 and Pᵀ in pairs, for a bf16 pairs kernel
		if mk.pairs {
			qf, sp = getScratch(d*w), getScratch(kbMax*w)
			bufs = append(bufs, qf, sp)
		}
		defer func() {
			for _, x := range bufs {
				putScratch(x)
			}
		}()
		m, l, corr := ml[:w], ml[w:2*w], ml[2*w:]
		// Keys a causal task can see: up to its last query.
		lkT := lp + lk
		if causal {
			lkT = min(lk, q1*w)
		}
		ka, va, qa := ko, vo, qo
		ka.off = k.Offset() + b*kst[0] + hh*kst[1]
		va.off = v.Offset() + b*vst[0] + hh*vst[1]
		qa.off = q.Offset() + b*qst[0] + hh*qst[1]
		kpa, vpa := kpo, vpo
		if kp != nil {
			kpa.off = kp.Offset() + b*kpst[0] + hh*kpst[1]
			vpa.off = vp.Offset() + b*vpst[0] + hh*vpst[1]
		}
		for jb, blk := range blocks {
			if blk.g0 >= lkT {
				break
			}
			src, vsrc := ka, va
			if blk.prefix {
				src, vsrc = kpa, vpa
			}
			// With a bf16 kernel (bf16 compute) K and V are rounded to
			// bf16 as they are packed (pairs for VDPBF16PS), as Q and P are
			// below; the scores, the softmax and the sums stay float32.
			mk.packFor(kpack[jb*kpSize:], ceilDiv(blk.kb, mr), d, mr, func(dst []float32) { src.packA(dst, blk.j0, blk.kb, 0, d, mr) })
			pv.packFor(vpack[jb*vpSize:], ceilDiv(dv, pv.mr), blk.kb, pv.mr, func(dst []float32) { vsrc.packA(dst, 0, dv, blk.j0, blk.kb, pv.mr) })
		}
		for qi := q0; qi < q1; qi++ {
			i0 := qi * w
			rows := min(w, lq-i0)
			qs := qpack
			if mk.pairs {
				qs = qf
			}
			qa.packB(qs, 0, d, i0, rows, w)
			for x := range qs {
				qs[x] *= scale
			}
			switch {
			case mk.pairs:
				toPairs(qpack, qf, 1, d, w)
			case mk.round:
				roundBF16(qpack)
			}
			clear(ot)
			for c := range m {
				m[c], l[c] = floor, 0
			}
			for jb, blk := range blocks {
				j0, kb := blk.g0, blk.kb // j0: the block's first key overall
				if causal && j0 > i0+rows-1 {
					break
				}
				s := st[:kb*w]
				mk.block(kb, w, mk.steps(d), kpack[jb*kpSize:], qpack, s, w, false, nil, nil)
				if hasBias && (!prefixBias || blk.prefix) {
					bs := bias.strides
					for c := 0; c < rows; c++ {
						bo := bias.off + b*bs[0] + hh*bs[1] + (i0+c)*bs[2] + j0*bs[3]
						for p := 0; p < kb; p++ {
							s[p*w+c] += bias.d[bo+p*bs[3]]
						}
					}
				}
				if causal && j0+kb-1 > i0 {
					inf := float32(math.Inf(-1))
					for p := max(0, i0+1-j0); p < kb; p++ {
						// key j0+p is hidden from queries i < j0+p
						for c := 0; c < min(w, j0+p-i0); c++ {
							s[p*w+c] = inf
						}
					}
				}
				colSoftmax(s, kb, w, m, l, corr)
				for c := 0; c < w; c++ {
					if corr[c] != 1 {
						mulRows(ot, dv, w, corr)
						break
					}
				}
				p := s
				switch {
				case mk.pairs:
					p = sp[:pv.steps(kb)*w]
					toPairs(p, s, 1, kb, w)
				case mk.round:
					roundBF16(s)
				}
				pv.block(dv, w, pv.steps(kb), vpack[jb*vpSize:], p, ot, w, true, nil, nil)
			}
			for c := 0; c < rows; c++ {
				o := (hi*lq + i0 + c) * dv
				if merged {
					o = ((b*lq+i0+c)*h + hh) * dv
				}
				yr := y[o : o+dv]
				if m[c] <= floor || l[c] == 0 {
					clear(yr) // every key masked
					continue
				}
				inv := 1 / l[c]
				for e := range yr {
					yr[e] = ot[e*w+c] * inv
				}
			}
		}
	})
	return nil
}

// colSoftmaxGo is the pure-Go twin of the column online-softmax step: for
// each column q of s (rows × width) with running maximum m[q] and sum l[q]:
// m' = max(m[q], maxₚ s[p][q]), corr[q] = exp(m[q] − m'),
// s[p][q] = exp(s[p][q] − m'), l[q] = l[q]·corr[q] + Σₚ s[p][q], m[q] = m'.
func colSoftmaxGo(s []float32, rows, width int, m, l, corr []float32) {
	for q := 0; q < width; q++ {
		mx := m[q]
		for p := 0; p < rows; p++ {
			mx = max(mx, s[p*width+q])
		}
		c := float32(math.Exp(float64(m[q] - mx)))
		var sum float32
		for p := 0; p < rows; p++ {
			e := float32(math.Exp(float64(s[p*width+q] - mx)))
			s[p*width+q] = e
			sum += e
		}
		corr[q], l[q], m[q] = c, l[q]*c+sum, mx
	}
}

// mulRowsGo is the pure-Go twin of mulRows.
func mulRowsGo(o []float32, rows, width int, v []float32) {
	for r := 0; r < rows; r++ {
		row := o[r*width : r*width+width]
		for c := range row {
			row[c] *= v[c]
		}
	}
}
