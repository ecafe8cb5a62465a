package verify

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"github.com/unclip-go/unclip/models/clip"
	"github.com/unclip-go/unclip/models/golden"
	"github.com/unclip-go/unclip/models/unclip"
	"github.com/unclip-go/unclip/tensor"
)

// VariationChecks lists the check groups of a variation recording (one
// whose golden.json has runs: unclip-tiny-variation), in the order they
// run. The model checks run on every run that recorded the calls.
var VariationChecks = []string{"preprocess", "resample", "image_encoder", "text_encoder", "prior", "text_proj", "scheduler",
	"noise", "decoder", "super_res", "upscale", "slerp", "pipeline"}

// runVariation checks a variation recording.
func runVariation(opt Options, g *golden.File) (Report, error) {
	only, err := selectChecks(opt.Only, VariationChecks, " for a variation recording")
	if err != nil {
		return Report{}, err
	}
	var comps []string
	for _, c := range unclip.VariationComponents {
		comps = append(comps, c.Name)
	}
	// The text interpolation runs the text-to-image components: the
	// fixture carries prior/ and prior_scheduler/ beside the others.
	for _, c := range []string{unclip.Prior, unclip.PriorScheduler} {
		if st, err := os.Stat(filepath.Join(opt.Model, c)); err == nil && st.IsDir() {
			comps = append(comps, c)
		}
	}
	p, err := unclip.Load(opt.Model, unclip.LoadOptions{Device: opt.Device, Only: comps, Residency: opt.Residency})
	if err != nil {
		return Report{}, err
	}
	r := &runner{opt: opt, g: g, p: p}
	var runs []string
	for name := range g.Meta.Runs {
		runs = append(runs, name)
	}
	sort.Strings(runs)
	r.each(VariationChecks, only, func(c string) error {
		switch c {
		case "preprocess":
			return r.preprocess()
		case "resample":
			return r.resample()
		case "slerp":
			return r.slerps()
		}
		defer func() { r.pre = "" }()
		for _, run := range runs {
			r.pre = run + "."
			if err := r.variationCheck(c, run); err != nil {
				r.fail(r.pre+c, "error: %v", err)
			}
		}
		return nil
	})
	return r.rep, nil
}

// variationCheck runs one check group on one recorded run.
func (r *runner) variationCheck(check, run string) error {
	meta := r.g.Meta.Runs[run]
	switch check {
	case "image_encoder":
		return r.imageEncoder()
	case "prior":
		if r.p.Prior == nil {
			if r.calls("prior") > 0 {
				r.fail(r.pre+"prior", "the model folder has no prior/ (the text interpolation needs the text-to-image components)")
			}
			return nil
		}
	case "noise":
		r.noiseDraws(meta.Settings.Seed, meta.NoiseShapes)
		return nil
	case "pipeline":
		return r.variationPipeline(run, meta)
	}
	return r.run(check)
}

