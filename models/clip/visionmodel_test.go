package clip_test

import (
	"path/filepath"
	"testing"

	"github.com/unclip-go/unclip/models/clip"
	"github.com/unclip-go/unclip/models/golden"
	"github.com/unclip-go/unclip/models/golden/fixtures"
	"github.com/unclip-go/unclip/nn"
	"github.com/unclip-go/unclip/tensor"
)

// TestVisionModelGolden runs the image encoder on the variation fixture's
// recorded pixel values (both images in one batch, and one image alone)
// against transformers' CLIPVisionModelWithProjection.
func TestVisionModelGolden(t *testing.T) {
	dir := filepath.Join(fixtures.Require(t), "unclip-tiny-variation")
	g, err := golden.Open(filepath.Join(dir, "golden.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	m, err := clip.LoadVisionModel(filepath.Join(dir, "model", "image_encoder"), "", nn.Target{})
	if err != nil {
		t.Fatal(err)
	}
	for _, run := range []string{"variation.", "variation_n2."} {
		pre := run + "image_encoder.call0."
		pix, err := g.Tensor(pre + "in.arg0")
		if err != nil {
			t.Fatal(err)
		}
		out, err := m.Forward(pix)
		if err != nil {
			t.Fatal(err)
		}
		outs := map[string]*tensor.Tensor{"image_embeds": out.ImageEmbeds, "last_hidden_state": out.LastHidden}
		for name, got := range outs {
			if !g.Has(pre + "out." + name) {
				continue // the light runs leave last_hidden_state out
			}
			want, _, err := g.Float32s(pre + "out." + name)
			if err != nil {
				t.Fatal(err)
			}
			s, err := golden.Compare(got.MustFloat32s(), want)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s%s max_abs=%.3g", pre, name, s.MaxAbs)
			if s.MaxAbs > 1e-4 {
				t.Errorf("%s%s: max abs %.3g > 1e-4", pre, name, s.MaxAbs)
			}
		}
	}
	if _, err := m.Forward(tensor.Zeros(1, 3, 31, 31)); err == nil {
		t.Error("a 31×31 image was accepted by a 32-pixel encoder")
	}
}
