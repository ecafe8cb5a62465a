package prior_test

import (
	"testing"

	"github.com/unclip-go/unclip/models/prior"
	"github.com/unclip-go/unclip/nn"
	"github.com/unclip-go/unclip/nn/nntest"
)

// FuzzPriorConfig loads a fuzzed prior/config.json (issue 16, finding 2).
// A config that loads must validate, and building it against an empty
// state dict must fail at the first missing weight without a panic and
// without allocating what the config declares.
func FuzzPriorConfig(f *testing.F) {
	seeds := []string{
		`{}`,
		`{"num_attention_heads": 2, "attention_head_dim": 12, "embedding_dim": 32, "num_layers": 1}`,
		`{"num_layers": 1000000000}`,
		`{"num_layers": 1024, "num_attention_heads": 1, "attention_head_dim": 8, "embedding_dim": 8}`,
		`{"num_embeddings": 65536, "additional_embeddings": 65536}`,
		`{"num_attention_heads": 4294967296, "attention_head_dim": 4294967296}`,
		`{"embedding_dim": -1}`,
		`{"time_embed_dim": 0, "embedding_proj_dim": -7, "clip_embed_dim": 1099511627776}`,
		`{"encoder_hid_proj_type": null}`,
		`{"norm_in_type": "batch"}`,
		`{"time_embed_act_fn": "relu"}`,
		`null`,
	}
	nntest.FuzzConfig(f, seeds, nntest.ConfigFuzz[prior.Config]{
		Context: "prior:", Load: prior.LoadConfig, Validate: prior.Config.Validate,
		Build: func(c prior.Config, sd *nn.StateDict, t nn.Target) error { _, err := prior.New(c, sd, t); return err }, MaxAlloc: 64 << 20,
	})
}
