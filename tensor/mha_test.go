package tensor_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/unclip-go/unclip/tensor"
	"github.com/unclip-go/unclip/tensor/tensortest"
)

// mhaOldWay is MultiHeadAttention computed as the callers did before it:
// prefix keys and values concatenated in front of k and v, a prefix-only
// bias zero-padded over k's keys, the heads merged by a permuted copy.
func mhaOldWay(q, k, v *tensor.Tensor, o tensor.AttentionOptions) *tensor.Tensor {
	bias := o.Bias
	if o.PrefixK != nil {
		lp, lk := o.PrefixK.Dim(2), k.Dim(2)
		k = tensor.Concat(2, o.PrefixK.Contiguous(), k.Contiguous())
		v = tensor.Concat(2, o.PrefixV.Contiguous(), v.Contiguous())
		if bias != nil && bias.Dim(-1) == lp && lk > 0 {
			b := bias.Expand(q.Dim(0), q.Dim(1), q.Dim(2), lp).Contiguous()
			bias = tensor.Concat(3, b, tensor.Zeros(q.Dim(0), q.Dim(1), q.Dim(2), lk))
		}
	}
	r := tensor.Attention(q, k, v, bias, o.Scale, o.Causal)
	if o.MergeHeads {
		r = r.Permute(0, 2, 1, 3).Reshape(q.Dim(0), q.Dim(2), -1).Contiguous()
	}
	return r
}

