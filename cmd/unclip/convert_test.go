package main

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/unclip-go/unclip/models/unclip"
	"github.com/unclip-go/unclip/tensor"
	"github.com/unclip-go/unclip/tensor/safetensors"
	"github.com/unclip-go/unclip/tensor/torchbin"
)

// listFiles lists the regular files under dir, relative, sorted.
func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// readTensors reads every tensor of a safetensors file.
func readTensors(t *testing.T, path string) (map[string]safetensors.TensorInfo, map[string]string) {
	t.Helper()
	f, err := safetensors.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	m := map[string]safetensors.TensorInfo{}
	for _, k := range f.Keys() {
		m[k], _ = f.Get(k)
	}
	return m, f.Metadata()
}

// binModel makes a copy of the fixture model whose weights are PyTorch
// checkpoints only (pytorch_model.bin, diffusion_pytorch_model.bin).
func binModel(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	for _, rel := range listFiles(t, src) {
		s, d := filepath.Join(src, rel), filepath.Join(dst, rel)
		os.MkdirAll(filepath.Dir(d), 0o755)
		if filepath.Ext(rel) != ".safetensors" {
			copyFile(t, s, d)
			continue
		}
		ts, _ := readTensors(t, s)
		var list []torchbin.Tensor
		for _, k := range slices.Sorted(mapKeys(ts)) {
			list = append(list, torchbin.Tensor(ts[k]))
		}
		name := "diffusion_pytorch_model.bin"
		if filepath.Base(rel) == "model.safetensors" {
			name = "pytorch_model.bin"
		}
		if err := torchbin.WriteFile(filepath.Join(filepath.Dir(d), name), list); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestConvertFixtureFP16 converts the fixture model to fp16 and loads the
// result as the fp16 variant.
func TestConvertFixtureFP16(t *testing.T) {
	src, _ := tinyPaths(t)
	out := filepath.Join(t.TempDir(), "tiny-fp16")
	code, stdout, stderr := cli(t, "convert", "-m", src, "--dtype", "fp16", "-o", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if strings.TrimSpace(stdout) != out {
		t.Errorf("stdout %q, want the output folder", stdout)
	}
	for _, s := range []string{"text_encoder: model.safetensors → model.fp16.safetensors", "decoder: diffusion_pytorch_model.safetensors → diffusion_pytorch_model.fp16.safetensors", "wrote " + out} {
		if !strings.Contains(stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, stderr)
		}
	}
	// The same files, with the weights renamed.
	var want []string
	for _, f := range listFiles(t, src) {
		want = append(want, strings.Replace(f, ".safetensors", ".fp16.safetensors", 1))
	}
	slices.Sort(want)
	if got := listFiles(t, out); !slices.Equal(got, want) {
		t.Errorf("files:\n got %v\nwant %v", got, want)
	}
	for _, f := range []string{"model_index.json", "tokenizer/vocab.json", "decoder/config.json", "prior_scheduler/scheduler_config.json"} {
		a, _ := os.ReadFile(filepath.Join(src, f))
		b, _ := os.ReadFile(filepath.Join(out, f))
		if !bytes.Equal(a, b) {
			t.Errorf("%s was not copied as is", f)
		}
	}
	// Every float is the fp16 rounding of the original.
	orig, _ := readTensors(t, filepath.Join(src, "text_encoder", "model.safetensors"))
	conv, meta := readTensors(t, filepath.Join(out, "text_encoder", "model.fp16.safetensors"))
	if meta["format"] != "pt" {
		t.Errorf("metadata %v, want format pt", meta)
	}
	if len(conv) != len(orig) {
		t.Fatalf("%d tensors, want %d", len(conv), len(orig))
	}
	for k, o := range orig {
		c := conv[k]
		if c.DType != safetensors.F16 || !slices.Equal(c.Shape, o.Shape) {
			t.Fatalf("%s: %s %v, want F16 %v", k, c.DType, c.Shape, o.Shape)
		}
		f32, _ := o.Float32s()
		h, _ := c.Uint16s()
		for i, v := range f32 {
			if h[i] != tensor.F32ToF16(v) {
				t.Fatalf("%s[%d]: %#04x, want %#04x (fp16 of %g)", k, i, h[i], tensor.F32ToF16(v), v)
			}
		}
	}
	p, err := unclip.Load(out, unclip.LoadOptions{Variant: "fp16"})
	if err != nil {
		t.Fatalf("load the fp16 variant: %v", err)
	}
	if p.Text == nil || p.Decoder == nil || p.SRLast == nil {
		t.Error("components missing after load")
	}
	if _, err := unclip.Load(out, unclip.LoadOptions{}); err == nil {
		t.Error("the folder loads without --variant fp16: plain weight files were written")
	}
}

// TestConvertBinSource converts a model whose weights are only PyTorch
// checkpoints: the result equals the conversion of the safetensors
// original, and loads.
func TestConvertBinSource(t *testing.T) {
	src, _ := tinyPaths(t)
	bin := binModel(t, src)
	for _, dt := range []string{"bf16", "fp32"} {
		fromST := filepath.Join(t.TempDir(), "st")
		fromBin := filepath.Join(t.TempDir(), "bin")
		for _, c := range [][]string{{src, fromST}, {bin, fromBin}} {
			if code, _, stderr := cli(t, "convert", "-m", c[0], "--dtype", dt, "-o", c[1], "--quiet"); code != 0 || stderr != "" {
				t.Fatalf("convert %s: exit %d, stderr %q", c[0], code, stderr)
			}
		}
		a, b := listFiles(t, fromST), listFiles(t, fromBin)
		if !slices.Equal(a, b) {
			t.Fatalf("%s: files differ:\n%v\n%v", dt, a, b)
		}
		for _, f := range a {
			x, _ := os.ReadFile(filepath.Join(fromST, f))
			y, _ := os.ReadFile(filepath.Join(fromBin, f))
			if !bytes.Equal(x, y) {
				t.Errorf("%s: %s differs between the safetensors and .bin sources", dt, f)
			}
		}
		variant := dt
		if dt == "fp32" {
			variant = ""
			if !slices.Contains(b, filepath.Join("text_encoder", "model.safetensors")) {
				t.Errorf("fp32 files: %v", b)
			}
		}
		if _, err := unclip.Load(fromBin, unclip.LoadOptions{Variant: variant}); err != nil {
			t.Errorf("%s: load: %v", dt, err)
		}
	}
}

// TestConvertPrefersSafetensors gives a folder both files per component,
// the .bin holding other values: the safetensors file is converted.
func TestConvertPrefersSafetensors(t *testing.T) {
	src, _ := tinyPaths(t)
	both := copyWholeModel(t)
	ts, _ := readTensors(t, filepath.Join(both, "text_encoder", "model.safetensors"))
	var zeros []torchbin.Tensor
	for _, k := range slices.Sorted(mapKeys(ts)) {
		info := ts[k]
		zeros = append(zeros, torchbin.Tensor{Name: k, DType: info.DType, Shape: info.Shape, Data: make([]byte, len(info.Data))})
	}
	torchbin.WriteFile(filepath.Join(both, "text_encoder", "pytorch_model.bin"), zeros)
	out := filepath.Join(t.TempDir(), "o")
	if code, _, stderr := cli(t, "convert", "-m", both, "--dtype", "fp32", "-o", out); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if fileExists(filepath.Join(out, "text_encoder", "pytorch_model.bin")) {
		t.Error("the .bin was copied")
	}
	got, _ := readTensors(t, filepath.Join(out, "text_encoder", "model.safetensors"))
	want, _ := readTensors(t, filepath.Join(src, "text_encoder", "model.safetensors"))
	for k, w := range want {
		if !bytes.Equal(got[k].Data, w.Data) {
			t.Fatalf("%s: not the safetensors file's values", k)
		}
	}
}

// TestConvertErrors checks the refusals: each exits non-zero, says why,
// and leaves nothing behind.
func TestConvertErrors(t *testing.T) {
	src, _ := tinyPaths(t)
	noIndex := t.TempDir()
	os.Mkdir(filepath.Join(noIndex, "text_encoder"), 0o755)
	noWeights := t.TempDir()
	copyFile(t, filepath.Join(src, "model_index.json"), filepath.Join(noWeights, "model_index.json"))
	sharded := copyModel(t, "text_encoder")
	os.WriteFile(filepath.Join(sharded, "text_encoder", "model.safetensors.index.json"), []byte("{}"), 0o644)
	otherVariant := copyModel(t, "text_encoder")
	os.Rename(filepath.Join(otherVariant, "text_encoder", "model.safetensors"), filepath.Join(otherVariant, "text_encoder", "model.fp16.safetensors"))
	corrupt := copyModel(t, "text_encoder", "decoder")
	os.Truncate(filepath.Join(corrupt, "decoder", "diffusion_pytorch_model.safetensors"), 1000)
	hostile := copyModel(t, "decoder")
	os.Remove(filepath.Join(hostile, "decoder", "diffusion_pytorch_model.safetensors"))
	var zbuf bytes.Buffer
	zw := zip.NewWriter(&zbuf)
	w, _ := zw.Create("archive/data.pkl")
	w.Write([]byte("\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R."))
	zw.Close()
	os.WriteFile(filepath.Join(hostile, "decoder", "diffusion_pytorch_model.bin"), zbuf.Bytes(), 0o644)
	nonEmpty := t.TempDir()
	os.WriteFile(filepath.Join(nonEmpty, "keep.txt"), []byte("x"), 0o644)
	notDir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notDir, nil, 0o644)

	fresh := func() string { return filepath.Join(t.TempDir(), "out") }
	for _, c := range []struct {
		name string
		args []string
		code int
		has  []string
	}{
		{"unknown dtype", []string{"-m", src, "--dtype", "fp8", "-o", fresh()}, 1, []string{"unknown --dtype \"fp8\"", "fp16, bf16 or fp32"}},
		{"no dtype", []string{"-m", src, "-o", fresh()}, 2, []string{"usage: unclip convert"}},
		{"no output", []string{"-m", src, "--dtype", "fp16"}, 2, []string{"usage: unclip convert"}},
		{"stray argument", []string{"-m", src, "--dtype", "fp16", "-o", fresh(), "extra"}, 1, []string{"unexpected argument"}},
		{"demo", []string{"-m", "demo", "--dtype", "fp16", "-o", fresh()}, 1, []string{"nothing to convert"}},
		{"missing model", []string{"-m", filepath.Join(t.TempDir(), "nope"), "--dtype", "fp16", "-o", fresh()}, 1, []string{"does not exist"}},
		{"no model_index.json", []string{"-m", noIndex, "--dtype", "fp16", "-o", fresh()}, 1, []string{"no model_index.json"}},
		{"no weights", []string{"-m", noWeights, "--dtype", "fp16", "-o", fresh()}, 1, []string{"no weight files"}},
		{"sharded", []string{"-m", sharded, "--dtype", "fp16", "-o", fresh()}, 1, []string{"sharded"}},
		{"other variant", []string{"-m", otherVariant, "--dtype", "fp16", "-o", fresh()}, 1, []string{"model.fp16.safetensors", "--variant"}},
		{"corrupt weights", []string{"-m", corrupt, "--dtype", "fp16", "-o", fresh()}, 1, []string{"diffusion_pytorch_model.safetensors"}},
		{"hostile pickle", []string{"-m", hostile, "--dtype", "fp16", "-o", fresh()}, 1, []string{"os.system", "not allowed"}},
		{"output not empty", []string{"-m", src, "--dtype", "fp16", "-o", nonEmpty}, 1, []string{"not empty", "--force"}},
		{"output is a file", []string{"-m", src, "--dtype", "fp16", "-o", notDir}, 1, []string{"not a folder"}},
		{"output inside the model", []string{"-m", sharded, "--dtype", "fp16", "-o", filepath.Join(sharded, "fp16"), "--force"}, 1, []string{"overlaps"}},
		{"output is the model", []string{"-m", sharded, "--dtype", "fp16", "-o", sharded, "--force"}, 1, []string{"overlaps"}},
		{"no parent", []string{"-m", src, "--dtype", "fp16", "-o", filepath.Join(t.TempDir(), "a", "b")}, 1, []string{"parent folder does not exist"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := ""
			for i, a := range c.args {
				if a == "-o" {
					out = c.args[i+1]
				}
			}
			code, stdout, stderr := cli(t, append([]string{"convert"}, c.args...)...)
			if code != c.code {
				t.Errorf("exit %d, want %d; stderr %q", code, c.code, stderr)
			}
			for _, s := range c.has {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr %q lacks %q", stderr, s)
				}
			}
			if stdout != "" {
				t.Errorf("stdout %q", stdout)
			}
			if out == "" {
				return
			}
			// Nothing half-written beside the output.
			if entries, err := os.ReadDir(filepath.Dir(out)); err == nil {
				for _, e := range entries {
					if strings.Contains(e.Name(), ".tmp") || strings.Contains(e.Name(), ".old") {
						t.Errorf("left behind: %s", e.Name())
					}
				}
			}
			if out != nonEmpty && out != notDir && out != sharded && fileExists(filepath.Join(out, "model_index.json")) {
				t.Errorf("%s was written", out)
			}
		})
	}
	if data, err := os.ReadFile(filepath.Join(nonEmpty, "keep.txt")); err != nil || string(data) != "x" {
		t.Error("the non-empty output folder was touched")
	}
}

