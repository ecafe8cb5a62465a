//go:build !amd64 || purego

package cpu

import "math"

// The pure-Go leaf helpers of the fast kernels, for every platform without
// assembly versions of them (arm64 has assembly micro-kernels, in
// gemm_arm64.s, but not these) and for the purego tag. archKernels and
// peakLoops come from gemm_$GOARCH.go or arch_none.go.

// rowMax returns the maximum of a non-empty x.
func rowMax(x []float32) float32 {
	m := float32(math.Inf(-1))
	for _, v := range x {
		m = max(m, v)
	}
	return m
}

// expSum sets x[i] = exp(x[i] − m) and returns the sum.
func expSum(x []float32, m float32) float32 {
	var s float32
	for i, v := range x {
		e := float32(math.Exp(float64(v - m)))
		x[i] = e
		s += e
	}
	return s
}

// colSoftmax is one online-softmax step over the columns of s (rows ×
// width); see colSoftmaxGo.
func colSoftmax(s []float32, rows, width int, m, l, corr []float32) {
	colSoftmaxGo(s, rows, width, m, l, corr)
}

// mulRows scales each row of o (rows × width) elementwise by v.
func mulRows(o []float32, rows, width int, v []float32) { mulRowsGo(o, rows, width, v) }

// sums returns Σ(x−c) and Σ(x−c)².
func sums(x []float32, c float32) (s1, s2 float64) { return sumsGo(x, c) }

// affine writes dst = (src − c)·a + b, then SiLU when silu is set.
func affine(dst, src []float32, c, a, b float32, silu bool) { affineGo(dst, src, c, a, b, silu) }

// normAffine writes dst = ((src − c) − d)·inv·w + b.
func normAffine(dst, src, w, b []float32, c, d, inv float32) {
	normAffineGo(dst, src, w, b, c, d, inv)
}

// gather8 writes d[p·stride + r] = src[r·rs + p] for r < 8 and p < kc.
func gather8(d []float32, stride int, src []float32, rs, kc int) { gather8Go(d, stride, src, rs, kc) }

// deinterleave4 sets d_k[q] = src[4q+k] for k < 4 and q < len(d0).
func deinterleave4(src, d0, d1, d2, d3 []float32) { deinterleave4Go(src, d0, d1, d2, d3) }

// interleave4 sets dst[4q+j] = s_j[q] + bias for j < 4 and q < len(s0).
func interleave4(dst, s0, s1, s2, s3 []float32, bias float32) {
	interleave4Go(dst, s0, s1, s2, s3, bias)
}

// gelu writes dst = x·Φ(x) (the exact, erf GELU).
func gelu(dst, src []float32) { geluGo(dst, src) }
