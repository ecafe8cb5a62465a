package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"strconv"
	"time"

	"github.com/unclip-go/unclip/models/clip"
	"github.com/unclip-go/unclip/models/modelfile"
	"github.com/unclip-go/unclip/models/unclip"
	"github.com/unclip-go/unclip/nn"
	"github.com/unclip-go/unclip/tensor/safetensors"
)

// imageFlags are vary's and interpolate's: generate's shared ones, the
// input images and their embeddings.
type imageFlags struct {
	runFlags
	images     listFlag
	embeddings string
}

// register adds the flags; withPrior adds the prior's (the text
// interpolation runs it).
func (f *imageFlags) register(fs *flag.FlagSet, imageFlag string, withPrior bool) {
	f.runFlags.register(fs, withPrior)
	fs.StringVar(&f.model, "m", "", "model: a diffusers folder (an image-variations one for images) or a Hugging Face repo id in the local cache")
	fs.Var(&f.images, imageFlag, "input image, PNG or JPEG (repeatable)")
	fs.StringVar(&f.embeddings, "image-embeddings", "", "CLIP image embeddings instead of images: a .safetensors file with an image_embeddings tensor (what --save-intermediates writes) or a single (rows, dim) tensor; skips the image encoder")
	fs.StringVar(&f.out, "o", "out.png", "output image, .png or .jpg; with several images a pattern with %d (1-based index), else \"-N\" is added before the extension")
}

// check validates the flags before any file is read.
func (f *imageFlags) check() error {
	if err := f.checkSettings(); err != nil {
		return err
	}
	if f.model == "" {
		return errors.New("no model: give -m DIR")
	}
	if f.model == "demo" {
		return errors.New("the built-in demo model has no image encoder; give an image-variations folder (kakaobrain/karlo-v1-alpha-image-variations)")
	}
	return nil
}

// imageSession is a loaded model with the run's reporter and seed.
type imageSession struct {
	f      *imageFlags
	p      *unclip.Pipeline
	rep    *reporter
	seed   uint64
	name   string
	device string
	t0     time.Time
	load   time.Duration
}

// open resolves and loads the model; want, when set, checks its
// model_index.json first.
func (f *imageFlags) open(stdout, stderr io.Writer, want func(*unclip.Index) error) (*imageSession, error) {
	dir, err := resolveModel(f.model, f.revision, stderr)
	if err != nil {
		return nil, err
	}
	ix, err := unclip.ModelIndex(dir)
	if err != nil {
		return nil, err
	}
	if want != nil {
		if err := want(ix); err != nil {
			return nil, fmt.Errorf("%s: %w", f.model, err)
		}
	}
	seed, dev, dtype, err := f.seedAndDevice(stderr)
	if err != nil {
		return nil, err
	}
	s := &imageSession{f: f, rep: newReporter(stderr, stdout, f.quiet, f.asJSON), seed: seed, name: f.model, device: dev.Name(), t0: time.Now()}
	s.rep.info("seed %d", seed)
	if s.p, err = unclip.Load(dir, unclip.LoadOptions{Variant: f.variant, Device: dev, DType: dtype, Residency: f.mem.residency()}); err != nil {
		return nil, err
	}
	s.load = time.Since(s.t0)
	s.rep.info("loaded %s (%s) on %s in %s (%s)", f.model, s.p.Kind, dev.Name(), round(s.load), residencyNote(s.p))
	return s, nil
}

// request is the base request: steps, guidance, the seed's noise.
func (s *imageSession) request() unclip.Request {
	f := s.f
	return unclip.Request{ImagesPerPrompt: 1, PriorSteps: f.priorSteps, DecoderSteps: f.decSteps, SuperResSteps: f.srSteps,
		PriorGuidance: float32(f.priorGuidance), DecoderGuidance: float32(f.decGuide), Noise: unclip.NewTorchNoise(s.seed),
		Progress: s.rep.event, Warn: s.rep.warn}
}

