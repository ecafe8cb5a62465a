package nn

import (
	"math"

	"github.com/unclip-go/unclip/tensor"
)

// TimestepSinusoid is diffusers' get_timestep_embedding for integer
// timesteps: half = dim/2 frequencies f_k = exp(−ln(10000)·k/(half − shift)),
// arguments t·f_k, and [sin, cos] (or [cos, sin] with flipSinToCos), all in
// float32. An odd dim is zero-padded. The result is a CPU tensor (len(ts), dim).
func TimestepSinusoid(ts []int, dim int, flipSinToCos bool, shift float32) *tensor.Tensor {
	half := dim / 2
	out := make([]float32, len(ts)*dim)
	freq := make([]float32, half)
	lnp := float32(-math.Log(10000))
	for k := range freq {
		e := lnp * float32(k)
		e /= float32(half) - shift
		freq[k] = float32(math.Exp(float64(e)))
	}
	for i, t := range ts {
		row := out[i*dim : (i+1)*dim]
		for k, f := range freq {
			a := float32(t) * f
			s, c := float32(math.Sin(float64(a))), float32(math.Cos(float64(a)))
			if flipSinToCos {
				row[k], row[half+k] = c, s
			} else {
				row[k], row[half+k] = s, c
			}
		}
	}
	return tensor.FromFloat32(out, len(ts), dim)
}

// TimestepEmbedding is diffusers' TimestepEmbedding: linear_1 → act → linear_2.
type TimestepEmbedding struct {
	L1, L2 *Linear
	Act    Activation
}

// NewTimestepEmbedding binds linear_1 (in→hidden) and linear_2 (hidden→out).
func NewTimestepEmbedding(b Binder, in, hidden, out int, act string) *TimestepEmbedding {
	if !ValidActivation(act) {
		b.Errorf("%s: unsupported activation %q", b.Prefix(), act)
		act = "silu"
	}
	return &TimestepEmbedding{
		L1:  NewLinear(b.Sub("linear_1"), in, hidden, true),
		L2:  NewLinear(b.Sub("linear_2"), hidden, out, true),
		Act: Activation(act),
	}
}

// Forward embeds a sinusoid (N, in).
func (e *TimestepEmbedding) Forward(x *tensor.Tensor) *tensor.Tensor {
	return e.L2.Forward(e.Act.Apply(e.L1.Forward(x)))
}
