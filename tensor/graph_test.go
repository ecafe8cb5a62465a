package tensor_test

import (
	"errors"
	"strings"
	"testing"

	_ "github.com/unclip-go/unclip/kernels/cpu"
	"github.com/unclip-go/unclip/tensor"
	"github.com/unclip-go/unclip/tensor/tensortest"
)

// block is a small network step: norm, linear, activation, a concat with
// a constant, a narrow, and a residual add.
func block(x, w, c *tensor.Tensor) *tensor.Tensor {
	h := tensor.LayerNorm(x, tensortest.Rand(9, x.Dim(-1)), nil, 1e-5)
	for i := 0; i < 4; i++ {
		h = tensor.SiLU(tensor.Linear(h, w, nil))
		h = tensor.Add(h, x)
	}
	cat := tensor.Concat(0, h, c)
	return tensor.Scale(cat.Narrow(0, 1, x.Dim(0)), 0.5)
}

func TestGraphReplayMatchesEager(t *testing.T) {
	w := tensortest.Rand(1, 16, 16)
	c := tensortest.Rand(2, 3, 16)
	g, err := tensor.Capture("block", tensor.CPU(), []tensor.Spec{{DType: tensor.F32, Shape: []int{5, 16}}},
		func(in []*tensor.Tensor) ([]*tensor.Tensor, error) { return []*tensor.Tensor{block(in[0], w, c)}, nil })
	if err != nil {
		t.Fatal(err)
	}
	if g.ArenaBytes() >= g.ValueBytes() {
		t.Errorf("arena %d bytes, values %d: no reuse", g.ArenaBytes(), g.ValueBytes())
	}
	ex, err := g.Instantiate()
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Free()
	for seed := uint64(3); seed < 6; seed++ {
		x := tensortest.Rand(seed, 5, 16)
		want := block(x, w, c).MustFloat32s()
		if err := tensor.CopyInto(ex.Input(0), x); err != nil {
			t.Fatal(err)
		}
		if err := ex.Run(); err != nil {
			t.Fatal(err)
		}
		got := ex.Output(0).MustFloat32s()
		if d := tensortest.MaxAbsDiff(got, want); d != 0 {
			t.Errorf("seed %d: replay differs from eager by %g", seed, d)
		}
	}
	ex.Free()
	if err := ex.Run(); !errors.Is(err, tensor.ErrFreed) {
		t.Errorf("Run after Free: %v, want ErrFreed", err)
	}
}