// params is the common part of an image's "parameters" text.
func (s *imageSession) params() string {
	f := s.f
	p := fmt.Sprintf("Seed: %d, Decoder steps: %d, Super-res steps: %d, Decoder guidance: %g", s.seed, f.decSteps, f.srSteps, f.decGuide)
	if f.priorSteps != 0 {
		p += fmt.Sprintf(", Prior steps: %d, Prior guidance: %g", f.priorSteps, f.priorGuidance)
	}
	return p + fmt.Sprintf(", Model: %s, Device: %s, Precision: %s, Generator: unclip", s.name, s.device, f.precision)
}

// finish prints the result: the files, the seed, and with --json one
// result event.
func (s *imageSession) finish(stdout, stderr io.Writer, written []string, size int) error {
	elapsed := time.Since(s.t0)
	if s.f.asJSON {
		return json.NewEncoder(stdout).Encode(map[string]any{"event": "result", "files": written, "seed": s.seed, "model": s.name,
			"device": s.device, "size": size, "load_s": s.load.Seconds(), "total_s": elapsed.Seconds()})
	}
	if !s.f.quiet {
		fmt.Fprintf(stderr, "load %s; total %s\n", round(s.load), round(elapsed))
	}
	for _, o := range written {
		fmt.Fprintln(stdout, o)
	}
	fmt.Fprintf(stdout, "seed %d\n", s.seed)
	return nil
}

// readImages decodes the input images (before any model is loaded, so
// that a bad file fails at once).
func readImages(paths []string) ([]*clip.RGB, error) {
	var out []*clip.RGB
	for _, p := range paths {
		f, err := modelfile.Open(p, imageFileLimit)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", p, err)
		}
		img, err := clip.DecodeImage(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", p, err)
		}
		out = append(out, img)
	}
	return out, nil
}

var errNoImageEncoder = errors.New("a text-to-image model has no image encoder: images need the image-variations model " +
	"(kakaobrain/karlo-v1-alpha-image-variations), or give their embeddings with --image-embeddings")

// imageFileLimit bounds an input image file.
const imageFileLimit = 256 << 20

// readEmbeddings reads CLIP image embeddings from a safetensors file: the
// tensor image_embeddings, or the file's only tensor; (rows, dim) or
// (dim), any float type. It returns rows·dim float32 values.
func readEmbeddings(path string) (values []float32, rows, dim int, err error) {
	st, err := safetensors.Open(path)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("--image-embeddings: %w", err)
	}
	defer st.Close()
	info, ok := st.Get("image_embeddings")
	if !ok {
		keys := st.Keys()
		if len(keys) != 1 {
			return nil, 0, 0, fmt.Errorf("--image-embeddings %s: no tensor named image_embeddings, and %d tensors to choose from", path, len(keys))
		}
		info, _ = st.Get(keys[0])
	}
	t, err := nn.FromSafetensors(info)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("--image-embeddings %s: %w", path, err)
	}
	switch t.Rank() {
	case 1:
		rows, dim = 1, t.Dim(0)
	case 2:
		rows, dim = t.Dim(0), t.Dim(1)
	default:
		return nil, 0, 0, fmt.Errorf("--image-embeddings %s: tensor %q has shape %v, want (rows, dim) or (dim)", path, info.Name, t.Shape())
	}
	if !t.DType().IsFloat() {
		return nil, 0, 0, fmt.Errorf("--image-embeddings %s: tensor %q is %v, want a float type", path, info.Name, t.DType())
	}
	if rows == 0 || dim == 0 {
		return nil, 0, 0, fmt.Errorf("--image-embeddings %s: tensor %q is empty", path, info.Name)
	}
	v, err := t.Float32s()
	if err != nil {
		return nil, 0, 0, fmt.Errorf("--image-embeddings %s: %w", path, err)
	}
	return append([]float32(nil), v...), rows, dim, nil
}

// cutDiff removes "--diff FROM TO" (or -diff) from args: the flag takes two
// values, which the flag package cannot parse.
func cutDiff(args []string) (rest []string, from, to string, ok bool, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if a != "--diff" && a != "-diff" {
			continue
		}
		if i+2 >= len(args) {
			return nil, "", "", false, errors.New("--diff takes two captions: --diff FROM TO")
		}
		rest = append(append(rest, args[:i]...), args[i+3:]...)
		return rest, args[i+1], args[i+2], true, nil
	}
	return args, "", "", false, nil
}

