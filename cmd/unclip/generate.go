package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/unclip-go/unclip/models/unclip"
	"github.com/unclip-go/unclip/tensor"
	"github.com/unclip-go/unclip/tensor/safetensors"
)

type generateFlags struct {
	model, revision, variant string
	prompts                  listFlag
	promptsFile              string
	out                      string
	n                        int
	seed                     int64
	priorSteps, decSteps     int
	srSteps                  int
	priorGuidance, decGuide  float64
	device                   string
	threads                  int
	quiet, asJSON            bool
	intermediates            string
	precision                string
	profile                  bool
	dryRun                   bool
	mem                      memoryFlags
}

func runGenerate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("generate", flag.ContinueOnError)
	var f generateFlags
	fs.StringVar(&f.model, "m", "", `model: a diffusers unCLIP folder, a Hugging Face repo id in the local cache (kakaobrain/karlo-v1-alpha), or "demo" (built-in, untrained)`)
	fs.StringVar(&f.revision, "revision", "main", "revision of a Hugging Face cached model")
	fs.StringVar(&f.variant, "variant", "", "weight file variant, e.g. fp16 (diffusion_pytorch_model.fp16.safetensors)")
	fs.Var(&f.prompts, "p", "prompt (repeatable; the empty prompt is allowed)")
	fs.StringVar(&f.promptsFile, "prompts-file", "", "file with one prompt per line")
	fs.StringVar(&f.out, "o", "out.png", `output PNG; with several images a pattern with %d (image index), else "-N" is added before the extension`)
	fs.IntVar(&f.n, "n", 1, "images per prompt")
	fs.Int64Var(&f.seed, "seed", -1, "random seed (torch.Generator().manual_seed semantics); -1 picks one at random and prints it")
	fs.IntVar(&f.priorSteps, "prior-steps", 25, "prior denoising steps")
	fs.IntVar(&f.decSteps, "decoder-steps", 25, "decoder denoising steps")
	fs.IntVar(&f.srSteps, "sr-steps", 7, "super-resolution denoising steps")
	fs.Float64Var(&f.priorGuidance, "prior-guidance", 4, "prior classifier-free guidance scale (≤ 1 in both stages turns guidance off)")
	fs.Float64Var(&f.decGuide, "decoder-guidance", 8, "decoder classifier-free guidance scale")
	fs.StringVar(&f.device, "device", "auto", deviceFlagHelp)
	fs.IntVar(&f.threads, "threads", 0, "CPU threads (0: all cores)")
	fs.BoolVar(&f.quiet, "quiet", false, "no progress output")
	fs.BoolVar(&f.asJSON, "json", false, "machine-readable progress and result as JSON lines on stdout")
	fs.StringVar(&f.precision, "precision", "fp32", precisionFlagHelp)
	fs.BoolVar(&f.profile, "profile", false, "time every GPU kernel and print a table at the end (Vulkan)")
	fs.BoolVar(&f.dryRun, "dry-run", false, "load the model, capture and plan every stage and print the memory each needs (weights, arena), without running a step or writing an image")
	f.mem.register(fs)
	fs.StringVar(&f.intermediates, "save-intermediates", "", "also write image embeddings, the 64×64 images and the final images to this .safetensors file")
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
	case f.priorSteps < 2 || f.decSteps < 2 || f.srSteps < 2:
		return fmt.Errorf("steps must be at least 2 (got prior %d, decoder %d, super-res %d): the UnCLIP scheduler spaces timesteps over steps − 1 intervals", f.priorSteps, f.decSteps, f.srSteps)
	case f.priorGuidance < 0 || f.decGuide < 0:
		return fmt.Errorf("guidance scales must not be negative (got prior %g, decoder %g)", f.priorGuidance, f.decGuide)
	case f.seed < -1 || f.seed > 1<<32-1:
		return fmt.Errorf("--seed must be in [0, 4294967295] (torch seeds its CPU generator with 32 bits), or -1 for a random one")
	}
	outs := outputPaths(f.out, len(prompts)*f.n)
	for _, o := range outs {
		if err := checkWritable(o); err != nil {
			return err
		}
	}
	if f.intermediates != "" {
		if err := checkWritable(f.intermediates); err != nil {
			return err
		}
	}
	seed := uint64(f.seed)
	if f.seed < 0 {
		var b [8]byte
		rand.Read(b[:])
		seed = uint64(binary.LittleEndian.Uint32(b[:]))
	}
	rep := newReporter(stderr, stdout, f.quiet, f.asJSON)
	rep.info("seed %d", seed)

	devOut := io.Writer(stderr)
	if f.quiet || f.asJSON {
		devOut = nil
	}
	if err := f.mem.prepare(f.device); err != nil {
		return err
	}
	dev, err := openDevice(f.device, f.threads, devOut)
	if err != nil {
		return err
	}
	dtype, err := parsePrecision(f.precision, dev)
	if err != nil {
		return err
	}
	printProf, err := startProfile(f.profile, dev, stderr)
	if err != nil {
		return err
	}
	res0 := f.mem.residency()
	t0 := time.Now()
	p, modelName, err := loadPipeline(f.model, f.revision, f.variant, dev, dtype, res0, stderr)
	if err != nil {
		return err
	}
	loadTime := time.Since(t0)
	rep.info("loaded %s on %s in %s (%s)", modelName, dev.Name(), round(loadTime), residencyNote(p))
	// One generation per process: each model is released once its last
	// stage is done.
	p.OneShot = !f.dryRun

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	req := unclip.Request{Prompts: prompts, ImagesPerPrompt: f.n, PriorSteps: f.priorSteps, DecoderSteps: f.decSteps,
		SuperResSteps: f.srSteps, PriorGuidance: float32(f.priorGuidance), DecoderGuidance: float32(f.decGuide),
		Noise: unclip.NewTorchNoise(seed), Progress: rep.event, Warn: rep.warn, DryRun: f.dryRun}
	res, err := p.Generate(ctx, req)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return errors.New("interrupted; no image written")
		}
		return err
	}
	if f.dryRun {
		return printDryRun(stdout, p, res.Timings, f.asJSON)
	}
	pixels := unclip.ToUint8(res.Images)
	per := res.Size * res.Size * 3
	for i, o := range outs {
		params := fmt.Sprintf("%s\nSeed: %d, Image: %d/%d, Prior steps: %d, Decoder steps: %d, Super-res steps: %d, Prior guidance: %g, Decoder guidance: %g, Model: %s, Device: %s, Precision: %s, Generator: unclip",
			prompts[i/f.n], seed, i+1, len(outs), f.priorSteps, f.decSteps, f.srSteps, f.priorGuidance, f.decGuide, modelName, dev.Name(), f.precision)
		data, err := encodePNG(pixels[i*per:(i+1)*per], res.Size, params)
		if err != nil {
			return err
		}
		if err := writeFileAtomic(o, data); err != nil {
			return fmt.Errorf("write %s: %w", o, err)
		}
	}
	if f.intermediates != "" {
		if err := saveIntermediates(f.intermediates, res); err != nil {
			return err
		}
	}
	total := time.Since(t0)
	if f.asJSON {
		timings := map[string]float64{"load": loadTime.Seconds()}
		for _, t := range res.Timings {
			timings[t.Stage] = t.Time.Seconds()
		}
		return json.NewEncoder(stdout).Encode(map[string]any{"event": "result", "files": outs, "seed": seed, "model": modelName,
			"device": dev.Name(), "size": res.Size, "timings_s": timings, "total_s": total.Seconds()})
	}
	if !f.quiet {
		var parts []string
		for _, t := range res.Timings {
			parts = append(parts, fmt.Sprintf("%s %s", t.Stage, round(t.Time)))
		}
		fmt.Fprintf(stderr, "load %s, %s; total %s\n", round(loadTime), strings.Join(parts, ", "), round(total))
		for _, o := range outs {
			fmt.Fprintf(stdout, "%s\n", o)
		}
		printProf()
	}
	return nil
}

