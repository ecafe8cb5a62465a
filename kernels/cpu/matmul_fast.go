package cpu

import (
	"github.com/unclip-go/unclip/tensor"
)

// matmulFast computes Dst[b] = A[b]·B[b] (+ bias), then the epilogue, with
// the blocked GEMM.
// The operands are read in place through their strides (broadcast batch
// dimensions have stride 0); F16/BF16 operands are converted while packing.
// A weight as B is packed once and kept packed (packedGemmB).
// Batches too small to split run side by side, one GEMM per goroutine.
func matmulFast(n *tensor.Node, mk *microKernel) error {
	a, b := n.Src[0], n.Src[1]
	var bias []float32
	if len(n.Src) > 2 && n.Src[2] != nil {
		bias = f32(n.Src[2]).dense()
	}
	ep, err := epilogueOf(n, true)
	if err != nil {
		return err
	}
	y := out(n.Dst)
	as, bs := a.Shape(), b.Shape()
	r := len(as)
	m, k, nn := as[r-2], as[r-1], bs[r-1]
	if m*nn == 0 {
		return nil
	}
	pb, err := packedGemmB(b, mk, k, nn) // before reading b: it may unpack it
	if err != nil {
		return err
	}
	ao, bo := matOperand(a), matOperand(b)
	aOff, bOff := batchOffsets(a, b)
	nb := len(aOff)
	jobs := make([]gemmJob, nb)
	for bi := range jobs {
		oa, ob := ao, bo
		oa.off, ob.off = aOff[bi], bOff[bi]
		jobs[bi] = gemmJob{
			m: m, n: nn, k: k,
			packA: oa.packA, packB: ob.packB,
			c: y[bi*m*nn : (bi+1)*m*nn], ldc: nn,
			colBias: bias,
			ep:      ep, at: bi * m * nn,
			pb: pb,
		}
	}
	threads := Threads()
	switch {
	case nb > 1 && threads > 1 && 2*m*nn*k < 8*serialFlops:
		parallel(nb, func(bi, _ int) { jobs[bi].run(mk, 1) })
	case colsWorthIt(m, nn, k, threads) && !mk.pairs && !mk.round:
		for bi := range jobs {
			runCols(mk, threads, jobs[bi:bi+1])
		}
	default:
		for bi := range jobs {
			jobs[bi].run(mk, threads)
		}
	}
	return nil
}

// matOperand describes the last two dimensions of t as a GEMM operand
// (offset left for the caller to set per batch).
func matOperand(t *tensor.Tensor) operand {
	st := t.Strides()
	r := len(st)
	o := operand{rs: st[r-2], cs: st[r-1]}
	sh := t.Shape()
	// Size-1 dimensions may carry any stride: give them the one that
	// enables the contiguous packing paths.
	if sh[r-1] == 1 {
		o.cs = 1
	}
	if sh[r-2] == 1 {
		if o.cs == 1 {
			o.rs = sh[r-1]
		} else {
			o.rs = 1
		}
	}
	h := t.Storage().Host
	switch t.DType() {
	case tensor.F32:
		o.f = tensor.Float32View(h)
	case tensor.F16:
		o.h, o.convert = tensor.Uint16View(h), tensor.F16ToF32
	case tensor.BF16:
		o.h, o.convert = tensor.Uint16View(h), tensor.BF16ToF32
	}
	return o
}

// batchOffsets returns the element offset of every batch matrix of a and b
// (same batch shape, any strides), in row-major batch order.
func batchOffsets(a, b *tensor.Tensor) (aOff, bOff []int) {
	as := a.Shape()
	r := len(as)
	batch := as[:r-2]
	if len(batch) == 0 {
		return []int{a.Offset()}, []int{b.Offset()}
	}
	ast, bst := a.Strides(), b.Strides()
	rows(append(append([]int(nil), batch...), 1),
		[][]int{append(ast[:r-2:r-2], 0), append(bst[:r-2:r-2], 0)},
		[]int{a.Offset(), b.Offset()},
		func(o []int, _ int, _ []int) {
			aOff = append(aOff, o[0])
			bOff = append(bOff, o[1])
		})
	return aOff, bOff
}
