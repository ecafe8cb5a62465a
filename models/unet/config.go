// Package unet builds diffusers' UNet2DConditionModel (the unCLIP decoder)
// and UNet2DModel (the super-resolution networks) from their config.json,
// for the block types Karlo uses.
package unet

import (
	"encoding/json"
	"fmt"

	"github.com/unclip-go/unclip/models/modelfile"
	"github.com/unclip-go/unclip/nn"
)

// IntList decodes a JSON int or list of ints (diffusers allows both for
// per-block options such as attention_head_dim).
type IntList []int

// UnmarshalJSON accepts 8, [8, 16] or null.
func (l *IntList) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*l = nil
		return nil
	}
	var one int
	if err := json.Unmarshal(b, &one); err == nil {
		*l = IntList{one}
		return nil
	}
	var many []int
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("want an int or a list of ints, got %s", b)
	}
	*l = many
	return nil
}

// At returns element i, or the single value when the list holds one.
func (l IntList) At(i int) int {
	if len(l) == 1 {
		return l[0]
	}
	return l[i]
}

// Config is the union of the UNet2DConditionModel and UNet2DModel
// config.json fields this package reads. Options that change the
// architecture in ways not implemented are rejected by Validate.
type Config struct {
	ClassName             string   `json:"_class_name"`
	SampleSize            IntList  `json:"sample_size"`
	InChannels            int      `json:"in_channels"`
	OutChannels           int      `json:"out_channels"`
	CenterInputSample     bool     `json:"center_input_sample"`
	FlipSinToCos          bool     `json:"flip_sin_to_cos"`
	FreqShift             float32  `json:"freq_shift"`
	DownBlockTypes        []string `json:"down_block_types"`
	MidBlockType          *string  `json:"mid_block_type"`
	UpBlockTypes          []string `json:"up_block_types"`
	OnlyCrossAttention    any      `json:"only_cross_attention"`
	BlockOutChannels      []int    `json:"block_out_channels"`
	LayersPerBlock        IntList  `json:"layers_per_block"`
	DownsamplePadding     int      `json:"downsample_padding"`
	MidBlockScaleFactor   float32  `json:"mid_block_scale_factor"`
	ActFn                 string   `json:"act_fn"`
	NormNumGroups         *int     `json:"norm_num_groups"`
	NormEps               float32  `json:"norm_eps"`
	CrossAttentionDim     IntList  `json:"cross_attention_dim"`
	AttentionHeadDim      IntList  `json:"attention_head_dim"`
	NumAttentionHeads     IntList  `json:"num_attention_heads"`
	ResnetTimeScaleShift  string   `json:"resnet_time_scale_shift"`
	ResnetSkipTimeAct     bool     `json:"resnet_skip_time_act"`
	ResnetOutScaleFactor  float32  `json:"resnet_out_scale_factor"`
	ClassEmbedType        *string  `json:"class_embed_type"`
	AdditionEmbedType     *string  `json:"addition_embed_type"`
	TimeEmbeddingType     string   `json:"time_embedding_type"`
	TimeEmbeddingDim      *int     `json:"time_embedding_dim"`
	TimeEmbeddingActFn    *string  `json:"time_embedding_act_fn"`
	TimestepPostAct       *string  `json:"timestep_post_act"`
	TimeCondProjDim       *int     `json:"time_cond_proj_dim"`
	ConvInKernel          int      `json:"conv_in_kernel"`
	ConvOutKernel         int      `json:"conv_out_kernel"`
	CrossAttentionNorm    *string  `json:"cross_attention_norm"`
	EncoderHidDim         *int     `json:"encoder_hid_dim"`
	NumClassEmbeds        *int     `json:"num_class_embeds"`
	DualCrossAttention    bool     `json:"dual_cross_attention"`
	UseLinearProjection   bool     `json:"use_linear_projection"`
	UpcastAttention       bool     `json:"upcast_attention"`
	AddAttention          *bool    `json:"add_attention"`
	AttnNormNumGroups     *int     `json:"attn_norm_num_groups"`
	DownsampleType        string   `json:"downsample_type"`
	UpsampleType          string   `json:"upsample_type"`
	ClassEmbeddingsConcat bool     `json:"class_embeddings_concat"`
	MidBlockOnlyCrossAttn *bool    `json:"mid_block_only_cross_attention"`
	Conditional           bool     `json:"-"` // UNet2DConditionModel
}

