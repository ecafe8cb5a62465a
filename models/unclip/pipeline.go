// Package unclip is the unCLIP text-to-image pipeline (diffusers'
// UnCLIPPipeline): model folder loading, prompt encoding, the prior,
// text_proj, decoder and super-resolution loops with classifier-free
// guidance, the noise source and progress reporting.
package unclip

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/unclip-go/unclip/models/clip"
	"github.com/unclip-go/unclip/models/modelfile"
	"github.com/unclip-go/unclip/models/prior"
	"github.com/unclip-go/unclip/models/scheduler"
	"github.com/unclip-go/unclip/models/textproj"
	"github.com/unclip-go/unclip/models/unet"
	"github.com/unclip-go/unclip/nn"
	"github.com/unclip-go/unclip/tensor"
)

// Component names: the folders of a diffusers unCLIP model.
const (
	Tokenizer         = "tokenizer"
	TextEncoder       = "text_encoder"
	Prior             = "prior"
	TextProj          = "text_proj"
	Decoder           = "decoder"
	SuperResFirst     = "super_res_first"
	SuperResLast      = "super_res_last"
	PriorScheduler    = "prior_scheduler"
	DecoderScheduler  = "decoder_scheduler"
	SuperResScheduler = "super_res_scheduler"
	ImageEncoder      = "image_encoder"
	FeatureExtractor  = "feature_extractor"
)

// Kind is the pipeline class a model folder's model_index.json names.
type Kind string

const (
	// TextToImage is diffusers' UnCLIPPipeline (kakaobrain/karlo-v1-alpha).
	TextToImage Kind = "UnCLIPPipeline"
	// ImageVariation is UnCLIPImageVariationPipeline
	// (kakaobrain/karlo-v1-alpha-image-variations): no prior, an image
	// encoder and its feature extractor instead.
	ImageVariation Kind = "UnCLIPImageVariationPipeline"
)

// Component is one folder of a model with the class model_index.json must
// name for it.
type Component struct{ Name, Class string }

// Components lists every component of the text-to-image pipeline.
var Components = []Component{
	{Tokenizer, "CLIPTokenizer"}, {TextEncoder, "CLIPTextModelWithProjection"}, {Prior, "PriorTransformer"},
	{TextProj, "UnCLIPTextProjModel"}, {Decoder, "UNet2DConditionModel"}, {SuperResFirst, "UNet2DModel"},
	{SuperResLast, "UNet2DModel"}, {PriorScheduler, "UnCLIPScheduler"}, {DecoderScheduler, "UnCLIPScheduler"},
	{SuperResScheduler, "UnCLIPScheduler"},
}

// VariationComponents lists every component of the image-variation
// pipeline.
var VariationComponents = []Component{
	{Tokenizer, "CLIPTokenizer"}, {TextEncoder, "CLIPTextModelWithProjection"}, {ImageEncoder, "CLIPVisionModelWithProjection"},
	{FeatureExtractor, "CLIPImageProcessor"}, {TextProj, "UnCLIPTextProjModel"}, {Decoder, "UNet2DConditionModel"},
	{SuperResFirst, "UNet2DModel"}, {SuperResLast, "UNet2DModel"}, {DecoderScheduler, "UnCLIPScheduler"},
	{SuperResScheduler, "UnCLIPScheduler"},
}

// ComponentsOf lists the components of a pipeline kind.
func ComponentsOf(k Kind) []Component {
	if k == ImageVariation {
		return VariationComponents
	}
	return Components
}

// Index is a checked model_index.json.
type Index struct {
	Kind Kind
	// Classes maps each component to its [library, class] pair.
	Classes map[string][2]string
}

// Has reports whether the index lists a component.
func (ix *Index) Has(name string) bool { _, ok := ix.Classes[name]; return ok }

// ModelIndex reads and checks dir/model_index.json: it must describe an
// UnCLIPPipeline or an UnCLIPImageVariationPipeline whose components have
// the expected classes.
func ModelIndex(dir string) (*Index, error) {
	data, err := modelfile.Read(filepath.Join(dir, "model_index.json"), modelfile.ConfigLimit)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s is not a diffusers model folder (no model_index.json)", dir)
		}
		return nil, err
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%s/model_index.json: %w", dir, err)
	}
	var class string
	_ = json.Unmarshal(raw["_class_name"], &class)
	kind := Kind(class)
	if kind != TextToImage && kind != ImageVariation {
		return nil, fmt.Errorf("%s: model_index.json describes %q, not an UnCLIPPipeline or UnCLIPImageVariationPipeline", dir, class)
	}
	ix := &Index{Kind: kind, Classes: map[string][2]string{}}
	for _, c := range ComponentsOf(kind) {
		var pair [2]string
		if err := json.Unmarshal(raw[c.Name], &pair); err != nil {
			return nil, fmt.Errorf("%s/model_index.json: component %q missing or malformed", dir, c.Name)
		}
		if pair[1] != c.Class && !(c.Name == Tokenizer && pair[1] == "CLIPTokenizerFast") {
			return nil, fmt.Errorf("%s/model_index.json: component %q is %q, want %q", dir, c.Name, pair[1], c.Class)
		}
		ix.Classes[c.Name] = pair
	}
	return ix, nil
}

