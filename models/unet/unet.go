package unet

import (
	"fmt"

	"github.com/unclip-go/unclip/nn"
	"github.com/unclip-go/unclip/tensor"
)

// Model is a UNet2DConditionModel or UNet2DModel.
type Model struct {
	Config Config
	// Weights are the bound weights (residency: Release, Evict, Restore).
	Weights *nn.StateDict
	timeEmb *nn.TimestepEmbedding
	convIn  *nn.Conv2d
	down    []*block
	mid     *block // resnets[0], then attention i and resnet i+1
	up      []*block
	normOut *nn.GroupNorm
	convOut *nn.Conv2d
	dtype   tensor.DType // activation type
}

// block is a down, mid or up block: resnets, each optionally followed by
// an attention, then an optional resampling resnet.
type block struct {
	resnets  []*nn.ResnetBlock2D
	attns    []*nn.SpatialAttention // nil entries where a layer has none
	resample *nn.ResnetBlock2D
}

// Load reads a UNet folder (config.json + weights), placing the weights as t says.
func Load(dir, variant string, t nn.Target) (*Model, error) {
	return nn.LoadDiffusers("unet", dir, variant, t, LoadConfig, New)
}

// New builds the network described by cfg from a state dict.
func New(cfg Config, sd *nn.StateDict, t nn.Target) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := nn.NewBinder(sd, t)
	boc := cfg.BlockOutChannels
	nb := len(boc)
	groups, eps := *cfg.NormNumGroups, cfg.NormEps
	temb := cfg.TimeEmbedDim()
	scaleShift := cfg.ResnetTimeScaleShift == "scale_shift"
	m := &Model{Config: cfg, dtype: t.Compute(), Weights: sd}
	m.timeEmb = nn.NewTimestepEmbedding(b.Sub("time_embedding"), boc[0], temb, temb, cfg.ActFn)
	m.convIn = nn.NewConv2d(b.Sub("conv_in"), cfg.InChannels, boc[0], cfg.ConvInKernel, 1, (cfg.ConvInKernel-1)/2)
	resOut := float32(1)
	if cfg.Conditional {
		resOut = cfg.ResnetOutScaleFactor
	}
	resnet := func(bb nn.Binder, in, out int, up, down bool, scale float32) *nn.ResnetBlock2D {
		return nn.NewResnetBlock2D(bb, nn.ResnetOptions{In: in, Out: out, TembChannels: temb, Groups: groups, Eps: eps,
			ScaleShift: scaleShift, Up: up, Down: down, OutputScale: scale})
	}
	addedKV := func(bb nn.Binder, ch, headDim, ctxDim int) *nn.SpatialAttention {
		return nn.NewSpatialAttention(bb, nn.AttentionOptions{Channels: ch, HeadDim: headDim, Groups: groups, Eps: eps, ContextDim: ctxDim})
	}
	headDim := func(i int) int {
		if cfg.AttentionHeadDim == nil {
			return boc[i]
		}
		return cfg.AttentionHeadDim.At(i)
	}
	crossDim := func(i int) int {
		if cfg.CrossAttentionDim == nil {
			return 0
		}
		return cfg.CrossAttentionDim.At(i)
	}
	attnBlock := func(t string) bool { return t == "SimpleCrossAttnDownBlock2D" || t == "SimpleCrossAttnUpBlock2D" }
	for i, t := range cfg.DownBlockTypes {
		if attnBlock(t) && (!cfg.Conditional || crossDim(i) <= 0) {
			b.Errorf("down block %d (%s) needs a UNet2DConditionModel with cross_attention_dim", i, t)
			continue
		}
		in := boc[max(i-1, 0)]
		if i == 0 {
			in = boc[0]
		}
		out := boc[i]
		bb := b.Subf("down_blocks.%d", i)
		blk := &block{}
		for l := 0; l < cfg.LayersPerBlock.At(i); l++ {
			c := out
			if l == 0 {
				c = in
			}
			blk.resnets = append(blk.resnets, resnet(bb.Subf("resnets.%d", l), c, out, false, false, resOut))
			var a *nn.SpatialAttention
			if attnBlock(t) {
				a = addedKV(bb.Subf("attentions.%d", l), out, headDim(i), crossDim(i))
			}
			blk.attns = append(blk.attns, a)
		}
		if i < nb-1 {
			blk.resample = resnet(bb.Sub("downsamplers.0"), out, out, false, true, resOut)
		}
		m.down = append(m.down, blk)
	}
	if cfg.MidBlockType != nil {
		ch := boc[nb-1]
		bb := b.Sub("mid_block")
		mid := &block{}
		scale := cfg.MidBlockScaleFactor
		if scale == 0 {
			scale = 1
		}
		mid.resnets = append(mid.resnets, resnet(bb.Sub("resnets.0"), ch, ch, false, false, scale))
		switch {
		case *cfg.MidBlockType == "UNetMidBlock2DSimpleCrossAttn":
			mid.attns = append(mid.attns, addedKV(bb.Sub("attentions.0"), ch, headDim(nb-1), crossDim(nb-1)))
			mid.resnets = append(mid.resnets, resnet(bb.Sub("resnets.1"), ch, ch, false, false, scale))
		case cfg.Conditional: // UNetMidBlock2D with num_layers=0: one resnet
		default: // UNet2DModel's UNetMidBlock2D: resnet, [attention], resnet
			var a *nn.SpatialAttention
			if cfg.AddAttention == nil || *cfg.AddAttention {
				hd := ch
				if cfg.AttentionHeadDim != nil {
					hd = cfg.AttentionHeadDim.At(0)
				}
				g := groups
				if cfg.AttnNormNumGroups != nil {
					g = *cfg.AttnNormNumGroups
				}
				a = nn.NewSpatialAttention(bb.Sub("attentions.0"), nn.AttentionOptions{Channels: ch, HeadDim: hd, Groups: g, Eps: eps, RescaleOutput: scale})
			}
			mid.attns = append(mid.attns, a)
			mid.resnets = append(mid.resnets, resnet(bb.Sub("resnets.1"), ch, ch, false, false, scale))
		}
		m.mid = mid
	}
	rev := func(i int) int { return nb - 1 - i }
	prevOut := boc[nb-1]
	for i, t := range cfg.UpBlockTypes {
		r := rev(i)
		if attnBlock(t) && (!cfg.Conditional || crossDim(r) <= 0) {
			b.Errorf("up block %d (%s) needs a UNet2DConditionModel with cross_attention_dim", i, t)
			continue
		}
		out := boc[r]
		in := boc[max(r-1, 0)]
		bb := b.Subf("up_blocks.%d", i)
		blk := &block{}
		n := cfg.LayersPerBlock.At(r) + 1
		for l := 0; l < n; l++ {
			skip := out
			if l == n-1 {
				skip = in
			}
			c := out
			if l == 0 {
				c = prevOut
			}
			blk.resnets = append(blk.resnets, resnet(bb.Subf("resnets.%d", l), c+skip, out, false, false, resOut))
			var a *nn.SpatialAttention
			if attnBlock(t) {
				a = addedKV(bb.Subf("attentions.%d", l), out, headDim(r), crossDim(r))
			}
			blk.attns = append(blk.attns, a)
		}
		if i < nb-1 {
			blk.resample = resnet(bb.Sub("upsamplers.0"), out, out, true, false, resOut)
		}
		m.up = append(m.up, blk)
		prevOut = out
	}
	m.normOut = nn.NewGroupNorm(b.Sub("conv_norm_out"), groups, boc[0], eps)
	m.convOut = nn.NewConv2d(b.Sub("conv_out"), boc[0], cfg.OutChannels, cfg.ConvOutKernel, 1, (cfg.ConvOutKernel-1)/2)
	b.CheckUnused()
	if err := b.Err(); err != nil {
		return nil, err
	}
	return m, nil
}