// parseAmounts reads --amount θ[,θ...].
func parseAmounts(v string) ([]float32, error) {
	var out []float32
	for _, s := range splitList(v) {
		x, err := strconv.ParseFloat(s, 32)
		if err != nil || !finite(x) || x < -1 || x > 2 {
			return nil, fmt.Errorf("--amount %q: want numbers in [-1, 2] (0 is the plain variation, 1 the caption direction)", s)
		}
		out = append(out, float32(x))
	}
	if len(out) == 0 {
		return nil, errors.New("--amount: no value")
	}
	return out, nil
}

func runVary(args []string, stdout, stderr io.Writer) error {
	args, from, to, diff, err := cutDiff(args)
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("vary", flag.ContinueOnError)
	var f imageFlags
	f.register(fs, "i", false)
	amount := fs.String("amount", "0.25,0.5,0.75", "with --diff: the text-diff amounts θ (comma-separated), one image per θ")
	intermediates := fs.String("save-intermediates", "", "also write the image embeddings (the input of --image-embeddings) to this .safetensors file")
	fs.IntVar(&f.n, "n", 1, "variations per image")
	setUsage(fs, "unclip vary -m DIR -i IMAGE [-i IMAGE]... [-n N] [-o OUT.png] [--diff FROM TO --amount θ,...] [flags]")
	pos, err := parseFlags(fs, args, stderr)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("unexpected argument %q (images go after -i)", pos[0])
	}
	if err := f.check(); err != nil {
		return err
	}
	if (len(f.images) == 0) == (f.embeddings == "") {
		return errors.New("give the images to vary with -i IMAGE (repeatable), or their embeddings with --image-embeddings FILE (not both)")
	}
	if f.n < 1 || f.n > 1024 {
		return fmt.Errorf("-n must be in [1, 1024], got %d", f.n)
	}
	var amounts []float32
	if diff {
		if amounts, err = parseAmounts(*amount); err != nil {
			return err
		}
		if f.n != 1 {
			return errors.New("--diff makes one image per amount from one seed; it takes no -n")
		}
	}
	imgs, err := readImages(f.images)
	if err != nil {
		return err
	}
	var given []float32
	count := len(imgs)
	if f.embeddings != "" {
		if given, count, _, err = readEmbeddings(f.embeddings); err != nil {
			return err
		}
	}
	names := append([]string(nil), f.images...)
	for i := len(names); i < count; i++ {
		names = append(names, fmt.Sprintf("%s row %d", filepath.Base(f.embeddings), i))
	}
	total := count * f.n
	if diff {
		total = count * len(amounts)
	}
	if total > maxImages {
		return fmt.Errorf("%d images asked for; at most %d in one run", total, maxImages)
	}
	outs, err := planOutputs(f.out, total, f.force)
	if err != nil {
		return err
	}
	var inter outFile
	if *intermediates != "" {
		if inter, err = planFile(*intermediates, f.force); err != nil {
			return err
		}
	}
	s, err := f.open(stdout, stderr, func(ix *unclip.Index) error {
		if ix.Kind != unclip.ImageVariation && given == nil {
			return errNoImageEncoder
		}
		return nil
	})
	if err != nil {
		return err
	}
	ctx, end := cancellable()
	defer end()
	base := s.request()
	emb := given
	if emb == nil {
		if emb, err = s.p.EncodeImages(ctx, &base, imgs); err != nil {
			return err
		}
	}
	if inter.name != "" {
		if err := saveEmbeddings(inter, emb, count, s); err != nil {
			return err
		}
	}
	dim := len(emb) / count
	var written []string
	if !diff {
		s.p.OneShot = true // each model goes after its stage
		req := unclip.Variation(base, emb, count)
		req.ImagesPerPrompt = f.n
		res, err := generateBatch(s.p, req, nil)
		if err != nil {
			return err
		}
		written, err = writeImages(outs, unclip.ToUint8(res.Images), res.Size, func(i int) string {
			return fmt.Sprintf("Variation of %s\nImage: %d/%d, Variation: %d/%d, %s", names[i/f.n], i+1, total, i%f.n+1, f.n, s.params())
		})
		if err != nil {
			return withWritten(err, written)
		}
		return s.finish(stdout, stderr, written, res.Size)
	}
	caps, err := s.p.EncodeCaptions(ctx, &base, []string{from, to})
	if err != nil {
		return err
	}
	if len(caps) != 2*dim {
		return fmt.Errorf("the text encoder's embeddings (%d values) do not match the image embeddings (%d): is this an unCLIP model?", len(caps)/2, dim)
	}
	size := 0
	for i := 0; i < count; i++ {
		for k, th := range amounts {
			z, err := unclip.TextDiff(emb[i*dim:(i+1)*dim], caps[:dim], caps[dim:], th)
			if err != nil {
				return err
			}
			req := unclip.Variation(base, z, 1)
			req.Noise = unclip.NewTorchNoise(s.seed) // the same noise for every frame: they differ by θ alone
			res, err := generateBatch(s.p, req, written)
			if err != nil {
				return err
			}
			j := i*len(amounts) + k
			w, err := writeImages(outs[j:j+1], unclip.ToUint8(res.Images), res.Size, func(int) string {
				return fmt.Sprintf("Text diff of %s from %q to %q\nImage: %d/%d, Amount: %g, %s", names[i], from, to, j+1, total, th, s.params())
			})
			written = append(written, w...)
			if err != nil {
				return withWritten(err, written)
			}
			size = res.Size
		}
	}
	return s.finish(stdout, stderr, written, size)
}

