package cpu

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestExpSum checks the vector exp and max against math.Exp on odd lengths
// and on a wide range of arguments (including ones that underflow).
func TestExpSum(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, n := range []int{1, 7, 8, 9, 33, 257, 1105} {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(rng.NormFloat64() * 30)
		}
		want := float32(math.Inf(-1))
		for _, v := range x {
			want = max(want, v)
		}
		m := rowMax(x)
		if m != want {
			t.Fatalf("n=%d: rowMax %v, want %v", n, m, want)
		}
		orig := append([]float32(nil), x...)
		s := expSum(x, m)
		var ws float64
		for i, v := range orig {
			e := math.Exp(float64(v - m))
			ws += e
			if d := math.Abs(float64(x[i]) - e); d > 3e-7*e+1e-37 {
				t.Fatalf("n=%d: exp(%v) = %v, want %v", n, v-m, x[i], e)
			}
		}
		if math.Abs(float64(s)-ws) > 1e-6*ws {
			t.Fatalf("n=%d: sum %v, want %v", n, s, ws)
		}
	}
}