// TestMultiHeadAttentionNode checks the OpAttention node MultiHeadAttention
// builds (the layout the backends are written against) and that of
// tensor.Attention (unchanged: four sources, Dst (B, H, Lq, Dv)), their
// FLOPs, and a captured graph's replay of them against the old way.
func TestMultiHeadAttentionNode(t *testing.T) {
	const b, h, lq, lk, lp, d, dv = 2, 3, 5, 7, 4, 6, 5
	const scale = float32(0.4)
	// q, k, v as SplitHeads makes them: permuted (B, L, H, D) views.
	split := func(x *tensor.Tensor, dd int) *tensor.Tensor {
		return x.Reshape(x.Dim(0), x.Dim(1), h, dd).Permute(0, 2, 1, 3)
	}
	kp := split(tensortest.Rand(3, b, lp, h*d), d)
	vp := split(tensortest.Rand(4, b, lp, h*dv), dv)
	cases := []struct {
		name     string
		opt      tensor.AttentionOptions
		old      bool // tensor.Attention
		srcs     int
		bias     []int // Src[3]'s shape, nil for none
		dst      []int
		keys, dv int // for FLOPs
	}{
		{name: "Attention", opt: tensor.AttentionOptions{Scale: scale, Bias: tensortest.Rand(5, b, 1, 1, lk)}, old: true,
			srcs: 4, bias: []int{b, h, lq, lk}, dst: []int{b, h, lq, dv}, keys: lk},
		{name: "Attention causal", opt: tensor.AttentionOptions{Scale: scale, Causal: true}, old: true,
			srcs: 4, dst: []int{b, h, lq, dv}, keys: lk},
		{name: "merged", opt: tensor.AttentionOptions{Scale: scale, MergeHeads: true},
			srcs: 4, dst: []int{b, lq, h * dv}, keys: lk},
		{name: "merged causal bias", opt: tensor.AttentionOptions{Scale: scale, Causal: true, MergeHeads: true, Bias: tensortest.Rand(6, lq, lk)},
			srcs: 4, bias: []int{b, h, lq, lk}, dst: []int{b, lq, h * dv}, keys: lk},
		{name: "prefix", opt: tensor.AttentionOptions{Scale: scale, PrefixK: kp, PrefixV: vp},
			srcs: 6, dst: []int{b, h, lq, dv}, keys: lp + lk},
		{name: "prefix merged, prefix bias", opt: tensor.AttentionOptions{Scale: scale, PrefixK: kp, PrefixV: vp, MergeHeads: true, Bias: tensortest.Rand(7, b, 1, 1, lp)},
			srcs: 6, bias: []int{b, h, lq, lp}, dst: []int{b, lq, h * dv}, keys: lp + lk},
		{name: "prefix merged, full bias", opt: tensor.AttentionOptions{Scale: scale, PrefixK: kp, PrefixV: vp, MergeHeads: true, Bias: tensortest.Rand(8, b, h, lq, lp+lk)},
			srcs: 6, bias: []int{b, h, lq, lp + lk}, dst: []int{b, lq, h * dv}, keys: lp + lk},
	}
	for _, c := range cases {
		qkv := func(x *tensor.Tensor) (q, k, v *tensor.Tensor) {
			// One fused projection sliced three ways: views with an offset.
			return split(x.Narrow(2, 0, h*d), d), split(x.Narrow(2, h*d, h*d), d), split(x.Narrow(2, 2*h*d, h*dv), dv)
		}
		f := func(x, y *tensor.Tensor) *tensor.Tensor {
			q, _, _ := qkv(x)
			_, k, v := qkv(y)
			if c.old {
				return tensor.Attention(q, k, v, c.opt.Bias, c.opt.Scale, c.opt.Causal)
			}
			return tensor.MultiHeadAttention(q, k, v, c.opt)
		}
		width := 2*h*d + h*dv
		g, err := tensor.Capture("mha", tensor.CPU(), []tensor.Spec{{DType: tensor.F32, Shape: []int{b, lq, width}}, {DType: tensor.F32, Shape: []int{b, lk, width}}},
			func(in []*tensor.Tensor) ([]*tensor.Tensor, error) { return []*tensor.Tensor{f(in[0], in[1])}, nil })
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var n *tensor.Node
		for _, m := range g.Nodes() {
			if m.Op == tensor.OpAttention {
				if n != nil {
					t.Fatalf("%s: two attention nodes", c.name)
				}
				n = m
			}
		}
		if n == nil {
			t.Fatalf("%s: no attention node", c.name)
		}
		if len(n.Src) != c.srcs {
			t.Errorf("%s: %d sources, want %d", c.name, len(n.Src), c.srcs)
		}
		for i, want := range [][]int{{b, h, lq, d}, {b, h, lk, d}, {b, h, lk, dv}} {
			if !slices.Equal(n.Src[i].Shape(), want) {
				t.Errorf("%s: Src[%d] %v, want %v", c.name, i, n.Src[i].Shape(), want)
			}
		}
		switch {
		case c.bias == nil && n.Src[3] != nil:
			t.Errorf("%s: Src[3] %v, want nil", c.name, n.Src[3].Shape())
		case c.bias != nil && (n.Src[3] == nil || !slices.Equal(n.Src[3].Shape(), c.bias)):
			t.Errorf("%s: Src[3] %v, want %v", c.name, n.Src[3], c.bias)
		}
		if c.srcs == 6 && (n.Src[4] != c.opt.PrefixK || n.Src[5] != c.opt.PrefixV) {
			t.Errorf("%s: Src[4], Src[5] are not the prefix keys and values", c.name)
		}
		if !slices.Equal(n.Dst.Shape(), c.dst) {
			t.Errorf("%s: Dst %v, want %v", c.name, n.Dst.Shape(), c.dst)
		}
		wantInt1 := 0
		if c.opt.MergeHeads {
			wantInt1 = 1
		}
		wantInt0 := 0
		if c.opt.Causal {
			wantInt0 = 1
		}
		if n.Float[0] != scale || n.Int[0] != wantInt0 || n.Int[1] != wantInt1 {
			t.Errorf("%s: Float[0] %g, Int[0] %d, Int[1] %d; want %g, %d, %d", c.name, n.Float[0], n.Int[0], n.Int[1], scale, wantInt0, wantInt1)
		}
		if got, want := n.FLOPs(), int64(2*b*h*lq*c.keys*(d+dv)); got != want {
			t.Errorf("%s: %d FLOPs, want %d", c.name, got, want)
		}

		// Replayed, the graph matches the old way run eagerly.
		ex, err := g.Instantiate()
		if err != nil {
			t.Fatal(err)
		}
		x, y := tensortest.Rand(9, b, lq, width), tensortest.Rand(10, b, lk, width)
		for i, in := range []*tensor.Tensor{x, y} {
			if err := tensor.CopyInto(ex.Input(i), in); err != nil {
				t.Fatal(err)
			}
		}
		if err := ex.Run(); err != nil {
			t.Fatal(err)
		}
		q, _, _ := qkv(x)
		_, k, v := qkv(y)
		want := mhaOldWay(q, k, v, c.opt).MustFloat32s()
		if d := tensortest.MaxAbsDiff(ex.Output(0).MustFloat32s(), want); d > 1e-5 {
			t.Errorf("%s: replay differs from the old way by %g", c.name, d)
		}
		ex.Free()
	}
}