// Pipeline holds every loaded component. Components not asked for at load
// time are nil.
type Pipeline struct {
	Dir    string
	Device tensor.Backend
	// Offload keeps only the running stage's weights on the device: each
	// stage uploads its models' weights when it starts and releases them
	// when it ends (see Residency).
	Offload bool
	// OneShot releases every model — device and host memory — once its
	// last stage has finished: for a process that generates once. The
	// pipeline cannot generate again.
	OneShot bool
	// Kind is the pipeline class of the folder (model_index.json).
	Kind      Kind
	Tokenizer *clip.Tokenizer
	Text      *clip.TextModel
	// Image and Features are the image-variation folder's image encoder
	// and its CLIPImageProcessor.
	Image    *clip.VisionModel
	Features *clip.ImageProcessor
	Prior    *prior.Model
	TextProj *textproj.Model
	Decoder  *unet.Model
	SRFirst  *unet.Model
	SRLast   *unet.Model
	PriorSch *scheduler.Scheduler
	DecSch   *scheduler.Scheduler
	SRSch    *scheduler.Scheduler
}

// LoadOptions select what Load reads.
type LoadOptions struct {
	// Variant picks weight files such as diffusion_pytorch_model.fp16.safetensors ("fp16").
	Variant string
	// Device receives the weights (nil: the CPU).
	Device tensor.Backend
	// Only lists the components to load; empty loads every component
	// model_index.json lists. A listed component that the index does not
	// name is loaded from its folder when there is one (the variation
	// fixture's extra prior/).
	Only []string
	// headersOnly maps the weight files instead of reading them (Check).
	headersOnly bool
	// DType is the weight and activation type of the networks: F32, F16 or
	// BF16; Invalid keeps the checkpoint's weight type and computes in F32.
	DType tensor.DType
	// Residency says which weights stay on the device (AutoResidency by
	// default).
	Residency Residency
}

// Load reads a diffusers unCLIP folder.
func Load(dir string, opt LoadOptions) (*Pipeline, error) {
	ix, err := ModelIndex(dir)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, c := range opt.Only {
		want[c] = true
	}
	need := func(c string) bool { return want[c] || (len(want) == 0 && ix.Has(c)) }
	p := &Pipeline{Dir: dir, Device: opt.Device, Kind: ix.Kind}
	if p.Device == nil {
		p.Device = tensor.CPU()
	}
	comp := func(c string) (string, error) {
		d := filepath.Join(dir, c)
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			return "", fmt.Errorf("%s: component folder %q is missing", dir, c)
		}
		return d, nil
	}
	load := func(c string, f func(d string) error) {
		if err != nil || !need(c) {
			return
		}
		d, e := comp(c)
		if e != nil {
			err = e
			return
		}
		err = f(d)
	}
	dev := nn.Target{Device: p.Device, DType: opt.DType, Offload: opt.Residency != Resident, HeadersOnly: opt.headersOnly}
	load(Tokenizer, func(d string) (e error) { p.Tokenizer, e = clip.LoadTokenizer(d); return })
	load(TextEncoder, func(d string) (e error) { p.Text, e = clip.LoadTextModel(d, opt.Variant, dev); return })
	load(ImageEncoder, func(d string) (e error) { p.Image, e = clip.LoadVisionModel(d, opt.Variant, dev); return })
	load(FeatureExtractor, func(d string) (e error) { p.Features, e = clip.LoadImageProcessor(d); return })
	load(Prior, func(d string) (e error) { p.Prior, e = prior.Load(d, opt.Variant, dev); return })
	load(TextProj, func(d string) (e error) { p.TextProj, e = textproj.Load(d, opt.Variant, dev); return })
	load(Decoder, func(d string) (e error) { p.Decoder, e = unet.Load(d, opt.Variant, dev); return })
	load(SuperResFirst, func(d string) (e error) { p.SRFirst, e = unet.Load(d, opt.Variant, dev); return })
	load(SuperResLast, func(d string) (e error) { p.SRLast, e = unet.Load(d, opt.Variant, dev); return })
	sch := func(d string) (*scheduler.Scheduler, error) {
		cfg, e := scheduler.LoadConfig(filepath.Join(d, "scheduler_config.json"))
		if e != nil {
			return nil, e
		}
		return scheduler.New(cfg)
	}
	load(PriorScheduler, func(d string) (e error) { p.PriorSch, e = sch(d); return })
	load(DecoderScheduler, func(d string) (e error) { p.DecSch, e = sch(d); return })
	load(SuperResScheduler, func(d string) (e error) { p.SRSch, e = sch(d); return })
	if err != nil {
		return nil, err
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	if err := p.settleResidency(opt.Residency); err != nil {
		return nil, err
	}
	return p, nil
}

