//go:build cgo && !novulkan

package vulkan

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/unclip-go/unclip/models/clip"
	"github.com/unclip-go/unclip/models/golden"
	"github.com/unclip-go/unclip/models/golden/fixtures"
	"github.com/unclip-go/unclip/models/verify"
	"github.com/unclip-go/unclip/nn"
	"github.com/unclip-go/unclip/tensor"
)

// TestVerifyTiny runs every check of the recorded diffusers run of the tiny
// fixture on the Vulkan backend: the main acceptance point. The
// fixture must exist (a missing one fails, as everywhere in this project).
// UNCLIP_VERIFY_ONLY=decoder,super_res (say) limits the checks.
func TestVerifyTiny(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end verification in -short mode")
	}
	b := openTest(t)
	fixtures.Require(t)
	model, gold, err := golden.Tiny()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	start := time.Now()
	var only []string
	if s := os.Getenv("UNCLIP_VERIFY_ONLY"); s != "" {
		only = strings.Split(s, ",")
	}
	rep, err := verify.Run(verify.Options{Model: model, Golden: gold, Only: only, Device: b, Out: &out})
	if err != nil {
		t.Fatalf("verify: %v\n%s", err, out.String())
	}
	t.Logf("%d passed, %d failed in %v on %s (%s)", rep.Passed, rep.Failed, time.Since(start).Round(time.Millisecond), b.Name(), b.Info().Name)
	if testing.Verbose() {
		t.Logf("\n%s", out.String())
	}
	if rep.Failed > 0 || rep.Passed == 0 {
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.HasPrefix(l, "FAIL") {
				t.Error(l)
			}
		}
		t.Fatalf("%d checks failed, %d passed", rep.Failed, rep.Passed)
	}
}

// TestVisionEncoder runs the CLIP image encoder of the variation fixture on
// the device, in float32 and float16, against the recorded outputs.
func TestVisionEncoder(t *testing.T) {
	b := openTest(t)
	dir := filepath.Join(fixtures.Require(t), "unclip-tiny-variation")
	g, err := golden.Open(filepath.Join(dir, "golden.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for _, c := range []struct {
		dt  tensor.DType
		tol float64
	}{{tensor.F32, 1e-4}, {tensor.F16, 5e-2}} {
		m, err := clip.LoadVisionModel(filepath.Join(dir, "model", "image_encoder"), "", nn.Target{Device: b, DType: c.dt})
		if err != nil {
			t.Fatal(err)
		}
		pix, err := g.Tensor("variation.image_encoder.call0.in.arg0")
		if err != nil {
			t.Fatal(err)
		}
		out, err := m.Forward(pix)
		if err != nil {
			t.Fatal(err)
		}
		for name, got := range map[string]*tensor.Tensor{"image_embeds": out.ImageEmbeds, "last_hidden_state": out.LastHidden} {
			want, _, err := g.Float32s("variation.image_encoder.call0.out." + name)
			if err != nil {
				t.Fatal(err)
			}
			s, err := golden.Compare(got.MustFloat32s(), want)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%v %s max_abs=%.3g", c.dt, name, s.MaxAbs)
			if s.MaxAbs > c.tol {
				t.Errorf("%v %s: max abs %.3g > %g", c.dt, name, s.MaxAbs, c.tol)
			}
		}
	}
}
