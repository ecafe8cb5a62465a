package tensortest

import "math"

// cubic is Keys' cubic convolution kernel with a = −0.5, in float64.
func cubic(x float64) float64 {
	const a = -0.5
	x = math.Abs(x)
	switch {
	case x < 1:
		return (a+2)*x*x*x - (a+3)*x*x + 1
	case x < 2:
		return a*x*x*x - 5*a*x*x + 8*a*x - 4*a
	}
	return 0
}

// AntialiasWeights is torch's antialiased bicubic resampling matrix
// (nOut × nIn) in float64 (spec appendix C, with torch's support widening
// by the scale when downsampling), written independently of
// tensor.AntialiasTaps: the oracle of its tests and of the kernels'.
func AntialiasWeights(nIn, nOut int) [][]float64 {
	s := float64(nIn) / float64(nOut)
	support, inv := 2.0, 1.0
	if s >= 1 {
		support, inv = 2*s, 1/s
	}
	W := make([][]float64, nOut)
	for i := range W {
		W[i] = make([]float64, nIn)
		center := s * (float64(i) + 0.5)
		lo := max(int(math.Trunc(center-support+0.5)), 0)
		hi := min(int(math.Trunc(center+support+0.5)), nIn)
		var total float64
		for j := lo; j < hi; j++ {
			W[i][j] = cubic((float64(j) - center + 0.5) * inv)
			total += W[i][j]
		}
		for j := lo; j < hi; j++ {
			W[i][j] /= total
		}
	}
	return W
}