// loadPipeline opens the model named by -m: "demo", a folder or a cached
// Hugging Face repo id.
func loadPipeline(m, revision, variant string, dev tensor.Backend, dtype tensor.DType, res unclip.Residency, stderr io.Writer) (*unclip.Pipeline, string, error) {
	if m == "demo" {
		p, err := unclip.NewRandom(unclip.Tiny(), unclip.RandomOptions{Seed: 0, Device: dev, DType: dtype, Residency: res})
		return p, "demo (tiny, untrained)", err
	}
	dir, err := resolveModel(m, revision, stderr)
	if err != nil {
		return nil, "", err
	}
	p, err := unclip.Load(dir, unclip.LoadOptions{Variant: variant, Device: dev, DType: dtype, Residency: res})
	return p, m, err
}

func readPrompts(path string) ([]string, error) {
	f, err := os.Open(path)
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

// outputPaths expands -o for n images: a pattern with a %d verb is
// formatted with the 1-based index; otherwise "-N" goes before the
// extension when there is more than one image.
func outputPaths(pattern string, n int) []string {
	if strings.Contains(pattern, "%") {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf(pattern, i+1)
		}
		return out
	}
	if n == 1 {
		return []string{pattern}
	}
	ext := filepath.Ext(pattern)
	base := strings.TrimSuffix(pattern, ext)
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d%s", base, i+1, ext)
	}
	return out
}

func saveIntermediates(path string, res *unclip.Result) error {
	f32 := func(name string, v []float32, shape ...int) safetensors.TensorInfo {
		b := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(b[4*i:], mathFloat32bits(x))
		}
		return safetensors.TensorInfo{Name: name, DType: safetensors.F32, Shape: shape, Data: b}
	}
	n := res.N
	d := len(res.ImageEmbeddings) / max(n, 1)
	tensors := []safetensors.TensorInfo{
		f32("image_embeddings", res.ImageEmbeddings, n, d),
		f32("image_small", res.ImageSmall, n, 3, res.SmallSize, res.SmallSize),
		f32("image", res.Images, n, res.Size, res.Size, 3),
	}
	if err := safetensors.WriteFile(path, tensors, map[string]string{"generator": "unclip"}); err != nil {
		return fmt.Errorf("save intermediates: %w", err)
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
