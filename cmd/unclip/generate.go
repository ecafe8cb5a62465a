package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/unclip-go/unclip/models/modelfile"
	"github.com/unclip-go/unclip/models/unclip"
	"github.com/unclip-go/unclip/tensor"
	"github.com/unclip-go/unclip/tensor/safetensors"
)

// runFlags are the flags generate, vary and interpolate share.
type runFlags struct {
	model, revision, variant string
	out                      string
	n                        int
	seed                     int64
	priorSteps, decSteps     int
	srSteps                  int
	priorGuidance, decGuide  float64
	device                   string
	threads                  int
	quiet, asJSON            bool
	precision                string
	force                    bool
	mem                      memoryFlags
}

// seedAndDevice picks the seed (a random one for --seed -1) and opens the
// --device for --precision, saying which device was picked on stderr
// unless the output is quiet or JSON.
func (f *runFlags) seedAndDevice(stderr io.Writer) (seed uint64, dev tensor.Backend, dtype tensor.DType, err error) {
	seed = uint64(f.seed)
	if f.seed < 0 {
		seed = randomSeed()
	}
	devOut := io.Writer(stderr)
	if f.quiet || f.asJSON {
		devOut = nil
	}
	dev, dtype, err = openCompute(f.device, f.threads, f.precision, &f.mem, devOut)
	return seed, dev, dtype, err
}

// register adds the shared flags but -m, -o and -n, whose help each
// command words itself; withPrior adds the prior's steps and guidance.
func (f *runFlags) register(fs *flag.FlagSet, withPrior bool) {
	fs.StringVar(&f.revision, "revision", "main", "revision of a Hugging Face cached model")
	fs.StringVar(&f.variant, "variant", "", "weight file variant, e.g. fp16 (diffusion_pytorch_model.fp16.safetensors)")
	fs.BoolVar(&f.force, "force", false, "replace output files that exist")
	fs.Int64Var(&f.seed, "seed", -1, "random seed (torch.Generator().manual_seed semantics); -1 picks one at random and prints it")
	if withPrior {
		fs.IntVar(&f.priorSteps, "prior-steps", 25, "prior denoising steps")
		fs.Float64Var(&f.priorGuidance, "prior-guidance", 4, "prior classifier-free guidance scale (≤ 1 in both stages turns guidance off)")
	}
	fs.IntVar(&f.decSteps, "decoder-steps", 25, "decoder denoising steps")
	fs.IntVar(&f.srSteps, "sr-steps", 7, "super-resolution denoising steps")
	fs.Float64Var(&f.decGuide, "decoder-guidance", 8, "decoder classifier-free guidance scale")
	fs.StringVar(&f.device, "device", "auto", deviceFlagHelp)
	fs.IntVar(&f.threads, "threads", 0, threadsFlagHelp)
	fs.BoolVar(&f.quiet, "quiet", false, "no progress output (the result lines still go to stdout)")
	fs.BoolVar(&f.asJSON, "json", false, "machine-readable progress and result as JSON lines on stdout")
	fs.StringVar(&f.precision, "precision", "fp32", precisionFlagHelp)
	f.mem.register(fs)
}

// checkSettings checks the flags' steps, guidance scales and seed.
func (f *runFlags) checkSettings() error {
	return checkSettings(f.priorSteps, f.decSteps, f.srSteps, f.priorGuidance, f.decGuide, f.seed)
}

type generateFlags struct {
	runFlags
	prompts       listFlag
	promptsFile   string
	intermediates string
	profile       bool
	dryRun        bool
	batchSize     int
	preview       string
	embeddings    string
}

