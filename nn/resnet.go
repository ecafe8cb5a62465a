package nn

import (
	"fmt"

	"github.com/unclip-go/unclip/tensor"
)

// ResnetBlock2D is diffusers' ResnetBlock2D without FIR kernels or strided
// convolutions: norm1 → SiLU → [resample] → conv1 → time conditioning →
// norm2 → SiLU → conv2, plus the (1×1-projected) input.
type ResnetBlock2D struct {
	Norm1, Norm2 *GroupNorm
	Conv1, Conv2 *Conv2d
	TimeProj     *Linear // nil without time conditioning
	Shortcut     *Conv2d // nil when in == out
	// ScaleShift selects "scale_shift" time conditioning (decoder); otherwise
	// "default" (the projection is added before norm2).
	ScaleShift bool
	// Up and Down select nearest ×2 upsampling or 2×2 average pooling of
	// both branches after norm1.
	Up, Down bool
	// OutputScale divides the sum (diffusers' output_scale_factor).
	OutputScale float32
	out         int
}

// ResnetOptions configures a ResnetBlock2D.
type ResnetOptions struct {
	In, Out, TembChannels int // TembChannels 0: no time conditioning
	Groups                int
	Eps                   float32
	ScaleShift            bool
	Up, Down              bool
	OutputScale           float32 // 0 means 1
}

// NewResnetBlock2D binds norm1, conv1, time_emb_proj, norm2, conv2 and
// conv_shortcut under b.
func NewResnetBlock2D(b Binder, o ResnetOptions) *ResnetBlock2D {
	r := &ResnetBlock2D{
		Norm1:       NewGroupNorm(b.Sub("norm1"), o.Groups, o.In, o.Eps),
		Conv1:       NewConv2d(b.Sub("conv1"), o.In, o.Out, 3, 1, 1),
		Norm2:       NewGroupNorm(b.Sub("norm2"), o.Groups, o.Out, o.Eps),
		Conv2:       NewConv2d(b.Sub("conv2"), o.Out, o.Out, 3, 1, 1),
		ScaleShift:  o.ScaleShift,
		Up:          o.Up,
		Down:        o.Down,
		OutputScale: o.OutputScale,
		out:         o.Out,
	}
	if r.OutputScale == 0 {
		r.OutputScale = 1
	}
	if o.TembChannels > 0 {
		n := o.Out
		if o.ScaleShift {
			n *= 2
		}
		r.TimeProj = NewLinear(b.Sub("time_emb_proj"), o.TembChannels, n, true)
	}
	if o.In != o.Out {
		r.Shortcut = NewConv2d(b.Sub("conv_shortcut"), o.In, o.Out, 1, 1, 0)
	}
	if o.Up && o.Down {
		b.Errorf("%s: a resnet cannot both upsample and downsample", b.Prefix())
	}
	return r
}

// Forward applies the block to x (N, in, H, W) with the time embedding
// embAct = SiLU(emb) (N, temb), which the caller computes once for all
// blocks; embAct may be nil for blocks without time conditioning.
func (r *ResnetBlock2D) Forward(x, embAct *tensor.Tensor) *tensor.Tensor {
	h := r.Norm1.Forward(x, true)
	switch {
	case r.Up:
		x = tensor.UpsampleNearest(x, 2)
		h = tensor.UpsampleNearest(h, 2)
	case r.Down:
		x = tensor.AvgPool2d(x, 2)
		h = tensor.AvgPool2d(h, 2)
	}
	h = r.Conv1.Forward(h)
	var tp *tensor.Tensor
	if r.TimeProj != nil {
		if embAct == nil {
			panic(&tensor.ShapeError{Msg: "nn.ResnetBlock2D: time embedding required"})
		}
		tp = r.TimeProj.Forward(embAct) // (N, out) or (N, 2·out)
		tp = tp.Reshape(tp.Dim(0), tp.Dim(1), 1, 1)
	}
	if r.ScaleShift && tp != nil {
		// norm2, ·(1 + scale) + shift and SiLU in one op.
		tp2 := tp.Reshape(tp.Dim(0), tp.Dim(1))
		scale := tp2.Narrow(1, 0, r.out)
		shift := tp2.Narrow(1, r.out, r.out)
		h = tensor.GroupNormScaleShift(h, r.Norm2.Groups, r.Norm2.W, r.Norm2.B, scale, shift, r.Norm2.Eps, true)
	} else {
		if tp != nil {
			h = tensor.Add(h, tp)
		}
		h = r.Norm2.Forward(h, true)
	}
	h = r.Conv2.Forward(h)
	if r.Shortcut != nil {
		x = r.Shortcut.Forward(x)
	}
	y := tensor.Add(x, h)
	if r.OutputScale != 1 {
		y = tensor.Scale(y, 1/r.OutputScale)
	}
	return y
}

