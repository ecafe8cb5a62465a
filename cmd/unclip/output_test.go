package main

import (
	"bytes"
	"encoding/json"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/unclip-go/unclip/tensor/safetensors"
)

// demoRun is a fast generate command line on the built-in demo model.
func demoRun(args ...string) []string {
	base := []string{"generate", "-m", "demo", "--device", "cpu", "--seed", "7",
		"--prior-steps", "2", "--decoder-steps", "2", "--sr-steps", "2"}
	return append(base, args...)
}

// TestGenerateOutputFiles runs generate on the demo model for each -o
// rule and checks the files written (and not written).
func TestGenerateOutputFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo model")
	}
	t.Run("percent is literal", func(t *testing.T) {
		dir := t.TempDir()
		code, stdout, stderr := runCLI(demoRun("--quiet", "-p", "x", "-o", filepath.Join(dir, "50%off.png"))...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if _, err := os.Stat(filepath.Join(dir, "50%off.png")); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(stdout, "50%off.png") || !strings.Contains(stdout, "seed 7") {
			t.Errorf("--quiet stdout %q lacks the file or the seed", stdout)
		}
		if stderr != "" {
			t.Errorf("--quiet printed %q on stderr", stderr)
		}
	})
	t.Run("jpeg with parameters", func(t *testing.T) {
		dir := t.TempDir()
		out := filepath.Join(dir, "x.JPG")
		if code, _, stderr := runCLI(demoRun("--quiet", "-p", "a red cube", "-o", out)...); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		img, err := jpeg.Decode(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("not a JPEG: %v", err)
		}
		if img.Bounds().Dx() == 0 {
			t.Fatal("empty image")
		}
		com, err := jpegComments(data)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(com, "a red cube\nSeed: 7,") {
			t.Errorf("COM segment %q does not hold the parameters", com)
		}
	})
	t.Run("long parameters split over COM segments", func(t *testing.T) {
		text := strings.Repeat("é", 40000) // 80000 bytes: two segments
		data, err := encodeJPEG(make([]uint8, 8*8*3), 8, text)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := jpeg.Decode(bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		if got, err := jpegComments(data); err != nil || got != text {
			t.Fatalf("round trip: %d bytes, %v", len(got), err)
		}
	})
	t.Run("unknown extension", func(t *testing.T) {
		dir := t.TempDir()
		code, _, stderr := runCLI(demoRun("-p", "x", "-o", filepath.Join(dir, "x.gif"))...)
		wantFail(t, code, stderr, "unknown image format")
		wantEmpty(t, dir)
	})
	t.Run("existing file needs --force", func(t *testing.T) {
		dir := t.TempDir()
		out := filepath.Join(dir, "x.png")
		os.WriteFile(out, []byte("precious"), 0o644)
		code, _, stderr := runCLI(demoRun("-p", "x", "-o", out)...)
		wantFail(t, code, stderr, "--force")
		if b, _ := os.ReadFile(out); string(b) != "precious" {
			t.Fatal("the existing file was changed")
		}
		if code, _, stderr := runCLI(demoRun("--quiet", "--force", "-p", "x", "-o", out)...); code != 0 {
			t.Fatalf("with --force: exit %d: %s", code, stderr)
		}
		if b, _ := os.ReadFile(out); !bytes.HasPrefix(b, []byte("\x89PNG")) {
			t.Fatal("--force did not replace the file with a PNG")
		}
	})
	t.Run("symlink is written through", func(t *testing.T) {
		dir := t.TempDir()
		target := filepath.Join(dir, "real.png")
		link := filepath.Join(dir, "link.png")
		if err := os.Symlink("real.png", link); err != nil {
			t.Skip(err)
		}
		if code, _, stderr := runCLI(demoRun("--quiet", "-p", "x", "-o", link)...); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("the link was replaced: %v", err)
		}
		if b, _ := os.ReadFile(target); !bytes.HasPrefix(b, []byte("\x89PNG")) {
			t.Fatal("the link's target holds no PNG")
		}
	})
	t.Run("device full", func(t *testing.T) {
		if _, err := os.Stat("/dev/full"); err != nil {
			t.Skip("no /dev/full")
		}
		code, _, stderr := runCLI(demoRun("-p", "x", "-o", "/dev/full")...)
		wantFail(t, code, stderr, "no space left")
		if st, err := os.Stat("/dev/full"); err != nil || st.Mode()&os.ModeCharDevice == 0 {
			t.Fatalf("/dev/full is no longer a device: %v", err)
		}
	})
	t.Run("second file on a full disk names the first", func(t *testing.T) {
		if _, err := os.Stat("/dev/full"); err != nil {
			t.Skip("no /dev/full")
		}
		dir := t.TempDir()
		if err := os.Symlink("/dev/full", filepath.Join(dir, "img-2.png")); err != nil {
			t.Skip(err)
		}
		code, _, stderr := runCLI(demoRun("-p", "x", "-n", "2", "-o", filepath.Join(dir, "img-%d.png"))...)
		wantFail(t, code, stderr, "no space left")
		if !strings.Contains(stderr, "already written: "+filepath.Join(dir, "img-1.png")) {
			t.Errorf("stderr %q does not name the file already written", stderr)
		}
	})
	t.Run("fifo is written through", func(t *testing.T) {
		dir := t.TempDir()
		fifo := filepath.Join(dir, "pipe")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Skip(err)
		}
		got := make(chan []byte)
		go func() {
			f, err := os.Open(fifo) // blocks until generate opens it for writing
			if err != nil {
				got <- nil
				return
			}
			b, _ := readAllFile(f)
			got <- b
		}()
		code, _, stderr := runCLI(demoRun("--quiet", "-p", "x", "-o", fifo)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		b := <-got
		if _, err := png.Decode(bytes.NewReader(b)); err != nil {
			t.Fatalf("the FIFO carried no PNG (%d bytes): %v", len(b), err)
		}
		if st, err := os.Lstat(fifo); err != nil || st.Mode()&os.ModeNamedPipe == 0 {
			t.Fatal("the FIFO was replaced")
		}
	})
	t.Run("missing folder names the user's path", func(t *testing.T) {
		dir := t.TempDir()
		out := filepath.Join(dir, "missing", "x.png")
		code, _, stderr := runCLI(demoRun("-p", "x", "-o", out)...)
		wantFail(t, code, stderr, "cannot write "+out)
		if strings.Contains(stderr, ".tmp") || strings.Contains(stderr, "write-test") {
			t.Errorf("stderr %q names an internal file", stderr)
		}
	})
}

