// Package prior is diffusers' PriorTransformer: the unCLIP prior that
// predicts a CLIP image embedding from the CLIP text outputs.
package prior

import (
	"encoding/json"
	"fmt"

	"github.com/unclip-go/unclip/models/modelfile"
	"github.com/unclip-go/unclip/nn"
	"github.com/unclip-go/unclip/tensor"
)

// Config is prior/config.json. Nullable fields are pointers.
type Config struct {
	NumAttentionHeads     int     `json:"num_attention_heads"`
	AttentionHeadDim      int     `json:"attention_head_dim"`
	NumLayers             int     `json:"num_layers"`
	EmbeddingDim          int     `json:"embedding_dim"`
	NumEmbeddings         int     `json:"num_embeddings"`
	AdditionalEmbeddings  int     `json:"additional_embeddings"`
	Dropout               float64 `json:"dropout"`
	TimeEmbedActFn        string  `json:"time_embed_act_fn"`
	NormInType            *string `json:"norm_in_type"`
	EmbeddingProjNormType *string `json:"embedding_proj_norm_type"`
	EncoderHidProjType    *string `json:"encoder_hid_proj_type"`
	AddedEmbType          *string `json:"added_emb_type"`
	TimeEmbedDim          *int    `json:"time_embed_dim"`
	EmbeddingProjDim      *int    `json:"embedding_proj_dim"`
	ClipEmbedDim          *int    `json:"clip_embed_dim"`
}

func strp(s string) *string { return &s }

// DefaultConfig is diffusers' PriorTransformer default, which is Karlo's.
func DefaultConfig() Config {
	return Config{NumAttentionHeads: 32, AttentionHeadDim: 64, NumLayers: 20, EmbeddingDim: 768,
		NumEmbeddings: 77, AdditionalEmbeddings: 4, TimeEmbedActFn: "silu",
		EncoderHidProjType: strp("linear"), AddedEmbType: strp("prd")}
}

