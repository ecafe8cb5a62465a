package unclip_test

import (
	"context"
	"testing"

	_ "github.com/unclip-go/unclip/kernels/cpu"
	"github.com/unclip-go/unclip/models/golden"
	"github.com/unclip-go/unclip/models/golden/fixtures"
	"github.com/unclip-go/unclip/models/unclip"
)

func openTiny(t *testing.T) (*unclip.Pipeline, *golden.File) {
	t.Helper()
	fixtures.Require(t)
	model, g, err := golden.OpenTiny()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	p, err := unclip.Load(model, unclip.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p, g
}

func replay(t *testing.T, g *golden.File) *unclip.ReplayNoise {
	t.Helper()
	draws, shapes, err := g.Noise()
	if err != nil {
		t.Fatal(err)
	}
	return &unclip.ReplayNoise{Draws: draws, Shapes: shapes}
}

func request(g *golden.File, noise unclip.Noise) unclip.Request {
	s := g.Meta.Settings
	return unclip.Request{Prompts: s.Prompts, ImagesPerPrompt: 1, PriorSteps: s.PriorSteps, DecoderSteps: s.DecoderSteps,
		SuperResSteps: s.SuperResSteps, PriorGuidance: s.PriorGuidance, DecoderGuidance: s.DecoderGuidance, Noise: noise}
}

func TestPipelineGolden(t *testing.T) {
	p, g := openTiny(t)
	for _, src := range []string{"replay", "seed"} {
		t.Run(src, func(t *testing.T) {
			var noise unclip.Noise = replay(t, g)
			if src == "seed" {
				noise = unclip.NewTorchNoise(g.Meta.Settings.Seed)
			}
			res, err := p.Generate(context.Background(), request(g, noise))
			if err != nil {
				t.Fatal(err)
			}
			want, _, _ := g.Float32s("text_proj.call0.in.image_embeddings")
			s, _ := golden.Compare(res.ImageEmbeddings, want)
			t.Logf("image embeddings max_abs=%.3g", s.MaxAbs)
			if s.MaxAbs > 1e-4 {
				t.Errorf("image embeddings: max abs %.3g > 1e-4", s.MaxAbs)
			}
			want, _, _ = g.Float32s("pipeline.image_small")
			s, _ = golden.Compare(res.ImageSmall, want)
			t.Logf("image_small max_abs=%.3g", s.MaxAbs)
			if s.MaxAbs > 1e-3 {
				t.Errorf("image_small: max abs %.3g > 1e-3", s.MaxAbs)
			}
			want, _, _ = g.Float32s("pipeline.image")
			s, _ = golden.Compare(res.Images, want)
			t.Logf("image mean=%.3g p99.9=%.3g max=%.3g", s.MeanAbs, s.P999, s.MaxAbs)
			if s.MeanAbs > 1e-5 || s.P999 > 1e-4 || s.MaxAbs > 1e-2 {
				t.Errorf("image: mean %.3g (≤1e-5), p99.9 %.3g (≤1e-4), max %.3g (≤1e-2)", s.MeanAbs, s.P999, s.MaxAbs)
			}
			a, b := unclip.ToUint8(res.Images), unclip.ToUint8(want)
			bad := 0
			for i := range a {
				d := int(a[i]) - int(b[i])
				if d > 2 || d < -2 {
					t.Fatalf("8-bit value %d differs by %d levels", i, d)
				}
				if d != 0 {
					bad++
				}
			}
			if frac := float64(bad) / float64(len(a)); frac > 0.001 {
				t.Errorf("8-bit images differ in %.3f%% of values (> 0.1%%)", 100*frac)
			}
		})
	}
}
