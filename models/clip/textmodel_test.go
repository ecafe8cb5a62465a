package clip_test

import (
	"github.com/unclip-go/unclip/nn"
	"path/filepath"
	"testing"

	_ "github.com/unclip-go/unclip/kernels/cpu"
	"github.com/unclip-go/unclip/models/clip"
	"github.com/unclip-go/unclip/models/golden"
	"github.com/unclip-go/unclip/models/golden/fixtures"
)

func TestTextModelGolden(t *testing.T) {
	fixtures.Require(t)
	model, g, err := golden.OpenTiny()
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	m, err := clip.LoadTextModel(filepath.Join(model, "text_encoder"), "", nn.Target{})
	if err != nil {
		t.Fatal(err)
	}
	for _, call := range []string{"call0", "call1"} {
		pre := "text_encoder." + call + "."
		idt, err := g.Tensor(pre + "in.arg0")
		if err != nil {
			t.Fatal(err)
		}
		flat, _ := idt.Int64s()
		l := idt.Dim(1)
		var ids [][]int64
		for i := 0; i < idt.Dim(0); i++ {
			ids = append(ids, flat[i*l:(i+1)*l])
		}
		out, err := m.Forward(ids)
		if err != nil {
			t.Fatal(err)
		}
		for name, got := range map[string][]float32{"text_embeds": out.TextEmbeds.MustFloat32s(), "last_hidden_state": out.LastHidden.MustFloat32s()} {
			want, _, err := g.Float32s(pre + "out." + name)
			if err != nil {
				t.Fatal(err)
			}
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
}
