package torchrand

import "math"

// Randn returns n standard-normal float32 values exactly as torch.randn(n) (or any float32
// shape with n elements) on a CPU generator produces them, advancing g the same way.
//
// For n ≥ 16 torch takes its vectorised path (normal_fill): it first draws n uniforms
// (Float32) into the output, then turns every block of 16 into normals by Box-Muller over
// the pairs (j, j+8), j = 0..7: u1 = 1 − d[j], u2 = d[j+8], r = √(−2 ln u1), θ = 2π·u2,
// d[j] = r cos θ, d[j+8] = r sin θ. When n is not a multiple of 16 it then draws 16 fresh
// uniforms into the last 16 slots and transforms that block again, so such a call consumes
// n + 16 engine outputs. The transform is torch's normal_fill_16_AVX2, the one its x86
// builds run on AVX2 CPUs: float32 arithmetic with the Cephes-derived log256_ps and
// sincos256_ps of avx_mathfun.h, emulated here operation for operation, including the
// multiply-adds GCC fuses into FMAs. It reproduces the fixture's recorded torch 2.11 noise
// bit for bit (61,568 values). torch builds that take the portable normal_fill instead
// (e.g. ARM) use libm's logf/cosf/sinf and differ from this by up to about 2e-6.
//
// For n < 16 torch uses its scalar path instead: each value is a float64 Box-Muller normal
// (normal_distribution<double>) rounded to float32, made from two 53-bit uniforms (four
// engine outputs) per pair, with the pair's second value cached in the generator and
// returned by the next scalar draw, even one made by a later call. The float64 functions
// are Go's, whose last-bit differences from glibc's vanish in the rounding to float32 except
// in rare cases.
func (g *Generator) Randn(n int) []float32 {
	out := make([]float32, n)
	g.RandnInto(out)
	return out
}

// RandnInto fills dst with len(dst) standard-normal values, exactly as Randn(len(dst)).
func (g *Generator) RandnInto(dst []float32) {
	n := len(dst)
	if n < 16 {
		for i := range dst {
			dst[i] = float32(g.normalFloat64())
		}
		return
	}
	for i := range dst {
		dst[i] = g.Float32()
	}
	for i := 0; i+16 <= n; i += 16 {
		normalFill16(dst[i : i+16])
	}
	if n%16 != 0 {
		tail := dst[n-16:]
		for i := range tail {
			tail[i] = g.Float32()
		}
		normalFill16(tail)
	}
}

// NormFloat64 returns one float64 standard-normal value from torch's scalar Box-Muller
// (at::normal_distribution<double>), using and refilling the generator's cached second value.
func (g *Generator) NormFloat64() float64 { return g.normalFloat64() }

func (g *Generator) normalFloat64() float64 {
	if g.hasNextNormal {
		g.hasNextNormal = false
		return g.nextNormal
	}
	u1 := g.Float64()
	u2 := g.Float64()
	r := math.Sqrt(-2 * math.Log1p(-u2))
	theta := 2 * math.Pi * u1
	g.nextNormal = r * math.Sin(theta)
	g.hasNextNormal = true
	return r * math.Cos(theta)
}

// normalFill16 is torch's normal_fill_16_AVX2 with mean 0 and std 1: Box-Muller on the
// eight uniform pairs (d[j], d[j+8]) of a block, in place.
func normalFill16(d []float32) {
	const twoPi = float32(2 * math.Pi) // _mm256_set1_ps(2.0f * c10::pi<double>)
	_ = d[15]
	for j := 0; j < 8; j++ {
		u1 := 1 - d[j]
		u2 := d[j+8]
		radius := float32(math.Sqrt(float64(float32(-2 * logPS(u1))))) // sqrt is correctly rounded
		theta := float32(twoPi * u2)
		s, c := sincosPS(theta)
		// torch stores fmadd(n, std=1, mean=0), which is n exactly.
		d[j] = float32(radius * c)
		d[j+8] = float32(radius * s)
	}
}