// Inputs are the conditioning inputs of one forward pass.
type Inputs struct {
	// Timestep is the integer diffusion timestep, the same for every row.
	Timestep int
	// TimeSinusoid, when set, replaces Timestep: its sinusoidal embedding
	// (N, block_out_channels[0]) on the sample's device (Model.Sinusoid),
	// so that a captured step graph takes the timestep as an input.
	TimeSinusoid *tensor.Tensor
	// Context (N, L, cross_attention_dim) is attended to by the added-KV
	// attention blocks (decoder only).
	Context *tensor.Tensor
	// ContextMask marks the attendable context tokens (N·L values, row
	// major); nil attends to all.
	ContextMask []bool
	// ClassLabels (N, time embed dim) is added to the time embedding
	// (class_embed_type "identity"; the decoder's text_proj output).
	ClassLabels *tensor.Tensor
}

// Sinusoid is the timestep's sinusoidal embedding (n,
// block_out_channels[0]) as a float32 CPU tensor (Inputs.TimeSinusoid).
func (m *Model) Sinusoid(t, n int) *tensor.Tensor {
	ts := make([]int, n)
	for i := range ts {
		ts[i] = t
	}
	cfg := m.Config
	return nn.TimestepSinusoid(ts, cfg.BlockOutChannels[0], cfg.FlipSinToCos, cfg.FreqShift)
}

