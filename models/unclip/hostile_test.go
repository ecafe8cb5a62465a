package unclip_test

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/unclip-go/unclip/models/golden"
	"github.com/unclip-go/unclip/models/golden/fixtures"
	"github.com/unclip-go/unclip/models/unclip"
)

// copyTinyModel copies the fixture model into a temporary folder.
func copyTinyModel(t *testing.T) string {
	t.Helper()
	fixtures.Require(t)
	src, _, err := golden.Tiny()
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	err = filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(filepath.Join(dst, rel))
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// setConfig sets one key of a component's config file to a raw JSON value.
func setConfig(t *testing.T, file, key, value string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	m[key] = json.RawMessage(value)
	data, _ = json.Marshal(m)
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// loadNoPanic loads dir, turning a panic into a test failure, and returns
// the error and the bytes allocated meanwhile.
func loadNoPanic(t *testing.T, dir string) (err error, allocated uint64) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("Load panicked: %v\n%s", r, debug.Stack())
			}
		}()
		_, err = unclip.Load(dir, unclip.LoadOptions{})
	}()
	runtime.ReadMemStats(&after)
	return err, after.TotalAlloc - before.TotalAlloc
}

// TestHostileConfigs edits one number of one config, as the probe of
// issue 16 did, and checks that loading fails with an error naming the
// key (or the tensor that does not fit), without a panic and without
// allocating what the edited config declares.
func TestHostileConfigs(t *testing.T) {
	cases := []struct {
		file, key, value, want string
	}{
		{"text_encoder/config.json", "hidden_size", "1099511627776", "hidden_size"},
		{"text_encoder/config.json", "num_hidden_layers", "1000000000", "num_hidden_layers"},
		{"text_encoder/config.json", "max_position_embeddings", "1000000000000", "max_position_embeddings"},
		{"text_encoder/config.json", "vocab_size", "-5", "vocab_size"},
		{"prior/config.json", "num_layers", "1000000000", "num_layers"},
		{"decoder/config.json", "sample_size", "-32", "sample_size"},
		{"decoder/config.json", "sample_size", "1000000", "sample_size"},
		{"decoder/config.json", "sample_size", "33", "sample_size"},
		{"decoder/config.json", "layers_per_block", "1000000000", "layers_per_block"},
		{"decoder/config.json", "conv_in_kernel", "1000001", "conv_in_kernel"},
		{"super_res_first/config.json", "sample_size", "0", "sample_size"},
		{"text_proj/config.json", "clip_extra_context_tokens", "1000000000", "clip_extra_context_tokens"},
		{"decoder_scheduler/scheduler_config.json", "num_train_timesteps", "4611686018427387904", "num_train_timesteps"},
		// Within the bounds but not what the weights hold: the binder
		// reports the first tensor that does not fit, without allocating
		// the declared sizes.
		{"text_encoder/config.json", "hidden_size", "65536", "has shape [49408 32], expected [49408 65536] (and"},
		{"text_encoder/config.json", "num_hidden_layers", "1000", "missing tensor"},
		{"decoder/config.json", "block_out_channels", "[32, 65536]", "expected"},
		{"prior/config.json", "num_embeddings", "65536", "expected"},
	}
	for _, c := range cases {
		t.Run(c.file+" "+c.key+"="+c.value, func(t *testing.T) {
			dir := copyTinyModel(t)
			setConfig(t, filepath.Join(dir, c.file), c.key, c.value)
			err, alloc := loadNoPanic(t, dir)
			if err == nil {
				t.Fatal("loaded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
			if alloc > 256<<20 {
				t.Errorf("allocated %d MiB before failing", alloc>>20)
			}
		})
	}
}
