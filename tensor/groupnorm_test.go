package tensor_test

import (
	"math"
	"testing"

	_ "github.com/unclip-go/unclip/kernels/cpu"
	"github.com/unclip-go/unclip/tensor"
	"github.com/unclip-go/unclip/tensor/tensortest"
)

// TestGroupNormScaleShift checks the fused op against its composition
// (GroupNorm, ·(1 + scale) + shift, SiLU) on strided scale and shift views
// (the two halves of one projection), and its shape checks.
func TestGroupNormScaleShift(t *testing.T) {
	x := tensortest.Rand(1, 2, 8, 5, 3)
	w, b := tensortest.Rand(2, 8), tensortest.Rand(3, 8)
	tp := tensortest.Rand(4, 2, 16)
	scale, shift := tp.Narrow(1, 0, 8), tp.Narrow(1, 8, 8)
	for _, silu := range []bool{false, true} {
		got := tensor.GroupNormScaleShift(x, 4, w, b, scale, shift, 1e-5, silu).MustFloat32s()
		h := tensor.GroupNorm(x, 4, w, b, 1e-5, false)
		h = tensor.Add(tensor.Mul(h, tensor.Affine(scale.Reshape(2, 8, 1, 1), 1, 1)), shift.Reshape(2, 8, 1, 1))
		if silu {
			h = tensor.SiLU(h)
		}
		want := h.MustFloat32s()
		for i := range want {
			if d := math.Abs(float64(got[i] - want[i])); d > 1e-5*(1+math.Abs(float64(want[i]))) {
				t.Fatalf("silu=%v: at %d got %v, want %v", silu, i, got[i], want[i])
			}
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("a (2, 7) scale for 8 channels was accepted")
		}
	}()
	tensor.GroupNormScaleShift(x, 4, w, b, tp.Narrow(1, 0, 7), shift, 1e-5, true)
}
