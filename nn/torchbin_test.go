package nn

import (
	"archive/zip"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/unclip-go/unclip/models/golden/fixtures"
	"github.com/unclip-go/unclip/tensor/safetensors"
	"github.com/unclip-go/unclip/tensor/torchbin"
)

// binCopy writes the tensors of the safetensors file src to dst as a
// PyTorch checkpoint.
func binCopy(t *testing.T, src, dst string) {
	t.Helper()
	f, err := safetensors.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ts []torchbin.Tensor
	for _, k := range f.Keys() {
		info, _ := f.Get(k)
		ts = append(ts, torchbin.Tensor(info))
	}
	if err := torchbin.WriteFile(dst, ts); err != nil {
		t.Fatal(err)
	}
}

// sameStateDict checks that two state dicts hold the same tensors: names,
// types, shapes and, unless headers, bytes.
func sameStateDict(t *testing.T, got, want *StateDict, headers bool) {
	t.Helper()
	if !slices.Equal(got.Keys(), want.Keys()) {
		t.Fatalf("keys differ:\n got %v\nwant %v", got.Keys(), want.Keys())
	}
	for _, k := range want.Keys() {
		g, w := got.tensors[k], want.tensors[k]
		if g.DType() != w.DType() || !slices.Equal(g.Shape(), w.Shape()) {
			t.Errorf("%s: %v %v, want %v %v", k, g.DType(), g.Shape(), w.DType(), w.Shape())
			continue
		}
		if headers {
			continue
		}
		gb, err1 := g.Bytes()
		wb, err2 := w.Bytes()
		if err1 != nil || err2 != nil || !bytes.Equal(gb, wb) {
			t.Errorf("%s: bytes differ (%v, %v)", k, err1, err2)
		}
	}
}

// TestBinStateDictMatchesSafetensors loads a PyTorch checkpoint copy of
// the fixture's text encoder (pytorch_model.bin) and decoder U-Net
// (diffusion_pytorch_model.bin) with every loader and compares it with
// the safetensors original.
func TestBinStateDictMatchesSafetensors(t *testing.T) {
	model := filepath.Join(fixtures.Require(t), "unclip-tiny", "model")
	for _, c := range []struct{ comp, st, bin string }{
		{"text_encoder", "model.safetensors", "pytorch_model.bin"},
		{"decoder", "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"},
	} {
		t.Run(c.comp, func(t *testing.T) {
			src := filepath.Join(model, c.comp, c.st)
			bin := filepath.Join(t.TempDir(), c.bin)
			binCopy(t, src, bin)
			want, err := LoadStateDict(src)
			if err != nil {
				t.Fatal(err)
			}
			defer want.Close()
			for _, l := range []struct {
				name    string
				load    func(...string) (*StateDict, error)
				headers bool
			}{
				{"LoadStateDict", LoadStateDict, false},
				{"MapStateDict", MapStateDict, false},
				{"HeaderStateDict", HeaderStateDict, true},
			} {
				got, err := l.load(bin)
				if err != nil {
					t.Fatalf("%s: %v", l.name, err)
				}
				sameStateDict(t, got, want, l.headers)
				if err := got.Release(); err != nil {
					t.Error(err)
				}
			}
			// The same tensors in two files is an error, whatever the formats.
			if _, err := LoadStateDict(src, bin); err == nil || !strings.Contains(err.Error(), "appears in two files") {
				t.Errorf("duplicate tensors across files: %v", err)
			}
		})
	}
}

// TestBinDiffusersWeights checks which file DiffusersWeights picks:
// safetensors when it exists, else the .bin, and LoadDiffusers' error
// when neither exists.
func TestBinDiffusersWeights(t *testing.T) {
	touch := func(dir, name string) {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name    string
		files   []string
		variant string
		want    string
	}{
		{"neither", nil, "", "diffusion_pytorch_model.safetensors"},
		{"safetensors", []string{"diffusion_pytorch_model.safetensors"}, "", "diffusion_pytorch_model.safetensors"},
		{"bin only", []string{"diffusion_pytorch_model.bin"}, "", "diffusion_pytorch_model.bin"},
		{"both", []string{"diffusion_pytorch_model.bin", "diffusion_pytorch_model.safetensors"}, "", "diffusion_pytorch_model.safetensors"},
		{"variant bin", []string{"diffusion_pytorch_model.bin", "diffusion_pytorch_model.fp16.bin"}, "fp16", "diffusion_pytorch_model.fp16.bin"},
		{"variant both", []string{"diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.fp16.bin"}, "fp16", "diffusion_pytorch_model.fp16.safetensors"},
		{"other variant only", []string{"diffusion_pytorch_model.bin"}, "fp16", "diffusion_pytorch_model.fp16.safetensors"},
	} {
		dir := t.TempDir()
		for _, f := range c.files {
			touch(dir, f)
		}
		if got := DiffusersWeights(dir, c.variant); got != filepath.Join(dir, c.want) {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}

	dir := t.TempDir()
	cfg := func(string) (int, error) { return 0, nil }
	build := func(int, *StateDict, Target) (*StateDict, error) { return nil, nil }
	_, err := LoadDiffusers("unet", dir, "", Target{}, cfg, build)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("no weights: %v", err)
	}
	for _, s := range []string{"unet", dir, "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q lacks %q", err, s)
		}
	}
}

// TestBinLoadDiffusers loads a .bin-only component folder through
// LoadDiffusers, and prefers the safetensors file when both are there.
func TestBinLoadDiffusers(t *testing.T) {
	dir := t.TempDir()
	ts := []torchbin.Tensor{{Name: "w", DType: "F32", Shape: []int{2}, Data: make([]byte, 8)}}
	if err := torchbin.WriteFile(filepath.Join(dir, "diffusion_pytorch_model.bin"), ts); err != nil {
		t.Fatal(err)
	}
	cfg := func(string) (int, error) { return 0, nil }
	keys := func(_ int, sd *StateDict, _ Target) ([]string, error) { return sd.Keys(), nil }
	got, err := LoadDiffusers("unet", dir, "", Target{}, cfg, keys)
	if err != nil || !slices.Equal(got, []string{"w"}) {
		t.Fatalf("bin only: %v, %v", got, err)
	}
	st := []safetensors.TensorInfo{{Name: "s", DType: "F32", Shape: []int{1}, Data: make([]byte, 4)}}
	if err := safetensors.WriteFile(filepath.Join(dir, "diffusion_pytorch_model.safetensors"), st, nil); err != nil {
		t.Fatal(err)
	}
	got, err = LoadDiffusers("unet", dir, "", Target{HeadersOnly: true}, cfg, keys)
	if err != nil || !slices.Equal(got, []string{"s"}) {
		t.Fatalf("both: %v, %v (want the safetensors file's tensors)", got, err)
	}
	// A hostile checkpoint fails with torchbin's error, naming the file.
	os.Remove(filepath.Join(dir, "diffusion_pytorch_model.safetensors"))
	bad := filepath.Join(dir, "diffusion_pytorch_model.bin")
	var zbuf bytes.Buffer
	zw := zip.NewWriter(&zbuf)
	w, _ := zw.Create("archive/data.pkl")
	w.Write([]byte("\x80\x02cposix\nsystem\nX\x02\x00\x00\x00ls\x85R."))
	zw.Close()
	os.WriteFile(bad, zbuf.Bytes(), 0o644)
	if _, err := LoadDiffusers("unet", dir, "", Target{}, cfg, keys); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "posix.system") {
		t.Errorf("bad checkpoint: %v", err)
	}
}
