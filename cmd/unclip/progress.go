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

var stageNames = map[string]string{"text": "text encoder", "prior": "prior", "decoder": "decoder", "super_res": "super-res"}

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
	switch r.mode {
	case "json":
		json.NewEncoder(r.w).Encode(map[string]any{"event": "progress", "stage": e.Stage, "step": e.Step, "total": e.Total,
			"elapsed_s": e.Elapsed.Seconds()})
	case "lines":
		// Every step when steps are slow, else about five lines a stage.
		if !e.Done && per < 2*time.Second && e.Step%max(1, e.Total/5) != 0 {
			return
		}
		fmt.Fprintf(r.w, "%-13s %d/%d  %s  %s/step\n", stageNames[e.Stage], e.Step, e.Total, round(e.Elapsed), round(per))
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
		line := fmt.Sprintf("\r%-13s [%s] %d/%d  %s  %s/step  eta %s", stageNames[e.Stage], bar, e.Step, e.Total, round(e.Elapsed), round(per), round(eta))
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