// TestMultiHeadAttentionShapes checks the shape panics of
// MultiHeadAttention.
func TestMultiHeadAttentionShapes(t *testing.T) {
	r := tensortest.Rand
	q, k, v := r(1, 2, 3, 5, 4), r(2, 2, 3, 7, 4), r(3, 2, 3, 7, 6)
	kp, vp := r(4, 2, 3, 2, 4), r(5, 2, 3, 2, 6)
	for _, c := range []struct {
		name    string
		q, k, v *tensor.Tensor
		o       tensor.AttentionOptions
	}{
		{"rank", q.Reshape(6, 5, 4), k, v, tensor.AttentionOptions{}},
		{"k heads", q, r(6, 2, 2, 7, 4), v, tensor.AttentionOptions{}},
		{"k depth", q, r(6, 2, 3, 7, 5), v, tensor.AttentionOptions{}},
		{"v keys", q, k, r(6, 2, 3, 6, 6), tensor.AttentionOptions{}},
		{"integer q", tensor.FromInt64(make([]int64, 120), 2, 3, 5, 4), k, v, tensor.AttentionOptions{}},
		{"prefix keys alone", q, k, v, tensor.AttentionOptions{PrefixK: kp}},
		{"prefix values alone", q, k, v, tensor.AttentionOptions{PrefixV: vp}},
		{"prefix rank", q, k, v, tensor.AttentionOptions{PrefixK: kp.Reshape(6, 2, 4), PrefixV: vp}},
		{"prefix depth", q, k, v, tensor.AttentionOptions{PrefixK: r(6, 2, 3, 2, 5), PrefixV: vp}},
		{"prefix batch", q, k, v, tensor.AttentionOptions{PrefixK: r(6, 1, 3, 2, 4), PrefixV: r(7, 1, 3, 2, 6)}},
		{"prefix value width", q, k, v, tensor.AttentionOptions{PrefixK: kp, PrefixV: r(6, 2, 3, 2, 5)}},
		{"prefix lengths", q, k, v, tensor.AttentionOptions{PrefixK: kp, PrefixV: r(6, 2, 3, 3, 6)}},
		{"causal with prefix", q, k, v, tensor.AttentionOptions{PrefixK: kp, PrefixV: vp, Causal: true}},
		{"bias keys", q, k, v, tensor.AttentionOptions{Bias: r(6, 2, 1, 1, 6)}},
		{"bias keys with prefix", q, k, v, tensor.AttentionOptions{PrefixK: kp, PrefixV: vp, Bias: r(6, 2, 1, 1, 7)}},
		{"bias queries", q, k, v, tensor.AttentionOptions{Bias: r(6, 2, 1, 4, 7)}},
		{"prefix bias queries", q, k, v, tensor.AttentionOptions{PrefixK: kp, PrefixV: vp, Bias: r(6, 2, 1, 4, 2)}},
		{"bias rank", q, k, v, tensor.AttentionOptions{Bias: r(6, 1, 2, 1, 1, 7)}},
		{"bias dtype", q, k, v, tensor.AttentionOptions{Bias: r(6, 7).Cast(tensor.F16)}},
	} {
		wantShapeError(t, c.name, func() { tensor.MultiHeadAttention(c.q, c.k, c.v, c.o) })
	}
	// And these are fine.
	for i, o := range []tensor.AttentionOptions{
		{Bias: r(6, 7)},
		{Bias: r(6, 2, 3, 5, 7)},
		{PrefixK: kp, PrefixV: vp, Bias: r(6, 9)},
		{PrefixK: kp, PrefixV: vp, Bias: r(6, 2)},
		{PrefixK: kp, PrefixV: vp, Bias: r(6, 2, 1, 5, 1)},
		{Causal: true, MergeHeads: true, Bias: r(6, 5, 7)},
	} {
		if err := tensor.Catch(func() error { return tensor.MultiHeadAttention(q, k, v, o).Err() }); err != nil {
			t.Errorf("%s: %v", fmt.Sprint(i), err)
		}
	}
}
