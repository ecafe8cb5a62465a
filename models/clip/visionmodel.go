package clip

import (
	"fmt"

	"github.com/unclip-go/unclip/nn"
	"github.com/unclip-go/unclip/tensor"
)

// VisionConfig is the part of a transformers CLIPVisionConfig the image
// encoder needs (image_encoder/config.json).
type VisionConfig struct {
	HiddenSize        int     `json:"hidden_size"`
	IntermediateSize  int     `json:"intermediate_size"`
	ProjectionDim     int     `json:"projection_dim"`
	NumHiddenLayers   int     `json:"num_hidden_layers"`
	NumAttentionHeads int     `json:"num_attention_heads"`
	NumChannels       int     `json:"num_channels"`
	ImageSize         int     `json:"image_size"`
	PatchSize         int     `json:"patch_size"`
	HiddenAct         string  `json:"hidden_act"`
	LayerNormEps      float32 `json:"layer_norm_eps"`
}

// DefaultVisionConfig is transformers' CLIPVisionConfig default (ViT-B/32);
// fields absent from a config.json keep these values.
func DefaultVisionConfig() VisionConfig {
	return VisionConfig{HiddenSize: 768, IntermediateSize: 3072, ProjectionDim: 512, NumHiddenLayers: 12,
		NumAttentionHeads: 12, NumChannels: 3, ImageSize: 224, PatchSize: 32, HiddenAct: "quick_gelu", LayerNormEps: 1e-5}
}

// KarloVisionConfig is Karlo's image encoder, ViT-L/14 at 224 px
// (karlo-v1-alpha-image-variations/image_encoder), for random-weight runs.
func KarloVisionConfig() VisionConfig {
	return VisionConfig{HiddenSize: 1024, IntermediateSize: 4096, ProjectionDim: 768, NumHiddenLayers: 24,
		NumAttentionHeads: 16, NumChannels: 3, ImageSize: 224, PatchSize: 14, HiddenAct: "quick_gelu", LayerNormEps: 1e-5}
}

// LoadVisionConfig reads a CLIPVisionConfig (or the vision_config of a
// CLIPConfig).
func LoadVisionConfig(path string) (VisionConfig, error) {
	return loadConfig(path, "vision_config", DefaultVisionConfig())
}

// Validate checks that the configuration describes a buildable model.
func (c VisionConfig) Validate() error {
	if err := nn.CheckRanges(
		nn.Range{Key: "hidden_size", Value: c.HiddenSize, Min: 1, Max: nn.MaxWidth},
		nn.Range{Key: "intermediate_size", Value: c.IntermediateSize, Min: 1, Max: 4 * nn.MaxWidth},
		nn.Range{Key: "projection_dim", Value: c.ProjectionDim, Min: 1, Max: nn.MaxWidth},
		nn.Range{Key: "num_hidden_layers", Value: c.NumHiddenLayers, Min: 0, Max: nn.MaxLayers},
		nn.Range{Key: "num_attention_heads", Value: c.NumAttentionHeads, Min: 1, Max: nn.MaxWidth},
		nn.Range{Key: "num_channels", Value: c.NumChannels, Min: 1, Max: 4},
		nn.Range{Key: "image_size", Value: c.ImageSize, Min: 1, Max: 4096},
		nn.Range{Key: "patch_size", Value: c.PatchSize, Min: 1, Max: 4096},
	); err != nil {
		return err
	}
	switch {
	case c.HiddenSize%c.NumAttentionHeads != 0:
		return fmt.Errorf("hidden_size %d is not a multiple of num_attention_heads %d", c.HiddenSize, c.NumAttentionHeads)
	case c.ImageSize%c.PatchSize != 0:
		return fmt.Errorf("image_size %d is not a multiple of patch_size %d", c.ImageSize, c.PatchSize)
	case (c.ImageSize/c.PatchSize)*(c.ImageSize/c.PatchSize)+1 > nn.MaxTokens:
		return fmt.Errorf("%d patches exceed %d tokens", (c.ImageSize/c.PatchSize)*(c.ImageSize/c.PatchSize), nn.MaxTokens)
	case !nn.ValidActivation(c.HiddenAct):
		return fmt.Errorf("unsupported hidden_act %q", c.HiddenAct)
	}
	return nil
}

// Patches is the number of patch tokens (the class token comes on top).
func (c VisionConfig) Patches() int { g := c.ImageSize / c.PatchSize; return g * g }

