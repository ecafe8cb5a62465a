package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/unclip-go/unclip/models/unclip"
)

// reporter shows progress: a bar per stage on a terminal, plain lines
// otherwise, JSON lines with --json, nothing with --quiet.
type reporter struct {
	mu    sync.Mutex
	w     io.Writer
	mode  string // "bar", "lines", "json", "quiet"
	lastW int
	eta   *runETA // nil: no estimate of the whole run
}

// runETA estimates the time left in the whole run: the running stage's
// remaining steps at its measured time per step, and every later stage
// (of this batch and the batches after it) by its FLOPs at the seconds per
// FLOP measured over the steps done so far.
type runETA struct {
	stages    []string         // the denoising stages, in order
	perStep   map[string]int64 // FLOPs of one step, for batches of size sizes[0]
	steps     map[string]int
	sizes     []int // images in each batch
	batch     int   // the running batch, 0-based
	doneTime  time.Duration
	doneFLOPs float64
}

// newRunETA builds the estimate from a dry run's stage plans (for a batch
// of sizes[0] images).
func newRunETA(timings []unclip.StageTiming, sizes []int) *runETA {
	e := &runETA{perStep: map[string]int64{}, steps: map[string]int{}, sizes: sizes}
	for _, t := range timings {
		if t.Stats.FLOPsPerStep > 0 {
			e.stages = append(e.stages, t.Stage)
			e.perStep[t.Stage], e.steps[t.Stage] = t.Stats.FLOPsPerStep, t.Steps
		}
	}
	if len(e.stages) == 0 {
		return nil
	}
	return e
}

// stageFLOPs is the per-step FLOPs of stage in batch b (linear in the
// batch size).
func (e *runETA) stageFLOPs(stage string, b int) float64 {
	return float64(e.perStep[stage]) * float64(e.sizes[b]) / float64(e.sizes[0])
}

// update takes a progress event and returns the time left in the run, or
// false when there is no basis for one yet.
func (e *runETA) update(ev unclip.Event) (time.Duration, bool) {
	if _, ok := e.perStep[ev.Stage]; !ok || ev.Step == 0 {
		return 0, false
	}
	f := e.stageFLOPs(ev.Stage, e.batch)
	secPerFLOP := (e.doneTime + ev.Elapsed).Seconds() / (e.doneFLOPs + float64(ev.Step)*f)
	left := ev.Elapsed / time.Duration(ev.Step) * time.Duration(ev.Total-ev.Step)
	var later float64
	after := false
	for b := e.batch; b < len(e.sizes); b++ {
		for _, s := range e.stages {
			if b == e.batch && !after {
				after = s == ev.Stage
				continue
			}
			later += e.stageFLOPs(s, b) * float64(e.steps[s])
		}
	}
	left += time.Duration(later * secPerFLOP * float64(time.Second))
	if ev.Done {
		e.doneTime += ev.Elapsed
		e.doneFLOPs += float64(ev.Total) * f
	}
	return left, true
}

// setETA installs the whole-run estimate (nil: none).
func (r *reporter) setETA(e *runETA) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.eta = e
}

// setBatch says which batch (0-based) runs next.
func (r *reporter) setBatch(b int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.eta != nil {
		r.eta.batch = min(b, len(r.eta.sizes)-1)
	}
}

func newReporter(stderr, stdout io.Writer, quiet, asJSON bool) *reporter {
	switch {
	case asJSON:
		return &reporter{w: stdout, mode: "json"}
	case quiet:
		return &reporter{w: stderr, mode: "quiet"}
	case isTerminal(stderr):
		return &reporter{w: stderr, mode: "bar"}
	}
	return &reporter{w: stderr, mode: "lines"}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

var stageNames = map[string]string{"text": "text encoder", "image": "image encoder", "prior": "prior", "decoder": "decoder", "super_res": "super-res"}

// event reports one pipeline event.
func (r *reporter) event(e unclip.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.Plan != nil {
		r.plan(e.Stage, e.Plan)
		return
	}
	per := time.Duration(0)
	if e.Step > 0 {
		per = e.Elapsed / time.Duration(e.Step)
	}
	var runLeft time.Duration
	haveRun := false
	if r.eta != nil {
		runLeft, haveRun = r.eta.update(e)
	}
	runNote := ""
	if haveRun {
		runNote = "  run eta " + round(runLeft).String()
	}
	switch r.mode {
	case "json":
		ev := map[string]any{"event": "progress", "stage": e.Stage, "step": e.Step, "total": e.Total, "elapsed_s": e.Elapsed.Seconds()}
		if haveRun {
			ev["run_eta_s"] = runLeft.Seconds()
		}
		json.NewEncoder(r.w).Encode(ev)
	case "lines":
		// Every step when steps are slow, else about five lines a stage.
		if !e.Done && per < 2*time.Second && e.Step%max(1, e.Total/5) != 0 {
			return
		}
		fmt.Fprintf(r.w, "%-13s %d/%d  %s  %s/step%s\n", stageNames[e.Stage], e.Step, e.Total, round(e.Elapsed), round(per), runNote)
	case "bar":
		const width = 30
		fill := width * e.Step / max(e.Total, 1)
		bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
		if fill < width && fill > 0 {
			bar = strings.Repeat("=", fill-1) + ">" + strings.Repeat(" ", width-fill)
		}
		eta := time.Duration(0)
		if e.Step > 0 {
			eta = per * time.Duration(e.Total-e.Step)
		}
		line := fmt.Sprintf("\r%-13s [%s] %d/%d  %s  %s/step  eta %s%s", stageNames[e.Stage], bar, e.Step, e.Total, round(e.Elapsed), round(per), round(eta), runNote)
		pad := max(r.lastW-len(line), 0)
		fmt.Fprint(r.w, line+strings.Repeat(" ", pad))
		r.lastW = len(line)
		if e.Done {
			fmt.Fprintln(r.w)
			r.lastW = 0
		}
	}
}

// plan reports a stage's memory plan, before its steps run.
func (r *reporter) plan(stage string, p *unclip.StageStats) {
	switch r.mode {
	case "json":
		json.NewEncoder(r.w).Encode(map[string]any{"event": "plan", "stage": stage, "ops_per_step": p.Nodes,
			"weight_bytes": p.WeightBytes, "arena_bytes": p.ArenaBytes, "unplanned_bytes": p.NaiveBytes})
	case "lines", "bar":
		fmt.Fprintf(r.w, "%-13s plan: %d ops/step, weights %s, arena %s (%s without reuse)\n", stageNames[stage], p.Nodes,
			mib(p.WeightBytes), mib(p.ArenaBytes), mib(p.NaiveBytes))
	}
}

// info prints a status line (not in JSON or quiet mode).
func (r *reporter) info(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mode == "bar" || r.mode == "lines" {
		fmt.Fprintf(r.w, format+"\n", args...)
	}
}

// warn prints a warning in every mode but quiet JSON consumers get it as
// an event.
func (r *reporter) warn(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mode == "json" {
		json.NewEncoder(r.w).Encode(map[string]any{"event": "warning", "message": msg})
		return
	}
	fmt.Fprintf(r.w, "warning: %s\n", msg)
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond)
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}
