package clip

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/unclip-go/unclip/models/modelfile"
	"github.com/unclip-go/unclip/nn"
	"github.com/unclip-go/unclip/tensor"
)

// TextConfig is the part of a transformers CLIPTextConfig the text encoder
// needs (text_encoder/config.json).
type TextConfig struct {
	VocabSize             int     `json:"vocab_size"`
	HiddenSize            int     `json:"hidden_size"`
	IntermediateSize      int     `json:"intermediate_size"`
	ProjectionDim         int     `json:"projection_dim"`
	NumHiddenLayers       int     `json:"num_hidden_layers"`
	NumAttentionHeads     int     `json:"num_attention_heads"`
	MaxPositionEmbeddings int     `json:"max_position_embeddings"`
	HiddenAct             string  `json:"hidden_act"`
	LayerNormEps          float32 `json:"layer_norm_eps"`
	EOSTokenID            int64   `json:"eos_token_id"`
}

// DefaultTextConfig is transformers' CLIPTextConfig default (the ViT-B/32
// text tower); fields absent from a config.json keep these values.
func DefaultTextConfig() TextConfig {
	return TextConfig{VocabSize: 49408, HiddenSize: 512, IntermediateSize: 2048, ProjectionDim: 512,
		NumHiddenLayers: 12, NumAttentionHeads: 8, MaxPositionEmbeddings: 77, HiddenAct: "quick_gelu",
		LayerNormEps: 1e-5, EOSTokenID: 49407}
}

// LoadTextConfig reads a CLIPTextConfig (or the text_config of a CLIPConfig).
func LoadTextConfig(path string) (TextConfig, error) {
	return loadConfig(path, "text_config", DefaultTextConfig())
}

// loadConfig reads a tower's config from path — the file itself, or its
// key (text_config, vision_config) in a whole CLIPConfig — over the
// defaults in cfg, and validates it.
func loadConfig[C interface{ Validate() error }](path, key string, cfg C) (C, error) {
	data, err := modelfile.Read(path, modelfile.ConfigLimit)
	if err != nil {
		return cfg, fmt.Errorf("clip: %w", err)
	}
	var wrap map[string]json.RawMessage
	if err := json.Unmarshal(data, &wrap); err != nil {
		return cfg, fmt.Errorf("clip: %s: %w", path, err)
	}
	if sub := wrap[key]; len(sub) > 0 && string(sub) != "null" {
		data = sub
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return cfg, fmt.Errorf("clip: %s: %w", path, err)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("clip: %s: %w", path, err)
	}
	return cfg, nil
}

// Validate checks that the configuration describes a buildable model.
func (c TextConfig) Validate() error {
	if err := nn.CheckRanges(
		nn.Range{Key: "hidden_size", Value: c.HiddenSize, Min: 1, Max: nn.MaxWidth},
		nn.Range{Key: "intermediate_size", Value: c.IntermediateSize, Min: 1, Max: 4 * nn.MaxWidth},
		nn.Range{Key: "projection_dim", Value: c.ProjectionDim, Min: 1, Max: nn.MaxWidth},
		nn.Range{Key: "num_hidden_layers", Value: c.NumHiddenLayers, Min: 0, Max: nn.MaxLayers},
		nn.Range{Key: "num_attention_heads", Value: c.NumAttentionHeads, Min: 1, Max: nn.MaxWidth},
		nn.Range{Key: "vocab_size", Value: c.VocabSize, Min: 1, Max: 1 << 24},
		nn.Range{Key: "max_position_embeddings", Value: c.MaxPositionEmbeddings, Min: 1, Max: nn.MaxTokens},
	); err != nil {
		return err
	}
	switch {
	case c.HiddenSize <= 0 || c.NumAttentionHeads <= 0 || c.HiddenSize%c.NumAttentionHeads != 0:
		return fmt.Errorf("hidden_size %d is not a positive multiple of num_attention_heads %d", c.HiddenSize, c.NumAttentionHeads)
	case c.NumHiddenLayers < 0 || c.IntermediateSize <= 0 || c.ProjectionDim <= 0:
		return fmt.Errorf("bad layer sizes (layers %d, intermediate %d, projection %d)", c.NumHiddenLayers, c.IntermediateSize, c.ProjectionDim)
	case c.VocabSize <= 0 || c.MaxPositionEmbeddings <= 0:
		return fmt.Errorf("bad vocab_size %d or max_position_embeddings %d", c.VocabSize, c.MaxPositionEmbeddings)
	case !nn.ValidActivation(c.HiddenAct):
		return fmt.Errorf("unsupported hidden_act %q", c.HiddenAct)
	}
	return nil
}

// TextModel is transformers' CLIPTextModelWithProjection.
type TextModel struct {
	Config TextConfig
	// Weights are the bound weights (residency: Release, Evict, Restore).
	Weights   *nn.StateDict
	tokEmb    *nn.Embedding
	posEmb    *tensor.Tensor
	layers    []textLayer
	finalNorm *nn.LayerNorm
	proj      *nn.Linear
	dtype     tensor.DType // activation type
}

type textLayer struct {
	norm1, norm2 *nn.LayerNorm
	attn         *nn.Attention
	mlp          *nn.MLP
}

