// Package nntest holds test helpers shared by the model packages.
package nntest

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/unclip-go/unclip/nn"
	"github.com/unclip-go/unclip/tensor"
)

// ConfigFuzz describes a model's config loader and builder for FuzzConfig.
type ConfigFuzz[C any] struct {
	// Context is what every load error must name (e.g. "prior:").
	Context string
	Load    func(path string) (C, error)
	// Validate must accept every config that loads.
	Validate func(C) error
	// Build binds the model from a state dict.
	Build func(C, *nn.StateDict, nn.Target) error
	// AnyBuildError accepts any build error without weights; otherwise
	// it must name a missing tensor.
	AnyBuildError bool
	// MaxAlloc bounds the bytes allocated by building without weights.
	MaxAlloc uint64
}

// FuzzConfig runs f over fuzzed config.json files, seeded with seeds: a
// config that loads must validate, and building it against an empty
// state dict must fail (at the first missing weight) without a panic and
// without allocating what the config declares.
func FuzzConfig[C any](f *testing.F, seeds []string, c ConfigFuzz[C]) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	path := filepath.Join(f.TempDir(), "config.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := c.Load(path)
		if err != nil {
			if !strings.Contains(err.Error(), c.Context) {
				t.Fatalf("error without context: %v", err)
			}
			return
		}
		if err := c.Validate(cfg); err != nil {
			t.Fatalf("loaded config does not validate: %v", err)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err = c.Build(cfg, nn.NewStateDict(map[string]*tensor.Tensor{}), nn.Target{})
		runtime.ReadMemStats(&after)
		switch {
		case err == nil:
			t.Fatal("built without weights")
		case !c.AnyBuildError && !strings.Contains(err.Error(), "missing tensor"):
			t.Fatalf("built without weights: %v", err)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > c.MaxAlloc {
			t.Fatalf("building without weights allocated %d MiB", n>>20)
		}
	})
}
