package textproj_test

import (
	"github.com/unclip-go/unclip/nn"
	"path/filepath"
	"testing"

	_ "github.com/unclip-go/unclip/kernels/cpu"
	"github.com/unclip-go/unclip/models/golden"
	"github.com/unclip-go/unclip/models/golden/fixtures"
	"github.com/unclip-go/unclip/models/textproj"
)

func TestTextProjGolden(t *testing.T) {
	fixtures.Require(t)
	model, g, err := golden.OpenTiny()
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	m, err := textproj.Load(filepath.Join(model, "text_proj"), "", nn.Target{})
	if err != nil {
		t.Fatal(err)
	}
	pre := "text_proj.call0."
	img, _ := g.Tensor(pre + "in.image_embeddings")
	pe, _ := g.Tensor(pre + "in.prompt_embeds")
	th, _ := g.Tensor(pre + "in.text_encoder_hidden_states")
	cfg, _, _ := g.Bools(pre + "in.do_classifier_free_guidance")
	ctx, temb, err := m.Forward(img, pe, th, cfg[0])
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string][]float32{"out0": ctx.MustFloat32s(), "out1": temb.MustFloat32s()} {
		want, _, _ := g.Float32s(pre + "out." + name)
		s, err := golden.Compare(got, want)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s%s max_abs=%.3g", pre, name, s.MaxAbs)
		if s.MaxAbs > 1e-4 {
			t.Errorf("%s%s: max abs %.3g > 1e-4", pre, name, s.MaxAbs)
		}
	}
}