// check verifies that loaded components fit together.
func (p *Pipeline) check() error {
	if p.Text != nil && p.Prior != nil {
		tc, pc := p.Text.Config, p.Prior.Config
		if tc.ProjectionDim != pc.ProjDim() || tc.HiddenSize != pc.EmbeddingDim {
			return fmt.Errorf("text encoder (projection %d, hidden %d) does not fit the prior (embedding_proj_dim %d, embedding_dim %d)",
				tc.ProjectionDim, tc.HiddenSize, pc.ProjDim(), pc.EmbeddingDim)
		}
		if tc.MaxPositionEmbeddings != pc.NumEmbeddings {
			return fmt.Errorf("text encoder takes %d tokens but the prior expects num_embeddings %d", tc.MaxPositionEmbeddings, pc.NumEmbeddings)
		}
	}
	if p.Image != nil && p.TextProj != nil && p.Image.Config.ProjectionDim != p.TextProj.Config.ClipEmbeddingsDim {
		return fmt.Errorf("image encoder projection %d does not fit text_proj clip_embeddings_dim %d", p.Image.Config.ProjectionDim, p.TextProj.Config.ClipEmbeddingsDim)
	}
	if p.Image != nil && p.Features != nil && p.Features.DoCenterCrop && (p.Features.CropW != p.Image.Config.ImageSize || p.Features.CropH != p.Image.Config.ImageSize) {
		return fmt.Errorf("feature extractor crops %d×%d but the image encoder takes %d×%d", p.Features.CropW, p.Features.CropH, p.Image.Config.ImageSize, p.Image.Config.ImageSize)
	}
	if p.Prior != nil && p.TextProj != nil && p.Prior.Config.ClipDim() != p.TextProj.Config.ClipEmbeddingsDim {
		return fmt.Errorf("prior output %d does not fit text_proj clip_embeddings_dim %d", p.Prior.Config.ClipDim(), p.TextProj.Config.ClipEmbeddingsDim)
	}
	if p.TextProj != nil && p.Decoder != nil {
		d := p.Decoder.Config
		if d.CrossAttentionDim == nil || d.CrossAttentionDim.At(0) != p.TextProj.Config.CrossAttentionDim || d.TimeEmbedDim() != p.TextProj.Config.TimeEmbedDim {
			return fmt.Errorf("text_proj (cross %d, time %d) does not fit the decoder (cross_attention_dim %v, time embedding %d)",
				p.TextProj.Config.CrossAttentionDim, p.TextProj.Config.TimeEmbedDim, d.CrossAttentionDim, d.TimeEmbedDim())
		}
	}
	if p.Decoder != nil {
		d := p.Decoder.Config
		if d.OutChannels != 2*d.InChannels && d.OutChannels != d.InChannels {
			return fmt.Errorf("decoder out_channels %d is neither in_channels %d nor twice it", d.OutChannels, d.InChannels)
		}
		if len(d.SampleSize) == 0 {
			return fmt.Errorf("decoder config has no sample_size")
		}
	}
	for _, u := range []struct {
		name string
		m    *unet.Model
	}{{"decoder", p.Decoder}, {"super_res_first", p.SRFirst}, {"super_res_last", p.SRLast}} {
		if u.m == nil {
			continue
		}
		c := u.m.Config
		f := 1 << (len(c.BlockOutChannels) - 1)
		for _, v := range c.SampleSize {
			if v%f != 0 {
				return fmt.Errorf("%s: sample_size %d is not a multiple of %d (its %d resolution levels halve it %d times)", u.name, v, f, len(c.BlockOutChannels), len(c.BlockOutChannels)-1)
			}
		}
	}
	if p.SRFirst != nil {
		s := p.SRFirst.Config
		if len(s.SampleSize) == 0 || s.InChannels%2 != 0 {
			return fmt.Errorf("super_res_first needs a sample_size and an even in_channels (got %v, %d)", s.SampleSize, s.InChannels)
		}
		if p.Decoder != nil && s.InChannels/2 != p.Decoder.Config.InChannels {
			return fmt.Errorf("super_res_first takes %d image channels, the decoder makes %d", s.InChannels/2, p.Decoder.Config.InChannels)
		}
		if p.SRLast != nil && (p.SRLast.Config.InChannels != s.InChannels || p.SRLast.Config.OutChannels != s.OutChannels) {
			return fmt.Errorf("super_res_last (in %d, out %d) differs from super_res_first (in %d, out %d)",
				p.SRLast.Config.InChannels, p.SRLast.Config.OutChannels, s.InChannels, s.OutChannels)
		}
	}
	return nil
}

// Event reports progress: one per denoising step, and one when a stage ends
// (Step == Total, Done set).
type Event struct {
	Stage   string // "text", "prior", "decoder", "upscale", "super_res"
	Step    int    // 1-based
	Total   int
	Elapsed time.Duration // since the stage began
	Done    bool
	// Plan, on a denoising stage's first event (Step 0), is its memory
	// plan: sent after the step graph is captured, before any step runs.
	Plan *StageStats
}