// Forward runs the network on sample (N, in_channels, H, W); H and W must
// be divisible by 2^(levels−1).
func (m *Model) Forward(sample *tensor.Tensor, in Inputs) (*tensor.Tensor, error) {
	cfg := m.Config
	if sample.Rank() != 4 || sample.Dim(1) != cfg.InChannels {
		return nil, fmt.Errorf("unet: sample %v, want (N, %d, H, W)", sample.Shape(), cfg.InChannels)
	}
	n := sample.Dim(0)
	f := 1 << (len(cfg.BlockOutChannels) - 1)
	if sample.Dim(2)%f != 0 || sample.Dim(3)%f != 0 {
		return nil, fmt.Errorf("unet: sample size %d×%d is not divisible by %d", sample.Dim(2), sample.Dim(3), f)
	}
	dev := sample.Backend()
	sample = nn.As(sample, m.dtype)
	in.Context, in.ClassLabels = nn.As(in.Context, m.dtype), nn.As(in.ClassLabels, m.dtype)
	if cfg.CenterInputSample {
		sample = tensor.Affine(sample, 2, -1)
	}
	tsin := in.TimeSinusoid
	if tsin == nil {
		tsin = m.Sinusoid(in.Timestep, n).To(dev)
	}
	if tsin.Rank() != 2 || tsin.Dim(0) != n || tsin.Dim(1) != cfg.BlockOutChannels[0] {
		return nil, fmt.Errorf("unet: timestep sinusoid %v, want (%d, %d)", tsin.Shape(), n, cfg.BlockOutChannels[0])
	}
	emb := m.timeEmb.Forward(nn.As(tsin, m.dtype))
	if cfg.ClassEmbedType != nil {
		if in.ClassLabels == nil {
			return nil, fmt.Errorf("unet: class_embed_type %q needs class labels", *cfg.ClassEmbedType)
		}
		if !tensor.SameShape(in.ClassLabels.Shape(), emb.Shape()) {
			return nil, fmt.Errorf("unet: class labels %v, want %v", in.ClassLabels.Shape(), emb.Shape())
		}
		emb = tensor.Add(emb, in.ClassLabels)
	}
	embAct := tensor.SiLU(emb)
	var ctxBias *tensor.Tensor
	if in.Context != nil {
		if in.Context.Rank() != 3 || in.Context.Dim(0) != n {
			return nil, fmt.Errorf("unet: context %v for a batch of %d", in.Context.Shape(), n)
		}
		if in.ContextMask != nil {
			l := in.Context.Dim(1)
			if len(in.ContextMask) != n*l {
				return nil, fmt.Errorf("unet: context mask of %d values for %d×%d tokens", len(in.ContextMask), n, l)
			}
			bias := make([]float32, n*l)
			for i, ok := range in.ContextMask {
				if !ok {
					bias[i] = -10000
				}
			}
			ctxBias = tensor.FromFloat32(bias, n, 1, 1, l).To(dev)
		}
	}
	var out *tensor.Tensor
	err := tensor.Catch(func() error {
		h := m.convIn.Forward(sample)
		skips := []*tensor.Tensor{h}
		for _, blk := range m.down {
			for l, r := range blk.resnets {
				h = r.Forward(h, embAct)
				if a := blk.attns[l]; a != nil {
					h = a.Forward(h, in.Context, ctxBias)
				}
				skips = append(skips, h)
			}
			if blk.resample != nil {
				h = blk.resample.Forward(h, embAct)
				skips = append(skips, h)
			}
		}
		if m.mid != nil {
			h = m.mid.resnets[0].Forward(h, embAct)
			for i, a := range m.mid.attns {
				if a != nil {
					h = a.Forward(h, in.Context, ctxBias)
				}
				h = m.mid.resnets[i+1].Forward(h, embAct)
			}
		}
		for _, blk := range m.up {
			for l, r := range blk.resnets {
				skip := skips[len(skips)-1]
				skips = skips[:len(skips)-1]
				h = r.Forward(tensor.Concat(1, h, skip), embAct)
				if a := blk.attns[l]; a != nil {
					h = a.Forward(h, in.Context, ctxBias)
				}
			}
			if blk.resample != nil {
				h = blk.resample.Forward(h, embAct)
			}
		}
		out = nn.As(m.convOut.Forward(m.normOut.Forward(h, true)), tensor.F32)
		return out.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("unet: %w", err)
	}
	return out, nil
}