// VisionModel is transformers' CLIPVisionModelWithProjection.
type VisionModel struct {
	Config  VisionConfig
	Weights *nn.StateDict
	patch   *tensor.Tensor // (hidden, C, p, p), no bias
	cls     *tensor.Tensor // (hidden)
	posEmb  *tensor.Tensor // (patches+1, hidden)
	preNorm *nn.LayerNorm
	layers  []textLayer
	post    *nn.LayerNorm
	proj    *nn.Linear
	dtype   tensor.DType
}

// VisionOutput holds what the pipelines use from the image encoder.
type VisionOutput struct {
	// ImageEmbeds is the projected class token (B, projection_dim).
	ImageEmbeds *tensor.Tensor
	// LastHidden is the last block's output (B, patches+1, hidden), with no
	// final LayerNorm (as transformers returns it).
	LastHidden *tensor.Tensor
}

// LoadVisionModel loads image_encoder/{config.json, model.safetensors} and
// binds the weights to t.
func LoadVisionModel(dir, variant string, t nn.Target) (*VisionModel, error) {
	return loadTower(dir, variant, t, LoadVisionConfig, NewVisionModel)
}

// NewVisionModel binds an image encoder from a state dict.
func NewVisionModel(cfg VisionConfig, sd *nn.StateDict, t nn.Target) (*VisionModel, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	sd.Ignore["vision_model.embeddings.position_ids"] = true
	b := nn.NewBinder(sd, t)
	vm := b.Sub("vision_model")
	h, p := cfg.HiddenSize, cfg.PatchSize
	m := &VisionModel{Config: cfg, Weights: sd, dtype: t.Compute()}
	emb := vm.Sub("embeddings")
	m.patch = emb.Sub("patch_embedding").Tensor("weight", h, cfg.NumChannels, p, p)
	m.cls = emb.Tensor("class_embedding", h)
	m.posEmb = emb.Sub("position_embedding").Tensor("weight", cfg.Patches()+1, h)
	m.preNorm = nn.NewLayerNorm(vm.Sub("pre_layrnorm"), h, cfg.LayerNormEps) // sic
	m.layers = newLayers(vm.Sub("encoder"), cfg.NumHiddenLayers, h, cfg.IntermediateSize, cfg.NumAttentionHeads, cfg.LayerNormEps, cfg.HiddenAct)
	m.post = nn.NewLayerNorm(vm.Sub("post_layernorm"), h, cfg.LayerNormEps)
	m.proj = nn.NewLinear(b.Sub("visual_projection"), h, cfg.ProjectionDim, false)
	b.CheckUnused()
	if err := b.Err(); err != nil {
		return nil, err
	}
	return m, nil
}

// Forward encodes pixel values (B, C, image_size, image_size), float32, as
// CLIPImageProcessor makes them.
func (m *VisionModel) Forward(pix *tensor.Tensor) (VisionOutput, error) {
	c := m.Config
	if pix.Rank() != 4 || pix.Dim(1) != c.NumChannels || pix.Dim(2) != c.ImageSize || pix.Dim(3) != c.ImageSize {
		return VisionOutput{}, fmt.Errorf("clip: pixel values %v, the model takes (B, %d, %d, %d)", pix.Shape(), c.NumChannels, c.ImageSize, c.ImageSize)
	}
	bsz, h, n := pix.Dim(0), c.HiddenSize, c.Patches()
	dev := m.patch.Backend()
	in := pix.To(dev)
	outs, err := tensor.RunOnce("image encoder", dev, []*tensor.Tensor{in}, func(in []*tensor.Tensor) ([]*tensor.Tensor, error) {
		x := tensor.Conv2d(nn.As(in[0], m.dtype), m.patch, nil, c.PatchSize, 0) // (B, h, g, g)
		x = x.Reshape(bsz, h, n).Transpose(1, 2)                                // (B, n, h)
		cls := nn.As(m.cls, m.dtype).Reshape(1, 1, h).Expand(bsz, 1, h)
		x = tensor.Add(tensor.Concat(1, cls.Contiguous(), x.Contiguous()), m.posEmb)
		x = encode(m.preNorm.Forward(x), m.layers, false, nil)
		pooled := m.post.Forward(x.Narrow(1, 0, 1).Reshape(bsz, h))
		return []*tensor.Tensor{nn.As(m.proj.Forward(pooled), tensor.F32), nn.As(x, tensor.F32)}, nil
	})
	if in != pix {
		in.Storage().Free()
	}
	if err != nil {
		return VisionOutput{}, fmt.Errorf("clip: image encoder: %w", err)
	}
	return VisionOutput{ImageEmbeds: outs[0], LastHidden: outs[1]}, nil
}