// Request is one generation.
type Request struct {
	Prompts         []string
	ImagesPerPrompt int // 0 means 1
	PriorSteps      int
	DecoderSteps    int
	SuperResSteps   int
	PriorGuidance   float32
	DecoderGuidance float32
	// Noise supplies every random draw (see Noise).
	Noise Noise
	// Progress, when set, receives progress events.
	Progress func(Event)
	// Warn, when set, receives warnings (such as truncated prompts).
	Warn func(string)
	// Eager runs every denoising step op by op instead of replaying a
	// captured step graph (planned execution, the default).
	Eager bool
	// Decoded, when set, receives the decoder's images (N, 3, s, s in
	// [−1, 1], row major) as soon as the decoder has finished, before
	// super-resolution: for a preview.
	Decoded func(small []float32, n, size int)
	// DryRun captures and plans every stage's step graph and reports the
	// plans (Event.Plan, StageStats) without running any step; the images
	// are meaningless.
	DryRun bool
	// ImageEmbeddings, when set, are the CLIP image embeddings the decoder
	// is conditioned on, one row of EmbeddingDim values per prompt (each
	// repeated ImagesPerPrompt times, as repeat_interleave): the prior does
	// not run and no prior noise is drawn (UnCLIPImageVariationPipeline's
	// image_embeddings). Classifier-free guidance then depends on the
	// decoder scale alone.
	ImageEmbeddings []float32
	// SharedDecoderLatent draws the decoder's starting latent once, for
	// one image, and repeats it for every image (the community image
	// interpolation pipeline), instead of one per image.
	SharedDecoderLatent bool
	// Text, when set, is the encoded text to condition on instead of
	// encoding Prompts (the text interpolation's slerped prompts).
	Text *TextState
}

// DefaultRequest has diffusers' defaults: 25/25/7 steps, guidance 4 and 8.
func DefaultRequest() Request {
	return Request{ImagesPerPrompt: 1, PriorSteps: 25, DecoderSteps: 25, SuperResSteps: 7, PriorGuidance: 4, DecoderGuidance: 8}
}

// Result holds the outputs of a generation (all float32, row major).
type Result struct {
	// Images is (N, S, S, 3) in [0, 1]: the final images, NHWC.
	Images  []float32
	N, Size int
	// ImageEmbeddings (N, clip dim) is the prior's post-processed output.
	ImageEmbeddings []float32
	// ImageSmall (N, 3, s, s) is the decoder output clamped to [−1, 1].
	ImageSmall []float32
	SmallSize  int
	// Timings per stage.
	Timings []StageTiming
}

// StageTiming is the wall time of one stage, with its memory and
// execution statistics (denoising stages).
type StageTiming struct {
	Stage string
	Steps int
	Time  time.Duration
	Stats StageStats
}

// TextState is the encoded prompts, ready for the prior and the decoder,
// with unconditional rows first when guidance is on.
type TextState struct {
	CFG          bool
	Batch        int            // B = prompts × images per prompt
	PromptEmbeds *tensor.Tensor // (R, proj dim), R = 2B with CFG else B
	Hidden       *tensor.Tensor // (R, L, hidden)
	Mask         []bool         // R·L
	L            int
}

// rows is the networks' batch: B, or 2B with guidance.
func (ts *TextState) rows() int {
	if ts.CFG {
		return 2 * ts.Batch
	}
	return ts.Batch
}

// networkInput is the latent as the networks take it: twice over with
// guidance (unconditional rows first).
func (ts *TextState) networkInput(lat *tensor.Tensor) *tensor.Tensor {
	if ts.CFG {
		return tensor.Concat(0, lat, lat)
	}
	return lat
}

// Validate checks a request before any work starts.
func (r *Request) Validate() error {
	if len(r.Prompts) == 0 && r.Text == nil {
		return fmt.Errorf("no prompt")
	}
	if r.ImagesPerPrompt == 0 {
		r.ImagesPerPrompt = 1
	}
	switch {
	case r.ImagesPerPrompt < 0:
		return fmt.Errorf("images per prompt must be positive, got %d", r.ImagesPerPrompt)
	case (r.PriorSteps < 2 && r.ImageEmbeddings == nil) || r.DecoderSteps < 2 || r.SuperResSteps < 2:
		return fmt.Errorf("every stage needs at least 2 steps (got prior %d, decoder %d, super-res %d): the UnCLIP scheduler divides by steps − 1",
			r.PriorSteps, r.DecoderSteps, r.SuperResSteps)
	case !finite32(r.PriorGuidance) || !finite32(r.DecoderGuidance):
		return fmt.Errorf("guidance scales must be finite numbers (got prior %g, decoder %g)", r.PriorGuidance, r.DecoderGuidance)
	case r.PriorGuidance < 0 || r.DecoderGuidance < 0:
		return fmt.Errorf("guidance scales must not be negative (got prior %g, decoder %g)", r.PriorGuidance, r.DecoderGuidance)
	case r.Noise == nil:
		return fmt.Errorf("no noise source")
	case r.Text != nil && r.ImagesPerPrompt != 1:
		return fmt.Errorf("images per prompt must be 1 with pre-encoded text (got %d)", r.ImagesPerPrompt)
	case r.ImageEmbeddings != nil && r.Text != nil && len(r.ImageEmbeddings)%r.Text.Batch != 0,
		r.ImageEmbeddings != nil && r.Text == nil && len(r.ImageEmbeddings)%len(r.Prompts) != 0:
		return fmt.Errorf("%d image-embedding values are not one row per prompt", len(r.ImageEmbeddings))
	}
	for _, v := range r.ImageEmbeddings {
		if !finite32(v) {
			return fmt.Errorf("image embeddings hold a non-finite value (%g)", v)
		}
	}
	return nil
}