func TestGenerateRejectsNonFinite(t *testing.T) {
	for _, args := range [][]string{
		{"--decoder-guidance", "NaN"},
		{"--prior-guidance", "Inf"},
		{"--decoder-guidance", "-Inf"},
		{"--prior-guidance", "1e300"},
	} {
		dir := t.TempDir()
		code, _, stderr := runCLI(demoRun(append([]string{"-p", "x", "-o", filepath.Join(dir, "x.png")}, args...)...)...)
		wantFail(t, code, stderr, "guidance")
		wantEmpty(t, dir)
	}
}

// TestGenerateBatchesAndMetadata checks micro-batches, the preview, the
// batch fields of the PNG metadata and the intermediates' metadata.
func TestGenerateBatchesAndMetadata(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo model")
	}
	dir := t.TempDir()
	code, stdout, stderr := runCLI(demoRun("-p", "a", "-p", "b", "-n", "2", "--batch-size", "3",
		"-o", filepath.Join(dir, "img%d.png"), "--preview", filepath.Join(dir, "small%d.png"))...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "batch 2 of 2") {
		t.Errorf("stderr %q does not announce the batches", stderr)
	}
	for i, want := range []string{
		"a\nSeed: 7, Image: 1/4, Prompts: 2, Images per prompt: 2, Batch size: 3, Batch: 1, Index in batch: 1,",
		"a\nSeed: 7, Image: 2/4, Prompts: 2, Images per prompt: 2, Batch size: 3, Batch: 1, Index in batch: 2,",
		"b\nSeed: 7, Image: 3/4, Prompts: 2, Images per prompt: 2, Batch size: 3, Batch: 1, Index in batch: 3,",
		"b\nSeed: 7, Image: 4/4, Prompts: 2, Images per prompt: 2, Batch size: 3, Batch: 2, Index in batch: 1,",
	} {
		name := filepath.Join(dir, "img"+string(rune('1'+i))+".png")
		if !strings.Contains(stdout, name) {
			t.Errorf("stdout lacks %s", name)
		}
		text := readPNGText(t, name)
		if !strings.HasPrefix(text["parameters"], want) {
			t.Errorf("%s parameters %q, want prefix %q", name, text["parameters"], want)
		}
		small := filepath.Join(dir, "small"+string(rune('1'+i))+".png")
		if !strings.Contains(readPNGText(t, small)["parameters"], "preview") {
			t.Errorf("%s is not marked as a preview", small)
		}
	}
	// The batches are seeded seed+k: image 4 is image 1 of a run seeded 8.
	code, _, stderr = runCLI("generate", "-m", "demo", "--device", "cpu", "--seed", "8", "--prior-steps", "2", "--decoder-steps", "2",
		"--sr-steps", "2", "-p", "b", "--quiet", "-o", filepath.Join(dir, "again.png"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !samePixels(t, filepath.Join(dir, "img4.png"), filepath.Join(dir, "again.png")) {
		t.Error("image 4 (batch 2) differs from a one-image run seeded seed+1")
	}

	inter := filepath.Join(dir, "inter.safetensors")
	code, _, stderr = runCLI(demoRun("--quiet", "-p", "a", "-p", "b", "-o", filepath.Join(dir, "i%d.png"), "--save-intermediates", inter)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	f, err := safetensors.Open(inter)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	meta := f.Metadata()
	var prompts []string
	if err := json.Unmarshal([]byte(meta["prompts"]), &prompts); err != nil || strings.Join(prompts, "|") != "a|b" {
		t.Errorf("metadata prompts %q", meta["prompts"])
	}
	for k, v := range map[string]string{"seed": "7", "prior_steps": "2", "decoder_guidance": "8", "prior_guidance": "4"} {
		if meta[k] != v {
			t.Errorf("metadata %s = %q, want %q", k, meta[k], v)
		}
	}
}

func TestGenerateCLIMessages(t *testing.T) {
	t.Run("bad model before any announcement", func(t *testing.T) {
		code, stdout, stderr := runCLI("generate", "-m", filepath.Join(t.TempDir(), "nope"), "-p", "x")
		wantFail(t, code, stderr, "does not exist")
		if strings.Contains(stderr, "seed") || strings.Contains(stderr, "device") || stdout != "" {
			t.Errorf("a failed run announced itself: stdout %q stderr %q", stdout, stderr)
		}
	})
	t.Run("json error line", func(t *testing.T) {
		code, stdout, _ := runCLI("generate", "-m", filepath.Join(t.TempDir(), "nope"), "-p", "x", "--json")
		var e struct {
			Event, Error string
			Status       int `json:"exit_status"`
		}
		if err := json.Unmarshal([]byte(stdout), &e); err != nil || e.Event != "error" || !strings.Contains(e.Error, "does not exist") || e.Status != code || code == 0 {
			t.Errorf("exit %d, stdout %q (%v)", code, stdout, err)
		}
	})
	t.Run("misspelled flag", func(t *testing.T) {
		code, _, stderr := runCLI("generate", "-m", "demo", "--decoder-stesp", "3")
		if code != 2 || !strings.Contains(stderr, "did you mean --decoder-steps?") {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
		if strings.Count(stderr, "\n") > 3 {
			t.Errorf("a misspelled flag printed %d lines", strings.Count(stderr, "\n"))
		}
	})
	t.Run("misspelled command", func(t *testing.T) {
		code, _, stderr := runCLI("genrate")
		if code != 2 || !strings.Contains(stderr, `did you mean "generate"?`) {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
	})
	t.Run("version", func(t *testing.T) {
		code, stdout, _ := runCLI("--version")
		if code != 0 || !strings.HasPrefix(stdout, "unclip ") || !strings.Contains(stdout, "go1.") {
			t.Errorf("exit %d, stdout %q", code, stdout)
		}
	})
	t.Run("help", func(t *testing.T) {
		code, _, stderr := runCLI("generate", "-h")
		if code != 0 || !strings.HasPrefix(stderr, "usage: unclip generate") || !strings.Contains(stderr, "-decoder-steps") {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
	})
}

func TestSuggest(t *testing.T) {
	names := []string{"m", "p", "prompt", "decoder-steps", "prior-steps", "seed", "threads", "device"}
	for _, c := range []struct{ in, want string }{
		{"promt", "prompt"},
		{"decoder-stpes", "decoder-steps"},
		{"sed", "seed"},
		{"threds", "threads"},
		{"decoder", "decoder-steps"},
		{"xyzzy", ""},
		{"q", "m"},
	} {
		if got := suggest(c.in, names); got != c.want {
			t.Errorf("suggest(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func wantFail(t *testing.T, code int, stderr, want string) {
	t.Helper()
	if code == 0 || !strings.Contains(stderr, want) {
		t.Fatalf("exit %d, stderr %q; want a failure saying %q", code, stderr, want)
	}
	if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine") {
		t.Fatal(stderr)
	}
}

// wantEmpty fails if dir holds any file.
func wantEmpty(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		t.Errorf("left %s behind", e.Name())
	}
}

func readPNGText(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text, err := pngText(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return text
}

func samePixels(t *testing.T, a, b string) bool {
	t.Helper()
	dec := func(p string) []byte {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		img, err := png.Decode(f)
		if err != nil {
			t.Fatal(err)
		}
		var out []byte
		r := img.Bounds()
		for y := r.Min.Y; y < r.Max.Y; y++ {
			for x := r.Min.X; x < r.Max.X; x++ {
				cr, cg, cb, _ := img.At(x, y).RGBA()
				out = append(out, byte(cr>>8), byte(cg>>8), byte(cb>>8))
			}
		}
		return out
	}
	return bytes.Equal(dec(a), dec(b))
}

func readAllFile(f *os.File) ([]byte, error) {
	defer f.Close()
	var buf bytes.Buffer
	_, err := buf.ReadFrom(f)
	return buf.Bytes(), err
}