// TestConvertForce replaces a non-empty output folder with --force, and
// writes into an empty one without.
func TestConvertForce(t *testing.T) {
	src, _ := tinyPaths(t)
	empty := t.TempDir()
	if code, _, stderr := cli(t, "convert", "-m", src, "--dtype", "bf16", "-o", empty, "--quiet"); code != 0 {
		t.Fatalf("empty output: exit %d: %s", code, stderr)
	}
	os.WriteFile(filepath.Join(empty, "stale.txt"), []byte("old"), 0o644)
	if code, _, stderr := cli(t, "convert", "-m", src, "--dtype", "fp16", "-o", empty, "--force", "--quiet"); code != 0 {
		t.Fatalf("--force: exit %d: %s", code, stderr)
	}
	if fileExists(filepath.Join(empty, "stale.txt")) || fileExists(filepath.Join(empty, "text_encoder", "model.bf16.safetensors")) {
		t.Error("--force kept the old folder's files")
	}
	if !fileExists(filepath.Join(empty, "text_encoder", "model.fp16.safetensors")) {
		t.Error("--force did not write the new files")
	}
	entries, _ := os.ReadDir(filepath.Dir(empty))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

// TestConvertWeightTypes converts a file of every kind of tensor: floats
// of each width change type, integers and bools do not.
func TestConvertWeightTypes(t *testing.T) {
	le := binary.LittleEndian
	f64 := []float64{1, -2.5, 1 + 0x1p-11 + 0x1p-40, 65520, 1e-30, math.Inf(-1)}
	var b64 []byte
	for _, v := range f64 {
		b64 = le.AppendUint64(b64, math.Float64bits(v))
	}
	ids := le.AppendUint64(le.AppendUint64(nil, 7), 1<<40)
	in := []safetensors.TensorInfo{
		{Name: "f64", DType: safetensors.F64, Shape: []int{len(f64)}, Data: b64},
		{Name: "f32", DType: safetensors.F32, Shape: []int{2}, Data: le.AppendUint32(le.AppendUint32(nil, math.Float32bits(1+0x1p-11)), math.Float32bits(3))},
		{Name: "bf16", DType: safetensors.BF16, Shape: []int{1}, Data: le.AppendUint16(nil, tensor.F32ToBF16(0.1))},
		{Name: "ids", DType: safetensors.I64, Shape: []int{2}, Data: ids},
		{Name: "mask", DType: safetensors.BOOL, Shape: []int{3}, Data: []byte{1, 0, 1}},
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "in.safetensors")
	if err := safetensors.WriteFile(src, in, nil); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "out.safetensors")
	if _, _, _, err := convertWeightFile(src, dst, safetensors.F16); err != nil {
		t.Fatal(err)
	}
	got, meta := readTensors(t, dst)
	if meta["format"] != "pt" {
		t.Errorf("metadata %v", meta)
	}
	h, _ := got["f64"].Uint16s()
	// 1 + 2⁻¹¹ + 2⁻⁴⁰ lies just above the midpoint of two fp16 values: it
	// rounds up, where a float32 intermediate rounded to nearest would tie
	// and round down.
	wantH := []uint16{0x3c00, 0xc100, 0x3c01, 0x7c00, 0x0000, 0xfc00}
	if !slices.Equal(h, wantH) {
		t.Errorf("f64 → f16: %#04x, want %#04x", h, wantH)
	}
	h, _ = got["f32"].Uint16s()
	if !slices.Equal(h, []uint16{0x3c00, 0x4200}) { // the tie rounds to even
		t.Errorf("f32 → f16: %#04x", h)
	}
	h, _ = got["bf16"].Uint16s()
	if !slices.Equal(h, []uint16{tensor.F32ToF16(tensor.BF16ToF32(tensor.F32ToBF16(0.1)))}) {
		t.Errorf("bf16 → f16: %#04x", h)
	}
	if got["ids"].DType != safetensors.I64 || !bytes.Equal(got["ids"].Data, ids) || got["mask"].DType != safetensors.BOOL || !bytes.Equal(got["mask"].Data, []byte{1, 0, 1}) {
		t.Error("integer or bool tensors changed")
	}
	for _, x := range []float64{1 + 0x1p-11 + 0x1p-40, -(1 + 0x1p-11 + 0x1p-40), 1 + 0x1p-8 + 0x1p-50, 0x1p-200, -0x1p-200, 1e300} {
		want := exactRound16(x)
		if got := tensor.F32ToF16(roundToOdd32(x)); got != want {
			t.Errorf("f16 of %g: %#04x, want %#04x", x, got, want)
		}
	}
}

// exactRound16 rounds x to fp16 by searching the two neighbours (slow,
// obviously right), ties to even.
func exactRound16(x float64) uint16 {
	best, bestErr := uint16(0), math.Inf(1)
	for h := 0; h < 0x10000; h++ {
		v := float64(tensor.F16ToF32(uint16(h)))
		if math.IsNaN(v) || math.Signbit(v) != math.Signbit(x) {
			continue
		}
		if math.IsInf(v, 0) && math.Abs(x) < 65520 {
			continue
		}
		e := math.Abs(v - x)
		if math.IsInf(v, 0) {
			e = 0 // |x| ≥ 65520 rounds to infinity
		}
		if e < bestErr || (e == bestErr && h&1 == 0) {
			best, bestErr = uint16(h), e
		}
	}
	return best
}