func finite32(x float32) bool { return !math.IsNaN(float64(x)) && !math.IsInf(float64(x), 0) }

// CFG reports whether classifier-free guidance is on: as in diffusers, one
// flag for both stages, set when either scale exceeds 1 (the decoder's
// alone when given image embeddings skip the prior).
func (r *Request) CFG() bool {
	return (r.PriorGuidance > 1 && r.ImageEmbeddings == nil) || r.DecoderGuidance > 1
}

func (r *Request) progress(e Event) {
	if r.Progress != nil {
		r.Progress(e)
	}
}

// Generate runs the whole pipeline. ctx is checked between steps; a
// cancelled run returns ctx.Err().
func (p *Pipeline) Generate(ctx context.Context, req Request) (*Result, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	runPrior := req.ImageEmbeddings == nil
	if p.TextProj == nil || p.Decoder == nil || p.SRFirst == nil || p.SRLast == nil || p.DecSch == nil || p.SRSch == nil ||
		(req.Text == nil && (p.Tokenizer == nil || p.Text == nil)) {
		return nil, fmt.Errorf("pipeline: not every component is loaded")
	}
	if runPrior && (p.Prior == nil || p.PriorSch == nil) {
		if p.Kind == ImageVariation {
			return nil, fmt.Errorf("%s is an image-variations model: it has no prior to turn text into an image embedding; "+
				"give it an image (unclip vary) or image embeddings (--image-embeddings)", p.Dir)
		}
		return nil, fmt.Errorf("pipeline: not every component is loaded")
	}
	// Step counts the schedulers cannot space fail before any work.
	for _, c := range []struct {
		stage string
		sch   *scheduler.Scheduler
		steps int
	}{{"prior", p.PriorSch, req.PriorSteps}, {"decoder", p.DecSch, req.DecoderSteps}, {"super-res", p.SRSch, req.SuperResSteps}} {
		if c.stage == "prior" && !runPrior {
			continue
		}
		if _, err := c.sch.Timesteps(c.steps); err != nil {
			return nil, fmt.Errorf("%s steps: %w", c.stage, err)
		}
	}
	res := &Result{}
	timed := func(stage string, steps int, f func() error) error {
		t0 := time.Now()
		if err := f(); err != nil {
			return err
		}
		res.Timings = append(res.Timings, StageTiming{Stage: stage, Steps: steps, Time: time.Since(t0)})
		return nil
	}
	ts := req.Text
	if ts == nil {
		if err := timed("text", 0, func() (err error) { ts, err = p.EncodePrompts(ctx, &req); return }); err != nil {
			return nil, err
		}
	}
	var emb *tensor.Tensor
	var stats StageStats
	var err error
	if runPrior {
		if err := timed("prior", req.PriorSteps, func() (err error) { emb, stats, err = p.RunPrior(ctx, &req, ts); return }); err != nil {
			return nil, err
		}
		res.Timings[len(res.Timings)-1].Stats = stats
		if res.ImageEmbeddings, err = emb.Float32s(); err != nil {
			return nil, err
		}
	} else {
		if res.ImageEmbeddings, err = p.givenEmbeddings(&req, ts.Batch); err != nil {
			return nil, err
		}
		emb = tensor.FromFloat32(append([]float32(nil), res.ImageEmbeddings...), ts.Batch, len(res.ImageEmbeddings)/ts.Batch).To(p.Device)
	}
	var small *tensor.Tensor
	if err := timed("decoder", req.DecoderSteps, func() (err error) { small, stats, err = p.RunDecoder(ctx, &req, ts, emb); return }); err != nil {
		return nil, err
	}
	res.Timings[len(res.Timings)-1].Stats = stats
	if res.ImageSmall, err = small.Float32s(); err != nil {
		return nil, err
	}
	if req.Decoded != nil && !req.DryRun {
		req.Decoded(res.ImageSmall, small.Dim(0), small.Dim(2))
	}
	// The text and the embeddings are done with: their device memory goes
	// now, not when the collector finds them.
	freeAll(emb, ts.PromptEmbeds, ts.Hidden)
	res.SmallSize = small.Dim(2)
	var imgT *tensor.Tensor
	if err := timed("super_res", req.SuperResSteps, func() (err error) { imgT, stats, err = p.RunSuperRes(ctx, &req, small); return }); err != nil {
		return nil, err
	}
	res.Timings[len(res.Timings)-1].Stats = stats
	img, err := imgT.Float32s()
	if err != nil {
		return nil, err
	}
	freeAll(small, imgT)
	res.N = ts.Batch
	res.Size = imgT.Dim(2)
	res.Images = ToNHWC(img, res.N, 3, res.Size)
	return res, nil
}

// givenEmbeddings expands the request's image embeddings (one row per
// prompt) to the batch's b rows, repeating each ImagesPerPrompt times.
func (p *Pipeline) givenEmbeddings(req *Request, b int) ([]float32, error) {
	e := req.ImageEmbeddings
	rows := len(req.Prompts)
	if req.Text != nil {
		rows = req.Text.Batch
	}
	d := len(e) / rows
	if want := p.TextProj.Config.ClipEmbeddingsDim; d != want {
		return nil, fmt.Errorf("image embeddings of %d values per row, the decoder's text_proj takes %d", d, want)
	}
	n := b / rows
	out := make([]float32, 0, b*d)
	for r := 0; r < rows; r++ {
		for j := 0; j < n; j++ {
			out = append(out, e[r*d:(r+1)*d]...)
		}
	}
	return out, nil
}