// LoadConfig reads a PriorTransformer config.json; absent keys keep their
// diffusers defaults.
func LoadConfig(path string) (Config, error) {
	data, err := modelfile.Read(path, modelfile.ConfigLimit)
	if err != nil {
		return Config{}, fmt.Errorf("prior: %w", err)
	}
	cfg := DefaultConfig()
	if err := json.Unmarshal(data, &cfg); err != nil {
		return Config{}, fmt.Errorf("prior: %s: %w", path, err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("prior: %s: %w", path, err)
	}
	return cfg, nil
}

// InnerDim is num_attention_heads·attention_head_dim.
func (c Config) InnerDim() int { return c.NumAttentionHeads * c.AttentionHeadDim }

// ClipDim is the width of the predicted embedding (clip_embed_dim or embedding_dim).
func (c Config) ClipDim() int { return orDefault(c.ClipEmbedDim, c.EmbeddingDim) }

// ProjDim is the width of proj_embedding (embedding_proj_dim or embedding_dim).
func (c Config) ProjDim() int { return orDefault(c.EmbeddingProjDim, c.EmbeddingDim) }

// TimeDim is the hidden width of the time MLP (time_embed_dim or inner dim).
func (c Config) TimeDim() int { return orDefault(c.TimeEmbedDim, c.InnerDim()) }

func orDefault(p *int, d int) int {
	if p != nil && *p > 0 {
		return *p
	}
	return d
}

func optIs(p *string, v string) bool { return p != nil && *p == v }

// Validate rejects options this implementation (or diffusers) does not support.
func (c Config) Validate() error {
	opt := func(p *int) int {
		if p == nil {
			return 1
		}
		return *p
	}
	if err := nn.CheckRanges(
		nn.Range{Key: "num_attention_heads", Value: c.NumAttentionHeads, Min: 1, Max: nn.MaxWidth},
		nn.Range{Key: "attention_head_dim", Value: c.AttentionHeadDim, Min: 1, Max: nn.MaxWidth},
		nn.Range{Key: "num_attention_heads × attention_head_dim", Value: min(c.NumAttentionHeads, nn.MaxWidth) * min(c.AttentionHeadDim, nn.MaxWidth), Min: 1, Max: nn.MaxWidth},
		nn.Range{Key: "embedding_dim", Value: c.EmbeddingDim, Min: 1, Max: nn.MaxWidth},
		nn.Range{Key: "num_layers", Value: c.NumLayers, Min: 0, Max: nn.MaxLayers},
		nn.Range{Key: "num_embeddings", Value: c.NumEmbeddings, Min: 0, Max: nn.MaxTokens},
		nn.Range{Key: "additional_embeddings", Value: c.AdditionalEmbeddings, Min: 0, Max: nn.MaxTokens},
		nn.Range{Key: "time_embed_dim", Value: opt(c.TimeEmbedDim), Min: 0, Max: nn.MaxWidth},
		nn.Range{Key: "embedding_proj_dim", Value: opt(c.EmbeddingProjDim), Min: 0, Max: nn.MaxWidth},
		nn.Range{Key: "clip_embed_dim", Value: opt(c.ClipEmbedDim), Min: 0, Max: nn.MaxWidth},
	); err != nil {
		return err
	}
	switch {
	case c.NumAttentionHeads <= 0 || c.AttentionHeadDim <= 0 || c.EmbeddingDim <= 0 || c.NumLayers < 0:
		return fmt.Errorf("bad sizes: heads %d, head dim %d, embedding dim %d, layers %d", c.NumAttentionHeads, c.AttentionHeadDim, c.EmbeddingDim, c.NumLayers)
	case c.NumEmbeddings < 0 || c.AdditionalEmbeddings < 0:
		return fmt.Errorf("bad num_embeddings %d / additional_embeddings %d", c.NumEmbeddings, c.AdditionalEmbeddings)
	case c.NormInType != nil && *c.NormInType != "layer":
		return fmt.Errorf("unsupported norm_in_type %q (want null or \"layer\")", *c.NormInType)
	case c.EmbeddingProjNormType != nil && *c.EmbeddingProjNormType != "layer":
		return fmt.Errorf("unsupported embedding_proj_norm_type %q (want null or \"layer\")", *c.EmbeddingProjNormType)
	case c.EncoderHidProjType != nil && *c.EncoderHidProjType != "linear":
		return fmt.Errorf("unsupported encoder_hid_proj_type %q (want null or \"linear\")", *c.EncoderHidProjType)
	case c.AddedEmbType != nil && *c.AddedEmbType != "prd":
		return fmt.Errorf("unsupported added_emb_type %q (want null or \"prd\")", *c.AddedEmbType)
	case !nn.ValidActivation(c.TimeEmbedActFn):
		return fmt.Errorf("unsupported time_embed_act_fn %q", c.TimeEmbedActFn)
	case c.EncoderHidProjType == nil:
		// Without a projection the text hidden states must already be inner_dim wide;
		// the pipeline's CLIP states are embedding_dim wide.
		if c.EmbeddingDim != c.InnerDim() {
			return fmt.Errorf("encoder_hid_proj_type null needs embedding_dim (%d) == inner dim (%d)", c.EmbeddingDim, c.InnerDim())
		}
	}
	return nil
}

// Model is a PriorTransformer with its clip_mean/clip_std statistics.
type Model struct {
	Config Config
	// Weights are the bound weights (residency: Release, Evict, Restore).
	Weights  *nn.StateDict
	timeEmb  *nn.TimestepEmbedding
	projIn   *nn.Linear
	embNorm  *nn.LayerNorm
	embProj  *nn.Linear
	encProj  *nn.Linear
	posEmb   *tensor.Tensor // (1, P, D)
	prd      *tensor.Tensor // (1, 1, D) or nil
	normIn   *nn.LayerNorm
	blocks   []block
	normOut  *nn.LayerNorm
	projOut  *nn.Linear
	ClipMean *tensor.Tensor // (1, clip dim)
	ClipStd  *tensor.Tensor // (1, clip dim)
	dtype    tensor.DType   // activation type
}

type block struct {
	norm1, norm3 *nn.LayerNorm
	attn         *nn.Attention
	ff1, ff2     *nn.Linear
}

// Load reads prior/{config.json, diffusion_pytorch_model.safetensors}.
func Load(dir, variant string, t nn.Target) (*Model, error) {
	return nn.LoadDiffusers("prior", dir, variant, t, LoadConfig, New)
}

// New binds a prior from a state dict.
func New(cfg Config, sd *nn.StateDict, t nn.Target) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := nn.NewBinder(sd, t)
	d, e := cfg.InnerDim(), cfg.EmbeddingDim
	m := &Model{Config: cfg, dtype: t.Compute(), Weights: sd}
	m.timeEmb = nn.NewTimestepEmbedding(b.Sub("time_embedding"), d, cfg.TimeDim(), d, cfg.TimeEmbedActFn)
	m.projIn = nn.NewLinear(b.Sub("proj_in"), e, d, true)
	if cfg.EmbeddingProjNormType != nil {
		m.embNorm = nn.NewLayerNorm(b.Sub("embedding_proj_norm"), cfg.ProjDim(), 1e-5)
	}
	m.embProj = nn.NewLinear(b.Sub("embedding_proj"), cfg.ProjDim(), d, true)
	if optIs(cfg.EncoderHidProjType, "linear") {
		m.encProj = nn.NewLinear(b.Sub("encoder_hidden_states_proj"), e, d, true)
	}
	m.posEmb = b.Tensor("positional_embedding", 1, cfg.NumEmbeddings+cfg.AdditionalEmbeddings, d)
	if optIs(cfg.AddedEmbType, "prd") {
		m.prd = b.Tensor("prd_embedding", 1, 1, d)
	}
	if cfg.NormInType != nil {
		m.normIn = nn.NewLayerNorm(b.Sub("norm_in"), d, 1e-5)
	}
	for i := 0; i < cfg.NumLayers; i++ {
		bb := b.Subf("transformer_blocks.%d", i)
		ab := bb.Sub("attn1")
		m.blocks = append(m.blocks, block{
			norm1: nn.NewLayerNorm(bb.Sub("norm1"), d, 1e-5),
			norm3: nn.NewLayerNorm(bb.Sub("norm3"), d, 1e-5),
			attn: &nn.Attention{
				Q: nn.NewLinear(ab.Sub("to_q"), d, d, true), K: nn.NewLinear(ab.Sub("to_k"), d, d, true),
				V: nn.NewLinear(ab.Sub("to_v"), d, d, true), Out: nn.NewLinear(ab.Sub("to_out.0"), d, d, true),
				Heads: cfg.NumAttentionHeads, HeadDim: cfg.AttentionHeadDim, Scale: nn.DefaultScale(cfg.AttentionHeadDim),
			},
			ff1: nn.NewLinear(bb.Sub("ff.net.0.proj"), d, 4*d, true),
			ff2: nn.NewLinear(bb.Sub("ff.net.2"), 4*d, d, true),
		})
	}
	m.normOut = nn.NewLayerNorm(b.Sub("norm_out"), d, 1e-5)
	m.projOut = nn.NewLinear(b.Sub("proj_to_clip_embeddings"), d, cfg.ClipDim(), true)
	m.ClipMean = b.Tensor("clip_mean", 1, cfg.ClipDim())
	m.ClipStd = b.Tensor("clip_std", 1, cfg.ClipDim())
	b.CheckUnused()
	if err := b.Err(); err != nil {
		return nil, err
	}
	return m, nil
}

