// Package verify checks an unCLIP implementation against a recorded
// diffusers run (a golden file, see package golden): every model call,
// every scheduler step, the noise generator, the upscale and the whole
// pipeline, each against its stated tolerance.
package verify

import (
	"context"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"slices"
	"strings"

	"github.com/unclip-go/unclip/models/golden"
	"github.com/unclip-go/unclip/models/scheduler"
	"github.com/unclip-go/unclip/models/unclip"
	"github.com/unclip-go/unclip/models/unet"
	"github.com/unclip-go/unclip/tensor"
)

// Checks lists the check groups in the order they run.
var Checks = []string{"tokenizer", "text_encoder", "prior", "text_proj", "scheduler", "noise", "decoder", "super_res", "upscale", "pipeline"}

// Options configure a verification run.
type Options struct {
	Model     string           // diffusers model folder
	Golden    string           // golden.safetensors (golden.json beside it)
	Only      []string         // check groups; empty runs all
	Device    tensor.Backend   // nil: CPU
	Residency unclip.Residency // which weights stay on the device
	Out       io.Writer        // one line per check
}

// checkStage is the pipeline stage whose weights a check runs.
var checkStage = map[string]string{"image_encoder": "image", "text_encoder": "text", "prior": "prior", "text_proj": "decoder",
	"decoder": "decoder", "super_res": "super_res"}

// Report counts the outcomes.
type Report struct{ Passed, Failed int }

type runner struct {
	opt Options
	g   *golden.File
	p   *unclip.Pipeline
	rep Report
	// pre prefixes every recorded key: a variation recording's run
	// ("variation.") or nothing.
	pre string
}

// components each check group needs loaded.
var needs = map[string][]string{
	"tokenizer":    {unclip.Tokenizer},
	"text_encoder": {unclip.TextEncoder},
	"prior":        {unclip.Prior},
	"text_proj":    {unclip.TextProj},
	"scheduler":    {unclip.PriorScheduler, unclip.DecoderScheduler, unclip.SuperResScheduler},
	"decoder":      {unclip.Decoder},
	"super_res":    {unclip.SuperResFirst, unclip.SuperResLast},
	"upscale":      {unclip.Decoder, unclip.SuperResFirst},
}

// Run performs the selected checks (Checks, or VariationChecks for a
// variation recording). It returns an error only when the
// checks cannot run at all (unreadable model or golden file, unknown
// check); failed checks are counted in the report.
func Run(opt Options) (Report, error) {
	g, err := golden.Open(opt.Golden)
	if err != nil {
		return Report{}, err
	}
	defer g.Close()
	if len(g.Meta.Runs) > 0 {
		return runVariation(opt, g)
	}
	only, err := selectChecks(opt.Only, Checks, "")
	if err != nil {
		return Report{}, err
	}
	var comps []string
	for _, c := range only {
		if c == "pipeline" {
			comps = nil
			break
		}
		comps = append(comps, needs[c]...)
	}
	if len(comps) == 0 && !slices.Contains(only, "pipeline") {
		comps = []string{unclip.Tokenizer} // "noise" alone needs no model, but the folder is still validated
	}
	p, err := unclip.Load(opt.Model, unclip.LoadOptions{Device: opt.Device, Only: comps, Residency: opt.Residency})
	if err != nil {
		return Report{}, err
	}
	r := &runner{opt: opt, g: g, p: p}
	r.each(Checks, only, r.run)
	return r.rep, nil
}

// selectChecks returns only, or every known check when it is empty; a
// name not in known is an error (what names the kind of recording).
func selectChecks(only, known []string, what string) ([]string, error) {
	if len(only) == 0 {
		return known, nil
	}
	for _, c := range only {
		if !slices.Contains(known, c) {
			return nil, fmt.Errorf("unknown check %q%s (known: %s)", c, what, strings.Join(known, ", "))
		}
	}
	return only, nil
}

// each runs run(c) for every check of all that only selects, in all's
// order, with its stage's weights on the device; an error (or a shape
// panic) fails that check and the others still run.
func (r *runner) each(all, only []string, run func(check string) error) {
	for _, c := range all {
		if !slices.Contains(only, c) {
			continue
		}
		if err := tensor.Catch(func() error {
			if st := checkStage[c]; st != "" {
				if err := r.p.Acquire(st); err != nil {
					return err
				}
				defer r.p.Release(st)
			}
			return run(c)
		}); err != nil {
			r.fail(c, "error: %v", err)
		}
	}
}

