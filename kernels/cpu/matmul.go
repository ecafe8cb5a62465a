package cpu

import (
	"fmt"

	"github.com/unclip-go/unclip/tensor"
)

// matmulOp computes Dst[b] = A[b]·B[b] (+ bias), then the epilogue, for operands already
// broadcast to a common batch shape. Each batch matrix is brought into one of
// two loop-friendly layouts (accumulating in float64): rows of A and columns of B both contiguous along
// K (dot products), or rows of B contiguous along N (row updates).
func matmulOp(n *tensor.Node) error {
	if n.Dst.DType() != tensor.F32 {
		return fmt.Errorf("cpu: matmul into %v", n.Dst.DType())
	}
	a, b := f32(n.Src[0]), f32(n.Src[1])
	var bias []float32
	if len(n.Src) > 2 && n.Src[2] != nil {
		bias = f32(n.Src[2]).dense()
	}
	ep, err := epilogueOf(n, false)
	if err != nil {
		return err
	}
	y := out(n.Dst)
	r := len(a.shape)
	m, k, nn := a.shape[r-2], a.shape[r-1], b.shape[r-1]
	batch := a.shape[:r-2]
	nb := 1
	for _, d := range batch {
		nb *= d
	}
	if m*nn == 0 {
		return nil
	}
	// Offsets of each batch matrix.
	aOff := make([]int, 0, nb)
	bOff := make([]int, 0, nb)
	if len(batch) == 0 {
		aOff, bOff = append(aOff, a.off), append(bOff, b.off)
	} else {
		rows(append(append([]int(nil), batch...), 1), [][]int{append(a.strides[:r-2:r-2], 0), append(b.strides[:r-2:r-2], 0)}, []int{a.off, b.off},
			func(o []int, _ int, _ []int) {
				aOff = append(aOff, o[0])
				bOff = append(bOff, o[1])
			})
	}
	as0, as1 := a.strides[r-2], a.strides[r-1]
	bs0, bs1 := b.strides[r-2], b.strides[r-1]
	for bi := 0; bi < nb; bi++ {
		// A as dense rows along K.
		ad, ao := a.d, aOff[bi]
		if as1 != 1 || (m > 1 && as0 != k) {
			ad = make([]float32, m*k)
			for i := 0; i < m; i++ {
				for p := 0; p < k; p++ {
					ad[i*k+p] = a.d[aOff[bi]+i*as0+p*as1]
				}
			}
			ao = 0
		}
		c := y[bi*m*nn : (bi+1)*m*nn]
		if bs0 == 1 || k == 1 {
			// Columns of B contiguous along K (a transposed weight): dots.
			bd, bo := b.d, bOff[bi]
			parallelFor(m, m*nn*k, func(lo, hi int) {
				for i := lo; i < hi; i++ {
					ar := ad[ao+i*k : ao+i*k+k]
					for j := 0; j < nn; j++ {
						br := bd[bo+j*bs1 : bo+j*bs1+k]
						c[i*nn+j] = dot(ar, br)
					}
				}
			})
		} else {
			// Rows of B dense along N: accumulate a[i,p]·B[p,:] into C[i,:].
			bd, bo := b.d, bOff[bi]
			if bs1 != 1 || (k > 1 && bs0 != nn) {
				bd = make([]float32, k*nn)
				for p := 0; p < k; p++ {
					for j := 0; j < nn; j++ {
						bd[p*nn+j] = b.d[bOff[bi]+p*bs0+j*bs1]
					}
				}
				bo = 0
			}
			parallelFor(m, m*nn*k, func(lo, hi int) {
				acc := make([]float64, nn)
				for i := lo; i < hi; i++ {
					clear(acc)
					for p := 0; p < k; p++ {
						av := float64(ad[ao+i*k+p])
						br := bd[bo+p*nn : bo+p*nn+nn]
						for j, bv := range br {
							acc[j] += av * float64(bv)
						}
					}
					cr := c[i*nn : i*nn+nn]
					for j, a := range acc {
						cr[j] = float32(a)
					}
				}
			})
		}
		if bias != nil {
			for i := 0; i < m; i++ {
				cr := c[i*nn : i*nn+nn]
				for j := range cr {
					cr[j] += bias[j]
				}
			}
		}
	}
	ep.all(y)
	return nil
}

// dot is the inner product, accumulated in float64.
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1 float64
	i := 0
	for ; i+2 <= len(a); i += 2 {
		s0 += float64(a[i]) * float64(b[i])
		s1 += float64(a[i+1]) * float64(b[i+1])
	}
	if i < len(a) {
		s0 += float64(a[i]) * float64(b[i])
	}
	return float32(s0 + s1)
}
