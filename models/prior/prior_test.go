package prior_test

import (
	"fmt"
	"github.com/unclip-go/unclip/nn"
	"path/filepath"
	"testing"

	_ "github.com/unclip-go/unclip/kernels/cpu"
	"github.com/unclip-go/unclip/models/golden"
	"github.com/unclip-go/unclip/models/golden/fixtures"
	"github.com/unclip-go/unclip/models/prior"
)

func TestPriorGolden(t *testing.T) {
	fixtures.Require(t)
	model, g, err := golden.OpenTiny()
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	m, err := prior.Load(filepath.Join(model, "prior"), "", nn.Target{})
	if err != nil {
		t.Fatal(err)
	}
	for k := 0; k < g.Meta.Calls["prior"]; k++ {
		pre := fmt.Sprintf("prior.call%d.", k)
		x, _ := g.Tensor(pre + "in.arg0")
		pe, _ := g.Tensor(pre + "in.proj_embedding")
		enc, _ := g.Tensor(pre + "in.encoder_hidden_states")
		mask, _, err := g.Bools(pre + "in.attention_mask")
		if err != nil {
			t.Fatal(err)
		}
		ts, err := g.Int(pre + "in.timestep")
		if err != nil {
			t.Fatal(err)
		}
		out, err := m.Forward(x, ts, pe, enc, mask)
		if err != nil {
			t.Fatal(err)
		}
		want, _, _ := g.Float32s(pre + "out.predicted_image_embedding")
		s, err := golden.Compare(out.MustFloat32s(), want)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s max_abs=%.3g", pre, s.MaxAbs)
		if s.MaxAbs > 1e-4 {
			t.Errorf("%s: max abs %.3g > 1e-4", pre, s.MaxAbs)
		}
	}
}