// newLayers binds CLIP's pre-LayerNorm transformer blocks
// (encoder.layers.N.{layer_norm1, self_attn, layer_norm2, mlp}), shared by
// the text and vision towers.
func newLayers(b nn.Binder, n, h, inter, heads int, eps float32, act string) []textLayer {
	hd := h / heads
	var out []textLayer
	for i := 0; i < n; i++ {
		lb := b.Subf("layers.%d", i)
		ab := lb.Sub("self_attn")
		out = append(out, textLayer{
			norm1: nn.NewLayerNorm(lb.Sub("layer_norm1"), h, eps),
			norm2: nn.NewLayerNorm(lb.Sub("layer_norm2"), h, eps),
			attn: &nn.Attention{
				Q: nn.NewLinear(ab.Sub("q_proj"), h, h, true), K: nn.NewLinear(ab.Sub("k_proj"), h, h, true),
				V: nn.NewLinear(ab.Sub("v_proj"), h, h, true), Out: nn.NewLinear(ab.Sub("out_proj"), h, h, true),
				Heads: heads, HeadDim: hd, Scale: nn.DefaultScale(hd),
			},
			mlp: &nn.MLP{
				FC1: nn.NewLinear(lb.Sub("mlp.fc1"), h, inter, true),
				FC2: nn.NewLinear(lb.Sub("mlp.fc2"), inter, h, true),
				Act: nn.Activation(act),
			},
		})
	}
	return out
}

// encode runs the blocks over x (B, L, hidden): x += attn(LN1(x)), then
// x += mlp(LN2(x)), with a causal mask for the text tower and an optional
// additive bias on the scores.
func encode(x *tensor.Tensor, layers []textLayer, causal bool, bias *tensor.Tensor) *tensor.Tensor {
	for _, ly := range layers {
		x = tensor.Add(x, ly.attn.Forward(ly.norm1.Forward(x), bias, causal))
		x = tensor.Add(x, ly.mlp.Forward(ly.norm2.Forward(x)))
	}
	return x
}

// TextOutput holds what the pipeline uses from the text encoder.
type TextOutput struct {
	// TextEmbeds is the projected pooled output (B, projection_dim).
	TextEmbeds *tensor.Tensor
	// LastHidden is last_hidden_state after final_layer_norm (B, L, hidden).
	LastHidden *tensor.Tensor
}

