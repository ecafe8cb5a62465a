// Package textproj is diffusers' UnCLIPTextProjModel: it turns the image
// embedding and the CLIP text outputs into the decoder's context tokens and
// its additive time embedding.
package textproj

import (
	"encoding/json"
	"fmt"

	"github.com/unclip-go/unclip/models/modelfile"
	"github.com/unclip-go/unclip/nn"
	"github.com/unclip-go/unclip/tensor"
)

// Config is text_proj/config.json.
type Config struct {
	ClipExtraContextTokens int `json:"clip_extra_context_tokens"`
	ClipEmbeddingsDim      int `json:"clip_embeddings_dim"`
	TimeEmbedDim           int `json:"time_embed_dim"`
	CrossAttentionDim      int `json:"cross_attention_dim"`
}

// DefaultConfig is diffusers' default, which is Karlo's.
func DefaultConfig() Config {
	return Config{ClipExtraContextTokens: 4, ClipEmbeddingsDim: 768, TimeEmbedDim: 1280, CrossAttentionDim: 1536}
}

// LoadConfig reads a UnCLIPTextProjModel config.json.
func LoadConfig(path string) (Config, error) {
	data, err := modelfile.Read(path, modelfile.ConfigLimit)
	if err != nil {
		return Config{}, fmt.Errorf("text_proj: %w", err)
	}
	cfg := DefaultConfig()
	if err := json.Unmarshal(data, &cfg); err != nil {
		return Config{}, fmt.Errorf("text_proj: %s: %w", path, err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("text_proj: %s: %w", path, err)
	}
	return cfg, nil
}

// Validate checks the sizes against the bounds of nn.CheckRanges.
func (c Config) Validate() error {
	return nn.CheckRanges(
		nn.Range{Key: "clip_extra_context_tokens", Value: c.ClipExtraContextTokens, Min: 0, Max: 1024},
		nn.Range{Key: "clip_embeddings_dim", Value: c.ClipEmbeddingsDim, Min: 1, Max: nn.MaxWidth},
		nn.Range{Key: "time_embed_dim", Value: c.TimeEmbedDim, Min: 1, Max: nn.MaxWidth},
		nn.Range{Key: "cross_attention_dim", Value: c.CrossAttentionDim, Min: 1, Max: nn.MaxWidth},
	)
}

// Model is an UnCLIPTextProjModel.
type Model struct {
	Config Config
	// Weights are the bound weights (residency: Release, Evict, Restore).
	Weights    *nn.StateDict
	cfgEmb     *tensor.Tensor // (clip dim)
	embProj    *nn.Linear     // prompt embeds → time
	imgToTime  *nn.Linear     // image embeds → time
	extraProj  *nn.Linear     // image embeds → extra tokens · cross dim
	encProj    *nn.Linear     // text hidden → cross dim
	encNorm    *nn.LayerNorm  // on cross dim
	textHidDim int
	dtype      tensor.DType // activation type
}

// Load reads text_proj/{config.json, diffusion_pytorch_model.safetensors}.
func Load(dir, variant string, t nn.Target) (*Model, error) {
	return nn.LoadDiffusers("text_proj", dir, variant, t, LoadConfig, New)
}

// New binds the model. In diffusers the text hidden-state width equals
// clip_embeddings_dim.
func New(cfg Config, sd *nn.StateDict, target nn.Target) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("text_proj: %w", err)
	}
	b := nn.NewBinder(sd, target)
	c, t, x, k := cfg.ClipEmbeddingsDim, cfg.TimeEmbedDim, cfg.CrossAttentionDim, cfg.ClipExtraContextTokens
	m := &Model{Config: cfg, textHidDim: c, dtype: target.Compute(), Weights: sd}
	m.cfgEmb = b.Tensor("learned_classifier_free_guidance_embeddings", c)
	m.embProj = nn.NewLinear(b.Sub("embedding_proj"), c, t, true)
	m.imgToTime = nn.NewLinear(b.Sub("clip_image_embeddings_project_to_time_embeddings"), c, t, true)
	m.extraProj = nn.NewLinear(b.Sub("clip_extra_context_tokens_proj"), c, k*x, true)
	m.encProj = nn.NewLinear(b.Sub("encoder_hidden_states_proj"), c, x, true)
	m.encNorm = nn.NewLayerNorm(b.Sub("text_encoder_hidden_states_norm"), x, 1e-5)
	b.CheckUnused()
	if err := b.Err(); err != nil {
		return nil, err
	}
	return m, nil
}

// Forward returns the decoder context (M, extra+L, cross dim) and the
// additive time embedding (M, time dim). With cfg set, image (B, clip dim)
// is preceded by B copies of the learned guidance embedding, so M = 2B
// must be the row count of promptEmbeds (M, clip dim) and textHidden
// (M, L, clip dim).
func (m *Model) Forward(image, promptEmbeds, textHidden *tensor.Tensor, cfg bool) (context, timeEmb *tensor.Tensor, err error) {
	c := m.Config.ClipEmbeddingsDim
	if image.Rank() != 2 || image.Dim(1) != c {
		return nil, nil, fmt.Errorf("text_proj: image embeddings %v, want (B, %d)", image.Shape(), c)
	}
	image, promptEmbeds, textHidden = nn.As(image, m.dtype), nn.As(promptEmbeds, m.dtype), nn.As(textHidden, m.dtype)
	if cfg {
		b := image.Dim(0)
		g := m.cfgEmb.Reshape(1, c).Expand(b, c)
		image = tensor.Concat(0, g.Contiguous(), image)
	}
	rows := image.Dim(0)
	if promptEmbeds.Rank() != 2 || promptEmbeds.Dim(0) != rows || promptEmbeds.Dim(1) != c ||
		textHidden.Rank() != 3 || textHidden.Dim(0) != rows || textHidden.Dim(2) != m.textHidDim {
		return nil, nil, fmt.Errorf("text_proj: prompt embeds %v and text hidden states %v for %d image rows of %d", promptEmbeds.Shape(), textHidden.Shape(), rows, c)
	}
	timeEmb = tensor.Add(m.imgToTime.Forward(image), m.embProj.Forward(promptEmbeds))
	k, x := m.Config.ClipExtraContextTokens, m.Config.CrossAttentionDim
	// (M, x·k) viewed as (M, x, k) then transposed: token j, channel i = e[i·k + j].
	extra := m.extraProj.Forward(image).Reshape(rows, x, k).Transpose(1, 2)
	th := m.encNorm.Forward(m.encProj.Forward(textHidden))
	context = nn.As(tensor.Concat(1, extra.Contiguous(), th), tensor.F32)
	timeEmb = nn.As(timeEmb, tensor.F32)
	if err := context.Err(); err != nil {
		return nil, nil, fmt.Errorf("text_proj: %w", err)
	}
	return context, timeEmb, nil
}
