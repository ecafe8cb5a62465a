package unclip

import (
	"fmt"
	"math"
)

// Linspace is torch.linspace(start, end, steps) in float32, with torch's
// formula: step = (end − start)/(steps − 1) in float32, the first half
// counted from start and the second from end (so linspace(0, 1, 4) is
// [0, 0.33333334, 0.66666663, 1], not 0.6666667).
func Linspace(start, end float32, steps int) []float32 {
	out := make([]float32, steps)
	switch steps {
	case 0:
		return out
	case 1:
		out[0] = start
		return out
	}
	step := (end - start) / float32(steps-1)
	for i := range out {
		if i < steps/2 {
			out[i] = start + float32(i)*step
		} else {
			out[i] = end - float32(steps-1-i)*step
		}
	}
	return out
}

// Slerp interpolates between low and high (the same length) exactly as
// diffusers' community unclip_image_interpolation and
// unclip_text_interpolation pipelines write it, which is not textbook
// slerp: both ends are divided by the Euclidean norm of the whole vector,
// ω = acos(l̂ᵢ·ĥᵢ) is taken element by element (no dot product), and
// resᵢ = sin((1−t)ωᵢ)/sin ωᵢ · lowᵢ + sin(t·ωᵢ)/sin ωᵢ · highᵢ, in float32.
// t = 0 gives low and t = 1 high.
func Slerp(t float32, low, high []float32) ([]float32, error) {
	if len(low) != len(high) || len(low) == 0 {
		return nil, fmt.Errorf("slerp between %d and %d values", len(low), len(high))
	}
	nl, nh := norm32(low), norm32(high)
	if nl == 0 || nh == 0 {
		return nil, fmt.Errorf("slerp from a zero vector")
	}
	out := make([]float32, len(low))
	for i := range low {
		omega := float32(math.Acos(float64((low[i] / nl) * (high[i] / nh))))
		so := float32(math.Sin(float64(omega)))
		a := float32(math.Sin(float64((1-t)*omega))) / so
		b := float32(math.Sin(float64(t*omega))) / so
		out[i] = a*low[i] + b*high[i]
	}
	return out, nil
}

// norm32 is the Euclidean norm in float32, as torch.norm of a float32
// tensor (summed in float64 here, then rounded: within an ulp of torch's
// pairwise float32 sum).
func norm32(v []float32) float32 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return float32(math.Sqrt(s))
}