// WeightFiles lists the weight files of a text_encoder or image_encoder
// folder: model[.variant].safetensors, else, when only that exists, the
// PyTorch checkpoint pytorch_model[.variant].bin (read without running
// its pickle: package tensor/torchbin).
func WeightFiles(dir, variant string) ([]string, error) {
	name, bin := "model.safetensors", "pytorch_model.bin"
	if variant != "" {
		name, bin = "model."+variant+".safetensors", "pytorch_model."+variant+".bin"
	}
	p := filepath.Join(dir, name)
	_, err := os.Stat(p)
	if os.IsNotExist(err) {
		b := filepath.Join(dir, bin)
		if _, berr := os.Stat(b); !os.IsNotExist(berr) {
			return []string{b}, nil // another error is the loader's to report
		}
		return nil, fmt.Errorf("clip: weights: %s has neither %s nor %s: %w", dir, name, bin, os.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("clip: weights: %w", err)
	}
	return []string{p}, nil
}

// LoadTextModel loads text_encoder/{config.json, model.safetensors} and
// binds the weights to dev (nil: CPU).
func LoadTextModel(dir, variant string, t nn.Target) (*TextModel, error) {
	return loadTower(dir, variant, t, LoadTextConfig, NewTextModel)
}

// loadTower reads a tower's config.json and weights from dir and binds
// them with build: the loader of the text and vision towers.
func loadTower[C any, M any](dir, variant string, t nn.Target, config func(string) (C, error), build func(C, *nn.StateDict, nn.Target) (*M, error)) (*M, error) {
	cfg, err := config(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	sd, err := loadWeights(dir, variant, t)
	if err != nil {
		return nil, err
	}
	m, err := build(cfg, sd, t)
	if err != nil {
		return nil, fmt.Errorf("clip: %s: %w", dir, err)
	}
	return m, nil
}

// loadWeights reads a tower's model[.variant].safetensors for t.
func loadWeights(dir, variant string, t nn.Target) (*nn.StateDict, error) {
	files, err := WeightFiles(dir, variant)
	if err != nil {
		return nil, err
	}
	sd, err := nn.LoadStateDictFor(t, files...)
	if err != nil {
		return nil, fmt.Errorf("clip: %w", err)
	}
	return sd, nil
}

// NewTextModel binds a text model from a state dict.
func NewTextModel(cfg TextConfig, sd *nn.StateDict, t nn.Target) (*TextModel, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	sd.Ignore["text_model.embeddings.position_ids"] = true
	b := nn.NewBinder(sd, t)
	tm := b.Sub("text_model")
	h := cfg.HiddenSize
	m := &TextModel{Config: cfg, dtype: t.Compute(), Weights: sd}
	m.tokEmb = nn.NewEmbedding(tm.Sub("embeddings.token_embedding"), cfg.VocabSize, h)
	m.posEmb = tm.Sub("embeddings.position_embedding").Tensor("weight", cfg.MaxPositionEmbeddings, h)
	m.layers = newLayers(tm.Sub("encoder"), cfg.NumHiddenLayers, h, cfg.IntermediateSize, cfg.NumAttentionHeads, cfg.LayerNormEps, cfg.HiddenAct)
	m.finalNorm = nn.NewLayerNorm(tm.Sub("final_layer_norm"), h, cfg.LayerNormEps)
	m.proj = nn.NewLinear(b.Sub("text_projection"), h, cfg.ProjectionDim, false)
	b.CheckUnused()
	if err := b.Err(); err != nil {
		return nil, err
	}
	return m, nil
}

// PoolIndex returns the position whose hidden state is pooled for one row
// of ids: with the legacy config eos_token_id == 2 it is the argmax of the
// ids (the first 49407 in practice); otherwise the first position holding
// eos_token_id, or 0 when there is none.
func (m *TextModel) PoolIndex(ids []int64) int {
	if m.Config.EOSTokenID == 2 {
		best := 0
		for i, v := range ids {
			if v > ids[best] {
				best = i
			}
		}
		return best
	}
	for i, v := range ids {
		if v == m.Config.EOSTokenID {
			return i
		}
	}
	return 0
}

// Forward encodes token ids (B rows of L ≤ max_position_embeddings ids).
// No attention mask is applied beyond the causal one, as in the pipeline.
func (m *TextModel) Forward(ids [][]int64) (TextOutput, error) {
	return m.ForwardMasked(ids, nil)
}

// ForwardMasked is Forward with transformers' attention_mask (one row of
// 0/1 per row of ids, nil for none): keys where it is 0 get the score bias
// float32's lowest value, on top of the causal mask. Valid positions and
// the pooled text_embeds equal Forward's; padded positions differ. Only
// the community text-interpolation pipeline calls the encoder this way.
func (m *TextModel) ForwardMasked(ids, mask [][]int64) (TextOutput, error) {
	if len(ids) == 0 {
		return TextOutput{}, fmt.Errorf("clip: no token ids")
	}
	bsz, l := len(ids), len(ids[0])
	if l == 0 || l > m.Config.MaxPositionEmbeddings {
		return TextOutput{}, fmt.Errorf("clip: %d tokens per row, the model takes 1..%d", l, m.Config.MaxPositionEmbeddings)
	}
	flat := make([]int64, 0, bsz*l)
	for _, row := range ids {
		if len(row) != l {
			return TextOutput{}, fmt.Errorf("clip: rows of %d and %d tokens", l, len(row))
		}
		for _, id := range row {
			if id < 0 || id >= int64(m.Config.VocabSize) {
				return TextOutput{}, fmt.Errorf("clip: token id %d outside the vocabulary of %d", id, m.Config.VocabSize)
			}
		}
		flat = append(flat, row...)
	}
	dev := m.tokEmb.W.Backend()
	idt := tensor.FromInt64(flat, bsz, l).To(dev)
	inputs := []*tensor.Tensor{idt}
	if mask != nil {
		if len(mask) != bsz {
			return TextOutput{}, fmt.Errorf("clip: %d attention-mask rows for %d rows of ids", len(mask), bsz)
		}
		bias := make([]float32, 0, bsz*l)
		for _, row := range mask {
			if len(row) != l {
				return TextOutput{}, fmt.Errorf("clip: an attention-mask row of %d values for %d tokens", len(row), l)
			}
			for _, v := range row {
				var b float32 // transformers' (1 − mask)·finfo(float32).min
				if v == 0 {
					b = -math.MaxFloat32
				}
				bias = append(bias, b)
			}
		}
		inputs = append(inputs, tensor.FromFloat32(bias, bsz, 1, 1, l).To(dev))
	}
	// One captured run: the activations live in an arena released at once.
	outs, err := tensor.RunOnce("text encoder", dev, inputs, func(in []*tensor.Tensor) ([]*tensor.Tensor, error) {
		x := nn.As(tensor.Add(m.tokEmb.Forward(in[0]), m.posEmb.Narrow(0, 0, l)), m.dtype)
		var bias *tensor.Tensor
		if len(in) > 1 {
			bias = in[1]
		}
		last := m.finalNorm.Forward(encode(x, m.layers, true, bias))
		pooled := make([]*tensor.Tensor, bsz)
		for i, row := range ids {
			pooled[i] = last.Narrow(0, i, 1).Narrow(1, m.PoolIndex(row), 1).Reshape(1, m.Config.HiddenSize)
		}
		return []*tensor.Tensor{nn.As(m.proj.Forward(tensor.Concat(0, pooled...)), tensor.F32), nn.As(last, tensor.F32)}, nil
	})
	for _, t := range inputs {
		t.Storage().Free()
	}
	if err != nil {
		return TextOutput{}, fmt.Errorf("clip: text encoder: %w", err)
	}
	embeds, last := outs[0], outs[1]
	return TextOutput{TextEmbeds: embeds, LastHidden: last}, nil
}
