//go:build !purego

package cpu

import (
	"math"

	"github.com/klauspost/cpuid/v2"
)

// Assembly leaf kernels (gemm_amd64.s, written by _asm). Each call covers one
// register tile over at most one KC block, so it returns within microseconds.

//go:noescape
func sgemm12x32AVX512(k int, a, b, c *float32, ldc int, acc bool)

//go:noescape
func sgemm8x32AVX512(k int, a, b, c *float32, ldc int, acc bool)

//go:noescape
func sgemm6x16AVX2(k int, a, b, c *float32, ldc int, acc bool)

//go:noescape
func bf16gemm12x32AVX512(kp int, a, b, c *float32, ldc int, acc bool)

//go:noescape
func bf16conv3x3x12x32AVX512(ncp int, a, b, c *float32, ldc, wp, hwp int, acc bool)

//go:noescape
func pairBF16AVX512(lo, hi, dst *float32, n int)

// pairBF16 sets dst[i] to the bf16 pair (lo[i], hi[i]) (see toPairs), in
// AVX-512 where the CPU has it; hi nil pairs with zeros.
func pairBF16(dst, lo, hi []float32) {
	n16 := 0
	if hasAVX512 && hi != nil {
		n16 = len(dst) &^ 15
		if n16 > 0 {
			_, _ = lo[n16-1], hi[n16-1]
			pairBF16AVX512(&lo[0], &hi[0], &dst[0], n16)
		}
	}
	pairBF16Go(dst[n16:], lo[n16:], tail(hi, n16))
}

//go:noescape
func pairRowsBF16AVX512(src, dst *float32, rows, w int)

// pairRows converts kp row pairs of a panel of width w (see pairRowsGo),
// in one AVX-512 call where the CPU has it and w is a multiple of 16.
func pairRows(dst, src []float32, kp, w int) {
	if hasAVX512 && w > 0 && w%16 == 0 && kp > 0 {
		_, _ = src[2*kp*w-1], dst[kp*w-1]
		pairRowsBF16AVX512(&src[0], &dst[0], kp, w)
		return
	}
	pairRowsWith(pairBF16, dst, src, kp, w)
}

//go:noescape
func conv3x3x12x32AVX512(nci int, a, b, c *float32, ldc, wp, hwp int, acc bool)

//go:noescape
func conv3x3x6x16AVX2(nci int, a, b, c *float32, ldc, wp, hwp int, acc bool)

//go:noescape
func fmaPeakAVX512(n int)

//go:noescape
func fmaPeakAVX2(n int)

//go:noescape
func bf16PeakAVX512(n int)

var (
	hasAVX512 = cpuid.CPU.Supports(cpuid.AVX512F)
	hasAVX2   = cpuid.CPU.Supports(cpuid.AVX2, cpuid.FMA3)
	hasBF16   = cpuid.CPU.Supports(cpuid.AVX512F, cpuid.AVX512BF16)
)

// bf16Kernel is the bfloat16 micro-kernel (VDPBF16PS: two bf16 products
// per float32 lane and instruction), nil where the CPU lacks AVX512_BF16.
var bf16Kernel = func() *microKernel {
	if !hasBF16 {
		return nil
	}
	return &microKernel{name: "avx512-bf16", mr: 12, nr: 32, mc: 144, kc: 1024, nc: 4096, fn: bf16gemm12x32AVX512,
		conv: bf16conv3x3x12x32AVX512, ok: true, pairs: true}
}()

// archKernels are the assembly micro-kernels, most preferred first.
var archKernels = []*microKernel{
	{name: "avx512", mr: 12, nr: 32, mc: 144, kc: 512, nc: 4096, fn: sgemm12x32AVX512, conv: conv3x3x12x32AVX512, ok: hasAVX512,
		alt: &microKernel{name: "avx512-8x32", mr: 8, nr: 32, mc: 144, kc: 512, nc: 4096, fn: sgemm8x32AVX512, ok: hasAVX512}},
	{name: "avx2", mr: 6, nr: 16, mc: 144, kc: 512, nc: 4096, fn: sgemm6x16AVX2, conv: conv3x3x6x16AVX2, ok: hasAVX2},
}

// peakLoops are the FMA throughput loops, widest first.
var peakLoops = []peakLoop{
	{name: "avx512", flopsPerIter: 12 * 32, fn: fmaPeakAVX512, ok: hasAVX512},
	{name: "avx2", flopsPerIter: 12 * 16, fn: fmaPeakAVX2, ok: hasAVX2},
}

// bf16PeakLoops is the bf16 dot-product throughput loop: 12 independent
// VDPBF16PS, each 16 lanes × 2 products (64 FLOPs).
var bf16PeakLoops = []peakLoop{
	{name: "avx512-bf16", flopsPerIter: 12 * 64, fn: bf16PeakAVX512, ok: hasBF16},
}

//go:noescape
func maxAVX2(x *float32, n int) float32

//go:noescape
func expSumAVX2(x *float32, n int, m float32) float32

// rowMax returns the maximum of a non-empty x.
func rowMax(x []float32) float32 {
	n8 := len(x) &^ 7
	m := float32(math.Inf(-1))
	if hasAVX2 && n8 > 0 {
		m = maxAVX2(&x[0], n8)
	}
	for _, v := range x[n8:] {
		m = max(m, v)
	}
	return m
}

// expSum sets x[i] = exp(x[i] − m) and returns the sum (float32 accurate
// to about 1e-7 relative).
func expSum(x []float32, m float32) float32 {
	n8 := len(x) &^ 7
	var s float32
	if hasAVX2 && n8 > 0 {
		s = expSumAVX2(&x[0], n8, m)
	} else {
		n8 = 0
	}
	for i := n8; i < len(x); i++ {
		e := float32(math.Exp(float64(x[i] - m)))
		x[i] = e
		s += e
	}
	return s
}

