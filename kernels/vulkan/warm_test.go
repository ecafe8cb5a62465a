//go:build cgo && !novulkan

package vulkan

import (
	"slices"
	"testing"

	"github.com/unclip-go/unclip/tensor"
	"github.com/unclip-go/unclip/tensor/tensortest"
)

// TestWarmPass records a small graph (convolution, GroupNorm, matmul,
// attention, copies) on a fresh device: the warm pass must create every
// pipeline the recording uses, concurrently, so that the recording pass
// creates none, and the replayed result must equal the one recorded
// without a warm pass (UNCLIP_VK_WARM=0), bit for bit.
func TestWarmPass(t *testing.T) {
	x := tensortest.Rand(1, 2, 8, 6, 6)
	w := tensortest.Rand(2, 16, 8, 3, 3)
	gw, gb := tensortest.Rand(3, 16), tensortest.Rand(4, 16)
	lin := tensortest.Rand(5, 16, 16)
	block := func(in *tensor.Tensor, b tensor.Backend) *tensor.Tensor {
		h := tensor.Conv2d(in, w.To(b), nil, 1, 1) // (2, 16, 6, 6)
		h = tensor.GroupNorm(h, 4, gw.To(b), gb.To(b), 1e-5, true)
		tok := h.Reshape(2, 16, 36).Transpose(1, 2)                             // (2, 36, 16), strided
		q := tensor.MatMul(tok, lin.To(b)).Reshape(2, 36, 2, 8).Transpose(1, 2) // (2, 2, 36, 8)
		o := tensor.MultiHeadAttention(q, q, q, tensor.AttentionOptions{Scale: 0.35, MergeHeads: true})
		return tensor.Add(o, tok.Contiguous())
	}
	run := func(warm string) ([]float32, *Backend) {
		t.Setenv("UNCLIP_VK_WARM", warm)
		b := openTest(t)
		// Open shares the device between tests: start without pipelines
		// (nothing recorded with them is alive once the device is idle).
		if err := b.Sync(); err != nil {
			t.Fatal(err)
		}
		b.mu.Lock()
		b.destroyPipelines()
		b.mu.Unlock()
		g, err := tensor.Capture("warm", b, []tensor.Spec{{DType: tensor.F32, Shape: x.Shape()}},
			func(in []*tensor.Tensor) ([]*tensor.Tensor, error) { return []*tensor.Tensor{block(in[0], b)}, nil })
		if err != nil {
			t.Fatal(err)
		}
		defer g.Release()
		ex, err := g.Instantiate()
		if err != nil {
			t.Fatal(err)
		}
		defer ex.Free()
		before := b.created
		if ok, err := ex.Record(); err != nil || !ok {
			t.Fatalf("record: %v, %v", ok, err)
		}
		after := b.created
		t.Logf("UNCLIP_VK_WARM=%q: pipelines created inline %d, by the warm pass %d", warm, after.inline-before.inline, after.warm-before.warm)
		if warm != "0" {
			if after.inline != before.inline || after.warm == before.warm {
				t.Errorf("the recording pass created %d pipelines, the warm pass %d: want none and some", after.inline-before.inline, after.warm-before.warm)
			}
		}
		if err := tensor.CopyInto(ex.Input(0), x.To(b)); err != nil {
			t.Fatal(err)
		}
		if err := ex.Run(); err != nil {
			t.Fatal(err)
		}
		return ex.Output(0).MustFloat32s(), b
	}
	cold, _ := run("0")
	warm, _ := run("1")
	if !slices.Equal(cold, warm) {
		t.Errorf("the warm pass changed the result by %g", tensortest.MaxAbsDiff(cold, warm))
	}
	want := block(x, tensor.CPU()).MustFloat32s()
	if d := tensortest.MaxAbsDiff(warm, want); d > 1e-4 {
		t.Errorf("replay differs from the CPU by %g", d)
	}
}