// input decodes the i-th input image from the file golden.json names
// (beside the golden file), as a user's image would be.
func (r *runner) input(i int) (*clip.RGB, error) {
	if i < 0 || i >= len(r.g.Meta.Images) {
		return nil, fmt.Errorf("golden.json lists %d input images, not %d", len(r.g.Meta.Images), i+1)
	}
	path := filepath.Join(filepath.Dir(r.opt.Golden), filepath.FromSlash(r.g.Meta.Images[i].File))
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	img, err := clip.DecodeImage(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return img, nil
}

// exactImage checks an image against a recorded U8 (H, W, 3) tensor.
func (r *runner) exactImage(name string, got *clip.RGB, key string) {
	want, shape, err := r.g.Uint8s(key)
	if err != nil {
		r.fail(name, "%v", err)
		return
	}
	if len(shape) != 3 || shape[0] != got.H || shape[1] != got.W || shape[2] != 3 {
		r.fail(name, "%d×%d×3, recorded %v", got.H, got.W, shape)
		return
	}
	diff, worst := 0, 0
	for i := range want {
		if d := int(got.Pix[i]) - int(want[i]); d != 0 {
			diff++
			worst = max(worst, d, -d)
		}
	}
	if diff == 0 {
		r.pass(name, "exact (%d×%d)", got.W, got.H)
	} else {
		r.fail(name, "%d of %d values differ, by up to %d levels (want exact)", diff, len(want), worst)
	}
}

// preprocess checks CLIPImageProcessor step by step on every input image:
// the decoded PNG, the resize, the crop (exact) and the pixel values.
func (r *runner) preprocess() error {
	if r.p.Features == nil {
		return fmt.Errorf("the model folder has no feature_extractor")
	}
	if len(r.g.Meta.Images) == 0 {
		r.fail("preprocess", "golden.json lists no input images")
	}
	for i := range r.g.Meta.Images {
		pre := fmt.Sprintf("preprocess.image%d.", i)
		img, err := r.input(i)
		if err != nil {
			r.fail(pre+"decode", "%v", err)
			continue
		}
		r.exactImage(fmt.Sprintf("inputs.image%d", i), img, fmt.Sprintf("inputs.image%d", i))
		pix, resized, cropped := r.p.Features.Preprocess(img)
		r.exactImage(pre+"resized", resized, pre+"resized")
		r.exactImage(pre+"cropped", cropped, pre+"cropped")
		r.compare(pre+"pixel_values", tensor.FromFloat32(pix, 1, 3, cropped.H, cropped.W), pre+"pixel_values", 1e-6)
	}
	return nil
}

// resample checks the Pillow bicubic resampler on the recorded resizes.
func (r *runner) resample() error {
	if len(r.g.Meta.PILBicubicCases) == 0 {
		r.fail("resample", "golden.json lists no pil_bicubic_cases")
	}
	for _, c := range r.g.Meta.PILBicubicCases {
		var n int
		if _, err := fmt.Sscanf(c.Input, "inputs.image%d", &n); err != nil {
			return fmt.Errorf("pil_bicubic case %d: input %q", c.Case, c.Input)
		}
		img, err := r.input(n)
		if err != nil {
			return err
		}
		name := fmt.Sprintf("pil_bicubic.case%d", c.Case)
		r.exactImage(name, clip.ResizeBicubic(img, c.Width, c.Height), name+".out")
	}
	return nil
}

// imageEncoder checks the image encoder's recorded calls.
func (r *runner) imageEncoder() error {
	for k := 0; k < r.calls("image_encoder"); k++ {
		pre := fmt.Sprintf("%simage_encoder.call%d.", r.pre, k)
		out, err := r.p.Image.Forward(r.in(pre + "in.arg0"))
		if err != nil {
			r.fail(pre+"image_embeds", "%v", err)
			continue
		}
		r.compare(pre+"image_embeds", out.ImageEmbeds, pre+"out.image_embeds", modelTol)
		if r.g.Has(pre + "out.last_hidden_state") {
			r.compare(pre+"last_hidden_state", out.LastHidden, pre+"out.last_hidden_state", modelTol)
		}
	}
	return nil
}

// slerps checks the interpolation weights (exact) and the slerps from the
// recorded end points (≤ 1e-5).
func (r *runner) slerps() error {
	type slerpCase struct {
		ends, out string
		rows      int // rows per end point: 1, or L for hidden states
	}
	for _, c := range []struct {
		run   string
		cases []slerpCase
	}{
		{"interp_image", []slerpCase{{"image_encoder.call0.out.image_embeds", "interp.image_embeddings", 1}}},
		{"interp_text", []slerpCase{{"text_encoder.call0.out.text_embeds", "interp.text_embeds", 1},
			{"text_encoder.call0.out.last_hidden_state", "interp.last_hidden_state", 0}}},
	} {
		meta, ok := r.g.Meta.Runs[c.run]
		if !ok {
			continue
		}
		pre := c.run + "."
		frames := meta.Settings.Steps
		want, _, err := r.g.Float32s(pre + "interp.t")
		if err != nil {
			return err
		}
		got := unclip.Linspace(0, 1, frames)
		if slices.Equal(got, want) {
			r.pass(pre+"interp.t", "exact %v", got)
		} else {
			r.fail(pre+"interp.t", "%v, recorded %v", got, want)
		}
		for _, sc := range c.cases {
			ends, _, err := r.g.Float32s(pre + sc.ends)
			if err != nil {
				return err
			}
			half := len(ends) / 2
			rows, _, err := unclip.SlerpFrames(ends[:half], ends[half:], frames)
			if err != nil {
				r.fail(pre+sc.out, "%v", err)
				continue
			}
			want, _, err := r.g.Float32s(pre + sc.out)
			if err != nil {
				return err
			}
			r.compareValues(pre+sc.out, rows, want, 1e-5)
		}
	}
	return nil
}

// variationPipeline runs one recorded pipeline end to end, with the
// recorded noise and with the seed.
func (r *runner) variationPipeline(run string, meta golden.Run) error {
	s := meta.Settings
	draws, shapes, err := r.g.NoiseOf(r.pre, meta.NoiseShapes)
	if err != nil {
		return err
	}
	return r.replayAndSeed(draws, shapes, s.Seed, func(noise unclip.Noise) (unclip.Request, error) {
		req := unclip.Request{ImagesPerPrompt: max(s.ImagesPerPrompt, 1), PriorSteps: s.PriorSteps, DecoderSteps: s.DecoderSteps,
			SuperResSteps: s.SuperResSteps, PriorGuidance: s.PriorGuidance, DecoderGuidance: s.DecoderGuidance, Noise: noise}
		return r.variationRequest(run, meta, req)
	})
}

// variationRequest builds a run's request the way the commands do: from
// the input images (decoded, preprocessed, encoded) or the two prompts.
func (r *runner) variationRequest(run string, meta golden.Run, req unclip.Request) (unclip.Request, error) {
	ctx := context.Background()
	s := meta.Settings
	if s.StartPrompt != "" || s.EndPrompt != "" {
		ti, err := r.p.EncodeTextInterpolation(ctx, &req, s.StartPrompt, s.EndPrompt, s.Steps)
		if err != nil {
			return req, err
		}
		if req.Text, err = r.p.TextState(ti, req.CFG()); err != nil {
			return req, err
		}
		return req, nil
	}
	idx, err := s.ImageList()
	if err != nil {
		return req, err
	}
	var imgs []*clip.RGB
	for _, i := range idx {
		img, err := r.input(i)
		if err != nil {
			return req, err
		}
		imgs = append(imgs, img)
	}
	emb, err := r.p.EncodeImages(ctx, &req, imgs)
	if err != nil {
		return req, err
	}
	if s.Steps > 0 { // image interpolation between the two images
		if len(imgs) != 2 {
			return req, fmt.Errorf("run %s interpolates %d images, want 2", run, len(imgs))
		}
		d := len(emb) / 2
		rows, _, err := unclip.SlerpFrames(emb[:d], emb[d:], s.Steps)
		if err != nil {
			return req, err
		}
		return unclip.ImageInterpolation(req, rows, s.Steps), nil
	}
	return unclip.Variation(req, emb, len(imgs)), nil
}