// TestGraphConstantsRunEagerly: ops on constants alone run at capture
// time; only the ops that depend on an input are recorded.
func TestGraphConstantsRunEagerly(t *testing.T) {
	a := tensortest.Rand(1, 4)
	g, err := tensor.Capture("fold", tensor.CPU(), []tensor.Spec{{DType: tensor.F32, Shape: []int{4}}},
		func(in []*tensor.Tensor) ([]*tensor.Tensor, error) {
			k := tensor.Exp(tensor.Neg(a)) // constant: runs now
			if k.IsTraced() {
				t.Error("an op on constants was traced")
			}
			return []*tensor.Tensor{tensor.Mul(in[0], k)}, nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if g.Len() != 1 {
		t.Errorf("%d nodes recorded, want 1 (the Mul)", g.Len())
	}
}

func TestGraphMisuse(t *testing.T) {
	spec := []tensor.Spec{{DType: tensor.F32, Shape: []int{3}}}
	cases := []struct {
		name string
		f    func(in []*tensor.Tensor) ([]*tensor.Tensor, error)
		want string
	}{
		{"read a placeholder", func(in []*tensor.Tensor) ([]*tensor.Tensor, error) {
			_, err := tensor.SiLU(in[0]).Float32s()
			return nil, err
		}, "no data yet"},
		{"write into a constant", func(in []*tensor.Tensor) ([]*tensor.Tensor, error) {
			c := tensor.Zeros(3)
			_ = tensor.CopyInto(c, in[0])
			return []*tensor.Tensor{c}, nil
		}, "not part of the graph"},
		{"shape mistake", func(in []*tensor.Tensor) ([]*tensor.Tensor, error) {
			return []*tensor.Tensor{tensor.MatMul(in[0].Reshape(1, 3), tensor.Zeros(2, 2))}, nil
		}, "inner dimensions"},
		{"upload a placeholder", func(in []*tensor.Tensor) ([]*tensor.Tensor, error) {
			return []*tensor.Tensor{in[0].To(&otherBackend{})}, nil
		}, "no data yet"},
	}
	for _, c := range cases {
		_, err := tensor.Capture(c.name, tensor.CPU(), spec, c.f)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
	// Values of two graphs do not mix.
	var first *tensor.Tensor
	_, _ = tensor.Capture("a", tensor.CPU(), spec, func(in []*tensor.Tensor) ([]*tensor.Tensor, error) {
		first = in[0]
		return in, nil
	})
	_, err := tensor.Capture("b", tensor.CPU(), spec, func(in []*tensor.Tensor) ([]*tensor.Tensor, error) {
		return []*tensor.Tensor{tensor.Add(in[0], first)}, nil
	})
	if err == nil || !strings.Contains(err.Error(), "two graphs") {
		t.Errorf("mixing graphs: %v", err)
	}
}

// otherBackend stands for a second device.
type otherBackend struct{ devBackend }

func (*otherBackend) Name() string { return "other" }

// TestReleasedStorage: an op on freed storage fails with ErrReleased, and
// a released tensor becomes usable once its storage adopts memory.
func TestReleasedStorage(t *testing.T) {
	x := tensortest.Rand(1, 4)
	st, err := tensor.CPU().Reserve(16)
	if err != nil {
		t.Fatal(err)
	}
	y := tensor.OnStorage(st, tensor.F32, 4)
	if err := tensor.CopyInto(y, x); err != nil {
		t.Fatal(err)
	}
	st.Free()
	if _, err := tensor.SiLU(y).Float32s(); !errors.Is(err, tensor.ErrReleased) {
		t.Errorf("op on freed storage: %v, want ErrReleased", err)
	}
	r := tensor.NewReleased(tensor.CPU(), tensor.F32, 4)
	if err := tensor.Add(r, x).Err(); !errors.Is(err, tensor.ErrReleased) {
		t.Errorf("op on a released tensor: %v", err)
	}
	st2, _ := tensor.CPU().Reserve(16)
	if err := tensor.CPU().Write(st2, 0, mustBytes(t, x)); err != nil {
		t.Fatal(err)
	}
	if err := r.Storage().Adopt(st2); err != nil {
		t.Fatal(err)
	}
	if d := tensortest.MaxAbsDiff(r.MustFloat32s(), x.MustFloat32s()); d != 0 {
		t.Errorf("adopted storage differs by %g", d)
	}
	r.Storage().Free()
}

func mustBytes(t *testing.T, x *tensor.Tensor) []byte {
	b, err := x.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseBytes(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{{"8GiB", 8 << 30, true}, {"512M", 512 << 20, true}, {"1.5G", 3 << 29, true}, {"4096", 4096, true}, {"64 kb", 64 << 10, true},
		{"", 0, false}, {"-1G", 0, false}, {"lots", 0, false}} {
		got, err := tensor.ParseBytes(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseBytes(%q) = %d, %v", c.in, got, err)
		}
	}
}

// TestGraphFusion: the unfused spellings — GroupNorm then SiLU, MatMul
// then a broadcast bias, Conv2d then a per-channel bias, an activation
// after either, a residual added to either — are fused into one node each
// when captured, and the replay matches eager execution.
func TestGraphFusion(t *testing.T) {
	w := tensortest.Rand(1, 8, 6)
	bias := tensortest.Rand(2, 6)
	cw := tensortest.Rand(3, 5, 4, 3, 3)
	cb := tensortest.Rand(4, 5)
	gw, gb := tensortest.Rand(5, 4), tensortest.Rand(6, 4)
	w2, b2 := tensortest.Rand(9, 6, 8), tensortest.Rand(10, 8)
	cw2, w3 := tensortest.Rand(11, 4, 4, 3, 3), tensortest.Rand(12, 8, 6)
	f := func(x, img *tensor.Tensor) []*tensor.Tensor {
		lin := tensor.Add(tensor.MatMul(x, w), bias)                                  // 2 → 1
		conv := tensor.Add(tensor.Conv2d(img, cw, nil, 1, 1), cb.Reshape(1, 5, 1, 1)) // 2 → 1
		gn := tensor.SiLU(tensor.GroupNorm(img, 2, gw, gb, 1e-5, false))              // 2 → 1
		// An MLP block with its residual: 5 → 2.
		h := tensor.GELU(tensor.Add(tensor.MatMul(x, w), bias))
		mlp := tensor.Add(x, tensor.Add(tensor.MatMul(h, w2), b2))
		// A resnet's tail: 3 → 1.
		res := tensor.Add(img, tensor.SiLU(tensor.Conv2d(img, cw2, nil, 1, 1)))
		// The sum of two products: the second takes the first as its
		// residual (the first cannot read the second): 3 → 2.
		sum := tensor.Add(tensor.MatMul(x, w), tensor.MatMul(x, w3))
		return []*tensor.Tensor{lin, conv, gn, mlp, res, sum}
	}
	const fusedNodes = 3 + 2 + 1 + 2
	x, img := tensortest.Rand(7, 3, 8), tensortest.Rand(8, 2, 4, 5, 5)
	g, err := tensor.Capture("fusion", tensor.CPU(), []tensor.Spec{{DType: tensor.F32, Shape: x.Shape()}, {DType: tensor.F32, Shape: img.Shape()}},
		func(in []*tensor.Tensor) ([]*tensor.Tensor, error) {
			return f(in[0], in[1]), nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if g.Len() != fusedNodes {
		t.Errorf("%d nodes after fusion, want %d", g.Len(), fusedNodes)
		for _, n := range g.Nodes() {
			t.Logf("  %s", n.Name())
		}
	}
	ex, err := g.Instantiate()
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Free()
	for i, v := range []*tensor.Tensor{x, img} {
		if err := tensor.CopyInto(ex.Input(i), v); err != nil {
			t.Fatal(err)
		}
	}
	if err := ex.Run(); err != nil {
		t.Fatal(err)
	}
	for i, want := range f(x, img) {
		got := ex.Output(i).MustFloat32s()
		if d := tensortest.MaxAbsDiff(got, want.MustFloat32s()); d > 1e-5 {
			t.Errorf("output %d: fused replay differs from eager by %g", i, d)
		}
	}
}