// LoadConfig reads a UNet config.json. The class (_class_name) decides the
// defaults: UNet2DConditionModel or UNet2DModel.
func LoadConfig(path string) (Config, error) {
	data, err := modelfile.Read(path, modelfile.ConfigLimit)
	if err != nil {
		return Config{}, fmt.Errorf("unet: %w", err)
	}
	var head struct {
		ClassName string `json:"_class_name"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return Config{}, fmt.Errorf("unet: %s: %w", path, err)
	}
	var cfg Config
	switch head.ClassName {
	case "UNet2DConditionModel":
		cfg = defaultConditional()
	case "UNet2DModel":
		cfg = defaultUnconditional()
	default:
		return Config{}, fmt.Errorf("unet: %s: _class_name %q is not UNet2DConditionModel or UNet2DModel", path, head.ClassName)
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return Config{}, fmt.Errorf("unet: %s: %w", path, err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("unet: %s: %w", path, err)
	}
	return cfg, nil
}

func ip(v int) *int       { return &v }
func sp(v string) *string { return &v }
func bp(v bool) *bool     { return &v }

func defaultConditional() Config {
	return Config{ClassName: "UNet2DConditionModel", Conditional: true, InChannels: 4, OutChannels: 4,
		FlipSinToCos: true, DownBlockTypes: []string{"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"},
		MidBlockType: sp("UNetMidBlock2DCrossAttn"), UpBlockTypes: []string{"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"},
		BlockOutChannels: []int{320, 640, 1280, 1280}, LayersPerBlock: IntList{2}, DownsamplePadding: 1, MidBlockScaleFactor: 1,
		ActFn: "silu", NormNumGroups: ip(32), NormEps: 1e-5, CrossAttentionDim: IntList{1280}, AttentionHeadDim: IntList{8},
		ResnetTimeScaleShift: "default", ResnetOutScaleFactor: 1, TimeEmbeddingType: "positional", ConvInKernel: 3, ConvOutKernel: 3}
}

func defaultUnconditional() Config {
	return Config{ClassName: "UNet2DModel", InChannels: 3, OutChannels: 3, FlipSinToCos: true,
		DownBlockTypes: []string{"DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"},
		MidBlockType:   sp("UNetMidBlock2D"), UpBlockTypes: []string{"AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"},
		BlockOutChannels: []int{224, 448, 672, 896}, LayersPerBlock: IntList{2}, MidBlockScaleFactor: 1, DownsamplePadding: 1,
		ActFn: "silu", AttentionHeadDim: IntList{8}, NormNumGroups: ip(32), NormEps: 1e-5, ResnetTimeScaleShift: "default",
		AddAttention: bp(true), TimeEmbeddingType: "positional", ResnetOutScaleFactor: 1, DownsampleType: "conv", UpsampleType: "conv",
		ConvInKernel: 3, ConvOutKernel: 3}
}

var (
	downTypes = map[string]bool{"ResnetDownsampleBlock2D": true, "SimpleCrossAttnDownBlock2D": true}
	upTypes   = map[string]bool{"ResnetUpsampleBlock2D": true, "SimpleCrossAttnUpBlock2D": true}
)

// Validate rejects configurations outside what this package builds, naming
// the offending option.
func (c Config) Validate() error {
	n := len(c.BlockOutChannels)
	rs := []nn.Range{
		{Key: "len(block_out_channels)", Value: n, Min: 1, Max: 16},
		{Key: "in_channels", Value: c.InChannels, Min: 1, Max: nn.MaxWidth},
		{Key: "out_channels", Value: c.OutChannels, Min: 1, Max: nn.MaxWidth},
		{Key: "conv_in_kernel", Value: c.ConvInKernel, Min: 1, Max: 15},
		{Key: "conv_out_kernel", Value: c.ConvOutKernel, Min: 1, Max: 15},
		{Key: "downsample_padding", Value: c.DownsamplePadding, Min: 0, Max: 16},
	}
	for _, v := range c.SampleSize {
		rs = append(rs, nn.Range{Key: "sample_size", Value: v, Min: 1, Max: 4096})
	}
	for _, v := range c.BlockOutChannels {
		rs = append(rs, nn.Range{Key: "block_out_channels", Value: v, Min: 1, Max: nn.MaxWidth})
	}
	for _, v := range c.LayersPerBlock {
		rs = append(rs, nn.Range{Key: "layers_per_block", Value: v, Min: 1, Max: 64})
	}
	for _, l := range []struct {
		key string
		v   IntList
	}{{"attention_head_dim", c.AttentionHeadDim}, {"num_attention_heads", c.NumAttentionHeads}, {"cross_attention_dim", c.CrossAttentionDim}} {
		for _, v := range l.v {
			rs = append(rs, nn.Range{Key: l.key, Value: v, Min: 1, Max: nn.MaxWidth})
		}
	}
	for _, p := range []struct {
		key string
		v   *int
	}{{"norm_num_groups", c.NormNumGroups}, {"attn_norm_num_groups", c.AttnNormNumGroups}, {"time_embedding_dim", c.TimeEmbeddingDim}} {
		if p.v != nil {
			rs = append(rs, nn.Range{Key: p.key, Value: *p.v, Min: 1, Max: nn.MaxWidth})
		}
	}
	if err := nn.CheckRanges(rs...); err != nil {
		return err
	}
	switch {
	case n == 0 || len(c.DownBlockTypes) != n || len(c.UpBlockTypes) != n:
		return fmt.Errorf("block_out_channels (%d), down_block_types (%d) and up_block_types (%d) must have the same length", n, len(c.DownBlockTypes), len(c.UpBlockTypes))
	case c.InChannels <= 0 || c.OutChannels <= 0:
		return fmt.Errorf("bad in_channels %d / out_channels %d", c.InChannels, c.OutChannels)
	case c.NormNumGroups == nil || *c.NormNumGroups <= 0:
		return fmt.Errorf("norm_num_groups must be set (null is not supported)")
	case c.ActFn != "silu" && c.ActFn != "swish":
		return fmt.Errorf("unsupported act_fn %q (only silu)", c.ActFn)
	case c.ResnetTimeScaleShift != "default" && c.ResnetTimeScaleShift != "scale_shift":
		return fmt.Errorf("unsupported resnet_time_scale_shift %q", c.ResnetTimeScaleShift)
	case c.TimeEmbeddingType != "positional":
		return fmt.Errorf("unsupported time_embedding_type %q (only positional)", c.TimeEmbeddingType)
	case c.ResnetSkipTimeAct:
		return fmt.Errorf("unsupported resnet_skip_time_act true")
	case c.AdditionEmbedType != nil:
		return fmt.Errorf("unsupported addition_embed_type %q", *c.AdditionEmbedType)
	case c.TimeEmbeddingActFn != nil || c.TimestepPostAct != nil || c.TimeCondProjDim != nil:
		return fmt.Errorf("unsupported time embedding options (time_embedding_act_fn, timestep_post_act, time_cond_proj_dim)")
	case c.CrossAttentionNorm != nil:
		return fmt.Errorf("unsupported cross_attention_norm %q", *c.CrossAttentionNorm)
	case c.EncoderHidDim != nil || c.NumClassEmbeds != nil || c.ClassEmbeddingsConcat:
		return fmt.Errorf("unsupported encoder_hid_dim / num_class_embeds / class_embeddings_concat")
	case c.DualCrossAttention || c.UseLinearProjection:
		return fmt.Errorf("unsupported dual_cross_attention / use_linear_projection (transformer blocks are not implemented)")
	case c.ConvInKernel%2 == 0 || c.ConvOutKernel%2 == 0:
		return fmt.Errorf("conv_in_kernel %d / conv_out_kernel %d must be odd", c.ConvInKernel, c.ConvOutKernel)
	}
	if c.ClassEmbedType != nil && *c.ClassEmbedType != "identity" {
		return fmt.Errorf("unsupported class_embed_type %q (only identity or null)", *c.ClassEmbedType)
	}
	if oc, ok := c.OnlyCrossAttention.(bool); c.OnlyCrossAttention != nil && (!ok || oc) {
		return fmt.Errorf("unsupported only_cross_attention %v", c.OnlyCrossAttention)
	}
	for _, t := range c.DownBlockTypes {
		if !downTypes[t] {
			return fmt.Errorf("unsupported down block type %q (supported: ResnetDownsampleBlock2D, SimpleCrossAttnDownBlock2D)", t)
		}
	}
	for _, t := range c.UpBlockTypes {
		if !upTypes[t] {
			return fmt.Errorf("unsupported up block type %q (supported: ResnetUpsampleBlock2D, SimpleCrossAttnUpBlock2D)", t)
		}
	}
	if c.MidBlockType != nil {
		switch *c.MidBlockType {
		case "UNetMidBlock2DSimpleCrossAttn":
			if !c.Conditional {
				return fmt.Errorf("mid block %q needs a UNet2DConditionModel", *c.MidBlockType)
			}
		case "UNetMidBlock2D":
		default:
			return fmt.Errorf("unsupported mid block type %q (supported: UNetMidBlock2DSimpleCrossAttn, UNetMidBlock2D)", *c.MidBlockType)
		}
	}
	for _, l := range []IntList{c.LayersPerBlock, c.AttentionHeadDim, c.CrossAttentionDim} {
		if len(l) != 1 && len(l) != n && l != nil {
			return fmt.Errorf("per-block lists must have one entry or one per block (%d)", n)
		}
	}
	if len(c.LayersPerBlock) == 0 {
		return fmt.Errorf("layers_per_block missing")
	}
	for i, ch := range c.BlockOutChannels {
		if ch <= 0 || ch%*c.NormNumGroups != 0 {
			return fmt.Errorf("block_out_channels[%d] = %d is not a positive multiple of norm_num_groups %d", i, ch, *c.NormNumGroups)
		}
	}
	if !c.Conditional && c.AddAttention != nil && *c.AddAttention && c.ResnetTimeScaleShift != "default" && c.AttnNormNumGroups == nil {
		return fmt.Errorf("a mid-block attention without group norm (scale_shift with attn_norm_num_groups null) is not supported")
	}
	return nil
}

// TimeEmbedDim is the width of the time embedding (4 × block_out_channels[0]
// unless time_embedding_dim is set).
func (c Config) TimeEmbedDim() int {
	if c.TimeEmbeddingDim != nil && *c.TimeEmbeddingDim > 0 {
		return *c.TimeEmbeddingDim
	}
	return 4 * c.BlockOutChannels[0]
}