// EncodePrompts tokenizes and encodes the prompts (and the empty prompt for
// guidance), repeating each prompt's rows ImagesPerPrompt times.
func (p *Pipeline) EncodePrompts(ctx context.Context, req *Request) (*TextState, error) {
	t0 := time.Now()
	if err := p.Acquire("text"); err != nil {
		return nil, err
	}
	defer p.Release("text")
	n := max(req.ImagesPerPrompt, 1)
	ids, masks, err := p.tokenize(req, "prompt", req.Prompts)
	if err != nil {
		return nil, err
	}
	out, err := p.Text.Forward(ids)
	if err != nil {
		return nil, err
	}
	l := len(ids[0])
	rep := func(t *tensor.Tensor) *tensor.Tensor { // repeat_interleave(n, dim 0)
		if n == 1 {
			return t
		}
		var parts []*tensor.Tensor
		for i := 0; i < t.Dim(0); i++ {
			row := t.Narrow(0, i, 1)
			for j := 0; j < n; j++ {
				parts = append(parts, row)
			}
		}
		return tensor.Concat(0, parts...)
	}
	st := &TextState{CFG: req.CFG(), Batch: len(req.Prompts) * n, L: l}
	embeds, hidden := rep(out.TextEmbeds), rep(out.LastHidden)
	var mask []bool
	for _, m := range masks {
		for j := 0; j < n; j++ {
			for _, v := range m {
				mask = append(mask, v != 0)
			}
		}
	}
	if st.CFG {
		if embeds, hidden, mask, err = p.withUnconditional(st.Batch, embeds, hidden, mask); err != nil {
			return nil, err
		}
	}
	st.PromptEmbeds, st.Hidden, st.Mask = embeds, hidden, mask
	if err := hidden.Err(); err != nil {
		return nil, err
	}
	req.progress(Event{Stage: "text", Step: 1, Total: 1, Elapsed: time.Since(t0), Done: true})
	return st, ctx.Err()
}

// tokenize encodes texts to token ids and attention masks, warning
// through req.Warn about each one truncated to CLIP's length (what names
// them in the messages: "prompt", "text").
func (p *Pipeline) tokenize(req *Request, what string, texts []string) (ids, masks [][]int64, err error) {
	for _, t := range texts {
		enc, err := p.Tokenizer.Encode(t)
		if err != nil {
			return nil, nil, fmt.Errorf("%s %q: %w", what, t, err)
		}
		if enc.Truncated && req.Warn != nil {
			req.Warn(fmt.Sprintf("%s %q was truncated to %d tokens (CLIP takes at most %d)", what, shorten(t), p.Tokenizer.MaxLength()-2, p.Tokenizer.MaxLength()))
		}
		ids, masks = append(ids, enc.IDs), append(masks, enc.Mask)
	}
	return ids, masks, nil
}

// withUnconditional puts b rows of the empty prompt's encoding (encoded
// once, without a mask) in front of the conditional rows, as the
// unconditional half of classifier-free guidance.
func (p *Pipeline) withUnconditional(b int, embeds, hidden *tensor.Tensor, mask []bool) (*tensor.Tensor, *tensor.Tensor, []bool, error) {
	enc, err := p.Tokenizer.Encode("")
	if err != nil {
		return nil, nil, nil, err
	}
	u, err := p.Text.Forward([][]int64{enc.IDs})
	if err != nil {
		return nil, nil, nil, err
	}
	l := len(enc.IDs)
	ue := u.TextEmbeds.Expand(b, u.TextEmbeds.Dim(1))
	uh := u.LastHidden.Expand(b, l, u.LastHidden.Dim(2))
	embeds = tensor.Concat(0, ue.Contiguous(), embeds)
	hidden = tensor.Concat(0, uh.Contiguous(), hidden)
	um := make([]bool, 0, b*l+len(mask))
	for i := 0; i < b; i++ {
		for _, v := range enc.Mask {
			um = append(um, v != 0)
		}
	}
	return embeds, hidden, append(um, mask...), nil
}

func shorten(s string) string {
	r := []rune(s)
	if len(r) > 40 {
		return string(r[:37]) + "..."
	}
	return s
}

// guide returns u + g·(c − u), the classifier-free guidance formula, in
// torch's order of operations.
func guide(u, c *tensor.Tensor, g float32) *tensor.Tensor {
	return tensor.Add(u, tensor.Scale(tensor.Sub(c, u), g))
}

// noise draws one standard-normal tensor of the given shape on the device.
func (p *Pipeline) noise(req *Request, shape []int) (*tensor.Tensor, error) {
	v, err := req.Noise.Randn(shape)
	if err != nil {
		return nil, err
	}
	return tensor.FromFloat32(append([]float32(nil), v...), shape...).To(p.Device), nil
}