// Forward predicts the image embedding for x (N, embedding_dim) at
// timestep t, conditioned on projEmb (N, proj dim), the text hidden states
// enc (N, L, embedding_dim) and their mask (N·L values, true = attend; nil
// means no mask, in which case diffusers applies no causal mask either).
// The result is (N, clip dim).
func (m *Model) Forward(x *tensor.Tensor, t int, projEmb, enc *tensor.Tensor, mask []bool) (*tensor.Tensor, error) {
	return m.ForwardSinusoid(x, m.Sinusoid(t, x.Dim(0)).To(x.Backend()), projEmb, enc, mask)
}

// Sinusoid is the timestep's sinusoidal embedding (n, inner dim) as a
// float32 CPU tensor: the input ForwardSinusoid takes instead of t.
func (m *Model) Sinusoid(t, n int) *tensor.Tensor {
	ts := make([]int, n)
	for i := range ts {
		ts[i] = t
	}
	return nn.TimestepSinusoid(ts, m.Config.InnerDim(), true, 0)
}

// ForwardSinusoid is Forward with the timestep given as its sinusoid
// (Sinusoid, on x's device), so that a captured step graph takes the
// timestep as an input tensor.
func (m *Model) ForwardSinusoid(x, tsin, projEmb, enc *tensor.Tensor, mask []bool) (*tensor.Tensor, error) {
	n := x.Dim(0)
	dev := x.Backend()
	cfg := m.Config
	if tsin.Rank() != 2 || tsin.Dim(0) != n || tsin.Dim(1) != cfg.InnerDim() {
		return nil, fmt.Errorf("prior: timestep sinusoid %v, want (%d, %d)", tsin.Shape(), n, cfg.InnerDim())
	}
	if x.Rank() != 2 || x.Dim(1) != cfg.EmbeddingDim || projEmb.Rank() != 2 || projEmb.Dim(0) != n || projEmb.Dim(1) != cfg.ProjDim() {
		return nil, fmt.Errorf("prior: latents %v and text embedding %v, want (N, %d) and (N, %d)", x.Shape(), projEmb.Shape(), cfg.EmbeddingDim, cfg.ProjDim())
	}
	if enc != nil && (enc.Rank() != 3 || enc.Dim(0) != n || enc.Dim(2) != cfg.EmbeddingDim) {
		return nil, fmt.Errorf("prior: text hidden states %v, want (%d, L, %d)", enc.Shape(), n, cfg.EmbeddingDim)
	}
	if m.encProj != nil && enc == nil {
		return nil, fmt.Errorf("prior: encoder_hidden_states_proj requires text hidden states")
	}
	x, projEmb, enc = nn.As(x, m.dtype), nn.As(projEmb, m.dtype), nn.As(enc, m.dtype)
	temb := m.timeEmb.Forward(nn.As(tsin, m.dtype))
	if m.embNorm != nil {
		projEmb = m.embNorm.Forward(projEmb)
	}
	pe := m.embProj.Forward(projEmb)
	d := cfg.InnerDim()
	var parts []*tensor.Tensor
	extra := 0
	if enc != nil {
		if m.encProj != nil {
			enc = m.encProj.Forward(enc)
		}
		parts = append(parts, enc)
		extra += enc.Dim(1)
	}
	parts = append(parts, pe.Reshape(n, 1, d), temb.Reshape(n, 1, d), m.projIn.Forward(x).Reshape(n, 1, d))
	extra++ // the text-embedding token; diffusers counts it, plus one below
	if m.prd != nil {
		parts = append(parts, m.prd.Expand(n, 1, d))
	}
	h := tensor.Concat(1, parts...)
	seq := h.Dim(1)
	pos := m.posEmb
	if p := pos.Dim(1); p < seq {
		// diffusers pads the positional table with zeros: extra+1 rows before, the prd row after
		before := extra + 1
		after := 0
		if m.prd != nil {
			after = 1
		}
		if p+before+after != seq {
			return nil, fmt.Errorf("prior: %d positional embeddings for a %d-token sequence", p, seq)
		}
		var ps []*tensor.Tensor
		ps = append(ps, tensor.ZerosOn(dev, pos.DType(), 1, before, d), pos)
		if after > 0 {
			ps = append(ps, tensor.ZerosOn(dev, pos.DType(), 1, after, d))
		}
		pos = tensor.Concat(1, ps...)
	} else if p > seq {
		return nil, fmt.Errorf("prior: %d positional embeddings for a %d-token sequence", p, seq)
	}
	h = tensor.Add(h, pos)
	var bias *tensor.Tensor
	if mask != nil {
		l := 0
		if enc != nil {
			l = enc.Dim(1)
		}
		if len(mask) != n*l {
			return nil, fmt.Errorf("prior: attention mask of %d values for %d×%d text tokens", len(mask), n, l)
		}
		if l+cfg.AdditionalEmbeddings != seq || cfg.NumEmbeddings+cfg.AdditionalEmbeddings != seq {
			return nil, fmt.Errorf("prior: %d text tokens + %d additional embeddings do not fill the %d-token causal mask", l, cfg.AdditionalEmbeddings, cfg.NumEmbeddings+cfg.AdditionalEmbeddings)
		}
		bias = tensor.FromFloat32(Bias(mask, n, l, seq), n, 1, seq, seq).To(dev)
	}
	if m.normIn != nil {
		h = m.normIn.Forward(h)
	}
	for _, blk := range m.blocks {
		h = tensor.Add(h, blk.attn.Forward(blk.norm1.Forward(h), bias, false))
		h = tensor.Add(h, blk.ff2.Forward(tensor.GELU(blk.ff1.Forward(blk.norm3.Forward(h)))))
	}
	h = m.normOut.Forward(h)
	if m.prd != nil {
		h = h.Narrow(1, seq-1, 1).Reshape(n, d)
	} else {
		h = h.Narrow(1, extra+1, seq-extra-1)
		if h.Dim(1) == 1 {
			h = h.Reshape(n, d)
		}
	}
	out := nn.As(m.projOut.Forward(h), tensor.F32)
	if err := out.Err(); err != nil {
		return nil, fmt.Errorf("prior: %w", err)
	}
	return out, nil
}

// Bias builds the additive attention bias (N, 1, S, S) of diffusers'
// PriorTransformer: (1 − mask)·(−10000) on the L text keys (0 on the
// others) plus −10000 above the diagonal, in float32.
func Bias(mask []bool, n, l, s int) []float32 {
	out := make([]float32, n*s*s)
	for b := 0; b < n; b++ {
		for i := 0; i < s; i++ {
			row := out[(b*s+i)*s : (b*s+i+1)*s]
			for j := range row {
				var v float32
				if j < l && !mask[b*l+j] {
					v = -10000
				}
				if j > i {
					v += -10000
				}
				row[j] = v
			}
		}
	}
	return out
}

// PostProcess de-normalises latents: x·clip_std + clip_mean.
func (m *Model) PostProcess(x *tensor.Tensor) *tensor.Tensor {
	return tensor.Add(tensor.Mul(x, m.ClipStd), m.ClipMean)
}