func runGenerate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("generate", flag.ContinueOnError)
	var f generateFlags
	fs.StringVar(&f.model, "m", "", `model: a diffusers unCLIP folder, a Hugging Face repo id in the local cache (kakaobrain/karlo-v1-alpha), or "demo" (built-in, untrained)`)
	f.runFlags.register(fs, true)
	fs.Var(&f.prompts, "p", "prompt (repeatable; the empty prompt is allowed)")
	fs.StringVar(&f.promptsFile, "prompts-file", "", "file with one prompt per line")
	fs.StringVar(&f.out, "o", "out.png", `output image, .png or .jpg; with several images a pattern with %d (image index, %03d pads), else "-N" is added before the extension`)
	fs.IntVar(&f.n, "n", 1, "images per prompt")
	fs.IntVar(&f.batchSize, "batch-size", 0, "images computed together (0: as many as fit in memory; a run larger than one batch seeds batch k with seed+k)")
	fs.BoolVar(&f.profile, "profile", false, "time every kernel and print a table at the end (Vulkan: per shader, GPU timestamps; CPU: per op class, wall time)")
	fs.BoolVar(&f.dryRun, "dry-run", false, "load the model, capture and plan every stage and print the memory each needs (weights, arena), without running a step or writing an image")
	fs.StringVar(&f.intermediates, "save-intermediates", "", "also write image embeddings, the 64×64 images and the final images to this .safetensors file")
	fs.StringVar(&f.embeddings, "image-embeddings", "", "CLIP image embeddings to decode instead of running the prior: a .safetensors file with an image_embeddings tensor (what --save-intermediates writes) or a single (rows, dim) tensor, one row per prompt or per image")
	fs.StringVar(&f.preview, "preview", "", "write the decoder's 64×64 images to this file (.png or .jpg; %d for several) as soon as the decoder finishes")
	// Long spellings that people type from other tools' habits.
	fs.StringVar(&f.model, "model", "", "same as -m")
	fs.Var(&f.prompts, "prompt", "same as -p")
	fs.StringVar(&f.out, "output", "out.png", "same as -o")
	setUsage(fs, "unclip generate -m DIR|REPO|demo -p PROMPT [-p PROMPT]... [-o OUT.png] [flags]")
	pos, err := parseFlags(fs, args, stderr)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("unexpected argument %q (prompts go after -p)", pos[0])
	}
	if f.model == "" {
		fmt.Fprintln(stderr, "usage: unclip generate -m DIR|demo -p PROMPT [-o OUT.png] [flags]   (unclip generate -h lists them)")
		return errUsage
	}
	prompts := []string(f.prompts)
	if f.promptsFile != "" {
		more, err := readPrompts(f.promptsFile)
		if err != nil {
			return err
		}
		prompts = append(prompts, more...)
	}
	if len(prompts) == 0 {
		return errors.New("no prompt: give -p PROMPT (repeatable) or --prompts-file FILE")
	}
	switch {
	case f.n < 1:
		return fmt.Errorf("-n must be at least 1, got %d", f.n)
	case f.n > maxImages || len(prompts)*f.n > maxImages:
		return fmt.Errorf("%d images asked for; at most %d in one run", len(prompts)*f.n, maxImages)
	case f.batchSize < 0:
		return fmt.Errorf("--batch-size must not be negative, got %d", f.batchSize)
	}
	if err := f.checkSettings(); err != nil {
		return err
	}
	total := len(prompts) * f.n
	var perImage []float32 // with --image-embeddings: total rows
	if f.embeddings != "" {
		given, rows, dim, err := readEmbeddings(f.embeddings)
		if err != nil {
			return err
		}
		switch rows {
		case total:
			perImage = given
		case len(prompts):
			for i := 0; i < total; i++ {
				r := i / f.n
				perImage = append(perImage, given[r*dim:(r+1)*dim]...)
			}
		default:
			return fmt.Errorf("--image-embeddings %s holds %d rows; want one per prompt (%d) or one per image (%d)", f.embeddings, rows, len(prompts), total)
		}
	}
	var outs, previews []outFile
	if !f.dryRun {
		if outs, err = planOutputs(f.out, total, f.force); err != nil {
			return err
		}
		if f.preview != "" {
			if previews, err = planOutputs(f.preview, total, f.force); err != nil {
				return err
			}
		}
	}
	var inter outFile
	if f.intermediates != "" && !f.dryRun {
		if inter, err = planFile(f.intermediates, f.force); err != nil {
			return err
		}
	}
	// Validate the model before announcing a run.
	dir := f.model
	if f.model != "demo" {
		if dir, err = resolveModel(f.model, f.revision, stderr); err != nil {
			return err
		}
		ix, err := unclip.ModelIndex(dir)
		if err != nil {
			return err
		}
		if ix.Kind == unclip.ImageVariation && perImage == nil {
			return fmt.Errorf("%s is an image-variations model: it has no prior to turn text into an image embedding; "+
				"give it images (unclip vary) or image embeddings (--image-embeddings)", f.model)
		}
	}
	seed, dev, dtype, err := f.seedAndDevice(stderr)
	if err != nil {
		return err
	}
	rep := newReporter(stderr, stdout, f.quiet, f.asJSON)
	rep.info("seed %d", seed)
	printProf, err := startProfile(f.profile, dev, stderr)
	if err != nil {
		return err
	}
	res0 := f.mem.residency()
	t0 := time.Now()
	p, modelName, err := loadPipeline(f.model, dir, f.variant, dev, dtype, res0)
	if err != nil {
		return err
	}
	loadTime := time.Since(t0)
	rep.info("loaded %s on %s in %s (%s)", modelName, dev.Name(), round(loadTime), residencyNote(p))

	batch := total
	if f.batchSize > 0 {
		batch = min(f.batchSize, total)
	} else if fit := imagesThatFit(p, f.decGuide > 1 || f.priorGuidance > 1); fit < total {
		batch = fit
		rep.warn(fmt.Sprintf("%d images do not fit in memory at once: computing %d at a time (--batch-size); batch k is seeded with seed+k, so its images differ from a one-batch run", total, batch))
	}

	items := make([]string, total) // the prompt of every image
	for i := range items {
		items[i] = prompts[i/f.n]
	}
	desc := runDescription{seed: seed, promptList: prompts, total: total, batch: batch, prompts: len(prompts), n: f.n, f: &f, model: modelName, device: dev.Name()}
	// request is batch k's request (images lo..hi-1 of the run).
	request := func(k, lo, hi int) unclip.Request {
		req := unclip.Request{Prompts: prompts, ImagesPerPrompt: f.n, PriorSteps: f.priorSteps, DecoderSteps: f.decSteps,
			SuperResSteps: f.srSteps, PriorGuidance: float32(f.priorGuidance), DecoderGuidance: float32(f.decGuide),
			Noise: unclip.NewTorchNoise(seed + uint64(k)), Progress: rep.event, Warn: rep.warn, DryRun: f.dryRun}
		if batch < total || perImage != nil {
			req.Prompts, req.ImagesPerPrompt = items[lo:hi], 1
		}
		if perImage != nil {
			dim := len(perImage) / total
			req.ImageEmbeddings = perImage[lo*dim : hi*dim]
		}
		return req
	}
	if rep.mode != "quiet" && !f.dryRun && !p.Offload {
		// An estimate of the whole run: a dry run captures every stage's
		// step graph (no step runs) for its FLOPs.
		est := request(0, 0, batch)
		est.DryRun, est.Progress, est.Warn = true, nil, nil
		res, err := generateBatch(p, est, nil)
		if err != nil {
			return err
		}
		var sizes []int
		for lo := 0; lo < total; lo += batch {
			sizes = append(sizes, min(batch, total-lo))
		}
		rep.setETA(newRunETA(res.Timings, sizes))
	}
	// One batch per process releases each model once its last stage is
	// done; several keep them.
	p.OneShot = !f.dryRun && batch == total
	var written []string
	var timings []unclip.StageTiming
	for k := 0; k*batch < total; k++ {
		lo, hi := k*batch, min((k+1)*batch, total)
		req := request(k, lo, hi)
		rep.setBatch(k)
		if batch < total {
			rep.info("batch %d of %d: images %d–%d", k+1, (total+batch-1)/batch, lo+1, hi)
		}
		if previews != nil {
			req.Decoded = func(small []float32, n, size int) {
				pix := unclip.ToUint8(unclip.ToNHWC(small, n, 3, size))
				if _, err := writeImages(previews[lo:hi], pix, size, desc.params(items, lo, "decoder 64×64 preview")); err != nil {
					rep.warn(fmt.Sprintf("preview: %v", err))
				}
			}
		}
		res, err := generateBatch(p, req, written)
		if err != nil {
			return err
		}
		if f.dryRun {
			return printDryRun(stdout, p, res.Timings, f.asJSON)
		}
		w, err := writeImages(outs[lo:hi], unclip.ToUint8(res.Images), res.Size, desc.params(items, lo, ""))
		written = append(written, w...)
		if err != nil {
			return withWritten(err, written)
		}
		if k == 0 {
			timings = res.Timings
			desc.size = res.Size
		} else {
			for i := range timings {
				timings[i].Time += res.Timings[i].Time
			}
		}
		if inter.name != "" && hi == total && batch == total {
			if err := saveIntermediates(inter, res, desc); err != nil {
				return withWritten(err, written)
			}
		}
	}
	if inter.name != "" && batch < total {
		rep.warn("--save-intermediates holds one batch only; skipped because the run was split into batches")
	}
	elapsed := time.Since(t0)
	if f.asJSON {
		ts := map[string]float64{"load": loadTime.Seconds()}
		for _, t := range timings {
			ts[t.Stage] = t.Time.Seconds()
		}
		return json.NewEncoder(stdout).Encode(map[string]any{"event": "result", "files": written, "seed": seed, "model": modelName,
			"device": dev.Name(), "size": desc.size, "batch_size": batch, "timings_s": ts, "total_s": elapsed.Seconds()})
	}
	if !f.quiet {
		var parts []string
		for _, t := range timings {
			parts = append(parts, fmt.Sprintf("%s %s", t.Stage, round(t.Time)))
		}
		fmt.Fprintf(stderr, "load %s, %s; total %s\n", round(loadTime), strings.Join(parts, ", "), round(elapsed))
		printProf()
	}
	// The result, also under --quiet: the files and how to make them again.
	for _, o := range written {
		fmt.Fprintln(stdout, o)
	}
	fmt.Fprintf(stdout, "seed %d\n", seed)
	return nil
}

