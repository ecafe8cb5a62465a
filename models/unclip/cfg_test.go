package unclip_test

import (
	"context"
	"testing"

	"github.com/unclip-go/unclip/models/unclip"
)

// TestGuidanceSwitch checks diffusers' rule: one do_classifier_free_guidance
// flag for both stages, on when either scale exceeds 1.
func TestGuidanceSwitch(t *testing.T) {
	p, err := unclip.NewRandom(unclip.Tiny(), unclip.RandomOptions{Seed: 3, Only: []string{unclip.Tokenizer, unclip.TextEncoder}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		prior, decoder float32
		cfg            bool
	}{{4, 8, true}, {1, 1, false}, {0, 0.5, false}, {1, 1.01, true}, {1.5, 1, true}, {0, 0, false}} {
		req := unclip.DefaultRequest()
		req.Prompts = []string{"a", "b"}
		req.ImagesPerPrompt = 3
		req.PriorGuidance, req.DecoderGuidance = c.prior, c.decoder
		req.Noise = unclip.NewTorchNoise(0)
		if got := req.CFG(); got != c.cfg {
			t.Errorf("guidance %g/%g: CFG %v, want %v", c.prior, c.decoder, got, c.cfg)
		}
		ts, err := p.EncodePrompts(context.Background(), &req)
		if err != nil {
			t.Fatal(err)
		}
		rows := 6
		if c.cfg {
			rows = 12
		}
		if ts.Batch != 6 || ts.PromptEmbeds.Dim(0) != rows || ts.Hidden.Dim(0) != rows || len(ts.Mask) != rows*ts.L {
			t.Errorf("guidance %g/%g: batch %d, %d embedding rows, %d hidden rows, %d mask values; want 6, %d", c.prior, c.decoder,
				ts.Batch, ts.PromptEmbeds.Dim(0), ts.Hidden.Dim(0), len(ts.Mask), rows)
		}
	}
}

// TestNoGuidanceRun generates with guidance off end to end.
func TestNoGuidanceRun(t *testing.T) {
	p, err := unclip.NewRandom(unclip.Tiny(), unclip.RandomOptions{Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	req := unclip.DefaultRequest()
	req.Prompts = []string{"x"}
	req.PriorGuidance, req.DecoderGuidance = 1, 1
	req.PriorSteps, req.DecoderSteps, req.SuperResSteps = 2, 2, 2
	req.Noise = unclip.NewTorchNoise(0)
	if _, err := p.Generate(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	// A cancelled context stops the run.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req.Noise = unclip.NewTorchNoise(0)
	if _, err := p.Generate(ctx, req); err != context.Canceled {
		t.Fatalf("cancelled run returned %v", err)
	}
}
