package clip_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/unclip-go/unclip/models/clip"
	"github.com/unclip-go/unclip/models/golden"
	"github.com/unclip-go/unclip/models/golden/fixtures"
	"github.com/unclip-go/unclip/nn"
	"github.com/unclip-go/unclip/tensor/safetensors"
	"github.com/unclip-go/unclip/tensor/torchbin"
)

// TestBinWeightFiles checks that WeightFiles prefers model.safetensors,
// falls back to pytorch_model.bin, and names both when neither is there.
func TestBinWeightFiles(t *testing.T) {
	for _, c := range []struct {
		name    string
		files   []string
		variant string
		want    string // "" for an error
	}{
		{"safetensors", []string{"model.safetensors"}, "", "model.safetensors"},
		{"bin only", []string{"pytorch_model.bin"}, "", "pytorch_model.bin"},
		{"both", []string{"pytorch_model.bin", "model.safetensors"}, "", "model.safetensors"},
		{"variant bin", []string{"model.safetensors", "pytorch_model.fp16.bin"}, "fp16", "pytorch_model.fp16.bin"},
		{"neither", []string{"model.fp16.safetensors"}, "", ""},
	} {
		dir := t.TempDir()
		for _, f := range c.files {
			os.WriteFile(filepath.Join(dir, f), nil, 0o644)
		}
		got, err := clip.WeightFiles(dir, c.variant)
		if c.want == "" {
			if err == nil || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "model.safetensors") || !strings.Contains(err.Error(), "pytorch_model.bin") {
				t.Errorf("%s: %v, %v; want an error naming both files", c.name, got, err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, []string{filepath.Join(dir, c.want)}) {
			t.Errorf("%s: %v, %v; want %s", c.name, got, err, c.want)
		}
	}
}

// TestBinTextModel loads the fixture's text encoder from a folder that
// holds it as pytorch_model.bin only.
func TestBinTextModel(t *testing.T) {
	fixtures.Require(t)
	model, g, err := golden.OpenTiny()
	if err != nil {
		t.Fatal(err)
	}
	g.Close()
	src := filepath.Join(model, "text_encoder")
	dir := t.TempDir()
	cfg, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644)
	st, err := safetensors.Open(filepath.Join(src, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var ts []torchbin.Tensor
	for _, k := range st.Keys() {
		info, _ := st.Get(k)
		ts = append(ts, torchbin.Tensor(info))
	}
	if err := torchbin.WriteFile(filepath.Join(dir, "pytorch_model.bin"), ts); err != nil {
		t.Fatal(err)
	}
	want, err := clip.LoadTextModel(src, "", nn.Target{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := clip.LoadTextModel(dir, "", nn.Target{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Weights.Keys(), want.Weights.Keys()) || got.Weights.NumParams() != want.Weights.NumParams() {
		t.Errorf("weights differ: %d keys, %d params; want %d, %d", len(got.Weights.Keys()), got.Weights.NumParams(), len(want.Weights.Keys()), want.Weights.NumParams())
	}
}