// Bounds on what one run may ask for: past them a typo, not a plan.
const (
	maxImages = 1 << 20
	maxSteps  = 10000
)

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// checkSettings checks the steps, guidance scales and seed that generate,
// vary and interpolate share; prior 0 means a run without the prior.
func checkSettings(prior, dec, sr int, priorG, decG float64, seed int64) error {
	switch {
	case (prior != 0 && prior < 2) || dec < 2 || sr < 2:
		return fmt.Errorf("steps must be at least 2 (got prior %d, decoder %d, super-res %d): the UnCLIP scheduler spaces timesteps over steps − 1 intervals", prior, dec, sr)
	case prior > maxSteps || dec > maxSteps || sr > maxSteps:
		return fmt.Errorf("steps must be at most %d (got prior %d, decoder %d, super-res %d)", maxSteps, prior, dec, sr)
	case !finite(priorG) || !finite(decG):
		return fmt.Errorf("guidance scales must be finite numbers (got prior %g, decoder %g)", priorG, decG)
	case priorG < 0 || decG < 0:
		return fmt.Errorf("guidance scales must not be negative (got prior %g, decoder %g)", priorG, decG)
	case priorG > math.MaxFloat32 || decG > math.MaxFloat32:
		return fmt.Errorf("guidance scales must fit a float32 (got prior %g, decoder %g)", priorG, decG)
	case seed < -1 || seed > 1<<32-1:
		return fmt.Errorf("--seed must be in [0, 4294967295] (torch seeds its CPU generator with 32 bits), or -1 for a random one")
	}
	return nil
}