//go:noescape
func colSoftmaxAVX2(s *float32, rows, width int, m, l, corr *float32)

//go:noescape
func mulRowsAVX2(o *float32, rows, width int, v *float32)

// colSoftmax is one online-softmax step over the columns of s (rows ×
// width); see colSoftmaxGo.
func colSoftmax(s []float32, rows, width int, m, l, corr []float32) {
	if hasAVX2 && width%8 == 0 && rows > 0 && width > 0 {
		_ = s[rows*width-1]
		_, _, _ = m[width-1], l[width-1], corr[width-1]
		colSoftmaxAVX2(&s[0], rows, width, &m[0], &l[0], &corr[0])
		return
	}
	colSoftmaxGo(s, rows, width, m, l, corr)
}

// mulRows scales each row of o (rows × width) elementwise by v.
func mulRows(o []float32, rows, width int, v []float32) {
	if hasAVX2 && width%8 == 0 && rows > 0 && width > 0 {
		_ = o[rows*width-1]
		_ = v[width-1]
		mulRowsAVX2(&o[0], rows, width, &v[0])
		return
	}
	mulRowsGo(o, rows, width, v)
}

//go:noescape
func sumsAVX2(x *float32, n int, c float64) (s1, s2 float64)

//go:noescape
func affineAVX2(dst, src *float32, n int, c, a, b float32, silu bool)

//go:noescape
func normAffineAVX2(dst, src, w, b *float32, n int, c, d, inv float32)

// sums returns Σ(x−c) and Σ(x−c)², accumulated in float64.
func sums(x []float32, c float32) (s1, s2 float64) {
	n16 := len(x) &^ 15
	if hasAVX2 && n16 > 0 {
		s1, s2 = sumsAVX2(&x[0], n16, float64(c))
	} else {
		n16 = 0
	}
	t1, t2 := sumsGo(x[n16:], c)
	return s1 + t1, s2 + t2
}

// affine writes dst = (src − c)·a + b, then SiLU when silu is set.
func affine(dst, src []float32, c, a, b float32, silu bool) {
	n8 := len(dst) &^ 7
	if hasAVX2 && n8 > 0 {
		_ = src[n8-1]
		affineAVX2(&dst[0], &src[0], n8, c, a, b, silu)
	} else {
		n8 = 0
	}
	affineGo(dst[n8:], src[n8:len(dst)], c, a, b, silu)
}

// normAffine writes dst = ((src − c) − d)·inv·w + b.
func normAffine(dst, src, w, b []float32, c, d, inv float32) {
	n8 := len(dst) &^ 7
	if hasAVX2 && n8 > 0 {
		_, _, _ = src[n8-1], w[n8-1], b[n8-1]
		normAffineAVX2(&dst[0], &src[0], &w[0], &b[0], n8, c, d, inv)
	} else {
		n8 = 0
	}
	normAffineGo(dst[n8:], src[n8:len(dst)], w[n8:len(dst)], b[n8:len(dst)], c, d, inv)
}

//go:noescape
func deinterleave4AVX512(src, d0, d1, d2, d3 *float32, n int)

//go:noescape
func interleave4AVX512(dst, s0, s1, s2, s3 *float32, bias float32, n int)

// deinterleave4 sets d_k[q] = src[4q+k] for k < 4 and q < len(d0) (the
// Winograd gather's stride-4 columns), in AVX-512 where the CPU has it.
func deinterleave4(src, d0, d1, d2, d3 []float32) {
	n := len(d0)
	if !hasAVX512 || n == 0 {
		deinterleave4Go(src, d0, d1, d2, d3)
		return
	}
	_, _, _, _ = src[4*n-1], d1[n-1], d2[n-1], d3[n-1]
	deinterleave4AVX512(&src[0], &d0[0], &d1[0], &d2[0], &d3[0], n)
}

// interleave4 sets dst[4q+j] = s_j[q] + bias for j < 4 and q < len(s0)
// (the Winograd scatter's tile rows), in AVX-512 where the CPU has it.
func interleave4(dst, s0, s1, s2, s3 []float32, bias float32) {
	n := len(s0)
	if !hasAVX512 || n == 0 {
		interleave4Go(dst, s0, s1, s2, s3, bias)
		return
	}
	_, _, _, _ = dst[4*n-1], s1[n-1], s2[n-1], s3[n-1]
	interleave4AVX512(&dst[0], &s0[0], &s1[0], &s2[0], &s3[0], bias, n)
}

//go:noescape
func transpose8AVX2(d *float32, stride int, src *float32, rs, kc int)

// gather8 writes d[p·stride + r] = src[r·rs + p] for r < 8 and p < kc:
// eight rows of a row-major matrix into eight adjacent columns of a panel.
func gather8(d []float32, stride int, src []float32, rs, kc int) {
	k8 := kc &^ 7
	if hasAVX2 && k8 > 0 {
		_ = src[7*rs+kc-1]
		_ = d[(kc-1)*stride+7]
		transpose8AVX2(&d[0], stride, &src[0], rs, k8)
		if k8 == kc {
			return
		}
	} else {
		k8 = 0
	}
	gather8Go(d[k8*stride:], stride, src[k8:], rs, kc-k8)
}

//go:noescape
func geluAVX2(dst, src *float32, n int)

// gelu writes dst = x·Φ(x) (the exact, erf GELU).
func gelu(dst, src []float32) {
	n8 := len(dst) &^ 7
	if hasAVX2 && n8 > 0 {
		_ = src[n8-1]
		geluAVX2(&dst[0], &src[0], n8)
	} else {
		n8 = 0
	}
	geluGo(dst[n8:], src[n8:len(dst)])
}
