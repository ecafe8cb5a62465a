package main

import (
	"bytes"
	"fmt"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/unclip-go/unclip/kernels/cpu"
	"github.com/unclip-go/unclip/models/golden"
	"github.com/unclip-go/unclip/models/golden/fixtures"
	"github.com/unclip-go/unclip/models/unclip"
)

// variationFixture opens unclip-tiny-variation.
func variationFixture(t *testing.T) (model, inputs string, g *golden.File) {
	t.Helper()
	fixtures.Require(t)
	model, gpath, err := golden.Variation()
	if err != nil {
		t.Fatal(err)
	}
	if g, err = golden.Open(gpath); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return model, filepath.Dir(gpath), g
}

// withKernels runs the test body with the named CPU kernels.
func withKernels(t *testing.T, name string) {
	t.Helper()
	old := cpu.Kernels()
	if err := cpu.SetKernels(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cpu.SetKernels(old) })
}

// readPNG decodes an RGB PNG written by the CLI: its pixels (HWC) and its
// parameters text.
func readPNG(t *testing.T, path string) ([]uint8, int, string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	b := img.Bounds()
	pix := make([]uint8, 0, 3*b.Dx()*b.Dy())
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
			pix = append(pix, c.R, c.G, c.B)
		}
	}
	text, err := pngText(data)
	if err != nil {
		t.Fatal(err)
	}
	return pix, b.Dx(), text["parameters"]
}

// u8Rule is the fixture's rule for 8-bit images: at most 2 levels apart in
// at most 0.1 % of values.
func u8Rule(t *testing.T, name string, got, want []uint8) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, diffusers %d", name, len(got), len(want))
	}
	worst, diff := 0, 0
	for i := range got {
		d := max(int(got[i])-int(want[i]), int(want[i])-int(got[i]))
		worst = max(worst, d)
		if d != 0 {
			diff++
		}
	}
	frac := float64(diff) / float64(len(got))
	t.Logf("%s: max %d levels, %.4f%% differ", name, worst, 100*frac)
	if worst > 2 || frac > 0.001 {
		t.Errorf("%s: max %d levels in %.4f%% of values (rule: ≤ 2 levels in ≤ 0.1%%)", name, worst, 100*frac)
	}
}