// planOutputs expands an -o pattern for n images and checks each file.
func planOutputs(pattern string, n int, force bool) ([]outFile, error) {
	names := outputPaths(pattern, n)
	seen := make(map[string]bool, len(names))
	outs := make([]outFile, len(names))
	for i, name := range names {
		o, err := planOutput(name, force)
		if err != nil {
			return nil, err
		}
		if seen[o.target] && !o.special {
			return nil, fmt.Errorf("output %s is named twice: with several images -o needs %%d or no %% at all", name)
		}
		seen[o.target] = true
		outs[i] = o
	}
	return outs, nil
}

// runDescription is what an image's metadata records of the run that made
// it.
type runDescription struct {
	seed                     uint64
	promptList               []string
	total, batch, prompts, n int
	size                     int
	f                        *generateFlags
	model, device            string
}

// params is the "parameters" text of image i (0-based over the run) whose
// prompt is items[i]; what names a kind of image other than the final one.
func (d runDescription) params(items []string, lo int, what string) func(i int) string {
	return func(j int) string {
		i := lo + j
		f := d.f
		s := fmt.Sprintf("%s\nSeed: %d, Image: %d/%d, Prompts: %d, Images per prompt: %d, Batch size: %d, Batch: %d, Index in batch: %d, "+
			"Prior steps: %d, Decoder steps: %d, Super-res steps: %d, Prior guidance: %g, Decoder guidance: %g, Model: %s, Device: %s, Precision: %s, Generator: unclip",
			items[i], d.seed, i+1, d.total, d.prompts, d.n, d.batch, i/d.batch+1, i%d.batch+1,
			f.priorSteps, f.decSteps, f.srSteps, f.priorGuidance, f.decGuide, d.model, d.device, f.precision)
		if f.embeddings != "" {
			s += ", Image embeddings: " + f.embeddings
		}
		if what != "" {
			s += ", Image kind: " + what
		}
		return s
	}
}

