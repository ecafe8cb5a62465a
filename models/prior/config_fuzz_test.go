package prior_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/unclip-go/unclip/models/prior"
	"github.com/unclip-go/unclip/nn"
	"github.com/unclip-go/unclip/tensor"
)

// FuzzPriorConfig loads a fuzzed prior/config.json (issue 16, finding 2).
// A config that loads must validate, and building it against an empty
// state dict must fail at the first missing weight without a panic and
// without allocating what the config declares.
func FuzzPriorConfig(f *testing.F) {
	for _, s := range []string{
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
	} {
		f.Add([]byte(s))
	}
	path := filepath.Join(f.TempDir(), "config.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := prior.LoadConfig(path)
		if err != nil {
			if !strings.Contains(err.Error(), "prior:") {
				t.Fatalf("error without context: %v", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("loaded config does not validate: %v", err)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err = prior.New(cfg, nn.NewStateDict(map[string]*tensor.Tensor{}), nn.Target{})
		runtime.ReadMemStats(&after)
		if err == nil || !strings.Contains(err.Error(), "missing tensor") {
			t.Fatalf("built without weights: %v", err)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 64<<20 {
			t.Fatalf("building without weights allocated %d MiB", n>>20)
		}
	})
}
