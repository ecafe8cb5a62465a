package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/unclip-go/unclip/kernels/cpu"
	"github.com/unclip-go/unclip/models/clip"
	"github.com/unclip-go/unclip/models/unclip"
	"github.com/unclip-go/unclip/tensor"
)

func runBench(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(stderr, "usage: unclip bench pipeline [flags]   (time the pipeline stage by stage)")
		for _, s := range benchSubcommands {
			fmt.Fprintf(stderr, "       unclip bench %s [flags]   (%s)\n", s.name, s.summary)
		}
		fmt.Fprintln(stderr, "\nRun 'unclip bench SUBCOMMAND -h' for its flags.")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			return flag.ErrHelp
		}
		return errUsage
	}
	if args[0] == "pipeline" {
		return runBenchPipeline(args[1:], stdout, stderr)
	}
	for _, s := range benchSubcommands {
		if s.name == args[0] {
			return s.run(args[1:], stdout, stderr)
		}
	}
	return fmt.Errorf("unknown bench %q (pipeline%s)", args[0], benchNames())
}

// benchSubcommands are the kernel benchmarks (registered by the files
// that implement them).
var benchSubcommands []command

func benchNames() string {
	var s string
	for _, c := range benchSubcommands {
		s += ", " + c.name
	}
	return s
}

var benchStages = []string{"image", "text", "prior", "decoder", "sr"}