// writeImages encodes and writes one image per output (pix holds them
// all, size×size×3 bytes each) and returns the names written.
func writeImages(outs []outFile, pix []uint8, size int, params func(int) string) ([]string, error) {
	per := size * size * 3
	var written []string
	for i, o := range outs {
		data, err := o.encode(pix[i*per:(i+1)*per], size, params(i))
		if err != nil {
			return written, fmt.Errorf("encode %s: %w", o.name, err)
		}
		if err := o.write(data); err != nil {
			return written, fmt.Errorf("write %s: %w", o.name, err)
		}
		written = append(written, o.name)
	}
	return written, nil
}

// withWritten adds to err the files already written, if any.
func withWritten(err error, written []string) error {
	if len(written) == 0 {
		return err
	}
	return fmt.Errorf("%w (already written: %s)", err, strings.Join(written, ", "))
}

// generateBatch runs req in a phase that the first signal cancels; its
// error names the files written before it (written).
func generateBatch(p *unclip.Pipeline, req unclip.Request, written []string) (*unclip.Result, error) {
	ctx, end := cancellable()
	defer end()
	res, err := p.Generate(ctx, req)
	switch {
	case errors.Is(err, context.Canceled):
		return nil, interruptedError(written)
	case err != nil:
		return nil, withWritten(err, written)
	}
	return res, nil
}

// interruptedError reports a run stopped by a signal.
func interruptedError(written []string) error {
	if len(written) == 0 {
		return errors.New("interrupted; no image written")
	}
	return fmt.Errorf("interrupted; written before the interrupt: %s", strings.Join(written, ", "))
}

// loadPipeline opens the model named by -m: "demo", or the folder dir
// that resolveModel found for it.
func loadPipeline(m, dir, variant string, dev tensor.Backend, dtype tensor.DType, res unclip.Residency) (*unclip.Pipeline, string, error) {
	if m == "demo" {
		p, err := unclip.NewRandom(unclip.Tiny(), unclip.RandomOptions{Seed: 0, Device: dev, DType: dtype, Residency: res})
		return p, "demo (tiny, untrained)", err
	}
	p, err := unclip.Load(dir, unclip.LoadOptions{Variant: variant, Device: dev, DType: dtype, Residency: res})
	return p, m, err
}

