package unclip_test

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/unclip-go/unclip/models/unclip"
)

func TestRandomTiny(t *testing.T) {
	p, err := unclip.NewRandom(unclip.Tiny(), unclip.RandomOptions{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	req := unclip.DefaultRequest()
	req.Prompts = []string{"a red cube", ""}
	req.ImagesPerPrompt = 2
	req.PriorSteps, req.DecoderSteps, req.SuperResSteps = 2, 2, 2
	req.Noise = unclip.NewTorchNoise(0)
	var events, plans int
	req.Progress = func(e unclip.Event) {
		if e.Plan != nil {
			plans++
			return
		}
		events++
	}
	res, err := p.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if res.N != 4 || res.Size != 64 || len(res.Images) != 4*64*64*3 {
		t.Fatalf("got %d images of %d, %d values", res.N, res.Size, len(res.Images))
	}
	for _, v := range res.Images {
		if math.IsNaN(float64(v)) || v < 0 || v > 1 {
			t.Fatalf("image value %v outside [0, 1]", v)
		}
	}
	if events != 1+2+2+2 || plans != 3 {
		t.Errorf("%d progress events and %d plans, want 7 and 3", events, plans)
	}
	// The same prompt twice with the same draws per row gives equal rows only
	// if the noise were shared; rows of one prompt must differ.
	if equal(res.Images[:64*64*3], res.Images[64*64*3:2*64*64*3]) {
		t.Error("two images of one prompt are identical")
	}
}

func equal(a, b []float32) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestKarloScaledTopology(t *testing.T) {
	arch := unclip.Karlo().Scale(10)
	arch.Decoder.SampleSize = []int{16}
	arch.SuperRes.SampleSize = []int{32}
	p, err := unclip.NewRandom(arch, unclip.RandomOptions{Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	req := unclip.DefaultRequest()
	req.Prompts = []string{"x"}
	req.PriorSteps, req.DecoderSteps, req.SuperResSteps = 2, 2, 2
	req.Noise = unclip.NewTorchNoise(0)
	res, err := p.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Size != 32 || res.SmallSize != 16 {
		t.Fatalf("sizes %d / %d", res.Size, res.SmallSize)
	}
}

// TestPlannedMatchesEager: replaying captured step graphs gives exactly
// the images of op-by-op execution, with and without guidance.
func TestPlannedMatchesEager(t *testing.T) {
	p, err := unclip.NewRandom(unclip.Tiny(), unclip.RandomOptions{Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []float32{1, 4} {
		run := func(eager bool) *unclip.Result {
			req := unclip.DefaultRequest()
			req.Prompts = []string{"a red cube"}
			req.PriorSteps, req.DecoderSteps, req.SuperResSteps = 4, 3, 3
			req.PriorGuidance, req.DecoderGuidance = g, g
			req.Noise = unclip.NewTorchNoise(9)
			req.Eager = eager
			res, err := p.Generate(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			return res
		}
		planned, eager := run(false), run(true)
		if !equal(planned.Images, eager.Images) || !equal(planned.ImageEmbeddings, eager.ImageEmbeddings) {
			t.Errorf("guidance %g: planned and eager images differ", g)
		}
		for _, st := range planned.Timings {
			if st.Steps > 0 && (!st.Stats.Planned || st.Stats.ArenaBytes <= 0 || st.Stats.ArenaBytes > st.Stats.NaiveBytes) {
				t.Errorf("guidance %g, %s: stats %+v", g, st.Stage, st.Stats)
			}
		}
	}
}

// TestOneShotReleases: a one-shot pipeline releases each model after its
// last stage; running it again is a clear error, not a crash.
func TestOneShotReleases(t *testing.T) {
	p, err := unclip.NewRandom(unclip.Tiny(), unclip.RandomOptions{Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	p.OneShot = true
	req := unclip.DefaultRequest()
	req.Prompts = []string{"x"}
	req.PriorSteps, req.DecoderSteps, req.SuperResSteps = 2, 2, 2
	req.Noise = unclip.NewTorchNoise(1)
	if _, err := p.Generate(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	req.Noise = unclip.NewTorchNoise(1)
	if _, err := p.Generate(context.Background(), req); err == nil || !strings.Contains(err.Error(), "released") {
		t.Errorf("second run of a one-shot pipeline: %v, want an error about released storage", err)
	}
}
