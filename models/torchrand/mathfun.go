package torchrand

import "math"

// This file emulates, one lane at a time, the float32 log256_ps and sincos256_ps of
// PyTorch's aten/src/ATen/native/cpu/avx_mathfun.h (Giovanni Garberoglio's AVX port of
// Julien Pommier's Cephes-based sse_mathfun), which torch.randn uses on x86. They are
// polynomial approximations, not libm, and PyTorch builds them with GCC, which contracts a
// multiply whose only use is an add or subtract into a fused multiply-add (-ffp-contract=fast
// is GCC's default). The polynomials below are therefore evaluated with fma32 exactly where
// GCC fuses, and with separately rounded float32 operations elsewhere; with any other choice
// some of the fixture's values differ in the last bit.

// Cephes log coefficients and constants (float32).
const (
	cephesSqrtHF = float32(0.707106781186547524)
	logP0        = float32(7.0376836292e-2)
	logP1        = float32(-1.1514610310e-1)
	logP2        = float32(1.1676998740e-1)
	logP3        = float32(-1.2420140846e-1)
	logP4        = float32(+1.4249322787e-1)
	logP5        = float32(-1.6668057665e-1)
	logP6        = float32(+2.0000714765e-1)
	logP7        = float32(-2.4999993993e-1)
	logP8        = float32(+3.3333331174e-1)
	logQ1        = float32(-2.12194440e-4)
	logQ2        = float32(0.693359375)
)

// logPS is log256_ps for one lane: log(x) for x > 0, NaN for x ≤ 0 (or NaN).
func logPS(x float32) float32 {
	if !(x > 0) {
		return float32(math.NaN())
	}
	x = max(x, math.Float32frombits(0x00800000)) // no denormals
	bits := math.Float32bits(x)
	e := float32(int32(bits>>23)-0x7f) + 1
	// Keep the mantissa: x in [0.5, 1).
	x = math.Float32frombits(bits&^0x7f800000 | math.Float32bits(0.5))
	// if x < sqrt(1/2) { e -= 1; x = x + x - 1 } else { x = x - 1 }, written as the AVX
	// code does: x - 1 + (x or 0).
	small := x < cephesSqrtHF
	var tmp float32
	if small {
		tmp = x
		e = e - 1
	}
	x = x - 1
	x = x + tmp

	z := float32(x * x)
	y := logP0
	y = fma32(y, x, logP1)
	y = fma32(y, x, logP2)
	y = fma32(y, x, logP3)
	y = fma32(y, x, logP4)
	y = fma32(y, x, logP5)
	y = fma32(y, x, logP6)
	y = fma32(y, x, logP7)
	y = fma32(y, x, logP8)
	y = float32(y * x)                // feeds a multiply: not fused
	y = fma32(y, z, float32(e*logQ1)) // y*z + e*q1: GCC fuses the first multiply
	y = y - float32(z*0.5)            // z*0.5 is exact, so fusing it changes nothing
	x = x + y
	x = x + float32(e*logQ2) // e*q2 is exact (small integer times 355/512)
	return x
}

// Cephes sin/cos constants (float32).
const (
	cephesFOPI = float32(1.27323954473516) // 4/π
	minusDP1   = float32(-0.78515625)
	minusDP2   = float32(-2.4187564849853515625e-4)
	minusDP3   = float32(-3.77489497744594108e-8)
	sincofP0   = float32(-1.9515295891e-4)
	sincofP1   = float32(8.3321608736e-3)
	sincofP2   = float32(-1.6666654611e-1)
	coscofP0   = float32(2.443315711809948e-005)
	coscofP1   = float32(-1.388731625493765e-003)
	coscofP2   = float32(4.166664568298827e-002)
)

// sincosPS is sincos256_ps for one lane: (sin x, cos x), accurate for |x| < 8192.
func sincosPS(x float32) (sin, cos float32) {
	signSin := math.Float32bits(x) & 0x80000000
	x = math.Float32frombits(math.Float32bits(x) &^ 0x80000000)

	// j = (int(x·4/π) + 1) &^ 1: the octant, rounded up to even.
	y := float32(x * cephesFOPI)
	j := (int32(y) + 1) &^ 1 // cvttps truncates
	y = float32(j)
	swapSin := uint32(j&4) << 29
	useSinPoly := j&2 == 0 // the sine polynomial gives sin (else cos)
	signCos := uint32(^(j-2)&4) << 29
	signSin ^= swapSin

	// Extended-precision reduction x = ((x - y·DP1) - y·DP2) - y·DP3, each step fused.
	x = fma32(y, minusDP1, x)
	x = fma32(y, minusDP2, x)
	x = fma32(y, minusDP3, x)

	z := float32(x * x)
	// Cosine polynomial: 1 - z/2 + z²·(p0 z² + p1 z + p2).
	yc := coscofP0
	yc = fma32(yc, z, coscofP1)
	yc = fma32(yc, z, coscofP2)
	yc = float32(yc * z)               // feeds a multiply: not fused
	yc = fma32(yc, z, -float32(z*0.5)) // y·z − z·0.5, the first multiply fused
	yc = yc + 1
	// Sine polynomial: x + x·z·(p0 z² + p1 z + p2).
	ys := sincofP0
	ys = fma32(ys, z, sincofP1)
	ys = fma32(ys, z, sincofP2)
	ys = float32(ys * z) // feeds a multiply: not fused
	ys = fma32(ys, x, x)

	if useSinPoly {
		sin, cos = ys, yc
	} else {
		sin, cos = yc, ys
	}
	sin = math.Float32frombits(math.Float32bits(sin) ^ signSin)
	cos = math.Float32frombits(math.Float32bits(cos) ^ signCos)
	return sin, cos
}

// fma32 returns a·b + c rounded once to float32 (a float32 fused multiply-add).
//
// The product of two float32 values is exact in float64, so a·b + c is the exact sum p + c
// of two float64 values; it is rounded to float64 (s) with its exact error e recovered by
// TwoSum. Rounding s to float32 is then correct except when s lies exactly halfway between
// two float32 values and e ≠ 0: the exact value then lies on the side of e.
func fma32(a, b, c float32) float32 {
	p := float64(float64(a) * float64(b)) // exact; the conversion also forbids fusing it into the add
	cc := float64(c)
	s := p + cc
	bv := s - p
	e := (p - (s - bv)) + (cc - bv)
	f := float32(s)
	if e == 0 || float64(f) == s || math.IsInf(s, 0) {
		return f
	}
	// The other float32 neighbour of s.
	o := math.Nextafter32(f, float32(math.Inf(1)))
	if float64(f) > s {
		o = math.Nextafter32(f, float32(math.Inf(-1)))
	}
	if float64(f)+float64(o) != 2*s {
		return f // not a tie: rounding through float64 did not matter
	}
	if (e > 0) == (o > f) {
		return o
	}
	return f
}