// sharedNoise draws one image's worth of noise (1, shape[1:]...) and
// repeats it for each of shape[0] images.
func (p *Pipeline) sharedNoise(req *Request, shape []int) (*tensor.Tensor, error) {
	one := append([]int{1}, shape[1:]...)
	v, err := req.Noise.Randn(one)
	if err != nil {
		return nil, err
	}
	out := make([]float32, 0, shape[0]*len(v))
	for range shape[0] {
		out = append(out, v...)
	}
	return tensor.FromFloat32(out, shape...).To(p.Device), nil
}

// settle waits for a step's work (so progress is real on devices that queue
// work) and returns any error the step met.
func (p *Pipeline) settle(t *tensor.Tensor) error {
	if err := t.Err(); err != nil {
		return err
	}
	return p.Device.Sync()
}

// RunPrior runs the prior loop and returns the post-processed image
// embeddings (B, clip dim).
func (p *Pipeline) RunPrior(ctx context.Context, req *Request, ts *TextState) (*tensor.Tensor, StageStats, error) {
	if err := p.Acquire("prior"); err != nil {
		return nil, StageStats{}, err
	}
	defer p.Release("prior")
	cfg := p.Prior.Config
	b, d := ts.Batch, cfg.EmbeddingDim
	sched, err := p.PriorSch.Schedule(req.PriorSteps)
	if err != nil {
		return nil, StageStats{}, err
	}
	lat, err := p.noise(req, []int{b, d})
	if err != nil {
		return nil, StageStats{}, err
	}
	mode := p.PriorSch.Params(sched[0])
	step := func(lat, tsin, z, params *tensor.Tensor) (*tensor.Tensor, error) {
		x := ts.networkInput(lat)
		pred, err := p.Prior.ForwardSinusoid(x, tsin, ts.PromptEmbeds, ts.Hidden, ts.Mask)
		if err != nil {
			return nil, err
		}
		if ts.CFG {
			pred = guide(pred.Narrow(0, 0, b), pred.Narrow(0, b, b), req.PriorGuidance)
		}
		return tensor.SchedulerStepDyn(pred, lat, z, params, mode), nil
	}
	out, stats, err := p.runStage(ctx, req, &stage{name: "prior", sch: p.PriorSch, steps: sched, lat: lat,
		sinusoid: func(t int) *tensor.Tensor { return p.Prior.Sinusoid(t, ts.rows()) },
		nets:     []stepFunc{step}, net: func(int) int { return 0 }, post: p.Prior.PostProcess})
	freeAll(lat)
	return out, stats, err
}

// DecoderMask is the decoder's context mask: the text mask with the
// text_proj's extra tokens (always attendable) in front.
func (p *Pipeline) DecoderMask(ts *TextState) []bool {
	k := p.TextProj.Config.ClipExtraContextTokens
	rows := len(ts.Mask) / ts.L
	out := make([]bool, 0, rows*(ts.L+k))
	for r := 0; r < rows; r++ {
		for j := 0; j < k; j++ {
			out = append(out, true)
		}
		out = append(out, ts.Mask[r*ts.L:(r+1)*ts.L]...)
	}
	return out
}

func sampleSize(c unet.Config) (int, int) {
	h := c.SampleSize.At(0)
	if len(c.SampleSize) > 1 {
		return h, c.SampleSize[1]
	}
	return h, h
}

// RunDecoder runs text_proj and the decoder loop on the image embeddings
// and returns the clamped small images (B, C, s, s).
func (p *Pipeline) RunDecoder(ctx context.Context, req *Request, ts *TextState, emb *tensor.Tensor) (*tensor.Tensor, StageStats, error) {
	if err := p.Acquire("decoder"); err != nil {
		return nil, StageStats{}, err
	}
	defer p.Release("decoder")
	// One captured run: text_proj's intermediates go as soon as it is done.
	proj, err := tensor.RunOnce("text_proj", p.Device, []*tensor.Tensor{emb, ts.PromptEmbeds, ts.Hidden},
		func(in []*tensor.Tensor) ([]*tensor.Tensor, error) {
			c, t, err := p.TextProj.Forward(in[0], in[1], in[2], ts.CFG)
			return []*tensor.Tensor{c, t}, err
		})
	if err != nil {
		return nil, StageStats{}, err
	}
	context_, timeEmb := proj[0], proj[1]
	mask := p.DecoderMask(ts)
	dc := p.Decoder.Config
	b, ch := ts.Batch, dc.InChannels
	s, sw := sampleSize(dc)
	sched, err := p.DecSch.Schedule(req.DecoderSteps)
	if err != nil {
		return nil, StageStats{}, err
	}
	shape := []int{b, ch, s, sw}
	var lat *tensor.Tensor
	if req.SharedDecoderLatent {
		lat, err = p.sharedNoise(req, shape)
	} else {
		lat, err = p.noise(req, shape)
	}
	if err != nil {
		return nil, StageStats{}, err
	}
	mode := p.DecSch.Params(sched[0])
	step := func(lat, tsin, z, params *tensor.Tensor) (*tensor.Tensor, error) {
		x := ts.networkInput(lat)
		out, err := p.Decoder.Forward(x, unet.Inputs{TimeSinusoid: tsin, Context: context_, ContextMask: mask, ClassLabels: timeEmb})
		if err != nil {
			return nil, err
		}
		if ts.CFG {
			// guidance on the noise channels; the variance channels come from the text half
			u, t := out.Narrow(0, 0, b), out.Narrow(0, b, b)
			eps := guide(u.Narrow(1, 0, ch), t.Narrow(1, 0, ch), req.DecoderGuidance)
			if dc.OutChannels > ch {
				out = tensor.Concat(1, eps, t.Narrow(1, ch, dc.OutChannels-ch).Contiguous())
			} else {
				out = eps
			}
		}
		return tensor.SchedulerStepDyn(out, lat, z, params, mode), nil
	}
	out, stats, err := p.runStage(ctx, req, &stage{name: "decoder", sch: p.DecSch, steps: sched, lat: lat,
		sinusoid: func(t int) *tensor.Tensor { return p.Decoder.Sinusoid(t, ts.rows()) },
		nets:     []stepFunc{step}, net: func(int) int { return 0 },
		post: func(x *tensor.Tensor) *tensor.Tensor { return tensor.Clamp(x, -1, 1) }})
	freeAll(lat, context_, timeEmb)
	return out, stats, err
}

