package tensor_test

import (
	"math"
	"testing"

	"github.com/unclip-go/unclip/tensor"
	"github.com/unclip-go/unclip/tensor/tensortest"
)

func TestAntialiasTapsExamples(t *testing.T) {
	first, w := tensor.AntialiasTaps(64, 256)
	for _, c := range []struct {
		i     int
		first int
		w     []float64
	}{
		{0, 0, []float64{1.11194, -0.11194}},
		{5, 0, []float64{0.090204, 0.957323, -0.047527}},
	} {
		if first[c.i] != c.first || len(w[c.i]) != len(c.w) {
			t.Errorf("AntialiasTaps(64, 256)[%d]: first %d, %d taps %v; want first %d, taps %v", c.i, first[c.i], len(w[c.i]), w[c.i], c.first, c.w)
			continue
		}
		for j, want := range c.w {
			if d := math.Abs(float64(w[c.i][j]) - want); d > 1e-5 {
				t.Errorf("AntialiasTaps(64, 256)[%d][%d] = %v, want %v", c.i, j, w[c.i][j], want)
			}
		}
	}
	// Interior outputs of ×4 upsampling have 4 taps whose raw weights sum to 1.
	if len(w[128]) != 4 {
		t.Errorf("AntialiasTaps(64, 256)[128] has %d taps, want 4", len(w[128]))
	}
	// The float64 reference agrees with the spec's examples too.
	W := tensortest.AntialiasWeights(64, 256)
	for j, want := range []float64{1.11194, -0.11194} {
		if math.Abs(W[0][j]-want) > 1e-5 {
			t.Errorf("reference W[0][%d] = %v, want %v", j, W[0][j], want)
		}
	}
	for j, want := range []float64{0.090204, 0.957323, -0.047527} {
		if math.Abs(W[5][j]-want) > 1e-5 {
			t.Errorf("reference W[5][%d] = %v, want %v", j, W[5][j], want)
		}
	}
}

func TestAntialiasTapsMatrix(t *testing.T) {
	for _, c := range [][2]int{{64, 256}, {7, 17}, {16, 48}, {16, 64}, {9, 4}, {13, 5}, {257, 33}, {33, 257}, {1, 3}, {33, 1}, {5, 5}, {2, 1}, {6, 12}, {3, 2}} {
		nIn, nOut := c[0], c[1]
		first, w := tensor.AntialiasTaps(nIn, nOut)
		if len(first) != nOut || len(w) != nOut {
			t.Errorf("AntialiasTaps(%d, %d): %d rows", nIn, nOut, len(w))
			continue
		}
		W := tensortest.AntialiasWeights(nIn, nOut)
		for i := 0; i < nOut; i++ {
			if first[i] < 0 || first[i]+len(w[i]) > nIn || len(w[i]) == 0 {
				t.Errorf("AntialiasTaps(%d, %d)[%d]: window [%d, %d) outside [0, %d)", nIn, nOut, i, first[i], first[i]+len(w[i]), nIn)
				continue
			}
			dense := make([]float64, nIn)
			var sum float64
			for j, v := range w[i] {
				dense[first[i]+j] = float64(v)
				sum += float64(v)
			}
			if math.Abs(sum-1) > 1e-5 {
				t.Errorf("AntialiasTaps(%d, %d)[%d]: weights sum to %v", nIn, nOut, i, sum)
			}
			for j := range dense {
				if d := math.Abs(dense[j] - W[i][j]); d > 1e-5 {
					t.Errorf("AntialiasTaps(%d, %d)[%d][%d] = %v, float64 reference %v", nIn, nOut, i, j, dense[j], W[i][j])
				}
			}
		}
		if nIn == nOut {
			for i := range W {
				for j := range W[i] {
					want := 0.0
					if i == j {
						want = 1
					}
					if math.Abs(W[i][j]-want) > 1e-12 {
						t.Errorf("same-size resampling is not the identity at %d,%d: %v", i, j, W[i][j])
					}
				}
			}
		}
	}
}
