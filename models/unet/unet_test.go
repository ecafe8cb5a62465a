package unet_test

import (
	"fmt"
	"github.com/unclip-go/unclip/nn"
	"path/filepath"
	"testing"

	_ "github.com/unclip-go/unclip/kernels/cpu"
	"github.com/unclip-go/unclip/models/golden"
	"github.com/unclip-go/unclip/models/golden/fixtures"
	"github.com/unclip-go/unclip/models/unet"
	"github.com/unclip-go/unclip/tensor"
)

func TestUNetGolden(t *testing.T) {
	fixtures.Require(t)
	model, g, err := golden.OpenTiny()
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for _, name := range []string{"decoder", "super_res_first", "super_res_last"} {
		m, err := unet.Load(filepath.Join(model, name), "", nn.Target{})
		if err != nil {
			t.Fatal(err)
		}
		for k := 0; k < g.Meta.Calls[name]; k++ {
			pre := fmt.Sprintf("%s.call%d.", name, k)
			x, err := g.Tensor(pre + "in.sample")
			if err != nil {
				t.Fatal(err)
			}
			ts, err := g.Int(pre + "in.timestep")
			if err != nil {
				t.Fatal(err)
			}
			in := unet.Inputs{Timestep: ts}
			if g.Has(pre + "in.encoder_hidden_states") {
				in.Context, _ = g.Tensor(pre + "in.encoder_hidden_states")
				in.ClassLabels, _ = g.Tensor(pre + "in.class_labels")
				in.ContextMask, _, _ = g.Bools(pre + "in.attention_mask")
			}
			var out *tensor.Tensor
			out, err = m.Forward(x, in)
			if err != nil {
				t.Fatal(err)
			}
			want, _, _ := g.Float32s(pre + "out.sample")
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
}
