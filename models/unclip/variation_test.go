package unclip

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/unclip-go/unclip/tensor"
)

func norm64(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

func angle(a, b []float32) float64 {
	var d float64
	for i := range a {
		d += float64(a[i]) * float64(b[i])
	}
	return math.Acos(max(-1, min(1, d/(norm64(a)*norm64(b)))))
}

// TestTextDiff checks the text diff against its definition: the result
// stays on the sphere of the image embedding's norm, in the plane of z_i
// and z_d, at θ·ω from z_i and (1−θ)·ω from z_d; θ = 0 is z_i bit for bit.
func TestTextDiff(t *testing.T) {
	zi := []float32{0.3, -1.2, 0.8, 2.0, -0.5}
	from := []float32{0.1, 0.4, -0.2, 0.3, 0.9}
	to := []float32{-0.6, 0.5, 0.7, 0.1, 1.1}
	zd := make([]float32, len(zi))
	for i := range zd {
		zd[i] = to[i] - from[i]
	}
	omega := angle(zi, zd)
	for _, th := range []float32{0, 0.25, 0.5, 1, -0.3, 1.5} {
		got, err := TextDiff(zi, from, to, th)
		if err != nil {
			t.Fatal(err)
		}
		if th == 0 {
			if !slices.Equal(got, zi) {
				t.Errorf("θ = 0: %v, want z_i %v exactly", got, zi)
			}
			continue
		}
		if d := math.Abs(norm64(got) - norm64(zi)); d > 1e-5 {
			t.Errorf("θ = %g: norm %g, z_i's %g", th, norm64(got), norm64(zi))
		}
		if a := angle(got, zi); math.Abs(a-math.Abs(float64(th))*omega) > 1e-5 {
			t.Errorf("θ = %g: %g rad from z_i, want %g", th, a, float64(th)*omega)
		}
		if a := angle(got, zd); th <= 1 && math.Abs(a-(1-float64(th))*omega) > 1e-5 {
			t.Errorf("θ = %g: %g rad from z_d, want %g", th, a, (1-float64(th))*omega)
		}
	}
	for _, c := range []struct {
		zi, from, to []float32
		want         string
	}{
		{zi, from, from, "same embedding"},
		{make([]float32, 5), from, to, "zero"},
		{zi[:3], from, to, "values"},
		{nil, nil, nil, "values"},
	} {
		if _, err := TextDiff(c.zi, c.from, c.to, 0.5); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("TextDiff(%v, %v, %v): %v, want an error about %q", c.zi, c.from, c.to, err, c.want)
		}
	}
}

// TestSharedDecoderLatent checks that one draw of one image's shape
// starts every image of the batch.
func TestSharedDecoderLatent(t *testing.T) {
	p := &Pipeline{Device: tensor.CPU()}
	rec := &countingNoise{}
	req := &Request{Noise: rec}
	lat, err := p.sharedNoise(req, []int{3, 2, 4, 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.shapes) != 1 || !slices.Equal(rec.shapes[0], []int{1, 2, 4, 4}) {
		t.Fatalf("draws %v, want one of (1, 2, 4, 4)", rec.shapes)
	}
	v, err := lat.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	for b := 1; b < 3; b++ {
		if !slices.Equal(v[b*32:(b+1)*32], v[:32]) {
			t.Errorf("image %d starts from another latent", b)
		}
	}
}

type countingNoise struct{ shapes [][]int }

func (c *countingNoise) Randn(shape []int) ([]float32, error) {
	c.shapes = append(c.shapes, slices.Clone(shape))
	out := make([]float32, numel(shape))
	for i := range out {
		out[i] = float32(i)
	}
	return out, nil
}
