package main

import (
	"testing"
	"time"

	"github.com/unclip-go/unclip/models/unclip"
)

// TestRunETA drives the whole-run estimate with steps that take exactly
// 1 ns per FLOP and checks it against the true time left.
func TestRunETA(t *testing.T) {
	stats := func(f int64) unclip.StageStats { return unclip.StageStats{Planned: true, FLOPsPerStep: f} }
	timings := []unclip.StageTiming{
		{Stage: "text", Steps: 1},
		{Stage: "prior", Steps: 4, Stats: stats(100)},
		{Stage: "decoder", Steps: 2, Stats: stats(1000)},
		{Stage: "super_res", Steps: 3, Stats: stats(3000)},
	}
	sizes := []int{2, 1} // two batches, the second half the size
	e := newRunETA(timings, sizes)
	if e == nil {
		t.Fatal("no estimate")
	}
	// Total FLOPs: batch 1: 400 + 2000 + 9000; batch 2: half that.
	total := time.Duration(11400 + 5700)
	var done time.Duration
	for b := range sizes {
		e.batch = b
		for _, tm := range timings[1:] {
			per := time.Duration(e.stageFLOPs(tm.Stage, b))
			for i := 1; i <= tm.Steps; i++ {
				left, ok := e.update(unclip.Event{Stage: tm.Stage, Step: i, Total: tm.Steps, Elapsed: per * time.Duration(i), Done: i == tm.Steps})
				if !ok {
					t.Fatal("no estimate during a planned stage")
				}
				want := total - done - per*time.Duration(i)
				if d := left - want; d < -2 || d > 2 {
					t.Fatalf("batch %d %s step %d: eta %v, want %v", b, tm.Stage, i, left, want)
				}
			}
			done += per * time.Duration(tm.Steps)
		}
	}
	if _, ok := e.update(unclip.Event{Stage: "text", Step: 1, Total: 1}); ok {
		t.Error("an estimate from the unplanned text encoder")
	}
}
