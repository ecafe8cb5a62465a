package unclip

import (
	"fmt"
	"hash/fnv"

	"github.com/unclip-go/unclip/models/clip"
	"github.com/unclip-go/unclip/models/prior"
	"github.com/unclip-go/unclip/models/scheduler"
	"github.com/unclip-go/unclip/models/textproj"
	"github.com/unclip-go/unclip/models/unet"
	"github.com/unclip-go/unclip/nn"
	"github.com/unclip-go/unclip/tensor"
)

// Architecture is the configuration of every component of a pipeline.
type Architecture struct {
	Name string
	Text clip.TextConfig
	// Vision, when set, is the image encoder of an image-variations
	// pipeline (which has no prior).
	Vision    *clip.VisionConfig
	Prior     prior.Config
	TextProj  textproj.Config
	Decoder   unet.Config
	SuperRes  unet.Config
	Schedules [3]scheduler.Config // prior, decoder, super-res
}

func ip(v int) *int       { return &v }
func sp(v string) *string { return &v }
func bp(v bool) *bool     { return &v }

func schedules() [3]scheduler.Config {
	pr := scheduler.DefaultConfig()
	pr.VarianceType, pr.PredictionType, pr.ClipSampleRange = "fixed_small_log", "sample", 5
	dec := scheduler.DefaultConfig()
	dec.VarianceType, dec.PredictionType, dec.ClipSampleRange = "learned_range", "epsilon", 1
	sr := scheduler.DefaultConfig()
	sr.VarianceType, sr.PredictionType, sr.ClipSampleRange = "fixed_small_log", "epsilon", 1
	return [3]scheduler.Config{pr, dec, sr}
}

func decoderConfig(sample, layers, headDim, cross int, channels []int, down, up []string) unet.Config {
	return unet.Config{ClassName: "UNet2DConditionModel", Conditional: true, SampleSize: unet.IntList{sample},
		InChannels: 3, OutChannels: 6, FlipSinToCos: true, DownBlockTypes: down, UpBlockTypes: up,
		MidBlockType: sp("UNetMidBlock2DSimpleCrossAttn"), BlockOutChannels: channels, LayersPerBlock: unet.IntList{layers},
		DownsamplePadding: 1, MidBlockScaleFactor: 1, ActFn: "silu", NormNumGroups: ip(32), NormEps: 1e-5,
		CrossAttentionDim: unet.IntList{cross}, AttentionHeadDim: unet.IntList{headDim}, ResnetTimeScaleShift: "scale_shift",
		ResnetOutScaleFactor: 1, ClassEmbedType: sp("identity"), TimeEmbeddingType: "positional", ConvInKernel: 3, ConvOutKernel: 3}
}

func superResConfig(sample, layers int, channels []int, attention bool) unet.Config {
	n := len(channels)
	down, up := make([]string, n), make([]string, n)
	for i := range down {
		down[i], up[i] = "ResnetDownsampleBlock2D", "ResnetUpsampleBlock2D"
	}
	return unet.Config{ClassName: "UNet2DModel", SampleSize: unet.IntList{sample}, InChannels: 6, OutChannels: 3,
		FlipSinToCos: true, DownBlockTypes: down, UpBlockTypes: up, MidBlockType: sp("UNetMidBlock2D"),
		BlockOutChannels: channels, LayersPerBlock: unet.IntList{layers}, DownsamplePadding: 1, MidBlockScaleFactor: 1,
		ActFn: "silu", NormNumGroups: ip(32), NormEps: 1e-5, AttentionHeadDim: unet.IntList{8}, ResnetTimeScaleShift: "default",
		AddAttention: bp(attention), TimeEmbeddingType: "positional", ResnetOutScaleFactor: 1, DownsampleType: "conv",
		UpsampleType: "conv", ConvInKernel: 3, ConvOutKernel: 3}
}