// TestVaryAndInterpolateMatchDiffusers runs the four recorded pipelines
// through the commands with their seeds and settings and compares the PNGs
// with diffusers' 8-bit images. The reference kernels (float64
// accumulation) are used: see TestVariationFastKernels for why.
func TestVaryAndInterpolateMatchDiffusers(t *testing.T) {
	model, in, g := variationFixture(t)
	tiny, _, err := golden.Tiny()
	if err != nil {
		t.Fatal(err)
	}
	withKernels(t, "ref")
	img := func(i int) string { return filepath.Join(in, g.Meta.Images[i].File) }
	steps := []string{"--decoder-steps", "2", "--sr-steps", "2", "--decoder-guidance", "8", "--quiet", "--device", "cpu"}
	dir := t.TempDir()
	for _, c := range []struct {
		run    string
		args   []string
		params []string // in every frame's parameters
	}{
		{"variation", []string{"vary", "-m", model, "-i", img(0), "-i", img(1), "--seed", "0"}, []string{"Variation of", "inputs/input", "Seed: 0"}},
		{"variation_n2", []string{"vary", "-m", model, "-i", img(0), "-n", "2", "--seed", "1"}, []string{"Variation: ", "/2"}},
		{"interp_image", []string{"interpolate", "-m", model, "--image", img(0), "--image", img(1), "--frames", "4", "--seed", "2",
			"--grid", filepath.Join(dir, "interp_image-sheet.png")}, []string{"Frame: ", "t: ", "input0.png", "input1.png"}},
		{"interp_text", []string{"interpolate", "-m", tiny, "-p", "a photo of a cat", "-p", "an oil painting of a lighthouse at night", "--frames", "4",
			"--seed", "3", "--prior-steps", "2", "--prior-guidance", "4"}, []string{"a photo of a cat", "Prior steps: 2"}},
	} {
		t.Run(c.run, func(t *testing.T) {
			out := filepath.Join(dir, c.run+"-%d.png")
			code, stdout, stderr := runCLI(append(append(c.args, steps...), "-o", out)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			want, shape, err := g.Float32s(c.run + ".pipeline.image")
			if err != nil {
				t.Fatal(err)
			}
			ref := unclip.ToUint8(want)
			per := shape[1] * shape[2] * 3
			for i := 0; i < shape[0]; i++ {
				name := fmt.Sprintf(out, i+1)
				if !strings.Contains(stdout, name) {
					t.Errorf("stdout does not list %s:\n%s", name, stdout)
				}
				pix, size, params := readPNG(t, name)
				if size != shape[1] {
					t.Fatalf("%s is %d wide, want %d", name, size, shape[1])
				}
				u8Rule(t, filepath.Base(name), pix, ref[i*per:(i+1)*per])
				if c.run == "interp_image" && i == 1 && !strings.Contains(params, "Frame: 2/4, t: 0.33333334") {
					t.Errorf("%s: parameters %q lack the frame and its weight", name, params)
				}
				for _, p := range c.params {
					if !strings.Contains(params, p) {
						t.Errorf("%s: parameters %q lack %q", name, params, p)
					}
				}
			}
			if c.run == "interp_image" { // the contact sheet holds the frames, 2×2
				sheet, w, _ := readPNG(t, filepath.Join(dir, "interp_image-sheet.png"))
				s := shape[1]
				if w != 2*s || len(sheet) != 4*per {
					t.Fatalf("contact sheet %d wide with %d values, want %d and %d", w, len(sheet), 2*s, 4*per)
				}
				frame, _, _ := readPNG(t, fmt.Sprintf(out, 4))
				for y := 0; y < s; y++ { // frame 4 is at the bottom right
					row := sheet[3*((s+y)*w+s) : 3*((s+y)*w+2*s)]
					if !bytes.Equal(row, frame[3*y*s:3*(y+1)*s]) {
						t.Fatalf("contact sheet row %d of frame 4 differs from the frame", y)
					}
				}
			}
		})
	}
}

// TestTextDiffZeroIsTheVariation checks that --diff frames differ only by
// θ: θ = 0 is the plain variation from the same seed, pixel for pixel, and
// θ > 0 moves the image. It also checks that generate decodes embeddings
// saved by --save-intermediates exactly as vary does.
func TestTextDiffZeroIsTheVariation(t *testing.T) {
	model, in, g := variationFixture(t)
	img := filepath.Join(in, g.Meta.Images[0].File)
	dir := t.TempDir()
	steps := []string{"--decoder-steps", "2", "--sr-steps", "2", "--quiet", "--device", "cpu", "--seed", "7"}
	emb := filepath.Join(dir, "emb.safetensors")
	code, _, stderr := runCLI(append([]string{"vary", "-m", model, "-i", img, "-o", filepath.Join(dir, "plain.png"), "--save-intermediates", emb}, steps...)...)
	if code != 0 {
		t.Fatalf("vary: exit %d: %s", code, stderr)
	}
	code, _, stderr = runCLI(append([]string{"vary", "-m", model, "-i", img, "--diff", "a photo of a cat", "an oil painting of a cat",
		"--amount", "0,0.5", "-o", filepath.Join(dir, "diff-%d.png")}, steps...)...)
	if code != 0 {
		t.Fatalf("vary --diff: exit %d: %s", code, stderr)
	}
	plain, _, _ := readPNG(t, filepath.Join(dir, "plain.png"))
	zero, _, params := readPNG(t, filepath.Join(dir, "diff-1.png"))
	half, _, params2 := readPNG(t, filepath.Join(dir, "diff-2.png"))
	if !bytes.Equal(plain, zero) {
		t.Error("θ = 0 differs from the plain variation with the same seed")
	}
	if bytes.Equal(plain, half) {
		t.Error("θ = 0.5 gives the plain variation: the diff did nothing")
	}
	for _, want := range []string{"Text diff of", "a photo of a cat", "Amount: 0,", "Seed: 7"} {
		if !strings.Contains(params, want) {
			t.Errorf("parameters %q lack %q", params, want)
		}
	}
	if !strings.Contains(params2, "Amount: 0.5") {
		t.Errorf("parameters %q lack the amount", params2)
	}
	// generate with the saved embeddings and the empty prompt decodes the
	// same image: vary is generate without the prior.
	tiny, _, err := golden.Tiny()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{model, tiny} {
		out := filepath.Join(dir, "gen-"+filepath.Base(filepath.Dir(m))+".png")
		code, _, stderr = runCLI(append([]string{"generate", "-m", m, "-p", "", "--image-embeddings", emb, "-o", out}, steps...)...)
		if code != 0 {
			t.Fatalf("generate --image-embeddings: exit %d: %s", code, stderr)
		}
		gen, _, params := readPNG(t, out)
		if !bytes.Equal(plain, gen) {
			t.Errorf("generate -m %s --image-embeddings differs from the variation it was saved from", m)
		}
		if !strings.Contains(params, "Image embeddings: "+emb) {
			t.Errorf("parameters %q do not name the embeddings", params)
		}
	}
}

func TestVaryAndInterpolateBadInput(t *testing.T) {
	model, in, g := variationFixture(t)
	tiny, _, err := golden.Tiny()
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(in, g.Meta.Images[0].File)
	dir := t.TempDir()
	notImage := filepath.Join(dir, "notes.png")
	os.WriteFile(notImage, []byte("not a picture"), 0o644)
	three := filepath.Join(dir, "three.safetensors")
	code, _, stderr := runCLI("vary", "-m", model, "-i", img, "-i", img, "-i", img, "--decoder-steps", "2", "--sr-steps", "2", "--quiet",
		"--device", "cpu", "-o", filepath.Join(dir, "v-%d.png"), "--save-intermediates", three)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	o := filepath.Join(dir, "x.png")
	for _, c := range []struct {
		cmd  string
		args []string
		has  []string
	}{
		{"vary", []string{"-m", model, "-o", o}, []string{"-i IMAGE"}},
		{"vary", []string{"-m", model, "-i", img, "--image-embeddings", three, "-o", o}, []string{"not both"}},
		{"vary", []string{"-m", model, "-i", filepath.Join(dir, "missing.png"), "-o", o}, []string{"missing.png"}},
		{"vary", []string{"-m", model, "-i", notImage, "-o", o}, []string{"notes.png", "decoding image"}},
		{"vary", []string{"-m", model, "-i", img, "--diff", "a cat"}, []string{"two captions"}},
		{"vary", []string{"-m", model, "-i", img, "--diff", "a", "b", "--amount", "x", "-o", o}, []string{"--amount"}},
		{"vary", []string{"-m", model, "-i", img, "--diff", "a", "b", "-n", "2", "-o", o}, []string{"no -n"}},
		{"vary", []string{"-m", model, "-i", img, "-n", "0", "-o", o}, []string{"-n must be"}},
		{"vary", []string{"-m", tiny, "-i", img, "-o", o, "--device", "cpu"}, []string{"no image encoder", "image-variations"}},
		{"vary", []string{"-m", "demo", "-i", img, "-o", o}, []string{"demo"}},
		{"interpolate", []string{"-m", model, "--image", img, "-o", o}, []string{"two images"}},
		{"interpolate", []string{"-m", model, "--image", img, "--image", img, "-p", "a", "-p", "b", "-o", o}, []string{"not both"}},
		{"interpolate", []string{"-m", tiny, "-p", "a", "-o", o}, []string{"two prompts"}},
		{"interpolate", []string{"-m", model, "--image", img, "--image", img, "--frames", "1", "-o", o}, []string{"--frames"}},
		{"interpolate", []string{"-m", model, "--image", img, "--image", img, "--grid", filepath.Join(dir, "g.jpg"), "-o", filepath.Join(dir, "f-%d.png")}, []string{"PNG"}},
		{"interpolate", []string{"-m", model, "--image-embeddings", three, "-o", filepath.Join(dir, "f-%d.png")}, []string{"3 rows", "takes 2"}},
		{"generate", []string{"-m", model, "-p", "a cat", "-o", o, "--device", "cpu"}, []string{"image-variations model", "no prior"}},
		{"generate", []string{"-m", tiny, "-p", "a", "-p", "b", "--image-embeddings", three, "-o", filepath.Join(dir, "g-%d.png")}, []string{"3 rows", "one per prompt (2)"}},
		{"generate", []string{"-m", tiny, "-p", "a", "--image-embeddings", notImage, "-o", o}, []string{"--image-embeddings"}},
	} {
		t.Run(c.cmd+" "+strings.Join(c.args[2:], " "), func(t *testing.T) {
			code, stdout, stderr := runCLI(append([]string{c.cmd}, c.args...)...)
			wantError(t, code, stdout, stderr, 1, c.cmd, c.has...)
			if _, err := os.Stat(o); err == nil {
				t.Errorf("%s was written", o)
			}
		})
	}
}
