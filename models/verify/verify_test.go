package verify_test

import (
	"bytes"
	"fmt"
	"image"
	"image/draw"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/unclip-go/unclip/kernels/cpu"
	"github.com/unclip-go/unclip/models/golden"
	"github.com/unclip-go/unclip/models/golden/fixtures"
	"github.com/unclip-go/unclip/models/verify"
	"github.com/unclip-go/unclip/tensor/safetensors"
)

func TestVerifyPasses(t *testing.T) {
	fixtures.Require(t)
	model, gpath, err := golden.Tiny()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rep, err := verify.Run(verify.Options{Model: model, Golden: gpath, Only: []string{"tokenizer", "noise", "scheduler", "text_encoder"}, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed != 0 || rep.Passed < 16+6+9+4 {
		t.Errorf("%+v\n%s", rep, out.String())
	}
	if _, err := verify.Run(verify.Options{Model: model, Golden: gpath, Only: []string{"bogus"}, Out: &out}); err == nil {
		t.Error("unknown check accepted")
	}
}

// TestVerifyCatchesAWrongWeight perturbs one text-encoder weight and
// expects the text_encoder checks to fail.
func TestVerifyCatchesAWrongWeight(t *testing.T) {
	fixtures.Require(t)
	model, gpath, err := golden.Tiny()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "text_encoder"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"model_index.json", "text_encoder/config.json"} {
		b, err := os.ReadFile(filepath.Join(model, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f), b, 0o644)
	}
	st, err := safetensors.Open(filepath.Join(model, "text_encoder", "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var ts []safetensors.TensorInfo
	for _, k := range st.Keys() {
		info, _ := st.Get(k)
		info.Data = append([]byte(nil), info.Data...)
		if k == "text_model.final_layer_norm.bias" {
			info.Data[3] ^= 0x80 // flip the sign of one bias value
		}
		ts = append(ts, info)
	}
	if err := safetensors.WriteFile(filepath.Join(dir, "text_encoder", "model.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rep, err := verify.Run(verify.Options{Model: dir, Golden: gpath, Only: []string{"text_encoder"}, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed == 0 || !strings.Contains(out.String(), "FAIL text_encoder.call0.last_hidden_state") {
		t.Errorf("a wrong weight passed: %+v\n%s", rep, out.String())
	}
}

// TestVerifyVariation runs every check of the variation recording: the
// preprocessing, the resampler, every model call, the slerps and the four
// pipelines. The checks below the pipelines run on the default kernels;
// the pipelines run on the reference kernels (float64 accumulation),
// because the recording's 2-step schedules multiply float32 rounding
// differences by up to 2·10⁴ in a few pixels (fixtures/README.md), so the
// fast float32 kernels land a final-image max of 0.003–0.016 against the
// 1e-2 bound depending on the run: logged here, not asserted.
func TestVerifyVariation(t *testing.T) {
	fixtures.Require(t)
	model, gpath, err := golden.Variation()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	var checks []string
	for _, c := range verify.VariationChecks {
		if c != "pipeline" {
			checks = append(checks, c)
		}
	}
	rep, err := verify.Run(verify.Options{Model: model, Golden: gpath, Only: checks, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s kernels:\n%s", cpu.Kernels(), out.String())
	if rep.Failed != 0 || rep.Passed < 78 {
		t.Errorf("%+v", rep)
	}
	for _, want := range []string{"PASS preprocess.image1.cropped exact", "PASS pil_bicubic.case4 exact", "PASS variation.image_encoder.call0.image_embeds",
		"PASS interp_text.text_encoder.call0.text_embeds", "PASS interp_text.prior.call1", "PASS interp_image.interp.t exact",
		"PASS interp_text.interp.last_hidden_state", "PASS variation.super_res_last.call0.sample", "PASS variation_n2.noise.003"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in the report", want)
		}
	}
	out.Reset()
	old := cpu.Kernels()
	cpu.SetKernels("ref")
	defer cpu.SetKernels(old)
	rep, err = verify.Run(verify.Options{Model: model, Golden: gpath, Only: []string{"pipeline"}, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("reference kernels:\n%s", out.String())
	if rep.Failed != 0 || rep.Passed != 4*2*3 {
		t.Errorf("%+v", rep)
	}
}

// TestVerifyVariationUnknownCheck: the text-to-image check names are
// refused on a variation recording, by name.
func TestVerifyVariationUnknownCheck(t *testing.T) {
	fixtures.Require(t)
	model, gpath, err := golden.Variation()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := verify.Run(verify.Options{Model: model, Golden: gpath, Only: []string{"tokenizer"}, Out: &out}); err == nil ||
		!strings.Contains(err.Error(), "variation recording") {
		t.Errorf("a text-to-image check on a variation recording: %v", err)
	}
}

// TestVerifyVariationCatchesAChangedInput runs the preprocessing checks
// against an input image with one pixel changed: the decoded image and
// what follows from it must fail.
func TestVerifyVariationCatchesAChangedInput(t *testing.T) {
	fixtures.Require(t)
	model, gpath, err := golden.Variation()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "inputs"), 0o755)
	for _, f := range []string{"golden.safetensors", "golden.json"} {
		if err := os.Symlink(filepath.Join(filepath.Dir(gpath), f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		name := fmt.Sprintf("inputs/input%d.png", i)
		f, err := os.Open(filepath.Join(filepath.Dir(gpath), name))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			m := image.NewNRGBA(img.Bounds())
			draw.Draw(m, m.Bounds(), img, image.Point{}, draw.Src)
			m.Pix[4*(20*m.Bounds().Dx()+30)] ^= 0x40 // pixel (30, 20), red, inside the crop
			img = m
		}
		var buf bytes.Buffer
		png.Encode(&buf, img)
		os.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o644)
	}
	var out bytes.Buffer
	rep, err := verify.Run(verify.Options{Model: model, Golden: filepath.Join(dir, "golden.safetensors"), Only: []string{"preprocess"}, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"FAIL inputs.image0", "FAIL preprocess.image0.resized", "FAIL preprocess.image0.pixel_values", "PASS preprocess.image1.cropped"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in the report:\n%s", want, out.String())
		}
	}
	if rep.Failed < 3 {
		t.Errorf("%+v", rep)
	}
}