func runBenchPipeline(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench pipeline", flag.ContinueOnError)
	config := fs.String("config", "karlo", "architecture for --random-weights: karlo, karlo-variations (ViT-L/14 image encoder, no prior) or tiny")
	random := fs.Bool("random-weights", false, "deterministic random weights of the --config architecture (no download)")
	model := fs.String("m", "", `time a real model folder instead (or a cached Hugging Face repo id, or "demo": the built-in tiny model)`)
	variant := fs.String("variant", "", "weight file variant with -m, e.g. fp16")
	stages := fs.String("stages", "", "comma-separated stages to time: image (the image encoder), text, prior, decoder, sr (default: text,prior,decoder,sr; image,text,decoder,sr for an image-variations model)")
	priorSteps := fs.Int("prior-steps", 25, "prior steps")
	decSteps := fs.Int("decoder-steps", 25, "decoder steps")
	srSteps := fs.Int("sr-steps", 7, "super-res steps")
	n := fs.Int("n", 1, "images (one prompt, n images per prompt)")
	scale := fs.Int("scale", 1, "divide every width of the architecture by this factor (quick runs of the full topology)")
	sizeDiv := fs.Int("size-div", 1, "divide the decoder and super-res image sizes by this factor (with --random-weights)")
	device := fs.String("device", "auto", deviceFlagHelp)
	threads := fs.Int("threads", 0, threadsFlagHelp)
	asJSON := fs.Bool("json", false, "print JSON")
	precision := fs.String("precision", "fp32", precisionFlagHelp)
	profile := fs.Bool("profile", false, "time every kernel and print a table at the end (Vulkan: per shader, GPU timestamps; CPU: per op class, wall time)")
	cpuProfile := fs.String("cpuprofile", "", "write a Go CPU profile of the timed stages to this file (read it with 'go tool pprof')")
	eager := fs.Bool("eager", false, "run the denoising steps op by op instead of replaying captured step graphs")
	dryRun := fs.Bool("dry-run", false, "capture and plan every stage and print the memory each needs, without running a step")
	var mem memoryFlags
	mem.register(fs)
	setUsage(fs, "unclip bench pipeline (--random-weights [--config karlo|karlo-variations|tiny] | -m DIR|REPO|demo) [--stages LIST] [flags]")
	pos, err := parseFlags(fs, args, stderr)
	if err != nil {
		return err
	}
	weightSeed := uint64(1)
	demo := *model == "demo"
	if demo {
		// The built-in demo model: generate's tiny architecture and weights
		// (loadPipeline's), so the flags that choose weights do not apply.
		var clash []string
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "random-weights" || f.Name == "config" || f.Name == "variant" {
				clash = append(clash, "--"+f.Name)
			}
		})
		if len(clash) > 0 {
			return fmt.Errorf("-m demo is the built-in tiny model: it takes no %s", strings.Join(clash, " or "))
		}
		*model, *random, *config, weightSeed = "", true, "tiny", 0
	}
	if len(pos) > 0 || (*model == "") == !*random {
		fmt.Fprintln(stderr, "usage: unclip bench pipeline (--random-weights [--config karlo|karlo-variations|tiny] | -m DIR|REPO|demo) [--stages LIST] [flags]")
		return errUsage
	}
	variations := *random && *config == "karlo-variations"
	if !*random {
		if *model == "" {
			return errUsage
		}
		dir, err := resolveModel(*model, "main", stderr)
		if err != nil {
			return err
		}
		ix, err := unclip.ModelIndex(dir)
		if err != nil {
			return err
		}
		*model, variations = dir, ix.Kind == unclip.ImageVariation
	}
	if *stages == "" {
		*stages = "text,prior,decoder,sr"
		if variations {
			*stages = "image,text,decoder,sr"
		}
	}
	sel := splitList(*stages)
	for _, s := range sel {
		if !slices.Contains(benchStages, s) {
			return fmt.Errorf("unknown stage %q (image, text, prior, decoder, sr)", s)
		}
		if s == "prior" && variations {
			return errors.New("an image-variations model has no prior: its stages are image, text, decoder, sr")
		}
		if s == "image" && !variations {
			return errors.New("the image stage needs an image-variations model (--config karlo-variations, or -m of one)")
		}
	}
	if len(sel) == 0 {
		return fmt.Errorf("no stage selected")
	}
	has := func(s string) bool { return slices.Contains(sel, s) }
	// Stages that run for real: text feeds the prior and decoder; the decoder
	// runs on a random embedding without the prior, super-res on a random
	// image without the decoder.
	var only []string
	if has("image") {
		only = append(only, unclip.ImageEncoder, unclip.FeatureExtractor)
	}
	if has("text") || has("prior") || has("decoder") {
		only = append(only, unclip.Tokenizer, unclip.TextEncoder)
	}
	if has("prior") {
		only = append(only, unclip.Prior, unclip.PriorScheduler)
	}
	if has("decoder") {
		only = append(only, unclip.TextProj, unclip.Decoder, unclip.DecoderScheduler)
	}
	if has("sr") {
		only = append(only, unclip.SuperResFirst, unclip.SuperResLast, unclip.SuperResScheduler)
	}
	// The request is checked before the (long) build.
	req := unclip.DefaultRequest()
	req.Prompts = []string{"a watercolor painting of a fox in the snow"}
	if variations {
		req.Prompts = []string{""} // the variation pipeline's text side
	}
	req.ImagesPerPrompt = *n
	req.PriorSteps, req.DecoderSteps, req.SuperResSteps = *priorSteps, *decSteps, *srSteps
	req.Noise = unclip.NewTorchNoise(0)
	req.Eager = *eager
	req.DryRun = *dryRun
	if err := req.Validate(); err != nil {
		return err
	}
	dev, dtype, err := openCompute(*device, *threads, *precision, &mem, stderr)
	if err != nil {
		return err
	}
	printProf, err := startProfile(*profile, dev, stderr)
	if err != nil {
		return err
	}
	residency := mem.residency()
	var p *unclip.Pipeline
	var arch unclip.Architecture
	name := *model
	t0 := time.Now()
	if *random {
		switch *config {
		case "karlo":
			arch = unclip.Karlo()
		case "karlo-variations":
			arch = unclip.KarloVariations()
		case "tiny":
			arch = unclip.Tiny()
		default:
			return fmt.Errorf("unknown --config %q (karlo, karlo-variations or tiny)", *config)
		}
		arch = arch.Scale(*scale)
		if *sizeDiv > 1 {
			d, r := arch.Decoder.SampleSize.At(0) / *sizeDiv, arch.SuperRes.SampleSize.At(0) / *sizeDiv
			f := 1 << (len(arch.SuperRes.BlockOutChannels) - 1)
			if d < 1<<(len(arch.Decoder.BlockOutChannels)-1) || r < f || r%f != 0 {
				return fmt.Errorf("--size-div %d leaves images too small for the U-Nets", *sizeDiv)
			}
			arch.Decoder.SampleSize, arch.SuperRes.SampleSize = []int{d}, []int{r}
			arch.Name += fmt.Sprintf(", images ÷%d", *sizeDiv)
		}
		name = arch.Name + " (random weights)"
		if demo && *scale == 1 && *sizeDiv == 1 {
			name = "demo (tiny, untrained)"
		}
		fmt.Fprintf(stderr, "building %s: %s ...\n", name, strings.Join(only, ", "))
		p, err = unclip.NewRandom(arch, unclip.RandomOptions{Seed: weightSeed, Device: dev, Only: only, DType: dtype, Residency: residency})
	} else {
		p, err = unclip.Load(*model, unclip.LoadOptions{Variant: *variant, Device: dev, Only: only, DType: dtype, Residency: residency})
	}
	if err != nil {
		return err
	}
	build := time.Since(t0)
	fmt.Fprintf(stderr, "built in %s on %s (%d threads)\n", round(build), dev.Name(), cpu.Threads())
	// One pass over the stages: each model is released once its stage is done.
	p.OneShot = !*dryRun

	type row struct {
		Stage   string  `json:"stage"`
		Steps   int     `json:"steps"`
		Seconds float64 `json:"seconds"`
		PerStep float64 `json:"seconds_per_step"`
		// Planned execution (denoising stages): the arena, the constant
		// storage read per step, the Go heap allocated per replayed step,
		// and on recording backends submissions per step and host waits.
		Planned       bool    `json:"planned,omitempty"`
		ArenaBytes    int64   `json:"arena_bytes,omitempty"`
		WeightBytes   int64   `json:"weight_bytes,omitempty"`
		AllocPerStep  *int64  `json:"alloc_bytes_per_step,omitempty"`
		SubmitsPerStp float64 `json:"submits_per_step,omitempty"`
		DispPerStep   float64 `json:"dispatches_per_step,omitempty"`
		HostWaits     *int64  `json:"host_waits,omitempty"`
	}
	var rows []row
	var stats unclip.StageStats
	var plans []unclip.StageTiming
	_, recording := dev.(tensor.Counters)
	timeIt := func(stage string, steps int, f func() error) error {
		stats = unclip.StageStats{}
		start := time.Now()
		if err := f(); err != nil {
			if errors.Is(err, context.Canceled) {
				return fmt.Errorf("interrupted in the %s stage; the stages above are the ones timed", stage)
			}
			return fmt.Errorf("%s: %w", stage, err)
		}
		d := time.Since(start).Seconds()
		r := row{Stage: stage, Steps: steps, Seconds: d, PerStep: d / float64(max(steps, 1))}
		line := ""
		if stats.Planned {
			a := stats.AllocBytesPerStep
			r.Planned, r.ArenaBytes, r.WeightBytes, r.AllocPerStep = true, stats.ArenaBytes, stats.WeightBytes, &a
			line = fmt.Sprintf("  arena %s  weights %s  %s allocated/step", mib(stats.ArenaBytes), mib(stats.WeightBytes), mib(a))
			if recording {
				w := stats.HostWaits
				r.SubmitsPerStp, r.HostWaits = float64(stats.Submits)/float64(max(steps, 1)), &w
				r.DispPerStep = float64(stats.Dispatches) / float64(max(steps, 1))
				line += fmt.Sprintf("  %.2f submits/step  %.0f dispatches/step  %d host waits", r.SubmitsPerStp, r.DispPerStep, w)
			}
		}
		rows = append(rows, r)
		plans = append(plans, unclip.StageTiming{Stage: stage, Steps: steps, Stats: stats})
		fmt.Fprintf(stderr, "%-8s %3d steps  %9.3f s  %9.4f s/step%s\n", stage, steps, d, r.PerStep, line)
		return nil
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, end := cancellable()
	defer end()
	b := *n
	var imageEmb []float32
	if has("image") {
		img := syntheticImage(640, 480)
		if err := timeIt("image", 1, func() (e error) { imageEmb, e = p.EncodeImages(ctx, &req, []*clip.RGB{img}); return }); err != nil {
			return err
		}
	}
	var ts *unclip.TextState
	if has("text") || has("prior") || has("decoder") {
		err := timeIt("text", 1, func() (e error) { ts, e = p.EncodePrompts(ctx, &req); return })
		if err != nil {
			return err
		}
		if !has("text") {
			rows = rows[:len(rows)-1]
		}
	}
	var emb *tensor.Tensor
	if has("prior") {
		if err := timeIt("prior", req.PriorSteps, func() (e error) { emb, stats, e = p.RunPrior(ctx, &req, ts); return }); err != nil {
			return err
		}
	} else if has("decoder") && imageEmb != nil { // the variation: the image's embedding for every image
		var rows []float32
		for range b {
			rows = append(rows, imageEmb...)
		}
		emb = tensor.FromFloat32(rows, b, len(imageEmb)).To(dev)
	} else if has("decoder") {
		emb = randomTensor(dev, b, p.TextProj.Config.ClipEmbeddingsDim)
	}
	var small *tensor.Tensor
	if has("decoder") {
		if err := timeIt("decoder", req.DecoderSteps, func() (e error) { small, stats, e = p.RunDecoder(ctx, &req, ts, emb); return }); err != nil {
			return err
		}
	} else if has("sr") {
		s := p.SRFirst.Config.SampleSize.At(0) / 4 // the decoder's size in Karlo's hierarchy
		if p.Decoder != nil {
			s = p.Decoder.Config.SampleSize.At(0)
		}
		small = randomTensor(dev, b, 3, s, s)
	}
	if has("sr") {
		if err := timeIt("sr", req.SuperResSteps, func() (e error) { _, stats, e = p.RunSuperRes(ctx, &req, small); return }); err != nil {
			return err
		}
	}
	var total float64
	for _, r := range rows {
		total += r.Seconds
	}
	printProf()
	if *dryRun {
		return printDryRun(stdout, p, plans, *asJSON)
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(map[string]any{"model": name, "device": dev.Name(), "threads": cpu.Threads(), "precision": *precision,
			"cpu_kernels": cpu.Kernels(), "winograd": cpu.Winograd(), "images": b, "build_seconds": build.Seconds(), "stages": rows, "total_seconds": total})
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(stdout, "%s on %s, %d image(s), %d CPU threads (kernels %s, winograd %s)\n", name, dev.Name(), b, cpu.Threads(), cpu.Kernels(), cpu.Winograd())
	fmt.Fprintln(tw, "stage\tsteps\tseconds\ts/step\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%.3f\t%.4f\t\n", r.Stage, r.Steps, r.Seconds, r.PerStep)
	}
	fmt.Fprintf(tw, "total\t\t%.3f\t\t\n", total)
	return tw.Flush()
}

// mib formats a byte count in MiB.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// syntheticImage is a w×h test picture (gradients and a disc) for timing
// the image encoder, preprocessing included.
func syntheticImage(w, h int) *clip.RGB {
	img := &clip.RGB{W: w, H: h, Pix: make([]uint8, 3*w*h)}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			p := img.Pix[3*(y*w+x):]
			p[0], p[1], p[2] = uint8(255*x/w), uint8(255*y/h), 128
			if dx, dy := x-w/2, y-h/2; dx*dx+dy*dy < h*h/9 {
				p[2] = 240
			}
		}
	}
	return img
}

// randomTensor is a deterministic standard-normal-ish tensor on dev.
func randomTensor(dev tensor.Backend, shape ...int) *tensor.Tensor {
	v, _ := unclip.NewTorchNoise(7).Randn(shape)
	return tensor.FromFloat32(v, shape...).To(dev)
}