// SpatialAttention is diffusers' Attention over the pixels of a feature map
// (N, C, H, W): GroupNorm on the spatial tokens, q/k/v from them, and — for
// the added-KV form — extra keys and values projected from a context that
// come first in the key sequence. The output projection is added to the
// un-normalised input.
type SpatialAttention struct {
	Norm               *GroupNorm
	Q, K, V, Out       *Linear
	AddK, AddV         *Linear // nil without a context
	Heads, HeadDim     int
	Scale              float32
	RescaleOutput      float32
	OnlyCrossAttention bool
}

// AttentionOptions configures a SpatialAttention.
type AttentionOptions struct {
	Channels, HeadDim int
	Groups            int
	Eps               float32
	ContextDim        int // added_kv_proj_dim; 0 for plain self-attention
	RescaleOutput     float32
}

// NewSpatialAttention binds group_norm, to_q, to_k, to_v, to_out.0 and,
// with a context, add_k_proj and add_v_proj.
func NewSpatialAttention(b Binder, o AttentionOptions) *SpatialAttention {
	c := o.Channels
	if o.HeadDim <= 0 || c%o.HeadDim != 0 {
		b.Errorf("%s: %d channels do not split into heads of %d", b.Prefix(), c, o.HeadDim)
		o.HeadDim = c
	}
	a := &SpatialAttention{
		Norm:          NewGroupNorm(b.Sub("group_norm"), o.Groups, c, o.Eps),
		Q:             NewLinear(b.Sub("to_q"), c, c, true),
		K:             NewLinear(b.Sub("to_k"), c, c, true),
		V:             NewLinear(b.Sub("to_v"), c, c, true),
		Out:           NewLinear(b.Sub("to_out.0"), c, c, true),
		Heads:         c / o.HeadDim,
		HeadDim:       o.HeadDim,
		Scale:         DefaultScale(o.HeadDim),
		RescaleOutput: o.RescaleOutput,
	}
	if a.RescaleOutput == 0 {
		a.RescaleOutput = 1
	}
	if o.ContextDim > 0 {
		a.AddK = NewLinear(b.Sub("add_k_proj"), o.ContextDim, c, true)
		a.AddV = NewLinear(b.Sub("add_v_proj"), o.ContextDim, c, true)
	}
	return a
}

// Forward attends over x (N, C, H, W). context (N, Lc, ContextDim) and
// ctxBias — an additive bias over the context keys, (N, 1, 1, Lc) — are
// used only by the added-KV form (ctxBias may be nil).
func (a *SpatialAttention) Forward(x, context, ctxBias *tensor.Tensor) *tensor.Tensor {
	n, c, h, w := x.Dim(0), x.Dim(1), x.Dim(2), x.Dim(3)
	hw := h * w
	tokens := a.Norm.Forward(x.Reshape(n, c, hw), false).Transpose(1, 2) // (N, HW, C)
	q := SplitHeads(a.Q.Forward(tokens), a.Heads)
	k := SplitHeads(a.K.Forward(tokens), a.Heads)
	v := SplitHeads(a.V.Forward(tokens), a.Heads)
	opt := tensor.AttentionOptions{Scale: a.Scale, MergeHeads: true}
	if a.AddK != nil {
		if context == nil {
			panic(&tensor.ShapeError{Msg: fmt.Sprintf("nn.SpatialAttention: %d-channel added-KV attention needs a context", c)})
		}
		// The context's keys and values come first, as in diffusers'
		// concatenation, and its mask applies to them alone.
		opt.PrefixK = SplitHeads(a.AddK.Forward(context), a.Heads)
		opt.PrefixV = SplitHeads(a.AddV.Forward(context), a.Heads)
		if ctxBias != nil {
			opt.Bias = ctxBias.Reshape(n, 1, 1, context.Dim(1))
		}
	}
	o := a.Out.Forward(tensor.MultiHeadAttention(q, k, v, opt)) // (N, HW, C)
	// The residual add reads the projection transposed, in place.
	y := tensor.Add(o.Transpose(1, 2), x.Reshape(n, c, hw)).Reshape(n, c, h, w)
	if a.RescaleOutput != 1 {
		y = tensor.Scale(y, 1/a.RescaleOutput)
	}
	return y
}