func (r *runner) pass(name, format string, args ...any) {
	r.rep.Passed++
	fmt.Fprintf(r.opt.Out, "PASS %s %s\n", name, fmt.Sprintf(format, args...))
}

func (r *runner) fail(name, format string, args ...any) {
	r.rep.Failed++
	fmt.Fprintf(r.opt.Out, "FAIL %s %s\n", name, fmt.Sprintf(format, args...))
}

// compare checks got against the recorded key with a max-abs tolerance.
func (r *runner) compare(name string, got *tensor.Tensor, key string, tol float64) {
	want, shape, err := r.g.Float32s(key)
	if err != nil {
		r.fail(name, "%v", err)
		return
	}
	if got == nil {
		r.fail(name, "no output")
		return
	}
	if !tensor.SameShape(got.Shape(), shape) {
		r.fail(name, "shape %v, recorded %v", got.Shape(), shape)
		return
	}
	v, err := got.Float32s()
	if err != nil {
		r.fail(name, "%v", err)
		return
	}
	r.compareValues(name, v, want, tol)
}

func (r *runner) compareValues(name string, got, want []float32, tol float64) {
	s, err := golden.Compare(got, want)
	switch {
	case err != nil:
		r.fail(name, "%v", err)
	case s.MaxAbs <= tol:
		r.pass(name, "max_abs=%.2g tol=%.0e", s.MaxAbs, tol)
	default:
		r.fail(name, "max_abs=%.2g tol=%.0e", s.MaxAbs, tol)
	}
}

// calls counts the recorded calls of a model (the recorder keeps at most
// four, whatever golden.json's call count says).
func (r *runner) calls(model string) int {
	n := 0
	for len(r.g.Keys(fmt.Sprintf("%s%s.call%d.", r.pre, model, n))) > 0 {
		n++
	}
	return n
}

func (r *runner) run(check string) error {
	switch check {
	case "tokenizer":
		return r.tokenizer()
	case "text_encoder":
		return r.textEncoder()
	case "prior":
		return r.prior()
	case "text_proj":
		return r.textProj()
	case "scheduler":
		return r.scheduler()
	case "noise":
		return r.noise()
	case "decoder":
		return r.unet("decoder", r.p.Decoder)
	case "super_res":
		if err := r.unet("super_res_first", r.p.SRFirst); err != nil {
			return err
		}
		return r.unet("super_res_last", r.p.SRLast)
	case "upscale":
		return r.upscale()
	case "pipeline":
		return r.pipeline()
	}
	return nil
}

func (r *runner) tokenizer() error {
	if len(r.g.Meta.TokenizerCases) == 0 {
		r.fail("tokenizer", "golden.json has no tokenizer_cases")
		return nil
	}
	for i, c := range r.g.Meta.TokenizerCases {
		name := fmt.Sprintf("tokenizer.case%02d", i)
		enc, err := r.p.Tokenizer.Encode(c.Text)
		if err != nil {
			r.fail(name, "%v", err)
			continue
		}
		if slices.Equal(enc.IDs, c.InputIDs) && slices.Equal(enc.Mask, c.AttentionMask) {
			r.pass(name, "exact (%d tokens)", enc.Len)
			continue
		}
		at := 0
		for at < len(enc.IDs) && at < len(c.InputIDs) && enc.IDs[at] == c.InputIDs[at] {
			at++
		}
		r.fail(name, "ids differ from position %d (text %q)", at, c.Text)
	}
	return nil
}

func ids2D(t *tensor.Tensor) ([][]int64, error) {
	flat, err := t.Int64s()
	if err != nil {
		return nil, err
	}
	if t.Rank() != 2 {
		return nil, fmt.Errorf("token ids of shape %v", t.Shape())
	}
	l := t.Dim(1)
	var out [][]int64
	for i := 0; i < t.Dim(0); i++ {
		out = append(out, flat[i*l:(i+1)*l])
	}
	return out, nil
}

const modelTol = 1e-4

