package unclip

import "math"

// ToUint8 converts [0, 1] floats to bytes as diffusers' numpy_to_pil does:
// round(x·255) with round-half-to-even, in float32.
func ToUint8(x []float32) []uint8 {
	out := make([]uint8, len(x))
	for i, v := range x {
		r := math.RoundToEven(float64(v * 255))
		out[i] = uint8(min(max(r, 0), 255))
	}
	return out
}
