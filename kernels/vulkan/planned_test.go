//go:build cgo && !novulkan

package vulkan

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/unclip-go/unclip/models/golden"
	"github.com/unclip-go/unclip/models/golden/fixtures"
	"github.com/unclip-go/unclip/models/unclip"
	"github.com/unclip-go/unclip/models/verify"
	"github.com/unclip-go/unclip/tensor/tensortest"
)

// TestPlannedStages: the tiny random pipeline's denoising stages replay
// captured graphs with one submission per step and one host wait per
// stage, and give the image that eager execution gives.
func TestPlannedStages(t *testing.T) {
	b := openTest(t)
	p, err := unclip.NewRandom(unclip.Tiny(), unclip.RandomOptions{Seed: 3, Device: b})
	if err != nil {
		t.Fatal(err)
	}
	run := func(eager bool) *unclip.Result {
		req := unclip.DefaultRequest()
		req.Prompts = []string{"a red cube"}
		req.PriorSteps, req.DecoderSteps, req.SuperResSteps = 3, 3, 2
		req.Noise = unclip.NewTorchNoise(5)
		req.Eager = eager
		res, err := p.Generate(context.Background(), req)
		if err != nil {
			t.Fatalf("eager %v: %v", eager, err)
		}
		return res
	}
	planned, eager := run(false), run(true)
	if d := tensortest.MaxAbsDiff(planned.Images, eager.Images); d > 1e-5 {
		t.Errorf("planned image differs from eager by %g", d)
	}
	for _, st := range planned.Timings {
		if st.Steps == 0 {
			continue
		}
		s := st.Stats
		t.Logf("%s: %d ops/step, arena %d B, %d submits, %d host waits, %d B allocated/step", st.Stage, s.Nodes, s.ArenaBytes, s.Submits, s.HostWaits, s.AllocBytesPerStep)
		if !s.Planned {
			t.Errorf("%s: not planned", st.Stage)
		}
		if s.Submits > int64(st.Steps) {
			t.Errorf("%s: %d submissions for %d steps, want at most one a step", st.Stage, s.Submits, st.Steps)
		}
		if s.HostWaits > 1 {
			t.Errorf("%s: %d host waits, want at most 1", st.Stage, s.HostWaits)
		}
	}
}

// TestBudgetOffload runs the tiny fixture's verification on a device
// opened with a memory budget below the size of all weights but above the
// largest stage, with offload (it must pass), then with a budget below the
// largest stage (it must fail with an error naming the budget).
func TestBudgetOffload(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end verification in -short mode")
	}
	shared := openTest(t)
	fixtures.Require(t)
	model, gold, err := golden.Tiny()
	if err != nil {
		t.Fatal(err)
	}
	// Devices of their own, so that a budget counts only this test's
	// memory; UNCLIP_DEVICE_MEMORY applies it from the device's first
	// allocation.
	open := func(limit int64) *Backend {
		t.Helper()
		if limit > 0 {
			t.Setenv("UNCLIP_DEVICE_MEMORY", fmt.Sprint(limit))
		}
		b, err := newBackend(shared.in, shared.phys.info.Index, "vulkan:budget", "")
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	// The plan: every stage's weights and arena, from a dry run.
	b := open(0)
	p, err := unclip.Load(model, unclip.LoadOptions{Device: b, Residency: unclip.Offload})
	if err != nil {
		t.Fatal(err)
	}
	// The request of the recorded run that verify replays.
	g, err := golden.Open(gold)
	if err != nil {
		t.Fatal(err)
	}
	set := g.Meta.Settings
	g.Close()
	req := unclip.Request{Prompts: set.Prompts, ImagesPerPrompt: 1, PriorSteps: set.PriorSteps, DecoderSteps: set.DecoderSteps,
		SuperResSteps: set.SuperResSteps, PriorGuidance: set.PriorGuidance, DecoderGuidance: set.DecoderGuidance,
		Noise: unclip.NewTorchNoise(set.Seed), DryRun: true}
	res, err := p.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	all := p.WeightBytes("")
	var stage int64
	for _, st := range res.Timings {
		stage = max(stage, st.Stats.WeightBytes+st.Stats.ArenaBytes)
	}
	b.Close()
	// Just below all weights: the room above the largest stage covers what
	// the plan does not count — the eager work between stages, the slack
	// of partly used blocks, and the kernels' own temporaries (the
	// attention shader's score matrix and dense operand copies), which at
	// this tiny scale are a few MiB.
	budget := all - (all-stage)/8
	t.Logf("weights %d B in all, largest stage %d B (weights + arena): budget %d B", all, stage, budget)
	if budget >= all {
		t.Fatalf("the fixture's largest stage (%d B) leaves no budget below all weights (%d B)", stage, all)
	}

	b = open(budget)
	defer b.Close()
	var out bytes.Buffer
	rep, err := verify.Run(verify.Options{Model: model, Golden: gold, Only: []string{"pipeline"}, Device: b, Residency: unclip.AutoResidency, Out: &out})
	if err != nil {
		t.Fatalf("verify under a %d-byte budget: %v\n%s", budget, err, out.String())
	}
	if rep.Failed > 0 || rep.Passed == 0 {
		t.Fatalf("verify under a %d-byte budget: %d failed, %d passed\n%s", budget, rep.Failed, rep.Passed, out.String())
	}

	b = open(stage / 2)
	defer b.Close()
	out.Reset()
	_, err = verify.Run(verify.Options{Model: model, Golden: gold, Only: []string{"pipeline"}, Device: b, Residency: unclip.AutoResidency, Out: &out})
	msg := out.String()
	if err != nil {
		msg = err.Error()
	}
	if !strings.Contains(msg, "budget") {
		t.Errorf("verify under a budget below the largest stage: want an error naming the budget, got %v\n%s", err, out.String())
	}
}
