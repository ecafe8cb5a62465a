package scheduler

import (
	"math"
	"math/big"
)

// alphaBar is diffusers' squaredcos_cap_v2 ᾱ(u) = cos((u + 0.008)/1.008 · π/2)², evaluated
// like Python: the argument in float64, left to right; cos correctly rounded (as glibc's
// cos, which Python's math.cos calls, is in practice); the square as one float64 multiply
// (Python's x**2 equals x*x here).
func alphaBar(u float64) float64 {
	c := cosCorrectlyRounded((u + 0.008) / 1.008 * math.Pi / 2)
	return c * c
}

// cosCorrectlyRounded returns cos(x) rounded to the nearest float64 for 0 ≤ x ≤ 2.
//
// Go's math.Cos is accurate to about one ulp but not correctly rounded, and it disagrees
// with glibc in the last bit for a third of the arguments ᾱ needs; since β = 1 − ᾱ(t2)/ᾱ(t1)
// cancels catastrophically for small t, such a bit can change the float32 β. So the Taylor
// series is summed in 256-bit fixed point and rounded once (about 10 µs per call; New calls
// it NumTrainTimesteps+1 times).
func cosCorrectlyRounded(x float64) float64 {
	const fracBits = 256
	xs := new(big.Int)
	new(big.Float).SetMantExp(big.NewFloat(x), fracBits).Int(xs) // exact: x·2^256 is an integer
	x2 := new(big.Int).Mul(xs, xs)
	x2.Rsh(x2, fracBits)
	sum := new(big.Int).Lsh(big.NewInt(1), fracBits)
	term := new(big.Int).Set(sum)
	div := new(big.Int)
	for k := int64(1); term.Sign() != 0; k++ {
		// term = x^(2k) / (2k)!, truncated; the accumulated truncation error (< 2^-245) is far
		// below what rounding to 53 bits can see for results ≥ 1e-17 (cos(π/2 in float64)).
		term.Mul(term, x2)
		term.Rsh(term, fracBits)
		term.Quo(term, div.SetInt64((2*k-1)*(2*k)))
		if k%2 == 1 {
			sum.Sub(sum, term)
		} else {
			sum.Add(sum, term)
		}
	}
	f, _ := new(big.Float).SetMantExp(new(big.Float).SetInt(sum), -fracBits).Float64()
	return f
}
