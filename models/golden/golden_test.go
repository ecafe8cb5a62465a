package golden

import (
	"math"
	"testing"

	"github.com/unclip-go/unclip/models/golden/fixtures"
)

func TestCompare(t *testing.T) {
	want := make([]float32, 2000)
	got := make([]float32, 2000)
	got[0] = 0.5   // one outlier
	got[1] = 0.001 // third largest: the 99.9th percentile (nearest rank) of 2000
	got[2] = 0.002
	s, err := Compare(got, want)
	if err != nil {
		t.Fatal(err)
	}
	if s.MaxAbs != 0.5 || math.Abs(s.MeanAbs-0.503/2000) > 1e-9 || s.P999 != float64(float32(0.001)) || s.N != 2000 {
		t.Errorf("stats %+v", s)
	}
	if _, err := Compare(got[:3], want); err == nil {
		t.Error("length mismatch accepted")
	}
	s, _ = Compare([]float32{float32(math.NaN())}, []float32{0})
	if !math.IsInf(s.MaxAbs, 1) {
		t.Errorf("NaN gave max %v, want +Inf", s.MaxAbs)
	}
}

func TestLoadRaw(t *testing.T) {
	fixtures.Require(t)
	_, path, err := Tiny()
	if err != nil {
		t.Fatal(err)
	}
	g, err := LoadRaw(path)
	if err != nil {
		t.Fatal(err)
	}
	n := g["noise.000"]
	if n.DType != "F32" || len(n.F32) != n.Shape[0]*n.Shape[1] {
		t.Errorf("noise.000: %s %v with %d values", n.DType, n.Shape, len(n.F32))
	}
	if ts := g["prior_scheduler.timesteps"]; len(ts.I64) != 2 || ts.I64[0] != 999 {
		t.Errorf("timesteps %v", ts.I64)
	}
}