func readPrompts(path string) ([]string, error) {
	f, err := modelfile.Open(path, modelfile.PromptsLimit)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if line := strings.TrimRight(sc.Text(), "\r"); strings.TrimSpace(line) != "" {
			out = append(out, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no prompt", path)
	}
	return out, nil
}

// saveIntermediates writes the run's intermediate tensors as safetensors,
// with the prompts and settings as metadata.
func saveIntermediates(o outFile, res *unclip.Result, d runDescription) error {
	f32 := func(name string, v []float32, shape ...int) safetensors.TensorInfo {
		b := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(b[4*i:], mathFloat32bits(x))
		}
		return safetensors.TensorInfo{Name: name, DType: safetensors.F32, Shape: shape, Data: b}
	}
	n := res.N
	dim := len(res.ImageEmbeddings) / max(n, 1)
	tensors := []safetensors.TensorInfo{
		f32("image_embeddings", res.ImageEmbeddings, n, dim),
		f32("image_small", res.ImageSmall, n, 3, res.SmallSize, res.SmallSize),
		f32("image", res.Images, n, res.Size, res.Size, 3),
	}
	prompts, _ := json.Marshal(d.promptList)
	meta := map[string]string{"generator": "unclip", "prompts": string(prompts), "images_per_prompt": fmt.Sprint(d.n),
		"seed": fmt.Sprint(d.seed), "prior_steps": fmt.Sprint(d.f.priorSteps), "decoder_steps": fmt.Sprint(d.f.decSteps),
		"super_res_steps": fmt.Sprint(d.f.srSteps), "prior_guidance": fmt.Sprint(d.f.priorGuidance),
		"decoder_guidance": fmt.Sprint(d.f.decGuide), "model": d.model, "precision": d.f.precision}
	var buf bytes.Buffer
	if err := safetensors.Encode(&buf, tensors, meta); err != nil {
		return fmt.Errorf("save intermediates: %w", err)
	}
	if err := o.write(buf.Bytes()); err != nil {
		return fmt.Errorf("save intermediates to %s: %w", o.name, err)
	}
	return nil
}

func mathFloat32bits(f float32) uint32 { return math.Float32bits(f) }

// residencyNote says where the weights live after loading.
func residencyNote(p *unclip.Pipeline) string {
	w := p.WeightBytes("")
	switch {
	case w == 0:
		return "weights in host memory"
	case p.Offload:
		return fmt.Sprintf("%s of weights, offloaded: each stage's uploaded when it runs", mib(w))
	}
	return fmt.Sprintf("%s of weights resident on the device", mib(w))
}

// printDryRun prints the memory plan of every stage of a dry run: the
// weights each stage holds, its arena, and their sum (the stage's device
// memory at its peak, beside the eager work between stages).
func printDryRun(w io.Writer, p *unclip.Pipeline, timings []unclip.StageTiming, asJSON bool) error {
	type stagePlan struct {
		Stage       string `json:"stage"`
		Ops         int    `json:"ops_per_step"`
		WeightBytes int64  `json:"weight_bytes"`
		ArenaBytes  int64  `json:"arena_bytes"`
		NaiveBytes  int64  `json:"unplanned_bytes"`
		PeakBytes   int64  `json:"peak_bytes"`
	}
	var plans []stagePlan
	var peak int64
	for _, t := range timings {
		if !t.Stats.Planned {
			continue
		}
		wb := t.Stats.WeightBytes
		sp := stagePlan{t.Stage, t.Stats.Nodes, wb, t.Stats.ArenaBytes, t.Stats.NaiveBytes, wb + t.Stats.ArenaBytes}
		if !p.Offload && p.WeightBytes("") > 0 {
			sp.PeakBytes = p.WeightBytes("") + t.Stats.ArenaBytes
		}
		peak = max(peak, sp.PeakBytes)
		plans = append(plans, sp)
	}
	if asJSON {
		return json.NewEncoder(w).Encode(map[string]any{"event": "plan", "offload": p.Offload, "stages": plans, "peak_bytes": peak})
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "stage\tops/step\tweights\tarena\twithout reuse\tpeak\t")
	for _, s := range plans {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t\n", s.Stage, s.Ops, mib(s.WeightBytes), mib(s.ArenaBytes), mib(s.NaiveBytes), mib(s.PeakBytes))
	}
	fmt.Fprintf(tw, "peak\t\t\t\t\t%s\t\n", mib(peak))
	return tw.Flush()
}