func (r *runner) textEncoder() error {
	for k := 0; k < r.calls("text_encoder"); k++ {
		pre := fmt.Sprintf("%stext_encoder.call%d.", r.pre, k)
		var mask [][]int64
		key := pre + "in.arg0"
		if r.g.Has(pre + "in.input_ids") { // called with keywords: input_ids and attention_mask
			key = pre + "in.input_ids"
			mt, err := r.g.Tensor(pre + "in.attention_mask")
			if err != nil {
				return err
			}
			if mask, err = ids2D(mt); err != nil {
				return err
			}
		}
		it, err := r.g.Tensor(key)
		if err != nil {
			return err
		}
		ids, err := ids2D(it)
		if err != nil {
			return err
		}
		out, err := r.p.Text.ForwardMasked(ids, mask)
		if err != nil {
			r.fail(pre+"text_embeds", "%v", err)
			continue
		}
		r.compare(pre+"last_hidden_state", out.LastHidden, pre+"out.last_hidden_state", modelTol)
		r.compare(pre+"text_embeds", out.TextEmbeds, pre+"out.text_embeds", modelTol)
	}
	return nil
}

func (r *runner) in(key string) *tensor.Tensor {
	t, err := r.g.Tensor(key)
	if err != nil {
		panic(&tensor.ShapeError{Msg: err.Error()})
	}
	return t.To(r.p.Device)
}

func (r *runner) prior() error {
	for k := 0; k < r.calls("prior"); k++ {
		pre := fmt.Sprintf("%sprior.call%d.", r.pre, k)
		ts, err := r.g.Int(pre + "in.timestep")
		if err != nil {
			return err
		}
		var mask []bool
		if r.g.Has(pre + "in.attention_mask") {
			if mask, _, err = r.g.Bools(pre + "in.attention_mask"); err != nil {
				return err
			}
		}
		var enc *tensor.Tensor
		if r.g.Has(pre + "in.encoder_hidden_states") {
			enc = r.in(pre + "in.encoder_hidden_states")
		} else if k > 0 && r.g.Has(r.pre+"prior.call0.in.encoder_hidden_states") {
			// identical in every call, so recorded once
			enc = r.in(r.pre + "prior.call0.in.encoder_hidden_states")
		}
		out, err := r.p.Prior.Forward(r.in(pre+"in.arg0"), ts, r.in(pre+"in.proj_embedding"), enc, mask)
		if err != nil {
			r.fail(pre+"predicted_image_embedding", "%v", err)
			continue
		}
		r.compare(pre+"predicted_image_embedding", out, pre+"out.predicted_image_embedding", modelTol)
	}
	return nil
}

func (r *runner) textProj() error {
	for k := 0; k < r.calls("text_proj"); k++ {
		pre := fmt.Sprintf("%stext_proj.call%d.", r.pre, k)
		if !r.g.Has(pre + "in.text_encoder_hidden_states") {
			continue // a light run: the pipeline check covers it
		}
		cfg, _, err := r.g.Bools(pre + "in.do_classifier_free_guidance")
		if err != nil {
			return err
		}
		ctx, temb, err := r.p.TextProj.Forward(r.in(pre+"in.image_embeddings"), r.in(pre+"in.prompt_embeds"), r.in(pre+"in.text_encoder_hidden_states"), cfg[0])
		if err != nil {
			r.fail(pre+"out0", "%v", err)
			continue
		}
		r.compare(pre+"out0", ctx, pre+"out.out0", modelTol)
		r.compare(pre+"out1", temb, pre+"out.out1", modelTol)
	}
	return nil
}

func (r *runner) scheduler() error {
	scheds := []struct {
		name string
		sch  *scheduler.Scheduler
	}{{"prior_scheduler", r.p.PriorSch}, {"decoder_scheduler", r.p.DecSch}, {"super_res_scheduler", r.p.SRSch}}
	for _, s := range scheds {
		key := r.pre + s.name + ".timesteps"
		if r.pre != "" && (!r.g.Has(key) || s.sch == nil) {
			continue // a run without this stage
		}
		want, err := r.g.Int64s(key)
		if err != nil {
			return err
		}
		got, err := s.sch.Timesteps(len(want))
		if err != nil {
			r.fail(key, "%v", err)
		} else if slices.Equal(toInt64(got), want) {
			r.pass(key, "equal %v", got)
		} else {
			r.fail(key, "%v, recorded %v", got, want)
		}
	}
	for _, s := range scheds {
		if s.sch == nil {
			continue
		}
		for k := 0; r.g.Has(fmt.Sprintf("%s%s.step%d.in.sample", r.pre, s.name, k)); k++ {
			pre := fmt.Sprintf("%s%s.step%d.", r.pre, s.name, k)
			r.schedStep(pre, s.sch)
		}
	}
	return nil
}

