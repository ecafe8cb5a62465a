package main

import (
	"bytes"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/unclip-go/unclip/models/golden"
	"github.com/unclip-go/unclip/models/golden/fixtures"
	"github.com/unclip-go/unclip/models/unclip"
)

// runCLI runs the command line in-process and returns status and output.
func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func tinyModel(t *testing.T) (string, *golden.File) {
	t.Helper()
	fixtures.Require(t)
	model, g, err := golden.OpenTiny()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return model, g
}

// TestGenerateMatchesDiffusers runs generate with the recorded run's
// settings from its seed and compares the PNG pixels with diffusers' image.
func TestGenerateMatchesDiffusers(t *testing.T) {
	model, g := tinyModel(t)
	s := g.Meta.Settings
	dir := t.TempDir()
	args := []string{"generate", "-m", model, "--seed", fmt.Sprint(s.Seed), "-o", filepath.Join(dir, "img-%d.png"), "--quiet",
		"--prior-steps", fmt.Sprint(s.PriorSteps), "--decoder-steps", fmt.Sprint(s.DecoderSteps), "--sr-steps", fmt.Sprint(s.SuperResSteps),
		"--prior-guidance", fmt.Sprint(s.PriorGuidance), "--decoder-guidance", fmt.Sprint(s.DecoderGuidance), "--device", "cpu",
		"--save-intermediates", filepath.Join(dir, "inter.safetensors")}
	for _, p := range s.Prompts {
		args = append(args, "-p", p)
	}
	code, _, stderr := runCLI(args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	want, shape, err := g.Float32s("pipeline.image")
	if err != nil {
		t.Fatal(err)
	}
	ref := unclip.ToUint8(want)
	size := shape[1]
	per := size * size * 3
	for i, prompt := range s.Prompts {
		data, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("img-%d.png", i+1)))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("image/png cannot read the file: %v", err)
		}
		if b := img.Bounds(); b.Dx() != size || b.Dy() != size {
			t.Fatalf("image is %v, want %d×%d", b, size, size)
		}
		text, err := pngText(data)
		if err != nil {
			t.Fatal(err)
		}
		params := text["parameters"]
		for _, want := range []string{prompt, "Seed: 0", "Prior steps: 2", "Decoder guidance: 8", "Device: cpu"} {
			if !strings.Contains(params, want) {
				t.Errorf("parameters chunk %q lacks %q", params, want)
			}
		}
		bad := 0
		for y := 0; y < size; y++ {
			for x := 0; x < size; x++ {
				r, gg, b, _ := img.At(x, y).RGBA()
				got := [3]int{int(r >> 8), int(gg >> 8), int(b >> 8)}
				for c := 0; c < 3; c++ {
					d := got[c] - int(ref[i*per+(y*size+x)*3+c])
					if d > 2 || d < -2 {
						t.Fatalf("pixel (%d,%d,%d) differs by %d levels from diffusers", x, y, c, d)
					}
					if d != 0 {
						bad++
					}
				}
			}
		}
		if bad > per/1000 {
			t.Errorf("%d of %d values differ from diffusers (> 0.1%%)", bad, per)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "inter.safetensors")); err != nil {
		t.Errorf("intermediates not written: %v", err)
	}
}

func TestGenerateBadInput(t *testing.T) {
	model, _ := tinyModel(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "x.png")
	fast := []string{"--prior-steps", "2", "--decoder-steps", "2", "--sr-steps", "2", "--device", "cpu"}
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"negative guidance", []string{"-p", "x", "--prior-guidance", "-1"}, 1, "must not be negative"},
		{"zero steps", []string{"-p", "x", "--decoder-steps", "0"}, 1, "at least 2"},
		{"unwritable output", []string{"-p", "x", "-o", filepath.Join(dir, "missing", "x.png")}, 1, "cannot write"},
		{"output is a directory", []string{"-p", "x", "-o", dir}, 1, "is a directory"},
		{"no prompt", []string{}, 1, "no prompt"},
		{"bad seed", []string{"-p", "x", "--seed", "-5"}, 1, "--seed"},
		{"missing prompts file", []string{"--prompts-file", filepath.Join(dir, "nope.txt")}, 1, "nope.txt"},
		{"unknown device", []string{"-p", "x", "--device", "tpu"}, 1, "unknown device"},
		{"stray argument", []string{"a red cube"}, 1, "unexpected argument"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"generate", "-m", model, "-o", out, "--quiet"}, fast...)
			args = append(args, c.args...) // later flags win
			code, _, stderr := runCLI(args...)
			if code != c.code || !strings.Contains(stderr, c.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, stderr, c.code, c.want)
			}
			if strings.Contains(stderr, "panic") {
				t.Fatal(stderr)
			}
			if _, err := os.Stat(out); err == nil {
				t.Fatal("an image was written")
			}
		})
	}
}