// Upscale resizes the small images (B, C, s, s) to the super-res size with
// torch's antialiased bicubic filter.
func (p *Pipeline) Upscale(small *tensor.Tensor) (*tensor.Tensor, error) {
	oh, ow := sampleSize(p.SRFirst.Config)
	if small.Rank() != 4 || small.Dim(1) != p.SRFirst.Config.InChannels/2 {
		return nil, fmt.Errorf("upscale: images %v, want (B, %d, H, W)", small.Shape(), p.SRFirst.Config.InChannels/2)
	}
	up := tensor.UpsampleBicubic(small, oh, ow)
	return up, up.Err()
}

// RunSuperRes upsamples the small images and runs the super-resolution
// loop (super_res_first on every step but the last, which uses
// super_res_last). It returns the final images (B, C, S, S) in [0, 1].
func (p *Pipeline) RunSuperRes(ctx context.Context, req *Request, small *tensor.Tensor) (*tensor.Tensor, StageStats, error) {
	if !p.Offload || req.Eager {
		// With offload the planned loop holds one network at a time.
		if err := p.Acquire("super_res"); err != nil {
			return nil, StageStats{}, err
		}
	}
	defer p.Release("super_res")
	sc := p.SRFirst.Config
	b, ch := small.Dim(0), sc.InChannels/2
	s, sw := sampleSize(sc)
	sched, err := p.SRSch.Schedule(req.SuperResSteps)
	if err != nil {
		return nil, StageStats{}, err
	}
	shape := []int{b, ch, s, sw}
	lat, err := p.noise(req, shape) // drawn before the upscale, as diffusers does
	if err != nil {
		return nil, StageStats{}, err
	}
	up, err := p.Upscale(small)
	if err != nil {
		return nil, StageStats{}, err
	}
	mode := p.SRSch.Params(sched[0])
	stepWith := func(net *unet.Model) stepFunc {
		return func(lat, tsin, z, params *tensor.Tensor) (*tensor.Tensor, error) {
			out, err := net.Forward(tensor.Concat(1, lat, up), unet.Inputs{TimeSinusoid: tsin})
			if err != nil {
				return nil, err
			}
			return tensor.SchedulerStepDyn(out, lat, z, params, mode), nil
		}
	}
	last := len(sched) - 1
	out, stats, err := p.runStage(ctx, req, &stage{name: "super_res", sch: p.SRSch, steps: sched, lat: lat,
		sinusoid: func(t int) *tensor.Tensor { return p.SRFirst.Sinusoid(t, b) },
		nets:     []stepFunc{stepWith(p.SRFirst), stepWith(p.SRLast)},
		net: func(i int) int {
			if i == last {
				return 1
			}
			return 0
		},
		netWeights: func(k int) []*nn.StateDict {
			if k == 1 {
				return []*nn.StateDict{p.SRLast.Weights}
			}
			return []*nn.StateDict{p.SRFirst.Weights}
		},
		post: func(x *tensor.Tensor) *tensor.Tensor {
			half := tensor.Affine(x, 0.5, 0.5)
			img := tensor.Clamp(half, 0, 1)
			freeAll(half)
			return img
		}})
	freeAll(lat, up)
	return out, stats, err
}

// freeAll releases a stage's device tensors as soon as the work recorded
// on them has finished, rather than when the collector finds them (the
// device's memory is invisible to it). Each must be a whole storage that
// nothing else uses.
func freeAll(ts ...*tensor.Tensor) {
	for _, t := range ts {
		if t != nil && t.Err() == nil {
			t.Storage().Free()
		}
	}
}

// ToNHWC permutes (N, C, S, S) to (N, S, S, C).
func ToNHWC(x []float32, n, c, s int) []float32 {
	out := make([]float32, len(x))
	for b := 0; b < n; b++ {
		for ch := 0; ch < c; ch++ {
			for i := 0; i < s*s; i++ {
				out[(b*s*s+i)*c+ch] = x[(b*c+ch)*s*s+i]
			}
		}
	}
	return out
}
