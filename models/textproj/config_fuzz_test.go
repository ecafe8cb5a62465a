package textproj_test

import (
	"testing"

	"github.com/unclip-go/unclip/models/textproj"
	"github.com/unclip-go/unclip/nn"
	"github.com/unclip-go/unclip/nn/nntest"
)

// FuzzTextProjConfig loads a fuzzed text_proj/config.json (issue 16,
// finding 2). A config that loads must validate, and building it against
// an empty state dict must fail at the first missing weight without a
// panic and without allocating what the config declares.
func FuzzTextProjConfig(f *testing.F) {
	seeds := []string{
		`{}`,
		`{"clip_extra_context_tokens": 4, "clip_embeddings_dim": 32, "time_embed_dim": 128, "cross_attention_dim": 100}`,
		`{"clip_extra_context_tokens": 1000000000}`,
		`{"clip_extra_context_tokens": 1024, "cross_attention_dim": 65536}`,
		`{"clip_embeddings_dim": 0}`,
		`{"time_embed_dim": -1280}`,
		`{"cross_attention_dim": 9223372036854775807}`,
		`{"clip_extra_context_tokens": "4"}`,
		`[1, 2]`,
	}
	nntest.FuzzConfig(f, seeds, nntest.ConfigFuzz[textproj.Config]{
		Context: "text_proj:", Load: textproj.LoadConfig, Validate: textproj.Config.Validate,
		Build: func(c textproj.Config, sd *nn.StateDict, t nn.Target) error {
			_, err := textproj.New(c, sd, t)
			return err
		}, MaxAlloc: 64 << 20,
	})
}