func TestGenerateEmptyAndLongPrompts(t *testing.T) {
	model, _ := tinyModel(t)
	dir := t.TempDir()
	long := strings.Repeat("word ", 100)
	code, stdout, stderr := runCLI("generate", "-m", model, "-p", "", "-p", long, "-o", filepath.Join(dir, "o.png"), "--seed", "3",
		"--prior-steps", "2", "--decoder-steps", "2", "--sr-steps", "2", "--device", "cpu")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "truncated") {
		t.Errorf("no truncation warning in %q", stderr)
	}
	for _, f := range []string{"o-1.png", "o-2.png"} {
		if !strings.Contains(stdout, f) {
			t.Errorf("stdout %q does not name %s", stdout, f)
		}
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
}

func TestOutputPaths(t *testing.T) {
	for _, c := range []struct {
		pattern string
		n       int
		want    string
	}{
		{"a.png", 1, "a.png"},
		{"a.png", 2, "a-1.png a-2.png"},
		{"dir/img_%03d.png", 2, "dir/img_001.png dir/img_002.png"},
		// Only %d and %0Nd are patterns; every other % is literal.
		{"50%off.png", 1, "50%off.png"},
		{"x_%s.png", 2, "x_%s-1.png x_%s-2.png"},
		{"100%.png", 1, "100%.png"},
		{"a%%d.png", 2, "a%1.png a%2.png"},
		{"img_%03d_%d.png", 2, "img_001_1.png img_002_2.png"},
		{"noext", 2, "noext-1 noext-2"},
	} {
		if got := strings.Join(outputPaths(c.pattern, c.n), " "); got != c.want {
			t.Errorf("outputPaths(%q, %d) = %q, want %q", c.pattern, c.n, got, c.want)
		}
	}
}

func TestBenchPipelineScaledKarlo(t *testing.T) {
	code, stdout, stderr := runCLI("bench", "pipeline", "--config", "karlo", "--random-weights", "--scale", "20", "--size-div", "8",
		"--prior-steps", "2", "--decoder-steps", "2", "--sr-steps", "2", "--device", "cpu", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, stage := range []string{`"stage":"text"`, `"stage":"prior"`, `"stage":"decoder"`, `"stage":"sr"`, `"total_seconds"`} {
		if !strings.Contains(stdout, stage) {
			t.Errorf("JSON %q lacks %s", stdout, stage)
		}
	}
	code, _, stderr = runCLI("bench", "pipeline", "--random-weights", "--stages", "sr,bogus")
	if code != 1 || !strings.Contains(stderr, "bogus") {
		t.Errorf("unknown stage: exit %d, %q", code, stderr)
	}
	// Too few steps are refused before the full-size model is built.
	code, _, stderr = runCLI("bench", "pipeline", "--random-weights", "--stages", "sr", "--sr-steps", "1", "--device", "cpu")
	if code != 1 || !strings.Contains(stderr, "at least 2 steps") || strings.Contains(stderr, "building") {
		t.Errorf("--sr-steps 1: exit %d, %q", code, stderr)
	}
	// The image-variations architecture: the ViT-L/14 image encoder's
	// topology instead of the prior, its embedding conditioning the decoder.
	code, stdout, stderr = runCLI("bench", "pipeline", "--config", "karlo-variations", "--random-weights", "--scale", "20", "--size-div", "8",
		"--decoder-steps", "2", "--sr-steps", "2", "--device", "cpu", "--json")
	if code != 0 {
		t.Fatalf("karlo-variations: exit %d: %s", code, stderr)
	}
	for _, stage := range []string{`"stage":"image"`, `"stage":"text"`, `"stage":"decoder"`, `"stage":"sr"`} {
		if !strings.Contains(stdout, stage) {
			t.Errorf("JSON %q lacks %s", stdout, stage)
		}
	}
	if strings.Contains(stdout, `"stage":"prior"`) {
		t.Errorf("an image-variations run timed a prior: %s", stdout)
	}
	for _, c := range [][]string{{"--config", "karlo-variations", "--stages", "prior"}, {"--config", "karlo", "--stages", "image"}} {
		code, _, stderr = runCLI(append([]string{"bench", "pipeline", "--random-weights"}, c...)...)
		if code != 1 || !strings.Contains(stderr, "image-variations") {
			t.Errorf("%v: exit %d, %q", c, code, stderr)
		}
	}
}