func toInt64(v []int) []int64 {
	out := make([]int64, len(v))
	for i, x := range v {
		out[i] = int64(x)
	}
	return out
}

func (r *runner) schedStep(pre string, sch *scheduler.Scheduler) {
	name := pre + "prev_sample"
	t, err := r.g.Int(pre + "in.timestep")
	if err != nil {
		r.fail(name, "%v", err)
		return
	}
	prev, hasPrev := 0, r.g.Has(pre+"in.prev_timestep")
	if hasPrev {
		if prev, err = r.g.Int(pre + "in.prev_timestep"); err != nil {
			r.fail(name, "%v", err)
			return
		}
	}
	c, err := sch.Coeffs(t, prev, hasPrev)
	if err != nil {
		r.fail(name, "%v", err)
		return
	}
	mo, _, err1 := r.g.Float32s(pre + "in.model_output")
	sample, shape, err2 := r.g.Float32s(pre + "in.sample")
	want, _, err3 := r.g.Float32s(pre + "out.prev_sample")
	if err := firstErr(err1, err2, err3); err != nil {
		r.fail(name, "%v", err)
		return
	}
	var noise []float32
	if r.g.Has(pre + "in.noise") {
		noise, _, _ = r.g.Float32s(pre + "in.noise")
	}
	out := make([]float32, len(sample))
	if err := sch.Step(out, mo, sample, noise, shape[0], c); err != nil {
		r.fail(name, "%v", err)
		return
	}
	s, err := golden.Compare(out, want)
	if err != nil {
		r.fail(name, "%v", err)
		return
	}
	rel := s.MaxAbs / math.Max(s.MaxRef, 1e-30)
	if rel <= 1e-6 {
		r.pass(name, "max_rel=%.2g tol=1e-06", rel)
	} else {
		r.fail(name, "max_rel=%.2g tol=1e-06", rel)
	}
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func (r *runner) noise() error {
	if !r.g.HasMeta {
		r.fail("noise", "golden.json (seed, noise shapes) not found")
		return nil
	}
	r.noiseDraws(r.g.Meta.Settings.Seed, r.g.Meta.NoiseShapes)
	return nil
}

// noiseDraws checks the seeded generator against the recorded draws.
func (r *runner) noiseDraws(seed uint64, shapes [][]int) {
	gen := unclip.NewTorchNoise(seed)
	for i, shape := range shapes {
		name := fmt.Sprintf("%snoise.%03d", r.pre, i)
		got, err := gen.Randn(shape)
		if err != nil {
			r.fail(name, "%v", err)
			continue
		}
		want, _, err := r.g.Float32s(name)
		if err != nil {
			r.fail(name, "%v", err)
			continue
		}
		r.compareValues(name, got, want, 1e-5)
	}
}

func (r *runner) unet(model string, m *unet.Model) error {
	for k := 0; k < r.calls(model); k++ {
		pre := fmt.Sprintf("%s%s.call%d.", r.pre, model, k)
		ts, err := r.g.Int(pre + "in.timestep")
		if err != nil {
			return err
		}
		in := unet.Inputs{Timestep: ts}
		if r.g.Has(pre + "in.encoder_hidden_states") {
			in.Context = r.in(pre + "in.encoder_hidden_states")
		}
		if r.g.Has(pre + "in.class_labels") {
			in.ClassLabels = r.in(pre + "in.class_labels")
		}
		if r.g.Has(pre + "in.attention_mask") {
			if in.ContextMask, _, err = r.g.Bools(pre + "in.attention_mask"); err != nil {
				return err
			}
		}
		out, err := m.Forward(r.in(pre+"in.sample"), in)
		if err != nil {
			r.fail(pre+"sample", "%v", err)
			continue
		}
		r.compare(pre+"sample", out, pre+"out.sample", modelTol)
	}
	return nil
}

func (r *runner) upscale() error {
	if r.pre != "" && !r.g.Has(r.pre+"pipeline.image_upscaled") {
		return nil // a light run
	}
	small, err := r.g.Tensor(r.pre + "pipeline.image_small")
	if err != nil {
		return err
	}
	up, err := r.p.Upscale(small.To(r.p.Device))
	if err != nil {
		r.fail("upscale", "%v", err)
		return nil
	}
	r.compare(r.pre+"upscale", up, r.pre+"pipeline.image_upscaled", modelTol)
	return nil
}

func (r *runner) pipeline() error {
	if !r.g.HasMeta {
		r.fail("pipeline", "golden.json (settings) not found")
		return nil
	}
	s := r.g.Meta.Settings
	draws, shapes, err := r.g.Noise()
	if err != nil {
		return err
	}
	return r.replayAndSeed(draws, shapes, s.Seed, func(noise unclip.Noise) (unclip.Request, error) {
		return unclip.Request{Prompts: s.Prompts, ImagesPerPrompt: 1, PriorSteps: s.PriorSteps, DecoderSteps: s.DecoderSteps,
			SuperResSteps: s.SuperResSteps, PriorGuidance: s.PriorGuidance, DecoderGuidance: s.DecoderGuidance, Noise: noise}, nil
	})
}

// replayAndSeed runs the pipeline twice, with the recorded draws and from
// the seed, on the requests build makes for each noise source, and
// compares both results with the recording (checks r.pre+"pipeline.replay."
// and "pipeline.seed.").
func (r *runner) replayAndSeed(draws [][]float32, shapes [][]int, seed uint64, build func(unclip.Noise) (unclip.Request, error)) error {
	for _, src := range []struct {
		name  string
		noise unclip.Noise
	}{{"replay", &unclip.ReplayNoise{Draws: draws, Shapes: shapes}}, {"seed", unclip.NewTorchNoise(seed)}} {
		pre := r.pre + "pipeline." + src.name + "."
		req, err := build(src.noise)
		var res *unclip.Result
		if err == nil {
			res, err = r.p.Generate(context.Background(), req)
		}
		if err != nil {
			r.fail(pre+"image", "%v", err)
			continue
		}
		if err := r.compareResult(pre, res); err != nil {
			return err
		}
	}
	return nil
}

// compareResult checks a run's images against the recording (r.pre's
// pipeline.image_small and pipeline.image), naming the checks name+….
func (r *runner) compareResult(pre string, res *unclip.Result) error {
	want, _, err := r.g.Float32s(r.pre + "pipeline.image_small")
	if err != nil {
		return err
	}
	r.compareValues(pre+"image_small", res.ImageSmall, want, 1e-3)
	want, _, err = r.g.Float32s(r.pre + "pipeline.image")
	if err != nil {
		return err
	}
	st, err := golden.Compare(res.Images, want)
	if err != nil {
		r.fail(pre+"image", "%v", err)
		return nil
	}
	msg := fmt.Sprintf("mean=%.2g (tol 1e-05) p99.9=%.2g (tol 1e-04) max=%.2g (tol 1e-02)", st.MeanAbs, st.P999, st.MaxAbs)
	if st.MeanAbs <= 1e-5 && st.P999 <= 1e-4 && st.MaxAbs <= 1e-2 {
		r.pass(pre+"image", "%s", msg)
	} else {
		r.fail(pre+"image", "%s", msg)
	}
	a, b := unclip.ToUint8(res.Images), unclip.ToUint8(want)
	worst, diff := 0, 0
	for i := range a {
		d := int(a[i]) - int(b[i])
		if d < 0 {
			d = -d
		}
		worst = max(worst, d)
		if d != 0 {
			diff++
		}
	}
	frac := float64(diff) / float64(max(len(a), 1))
	msg = fmt.Sprintf("max_levels=%d differing=%.4f%% (tol ≤2 levels in ≤0.1%%)", worst, 100*frac)
	if worst <= 2 && frac <= 0.001 {
		r.pass(pre+"image_u8", "%s", msg)
	} else {
		r.fail(pre+"image_u8", "%s", msg)
	}
	return nil
}

// DefaultGolden returns golden.safetensors beside a model folder's parent
// (the fixture layout: X/model and X/golden.safetensors).
func DefaultGolden(model string) string {
	return filepath.Join(filepath.Dir(filepath.Clean(model)), "golden.safetensors")
}
