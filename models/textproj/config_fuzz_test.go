package textproj_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/unclip-go/unclip/models/textproj"
	"github.com/unclip-go/unclip/nn"
	"github.com/unclip-go/unclip/tensor"
)

// FuzzTextProjConfig loads a fuzzed text_proj/config.json (issue 16,
// finding 2). A config that loads must validate, and building it against
// an empty state dict must fail at the first missing weight without a
// panic and without allocating what the config declares.
func FuzzTextProjConfig(f *testing.F) {
	for _, s := range []string{
		`{}`,
		`{"clip_extra_context_tokens": 4, "clip_embeddings_dim": 32, "time_embed_dim": 128, "cross_attention_dim": 100}`,
		`{"clip_extra_context_tokens": 1000000000}`,
		`{"clip_extra_context_tokens": 1024, "cross_attention_dim": 65536}`,
		`{"clip_embeddings_dim": 0}`,
		`{"time_embed_dim": -1280}`,
		`{"cross_attention_dim": 9223372036854775807}`,
		`{"clip_extra_context_tokens": "4"}`,
		`[1, 2]`,
	} {
		f.Add([]byte(s))
	}
	path := filepath.Join(f.TempDir(), "config.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := textproj.LoadConfig(path)
		if err != nil {
			if !strings.Contains(err.Error(), "text_proj:") {
				t.Fatalf("error without context: %v", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("loaded config does not validate: %v", err)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err = textproj.New(cfg, nn.NewStateDict(map[string]*tensor.Tensor{}), nn.Target{})
		runtime.ReadMemStats(&after)
		if err == nil || !strings.Contains(err.Error(), "missing tensor") {
			t.Fatalf("built without weights: %v", err)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 64<<20 {
			t.Fatalf("building without weights allocated %d MiB", n>>20)
		}
	})
}
