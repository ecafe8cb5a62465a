package nn

import (
	"math"

	"github.com/unclip-go/unclip/tensor"
)

// Linear is y = x·Wᵀ + b with W (out, in), as torch.nn.Linear.
type Linear struct {
	W, B *tensor.Tensor // B may be nil
}

// NewLinear binds "weight" (out, in) and, when bias is set, "bias" (out).
func NewLinear(b Binder, in, out int, bias bool) *Linear {
	l := &Linear{W: b.Tensor("weight", out, in)}
	if bias {
		l.B = b.Tensor("bias", out)
	}
	return l
}

// Forward applies the layer to x (..., in).
func (l *Linear) Forward(x *tensor.Tensor) *tensor.Tensor { return tensor.Linear(x, l.W, l.B) }

// LayerNorm normalises the last dimension.
type LayerNorm struct {
	W, B *tensor.Tensor
	Eps  float32
}

// NewLayerNorm binds "weight" and "bias" of size dim.
func NewLayerNorm(b Binder, dim int, eps float32) *LayerNorm {
	return &LayerNorm{W: b.Tensor("weight", dim), B: b.Tensor("bias", dim), Eps: eps}
}

// Forward normalises x (..., dim).
func (l *LayerNorm) Forward(x *tensor.Tensor) *tensor.Tensor {
	return tensor.LayerNorm(x, l.W, l.B, l.Eps)
}

// Embedding is a lookup table.
type Embedding struct{ W *tensor.Tensor }

// NewEmbedding binds "weight" (n, dim).
func NewEmbedding(b Binder, n, dim int) *Embedding { return &Embedding{W: b.Tensor("weight", n, dim)} }

// Forward gathers rows at ids.
func (e *Embedding) Forward(ids *tensor.Tensor) *tensor.Tensor { return tensor.Embedding(e.W, ids) }

// Conv2d is a 2-D convolution with bias.
type Conv2d struct {
	W, B        *tensor.Tensor
	Stride, Pad int
}

// NewConv2d binds "weight" (out, in, k, k) and "bias" (out).
func NewConv2d(b Binder, in, out, k, stride, pad int) *Conv2d {
	return &Conv2d{W: b.Tensor("weight", out, in, k, k), B: b.Tensor("bias", out), Stride: stride, Pad: pad}
}

// Forward convolves x (N, in, H, W).
func (c *Conv2d) Forward(x *tensor.Tensor) *tensor.Tensor {
	return tensor.Conv2d(x, c.W, c.B, c.Stride, c.Pad)
}

// GroupNorm normalises groups of channels.
type GroupNorm struct {
	W, B   *tensor.Tensor
	Groups int
	Eps    float32
}

// NewGroupNorm binds "weight" and "bias" of size channels.
func NewGroupNorm(b Binder, groups, channels int, eps float32) *GroupNorm {
	if groups <= 0 || channels%groups != 0 {
		b.Errorf("%sGroupNorm: %d channels do not split into %d groups", b.Prefix(), channels, groups)
		groups = 1
	}
	return &GroupNorm{W: b.Tensor("weight", channels), B: b.Tensor("bias", channels), Groups: groups, Eps: eps}
}

// Forward normalises x (N, C, *); with silu set, SiLU follows.
func (g *GroupNorm) Forward(x *tensor.Tensor, silu bool) *tensor.Tensor {
	return tensor.GroupNorm(x, g.Groups, g.W, g.B, g.Eps, silu)
}

// Activation names an elementwise activation by its config name.
type Activation string

// Apply runs the activation: "gelu" (exact), "quick_gelu", "silu"/"swish".
func (a Activation) Apply(x *tensor.Tensor) *tensor.Tensor {
	switch a {
	case "gelu":
		return tensor.GELU(x)
	case "quick_gelu":
		return tensor.QuickGELU(x)
	case "silu", "swish":
		return tensor.SiLU(x)
	}
	panic("nn: unknown activation " + string(a))
}

// ValidActivation reports whether Apply knows a.
func ValidActivation(a string) bool {
	switch a {
	case "gelu", "quick_gelu", "silu", "swish":
		return true
	}
	return false
}

// MLP is fc2(act(fc1(x))).
type MLP struct {
	FC1, FC2 *Linear
	Act      Activation
}

// Forward applies the MLP.
func (m *MLP) Forward(x *tensor.Tensor) *tensor.Tensor {
	return m.FC2.Forward(m.Act.Apply(m.FC1.Forward(x)))
}

// Attention is multi-head attention with separate q, k, v and output
// projections (CLIP's self_attn and diffusers' Attention share this form).
type Attention struct {
	Q, K, V, Out *Linear
	Heads        int
	HeadDim      int
	Scale        float32
}

// SplitHeads reshapes (B, L, H·D) to (B, H, L, D) as a view.
func SplitHeads(x *tensor.Tensor, heads int) *tensor.Tensor {
	b, l, c := x.Dim(0), x.Dim(1), x.Dim(2)
	return x.Reshape(b, l, heads, c/heads).Permute(0, 2, 1, 3)
}

// MergeHeads reshapes (B, H, L, D) to (B, L, H·D).
func MergeHeads(x *tensor.Tensor) *tensor.Tensor {
	b, h, l, d := x.Dim(0), x.Dim(1), x.Dim(2), x.Dim(3)
	return x.Permute(0, 2, 1, 3).Reshape(b, l, h*d)
}

// Forward is self-attention over x (B, L, C) with an additive bias that
// broadcasts to (B, H, L, L) (or nil) and an optional causal mask.
func (a *Attention) Forward(x, bias *tensor.Tensor, causal bool) *tensor.Tensor {
	q := SplitHeads(a.Q.Forward(x), a.Heads)
	k := SplitHeads(a.K.Forward(x), a.Heads)
	v := SplitHeads(a.V.Forward(x), a.Heads)
	o := tensor.MultiHeadAttention(q, k, v, tensor.AttentionOptions{Scale: a.Scale, Causal: causal, Bias: bias, MergeHeads: true})
	return a.Out.Forward(o)
}

// DefaultScale is 1/√headDim.
func DefaultScale(headDim int) float32 { return float32(1 / math.Sqrt(float64(headDim))) }
