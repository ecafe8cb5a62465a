package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/unclip-go/unclip/models/unclip"
)

// cliWithin runs a command line and fails the test if it does not finish
// in time (a FIFO opened for reading blocks until a writer comes).
func cliWithin(t *testing.T, d time.Duration, args ...string) (int, string, string) {
	t.Helper()
	type result struct {
		code           int
		stdout, stderr string
	}
	ch := make(chan result, 1)
	go func() {
		code, out, errs := runCLI(args...)
		ch <- result{code, out, errs}
	}()
	select {
	case r := <-ch:
		return r.code, r.stdout, r.stderr
	case <-time.After(d):
		t.Fatalf("unclip %q did not finish in %s", args, d)
	}
	return 0, "", ""
}

// TestLoaderRefusesFilesThatNeverEnd replaces one file of the fixture
// model with a FIFO, a link to /dev/zero or an oversized file: generate
// and inspect must fail at once, naming the file.
func TestLoaderRefusesFilesThatNeverEnd(t *testing.T) {
	cases := []struct {
		name, file string
		make       func(path string) error
		want       string
	}{
		{"fifo config", "decoder/config.json", func(p string) error { return syscall.Mkfifo(p, 0o600) }, "not a regular file (a FIFO)"},
		{"fifo weights", "decoder/diffusion_pytorch_model.safetensors", func(p string) error { return syscall.Mkfifo(p, 0o600) }, "not a regular file"},
		{"fifo scheduler", "prior_scheduler/scheduler_config.json", func(p string) error { return syscall.Mkfifo(p, 0o600) }, "not a regular file"},
		{"vocab is /dev/zero", "tokenizer/vocab.json", func(p string) error { return os.Symlink("/dev/zero", p) }, "not a regular file (a character device)"},
		{"huge config", "text_encoder/config.json", func(p string) error { return os.WriteFile(p, make([]byte, 5<<20), 0o644) }, "more than the 4 MiB"},
		{"huge model_index", "model_index.json", func(p string) error { return os.WriteFile(p, make([]byte, 5<<20), 0o644) }, "more than the 4 MiB"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			model := copyWholeModel(t)
			p := filepath.Join(model, c.file)
			os.Remove(p)
			if err := c.make(p); err != nil {
				t.Skip(err)
			}
			out := filepath.Join(t.TempDir(), "x.png")
			for _, cmd := range [][]string{
				{"generate", "-m", model, "-p", "x", "-o", out, "--device", "cpu"},
				{"inspect", "-m", model},
			} {
				code, _, stderr := cliWithin(t, 30*time.Second, cmd...)
				if code == 0 || !strings.Contains(stderr, c.want) || !strings.Contains(stderr, filepath.Base(c.file)) {
					t.Errorf("%s: exit %d, stderr %q; want a failure naming %s and saying %q", cmd[0], code, stderr, c.file, c.want)
				}
			}
		})
	}
}

// TestInspectValidates checks that inspect fails where generate would:
// a config that does not fit its weights, a missing weight file.
func TestInspectValidates(t *testing.T) {
	t.Run("config past its bounds", func(t *testing.T) {
		model := copyWholeModel(t)
		replaceInFile(t, filepath.Join(model, "decoder", "config.json"), `"layers_per_block": 1`, `"layers_per_block": 1000000000`)
		code, stdout, stderr := cliWithin(t, 30*time.Second, "inspect", "-m", model)
		if code == 0 || !strings.Contains(stderr, "layers_per_block") || stdout != "" {
			t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
	})
	t.Run("config that does not fit the weights", func(t *testing.T) {
		model := copyWholeModel(t)
		replaceInFile(t, filepath.Join(model, "prior", "config.json"), `"num_layers": 1`, `"num_layers": 3`)
		code, _, stderr := cliWithin(t, 30*time.Second, "inspect", "-m", model)
		if code == 0 || !strings.Contains(stderr, "missing tensor") {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
	})
	t.Run("missing weights", func(t *testing.T) {
		model := copyWholeModel(t)
		os.Remove(filepath.Join(model, "super_res_last", "diffusion_pytorch_model.safetensors"))
		code, _, stderr := cliWithin(t, 30*time.Second, "inspect", "-m", model)
		if code == 0 || !strings.Contains(stderr, "super_res_last") {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
	})
}

func TestHubRefsThatNeverEnd(t *testing.T) {
	home := t.TempDir()
	isolateHub(t, home)
	hub := filepath.Join(home, "hub")
	t.Setenv("HF_HUB_CACHE", hub)
	repo := fakeHub(t, hub)
	ref := filepath.Join(repo, "refs", "main")
	os.Remove(ref)
	if err := syscall.Mkfifo(ref, 0o600); err != nil {
		t.Skip(err)
	}
	code, _, stderr := cliWithin(t, 30*time.Second, "inspect", "-m", "kakaobrain/karlo-v1-alpha")
	if code == 0 || !strings.Contains(stderr, "not a regular file") {
		t.Errorf("FIFO ref: exit %d, stderr %q", code, stderr)
	}
	os.Remove(ref)
	os.WriteFile(ref, []byte(strings.Repeat("x/", 5000)), 0o644)
	code, _, stderr = cliWithin(t, 30*time.Second, "inspect", "-m", "kakaobrain/karlo-v1-alpha")
	if code == 0 || len(stderr) > 1000 {
		t.Errorf("oversized ref: exit %d, %d bytes of stderr: %q", code, len(stderr), stderr)
	}
}

func TestDemoEverywhere(t *testing.T) {
	code, stdout, stderr := runCLI("inspect", "-m", "demo")
	if code != 0 || !strings.Contains(stdout, "decoder") || !strings.Contains(stdout, "total") {
		t.Errorf("inspect -m demo: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI("tokenize", "-m", "demo", "a red cube")
	if code != 0 || !strings.Contains(stdout, "tokens, padded to") {
		t.Errorf("tokenize -m demo: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestREADMEDownloadMatchesCLI: the README's download command is the one
// the CLI prints when the model is not in the cache.
func TestREADMEDownloadMatchesCLI(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var cmd string
	for _, line := range strings.Split(downloadHint(karloRepo, "main"), "\n") {
		if strings.Contains(line, "huggingface-cli download") {
			cmd = strings.TrimSpace(line)
		}
	}
	if cmd == "" || !strings.Contains(string(readme), cmd) {
		t.Errorf("the README lacks the CLI's download command %q", cmd)
	}
	for _, line := range strings.Split(downloadHint(karloVariationsRepo, "main"), "\n") {
		if strings.Contains(line, "huggingface-cli download") && !strings.Contains(string(readme), strings.TrimSpace(line)) {
			t.Errorf("the README lacks the CLI's download command %q", strings.TrimSpace(line))
		}
	}
	if strings.Contains(string(readme), "with the fp16 files") || strings.Contains(string(readme), "--variant fp16 -p") {
		t.Error("the README still promises fp16 files the Karlo repository does not have")
	}
}

func TestVerifyDemoSaysWhyNot(t *testing.T) {
	code, _, stderr := runCLI("verify", "-m", "demo")
	if code != 1 || !strings.Contains(stderr, "demo model has none") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

// copyWholeModel copies every component of the fixture model.
func copyWholeModel(t *testing.T) string {
	t.Helper()
	var names []string
	for _, c := range unclip.Components {
		names = append(names, c.Name)
	}
	return copyModel(t, names...)
}

// replaceInFile replaces the first old in the file with new; old must be
// there.
func replaceInFile(t *testing.T, path, old, new string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), old) {
		t.Fatalf("%s does not contain %q", path, old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(data), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}
