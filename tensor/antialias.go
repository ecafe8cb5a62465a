package tensor

// AntialiasTaps returns the filter taps of torch's antialiased bicubic
// resampling (F.interpolate(mode="bicubic", align_corners=False,
// antialias=True), Keys' cubic with a = −0.5) for resizing nIn samples to
// nOut along one axis, as UpsampleBicubic applies them: for output i,
// first[i] is the first input index and weights[i] the normalised weights
// of inputs first[i], first[i]+1, .... When downsampling the support widens
// by the scale nIn/nOut. The weights are computed in float32 as torch does,
// so every backend that implements OpUpsampleBicubic agrees with it.
func AntialiasTaps(nIn, nOut int) (first []int, weights [][]float32) {
	scale := float32(nIn) / float32(nOut)
	support := float32(2)
	invscale := float32(1)
	if scale >= 1 {
		support *= scale
		invscale = 1 / scale
	}
	first = make([]int, nOut)
	weights = make([][]float32, nOut)
	for i := 0; i < nOut; i++ {
		center := scale * (float32(i) + 0.5)
		lo := max(int(center-support+0.5), 0)
		hi := min(int(center+support+0.5), nIn)
		ws := make([]float32, hi-lo)
		var total float32
		for j := range ws {
			ws[j] = cubicAA((float32(j+lo) - center + 0.5) * invscale)
			total += ws[j]
		}
		if total != 0 {
			for j := range ws {
				ws[j] /= total
			}
		}
		first[i], weights[i] = lo, ws
	}
	return first, weights
}

// cubicAA is Keys' cubic convolution kernel with a = −0.5.
func cubicAA(x float32) float32 {
	const a = -0.5
	if x < 0 {
		x = -x
	}
	switch {
	case x < 1:
		return ((a+2)*x-(a+3))*x*x + 1
	case x < 2:
		return ((a*x-5*a)*x+8*a)*x - 4*a
	}
	return 0
}
