package unet_test

import (
	"strings"
	"testing"

	"github.com/unclip-go/unclip/models/unet"
	"github.com/unclip-go/unclip/nn"
	"github.com/unclip-go/unclip/nn/nntest"
)

// tinyDecoder and tinySuperRes are the U-Net configs of the tiny unCLIP
// architecture (diffusers' own tests).
const (
	tinyDecoder = `{"_class_name": "UNet2DConditionModel", "sample_size": 32, "in_channels": 3, "out_channels": 6,
		"down_block_types": ["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"],
		"up_block_types": ["SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"],
		"mid_block_type": "UNetMidBlock2DSimpleCrossAttn", "block_out_channels": [32, 64], "layers_per_block": 1,
		"cross_attention_dim": 100, "attention_head_dim": 4, "resnet_time_scale_shift": "scale_shift", "class_embed_type": "identity"}`
	tinySuperRes = `{"_class_name": "UNet2DModel", "sample_size": 64, "in_channels": 6, "out_channels": 3,
		"down_block_types": ["ResnetDownsampleBlock2D", "ResnetDownsampleBlock2D"],
		"up_block_types": ["ResnetUpsampleBlock2D", "ResnetUpsampleBlock2D"],
		"mid_block_type": "UNetMidBlock2D", "block_out_channels": [32, 64], "layers_per_block": 1, "add_attention": true}`
)

// FuzzUNetConfig loads a fuzzed decoder or super-resolution config.json
// (issue 16, finding 2). A config that loads must validate, and building
// it against an empty state dict must fail at the first missing weight
// without a panic and without allocating what the config declares.
func FuzzUNetConfig(f *testing.F) {
	edit := func(base, key, value string) string {
		return strings.Replace(base, "{", `{"`+key+`": `+value+", ", 1)
	}
	seeds := []string{tinyDecoder, tinySuperRes}
	for _, c := range []struct{ base, key, value string }{
		{tinyDecoder, "sample_size", "-32"},
		{tinyDecoder, "sample_size", "1000000"},
		{tinyDecoder, "sample_size", "[32, 4096, 0]"},
		{tinyDecoder, "layers_per_block", "1000000000"},
		{tinyDecoder, "layers_per_block", "64"},
		{tinyDecoder, "layers_per_block", "[1, 2, 3]"},
		{tinyDecoder, "conv_in_kernel", "1000001"},
		{tinyDecoder, "conv_out_kernel", "-1"},
		{tinyDecoder, "block_out_channels", "[32, 65536]"},
		{tinyDecoder, "block_out_channels", "[]"},
		{tinyDecoder, "attention_head_dim", "0"},
		{tinyDecoder, "cross_attention_dim", "[100, 100, 100]"},
		{tinyDecoder, "norm_num_groups", "null"},
		{tinyDecoder, "time_embedding_dim", "4294967296"},
		{tinySuperRes, "sample_size", "0"},
		{tinySuperRes, "attn_norm_num_groups", "0"},
		{tinySuperRes, "add_attention", "false"},
	} {
		seeds = append(seeds, edit(c.base, c.key, c.value))
	}
	nntest.FuzzConfig(f, seeds, nntest.ConfigFuzz[unet.Config]{
		Context: "unet:", Load: unet.LoadConfig, Validate: unet.Config.Validate,
		Build:         func(c unet.Config, sd *nn.StateDict, t nn.Target) error { _, err := unet.New(c, sd, t); return err },
		AnyBuildError: true, MaxAlloc: 256 << 20,
	})
}
