package main

// Bad-input acceptance (issue 2): every malformed input gives one clear
// error on stderr and exit status 1 (2 for usage errors), never a panic.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/unclip-go/unclip/models/golden"
	"github.com/unclip-go/unclip/models/golden/fixtures"
	"github.com/unclip-go/unclip/tensor/safetensors"
)

// cli runs the command line in process and returns its exit status and
// output. A panic fails the test with its stack instead of crashing the
// test binary.
func cli(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errw bytes.Buffer
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("unclip %q panicked: %v\n%s", args, r, debug.Stack())
			}
		}()
		code = run(args, &out, &errw)
	}()
	return code, out.String(), errw.String()
}

// tinyPaths returns the fixture model folder and golden file.
func tinyPaths(t *testing.T) (model, gold string) {
	t.Helper()
	fixtures.Require(t)
	model, gold, err := golden.Tiny()
	if err != nil {
		t.Fatal(err)
	}
	return model, gold
}

// copyModel copies model_index.json and the named component folders of
// the fixture model into a fresh temporary folder (writable copies).
func copyModel(t *testing.T, components ...string) string {
	t.Helper()
	src, _ := tinyPaths(t)
	dst := t.TempDir()
	copyFile(t, filepath.Join(src, "model_index.json"), filepath.Join(dst, "model_index.json"))
	for _, c := range components {
		root := filepath.Join(src, c)
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(src, p)
			if err != nil {
				return err
			}
			if d.IsDir() {
				return os.MkdirAll(filepath.Join(dst, rel), 0o755)
			}
			copyFile(t, p, filepath.Join(dst, rel))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// rewriteTensors rewrites a safetensors file through edit, which gets the
// file's tensors (in file order) and returns the new list.
func rewriteTensors(t *testing.T, path string, edit func([]safetensors.TensorInfo) []safetensors.TensorInfo) {
	t.Helper()
	data, err := os.ReadFile(path) // read, not mapped: the file is replaced below
	if err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	var ts []safetensors.TensorInfo
	for _, k := range f.Keys() {
		info, _ := f.Get(k)
		ts = append(ts, info)
	}
	if err := safetensors.WriteFile(path, edit(ts), f.Metadata()); err != nil {
		t.Fatal(err)
	}
}

// rewriteHeader rewrites the JSON header of a safetensors file through
// edit, keeping the data buffer, and fixes the length prefix.
func rewriteHeader(t *testing.T, path string, edit func(map[string]json.RawMessage, int)) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(data[:8])
	var h map[string]json.RawMessage
	if err := json.Unmarshal(data[8:8+n], &h); err != nil {
		t.Fatal(err)
	}
	body := data[8+n:]
	edit(h, len(body))
	hdr, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	for len(hdr)%8 != 0 {
		hdr = append(hdr, ' ')
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
	out = append(append(out, hdr...), body...)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// wantError checks a failed run: the exit status, one "unclip CMD: ..."
// error (or, for usage errors, some text) on stderr holding every string
// of has, nothing on stdout, and no trace of a panic.
func wantError(t *testing.T, code int, stdout, stderr string, wantCode int, cmd string, has ...string) {
	t.Helper()
	t.Logf("exit %d, stderr:\n%s", code, stderr)
	if code != wantCode {
		t.Errorf("exit status %d, want %d", code, wantCode)
	}
	for _, bad := range []string{"panic", "goroutine"} {
		if strings.Contains(stderr, bad) {
			t.Errorf("stderr mentions %q:\n%s", bad, stderr)
		}
	}
	if strings.TrimSpace(stderr) == "" {
		t.Errorf("nothing on stderr")
	}
	if wantCode == 1 {
		prefix := "unclip " + cmd + ": "
		if !strings.HasPrefix(stderr, prefix) || strings.Count(stderr, prefix) != 1 {
			t.Errorf("stderr should hold exactly one %q error:\n%s", prefix, stderr)
		}
		if stdout != "" {
			t.Errorf("unexpected stdout:\n%s", stdout)
		}
	}
	for _, s := range has {
		if !strings.Contains(stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, stderr)
		}
	}
}

func TestBadInput(t *testing.T) {
	fixture, gold := tinyPaths(t)
	const (
		teFile  = "text_encoder/model.safetensors"
		lnKey   = "text_model.final_layer_norm.weight" // shape [32]
		dropKey = "text_model.encoder.layers.0.mlp.fc1.bias"
	)
	verifyTE := func(dir string) []string {
		return []string{"verify", "-m", dir, "--only", "text_encoder", "-g", gold}
	}

	// (a) truncated weights, cut inside the data, inside the header and
	// inside the length prefix.
	for _, cut := range []struct {
		name string
		size func(int64) int64
		msg  string
	}{
		{"data", func(n int64) int64 { return n / 2 }, ""},
		{"header", func(int64) int64 { return 100 }, "truncated header"},
		{"prefix", func(int64) int64 { return 5 }, "shorter than the 8-byte"},
		{"empty", func(int64) int64 { return 0 }, "empty file"},
	} {
		t.Run("a_truncated_"+cut.name, func(t *testing.T) {
			dir := copyModel(t, "text_encoder")
			p := filepath.Join(dir, teFile)
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(p, cut.size(st.Size())); err != nil {
				t.Fatal(err)
			}
			code, out, errs := cli(t, verifyTE(dir)...)
			wantError(t, code, out, errs, 1, "verify", p, cut.msg)
		})
	}

	// (b) a header whose offsets point past the data buffer.
	t.Run("b_offsets_out_of_range", func(t *testing.T) {
		dir := copyModel(t, "text_encoder")
		p := filepath.Join(dir, teFile)
		rewriteHeader(t, p, func(h map[string]json.RawMessage, size int) {
			var e map[string]any
			if err := json.Unmarshal(h[lnKey], &e); err != nil {
				t.Fatal(err)
			}
			e["data_offsets"] = []int{size + 1024, size + 1024 + 128}
			h[lnKey], _ = json.Marshal(e)
		})
		code, out, errs := cli(t, verifyTE(dir)...)
		wantError(t, code, out, errs, 1, "verify", p, lnKey, "exceed data size")
	})

	// (b') offsets inside the buffer but overlapping another tensor.
	t.Run("b_offsets_overlap", func(t *testing.T) {
		dir := copyModel(t, "text_encoder")
		p := filepath.Join(dir, teFile)
		rewriteHeader(t, p, func(h map[string]json.RawMessage, size int) {
			var e map[string]any
			json.Unmarshal(h[lnKey], &e)
			e["data_offsets"] = []int{0, 128}
			h[lnKey], _ = json.Marshal(e)
		})
		code, out, errs := cli(t, verifyTE(dir)...)
		wantError(t, code, out, errs, 1, "verify", p, "overlap")
	})

	// (b'') a header that is not JSON, and one with an unknown dtype.
	t.Run("b_header_not_json", func(t *testing.T) {
		dir := copyModel(t, "text_encoder")
		p := filepath.Join(dir, teFile)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		n := binary.LittleEndian.Uint64(data[:8])
		copy(data[8:8+n], bytes.Repeat([]byte("\x00garbage"), int(n)))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		code, out, errs := cli(t, verifyTE(dir)...)
		wantError(t, code, out, errs, 1, "verify", p, "header")
	})
	t.Run("b_unknown_dtype", func(t *testing.T) {
		dir := copyModel(t, "text_encoder")
		p := filepath.Join(dir, teFile)
		rewriteHeader(t, p, func(h map[string]json.RawMessage, size int) {
			var e map[string]any
			json.Unmarshal(h[lnKey], &e)
			e["dtype"] = "F99"
			h[lnKey], _ = json.Marshal(e)
		})
		code, out, errs := cli(t, verifyTE(dir)...)
		wantError(t, code, out, errs, 1, "verify", p, lnKey, `unknown dtype "F99"`)
	})

	// (c) a tensor missing from the checkpoint.
	t.Run("c_missing_tensor", func(t *testing.T) {
		dir := copyModel(t, "text_encoder")
		rewriteTensors(t, filepath.Join(dir, teFile), func(ts []safetensors.TensorInfo) []safetensors.TensorInfo {
			var out []safetensors.TensorInfo
			for _, ti := range ts {
				if ti.Name != dropKey {
					out = append(out, ti)
				}
			}
			if len(out) != len(ts)-1 {
				t.Fatalf("fixture has no tensor %q", dropKey)
			}
			return out
		})
		code, out, errs := cli(t, verifyTE(dir)...)
		wantError(t, code, out, errs, 1, "verify", dropKey, "missing tensor")
	})

	// (d) a tensor of the wrong shape.
	t.Run("d_shape_mismatch", func(t *testing.T) {
		dir := copyModel(t, "text_encoder")
		rewriteTensors(t, filepath.Join(dir, teFile), func(ts []safetensors.TensorInfo) []safetensors.TensorInfo {
			for i := range ts {
				if ts[i].Name == lnKey {
					if fmt.Sprint(ts[i].Shape) != "[32]" {
						t.Fatalf("%s has shape %v, want [32]", lnKey, ts[i].Shape)
					}
					ts[i].Shape = []int{4, 8}
				}
			}
			return ts
		})
		code, out, errs := cli(t, verifyTE(dir)...)
		wantError(t, code, out, errs, 1, "verify", lnKey, "[4 8]", "expected [32]")
	})

	// (d') a tensor of an integer type where a float weight belongs.
	t.Run("d_dtype_mismatch", func(t *testing.T) {
		dir := copyModel(t, "text_encoder")
		rewriteTensors(t, filepath.Join(dir, teFile), func(ts []safetensors.TensorInfo) []safetensors.TensorInfo {
			for i := range ts {
				if ts[i].Name == lnKey {
					ts[i].DType = safetensors.I32 // same size, so the file stays well formed
				}
			}
			return ts
		})
		code, out, errs := cli(t, verifyTE(dir)...)
		wantError(t, code, out, errs, 1, "verify", lnKey, "float")
	})

	// (e) no tokenizer folder.
	t.Run("e_missing_tokenizer", func(t *testing.T) {
		dir := copyModel(t)
		code, out, errs := cli(t, "tokenize", "-m", dir, "hello")
		wantError(t, code, out, errs, 1, "tokenize", filepath.Join(dir, "tokenizer"))
	})

	// (e') a tokenizer folder without vocabulary, and one with a
	// truncated vocab.json.
	t.Run("e_empty_tokenizer", func(t *testing.T) {
		dir := copyModel(t)
		os.Mkdir(filepath.Join(dir, "tokenizer"), 0o755)
		code, out, errs := cli(t, "tokenize", "-m", dir, "hello")
		wantError(t, code, out, errs, 1, "tokenize", "vocab.json", "tokenizer.json")
	})
	t.Run("e_truncated_vocab", func(t *testing.T) {
		dir := copyModel(t, "tokenizer")
		p := filepath.Join(dir, "tokenizer", "vocab.json")
		if err := os.Truncate(p, 1000); err != nil {
			t.Fatal(err)
		}
		code, out, errs := cli(t, "tokenize", "-m", dir, "hello")
		wantError(t, code, out, errs, 1, "tokenize", p)
	})

	// (f) a prompt that is not UTF-8.
	t.Run("f_non_utf8_prompt", func(t *testing.T) {
		code, out, errs := cli(t, "tokenize", "-m", fixture, "\xff\xfe")
		wantError(t, code, out, errs, 1, "tokenize", "not valid UTF-8")
	})

	// (g) inspect on folders that are not diffusers unCLIP models.
	t.Run("g_inspect_plain_folder", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "readme.txt"), []byte("hi"), 0o644)
		code, out, errs := cli(t, "inspect", "-m", dir)
		wantError(t, code, out, errs, 1, "inspect", dir+" is not a diffusers model folder (no model_index.json)")
	})
	t.Run("g_inspect_component_folder", func(t *testing.T) {
		code, out, errs := cli(t, "inspect", "-m", filepath.Join(fixture, "text_encoder"))
		wantError(t, code, out, errs, 1, "inspect", "no model_index.json", "text_encoder component folder", "-m "+fixture)
	})
	t.Run("g_inspect_other_pipeline", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "model_index.json"), []byte(`{"_class_name": "StableDiffusionPipeline"}`), 0o644)
		code, out, errs := cli(t, "inspect", "-m", dir)
		wantError(t, code, out, errs, 1, "inspect", "StableDiffusionPipeline", "not an UnCLIPPipeline")
	})
	t.Run("g_inspect_bad_json", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "model_index.json"), []byte(`{"_class_name": `), 0o644)
		code, out, errs := cli(t, "inspect", "-m", dir)
		wantError(t, code, out, errs, 1, "inspect", "model_index.json")
	})
	t.Run("g_inspect_missing_component", func(t *testing.T) {
		dir := copyModel(t, "tokenizer")
		code, _, errs := cli(t, "inspect", "-m", dir)
		// stdout is not checked: inspect prints its "model DIR" heading
		// before it reads the components.
		wantError(t, code, "", errs, 1, "inspect", "text_encoder", "missing")
	})
	t.Run("g_inspect_missing_model", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "nope")
		code, out, errs := cli(t, "inspect", "-m", missing)
		wantError(t, code, out, errs, 1, "inspect", missing, "does not exist")
	})

	// (h) usage errors: exit status 2.
	for _, tc := range []struct {
		name string
		args []string
		has  string
	}{
		{"no_command", nil, "usage: unclip COMMAND"},
		{"unknown_command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown_flag_inspect", []string{"inspect", "-m", fixture, "--bogus"}, "bogus"},
		{"unknown_flag_verify", []string{"verify", "--bogus", "-m", fixture}, "bogus"},
		{"unknown_flag_tokenize", []string{"tokenize", "-m", fixture, "-x", "hi"}, "-x"},
		{"missing_model_flag", []string{"inspect"}, "usage: unclip inspect"},
		{"tokenize_no_text", []string{"tokenize", "-m", fixture}, "usage: unclip tokenize"},
		{"verify_extra_arg", []string{"verify", "-m", fixture, "extra"}, "usage: unclip verify"},
		{"bad_threads", []string{"verify", "-m", fixture, "--threads", "many"}, "many"},
	} {
		t.Run("h_"+tc.name, func(t *testing.T) {
			code, out, errs := cli(t, tc.args...)
			wantError(t, code, out, errs, 2, "", tc.has)
		})
	}

	// (i) an unknown verify check.
	t.Run("i_unknown_check", func(t *testing.T) {
		code, out, errs := cli(t, "verify", "-m", fixture, "-g", gold, "--only", "tokenizer,bogus")
		wantError(t, code, out, errs, 1, "verify", `unknown check "bogus"`, "text_encoder")
	})
	t.Run("i_unknown_device", func(t *testing.T) {
		code, out, errs := cli(t, "verify", "-m", fixture, "-g", gold, "--device", "tpu")
		wantError(t, code, out, errs, 1, "verify", `unknown device "tpu"`)
	})
	t.Run("i_missing_golden", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "golden.safetensors")
		code, out, errs := cli(t, "verify", "-m", fixture, "-g", missing, "--only", "tokenizer")
		wantError(t, code, out, errs, 1, "verify", missing)
	})
}