// Karlo is the published kakaobrain/karlo-v1-alpha architecture (64×64
// decoder, 256×256 super-resolution, 3.42 billion parameters).
func Karlo() Architecture {
	text := clip.DefaultTextConfig()
	text.HiddenSize, text.IntermediateSize, text.ProjectionDim = 768, 3072, 768
	text.NumHiddenLayers, text.NumAttentionHeads, text.EOSTokenID = 12, 12, 2
	return Architecture{
		Name:     "karlo",
		Text:     text,
		Prior:    prior.DefaultConfig(),
		TextProj: textproj.DefaultConfig(),
		Decoder: decoderConfig(64, 3, 64, 1536, []int{320, 640, 960, 1280},
			[]string{"ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D"},
			[]string{"SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"}),
		SuperRes:  superResConfig(256, 3, []int{320, 640, 960, 1280}, false),
		Schedules: schedules(),
	}
}

// KarloVariations is kakaobrain/karlo-v1-alpha-image-variations: Karlo's
// text encoder, text_proj, decoder and super-resolution U-Nets with a
// ViT-L/14 image encoder at 224 pixels instead of the prior.
func KarloVariations() Architecture {
	a := Karlo()
	a.Name = "karlo-variations"
	v := clip.KarloVisionConfig()
	a.Vision = &v
	return a
}

// Tiny is the architecture of diffusers' own unCLIP tests (and of the
// shared fixture): 32×32 decoder, 64×64 super-resolution, about 4 million
// parameters. Its text encoder takes the 514-token byte-level vocabulary.
func Tiny() Architecture {
	text := clip.DefaultTextConfig()
	text.VocabSize, text.HiddenSize, text.IntermediateSize, text.ProjectionDim = 514, 32, 37, 32
	text.NumHiddenLayers, text.NumAttentionHeads, text.EOSTokenID = 5, 4, 513
	pr := prior.DefaultConfig()
	pr.NumAttentionHeads, pr.AttentionHeadDim, pr.EmbeddingDim, pr.NumLayers = 2, 12, 32, 1
	return Architecture{
		Name:     "tiny",
		Text:     text,
		Prior:    pr,
		TextProj: textproj.Config{ClipExtraContextTokens: 4, ClipEmbeddingsDim: 32, TimeEmbedDim: 128, CrossAttentionDim: 100},
		Decoder: decoderConfig(32, 1, 4, 100, []int{32, 64},
			[]string{"ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"},
			[]string{"SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"}),
		SuperRes:  superResConfig(64, 1, []int{32, 64}, true),
		Schedules: schedules(),
	}
}

// Scale returns a copy of the architecture with every U-Net and transformer
// narrowed for quick tests of the full topology: channel widths and hidden
// sizes divided by f (keeping them multiples of 32 and of the head size),
// the same block structure, layer counts and image sizes.
func (a Architecture) Scale(f int) Architecture {
	if f <= 1 {
		return a
	}
	div := func(v, m int) int { return max(m, v/f/m*m) }
	a.Name = fmt.Sprintf("%s/%d", a.Name, f)
	a.Text.HiddenSize = div(a.Text.HiddenSize, 64)
	a.Text.NumAttentionHeads = a.Text.HiddenSize / 64
	a.Text.IntermediateSize = div(a.Text.IntermediateSize, 64)
	a.Text.ProjectionDim = a.Text.HiddenSize
	a.Prior.NumAttentionHeads = max(1, a.Prior.NumAttentionHeads/f)
	a.Prior.EmbeddingDim = a.Text.HiddenSize
	a.TextProj.ClipEmbeddingsDim = a.Text.HiddenSize
	a.TextProj.CrossAttentionDim = div(a.TextProj.CrossAttentionDim, 64)
	scaleUNet := func(c unet.Config) unet.Config {
		ch := make([]int, len(c.BlockOutChannels))
		for i, v := range c.BlockOutChannels {
			ch[i] = div(v, 64)
		}
		c.BlockOutChannels = ch
		return c
	}
	if a.Vision != nil {
		v := *a.Vision
		v.HiddenSize = div(v.HiddenSize, 64)
		v.NumAttentionHeads = v.HiddenSize / 64
		v.IntermediateSize = div(v.IntermediateSize, 64)
		v.ProjectionDim = a.Text.HiddenSize
		a.Vision = &v
	}
	a.Decoder = scaleUNet(a.Decoder)
	a.Decoder.CrossAttentionDim = unet.IntList{a.TextProj.CrossAttentionDim}
	a.TextProj.TimeEmbedDim = a.Decoder.TimeEmbedDim()
	a.SuperRes = scaleUNet(a.SuperRes)
	return a
}