// saveEmbeddings writes image embeddings as the --image-embeddings input.
func saveEmbeddings(o outFile, emb []float32, rows int, s *imageSession) error {
	b := make([]byte, 4*len(emb))
	for i, x := range emb {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	var buf bytes.Buffer
	t := safetensors.TensorInfo{Name: "image_embeddings", DType: safetensors.F32, Shape: []int{rows, len(emb) / rows}, Data: b}
	if err := safetensors.Encode(&buf, []safetensors.TensorInfo{t}, map[string]string{"generator": "unclip", "model": s.name}); err != nil {
		return fmt.Errorf("save intermediates: %w", err)
	}
	if err := o.write(buf.Bytes()); err != nil {
		return fmt.Errorf("save intermediates to %s: %w", o.name, err)
	}
	return nil
}

func runInterpolate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("interpolate", flag.ContinueOnError)
	var f imageFlags
	f.register(fs, "image", true)
	var prompts listFlag
	fs.Var(&prompts, "p", "prompt to interpolate from, then to (twice; a text-to-image model)")
	frames := fs.Int("frames", 5, "images from the first input to the second, both included")
	grid := fs.String("grid", "", "also write a contact sheet of every frame (left to right, top to bottom) to this PNG")
	setUsage(fs, "unclip interpolate -m DIR (--image A --image B | -p A -p B) [--frames N] [-o OUT-%d.png] [--grid SHEET.png] [flags]")
	pos, err := parseFlags(fs, args, stderr)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("unexpected argument %q", pos[0])
	}
	if err := f.check(); err != nil {
		return err
	}
	text := len(prompts) > 0
	switch {
	case text && (len(f.images) > 0 || f.embeddings != ""):
		return errors.New("interpolate between two images (--image A --image B) or two prompts (-p A -p B), not both")
	case text && len(prompts) != 2:
		return fmt.Errorf("give two prompts: -p FROM -p TO (got %d)", len(prompts))
	case !text && f.embeddings == "" && len(f.images) != 2:
		return fmt.Errorf("give two images: --image FROM --image TO (got %d), or two prompts with -p", len(f.images))
	case !text && f.embeddings != "" && len(f.images) > 0:
		return errors.New("give the two images or --image-embeddings, not both")
	case *frames < 2 || *frames > 1024:
		return fmt.Errorf("--frames must be in [2, 1024], got %d", *frames)
	}
	imgs, err := readImages(f.images)
	if err != nil {
		return err
	}
	var given []float32
	if f.embeddings != "" {
		var rows int
		if given, rows, _, err = readEmbeddings(f.embeddings); err != nil {
			return err
		}
		if rows != 2 {
			return fmt.Errorf("--image-embeddings %s holds %d rows; interpolation takes 2", f.embeddings, rows)
		}
	}
	outs, err := planOutputs(f.out, *frames, f.force)
	if err != nil {
		return err
	}
	var sheet outFile
	if *grid != "" {
		if sheet, err = planOutput(*grid, f.force); err != nil {
			return err
		}
		if sheet.format != formatPNG {
			return fmt.Errorf("--grid %s: the contact sheet is written as PNG", *grid)
		}
	}
	if !text {
		f.priorSteps, f.priorGuidance = 0, 0 // no prior runs
	}
	s, err := f.open(stdout, stderr, func(ix *unclip.Index) error {
		switch {
		case text && ix.Kind != unclip.TextToImage:
			return errors.New("interpolating prompts runs the prior: give the text-to-image model (kakaobrain/karlo-v1-alpha), not an image-variations one")
		case !text && given == nil && ix.Kind != unclip.ImageVariation:
			return errNoImageEncoder
		}
		return nil
	})
	if err != nil {
		return err
	}
	ctx, end := cancellable()
	defer end()
	req := s.request()
	var ends [2]string
	var ts []float32
	if text {
		ends = [2]string{prompts[0], prompts[1]}
		ti, err := s.p.EncodeTextInterpolation(ctx, &req, prompts[0], prompts[1], *frames)
		if err != nil {
			return err
		}
		if req.Text, err = s.p.TextState(ti, req.CFG()); err != nil {
			return err
		}
		ts = ti.T
	} else {
		ends = [2]string{"embedding row 0", "embedding row 1"}
		emb := given
		if emb == nil {
			ends = [2]string{f.images[0], f.images[1]}
			if emb, err = s.p.EncodeImages(ctx, &req, imgs); err != nil {
				return err
			}
		}
		d := len(emb) / 2
		rows, t, err := unclip.SlerpFrames(emb[:d], emb[d:], *frames)
		if err != nil {
			return err
		}
		ts = t
		req = unclip.ImageInterpolation(req, rows, *frames)
	}
	s.p.OneShot = true // the encoders are done with; each model goes after its stage
	res, err := generateBatch(s.p, req, nil)
	if err != nil {
		return err
	}
	pix := unclip.ToUint8(res.Images)
	kind := "images"
	if text {
		kind = "prompts"
	}
	written, err := writeImages(outs, pix, res.Size, func(i int) string {
		return fmt.Sprintf("Interpolation between %s %q and %q\nFrame: %d/%d, t: %g, %s", kind, ends[0], ends[1], i+1, *frames, ts[i], s.params())
	})
	if err != nil {
		return withWritten(err, written)
	}
	if sheet.name != "" {
		data, err := encodeSheet(pix, res.N, res.Size, fmt.Sprintf("Interpolation between %s %q and %q, %d frames, %s", kind, ends[0], ends[1], *frames, s.params()))
		if err == nil {
			err = sheet.write(data)
		}
		if err != nil {
			return withWritten(fmt.Errorf("--grid %s: %w", sheet.name, err), written)
		}
		written = append(written, sheet.name)
	}
	return s.finish(stdout, stderr, written, res.Size)
}

// sheetColumns is the contact sheet's width in frames: about square.
func sheetColumns(n int) int {
	c := int(math.Ceil(math.Sqrt(float64(n))))
	return max(c, 1)
}

// encodeSheet lays n size×size RGB images out on a grid (black where the
// last row is short) and encodes it as PNG with the parameters.
func encodeSheet(pix []uint8, n, size int, parameters string) ([]byte, error) {
	cols := sheetColumns(n)
	rows := (n + cols - 1) / cols
	w, h := cols*size, rows*size
	sheet := make([]uint8, 3*w*h)
	per := 3 * size * size
	for k := 0; k < n; k++ {
		x0, y0 := (k%cols)*size, (k/cols)*size
		for y := 0; y < size; y++ {
			copy(sheet[3*((y0+y)*w+x0):3*((y0+y)*w+x0+size)], pix[k*per+3*y*size:k*per+3*(y+1)*size])
		}
	}
	return encodePNGRect(sheet, w, h, parameters)
}