// Random options.
type RandomOptions struct {
	Seed   uint64
	Device tensor.Backend
	DType  tensor.DType // weight and activation type: F32 (default), F16 or BF16
	// Only lists the components to build (component names); empty builds all.
	Only []string
	// Residency is as in LoadOptions.
	Residency Residency
}

// NewRandom builds a pipeline of the given architecture with deterministic
// random weights and a byte-level tokenizer: no files, no download. Its
// images are noise-like textures, not pictures — it exists to run and time
// the real computation.
func NewRandom(arch Architecture, opt RandomOptions) (*Pipeline, error) {
	dev := opt.Device
	if dev == nil {
		dev = tensor.CPU()
	}
	want := map[string]bool{}
	for _, c := range opt.Only {
		want[c] = true
	}
	need := func(c string) bool { return len(want) == 0 || want[c] }
	p := &Pipeline{Dir: "random:" + arch.Name, Device: dev, Kind: TextToImage}
	if arch.Vision != nil {
		p.Kind = ImageVariation
	}
	tgt := nn.Target{Device: dev, DType: opt.DType, Offload: opt.Residency != Resident}
	sd := func(name string) *nn.StateDict {
		h := fnv.New64a()
		h.Write([]byte(name))
		// Made directly in the networks' 16-bit type when there is one, so
		// that the float32 values never coexist with the copies.
		wt := tensor.F32
		if opt.DType == tensor.F16 || opt.DType == tensor.BF16 {
			wt = opt.DType
		}
		return nn.NewRandomStateDict(opt.Seed^h.Sum64(), wt)
	}
	var err error
	step := func(c string, f func() error) {
		if err == nil && need(c) {
			if err = f(); err != nil {
				err = fmt.Errorf("%s: %w", c, err)
			}
		}
	}
	step(Tokenizer, func() (e error) { p.Tokenizer, e = clip.ByteLevelTokenizer(arch.Text.MaxPositionEmbeddings); return })
	step(TextEncoder, func() (e error) { p.Text, e = clip.NewTextModel(arch.Text, sd(TextEncoder), tgt); return })
	if arch.Vision != nil {
		step(ImageEncoder, func() (e error) { p.Image, e = clip.NewVisionModel(*arch.Vision, sd(ImageEncoder), tgt); return })
		step(FeatureExtractor, func() error { p.Features = clip.NewImageProcessor(arch.Vision.ImageSize); return nil })
	} else {
		step(Prior, func() (e error) { p.Prior, e = prior.New(arch.Prior, sd(Prior), tgt); return })
		step(PriorScheduler, func() (e error) { p.PriorSch, e = scheduler.New(arch.Schedules[0]); return })
	}
	step(TextProj, func() (e error) { p.TextProj, e = textproj.New(arch.TextProj, sd(TextProj), tgt); return })
	step(Decoder, func() (e error) { p.Decoder, e = unet.New(arch.Decoder, sd(Decoder), tgt); return })
	step(SuperResFirst, func() (e error) { p.SRFirst, e = unet.New(arch.SuperRes, sd(SuperResFirst), tgt); return })
	step(SuperResLast, func() (e error) { p.SRLast, e = unet.New(arch.SuperRes, sd(SuperResLast), tgt); return })
	step(DecoderScheduler, func() (e error) { p.DecSch, e = scheduler.New(arch.Schedules[1]); return })
	step(SuperResScheduler, func() (e error) { p.SRSch, e = scheduler.New(arch.Schedules[2]); return })
	if err == nil {
		err = p.settleResidency(opt.Residency)
	}
	if err != nil {
		return nil, err
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	return p, nil
}
