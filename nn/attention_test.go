package nn

import (
	"fmt"
	"math"
	"testing"

	"github.com/unclip-go/unclip/kernels/cpu"
	"github.com/unclip-go/unclip/tensor"
	"github.com/unclip-go/unclip/tensor/tensortest"
)

// oldSpatialForward is SpatialAttention.Forward as it was before
// tensor.MultiHeadAttention: the context's keys and values concatenated in
// front of the pixels', its bias padded with zeros, the heads merged by a
// copy.
func oldSpatialForward(a *SpatialAttention, x, context, ctxBias *tensor.Tensor) *tensor.Tensor {
	n, c, h, w := x.Dim(0), x.Dim(1), x.Dim(2), x.Dim(3)
	hw := h * w
	tokens := a.Norm.Forward(x.Reshape(n, c, hw), false).Transpose(1, 2)
	q := SplitHeads(a.Q.Forward(tokens), a.Heads)
	k := SplitHeads(a.K.Forward(tokens), a.Heads)
	v := SplitHeads(a.V.Forward(tokens), a.Heads)
	var bias *tensor.Tensor
	if a.AddK != nil {
		lc := context.Dim(1)
		ck := SplitHeads(a.AddK.Forward(context), a.Heads)
		cv := SplitHeads(a.AddV.Forward(context), a.Heads)
		k = tensor.Concat(2, ck.Contiguous(), k.Contiguous())
		v = tensor.Concat(2, cv.Contiguous(), v.Contiguous())
		if ctxBias != nil {
			zeros := tensor.ZerosOn(x.Backend(), tensor.F32, n, 1, 1, hw)
			bias = tensor.Concat(3, ctxBias.Reshape(n, 1, 1, lc).Contiguous(), zeros)
		}
	}
	o := a.Out.Forward(MergeHeads(tensor.Attention(q, k, v, bias, a.Scale, false)))
	y := tensor.Add(o.Transpose(1, 2).Reshape(n, c, h, w), x)
	if a.RescaleOutput != 1 {
		y = tensor.Scale(y, 1/a.RescaleOutput)
	}
	return y
}

// oldAttentionForward is Attention.Forward as it was: tensor.Attention,
// then MergeHeads' copy.
func oldAttentionForward(a *Attention, x, bias *tensor.Tensor, causal bool) *tensor.Tensor {
	q := SplitHeads(a.Q.Forward(x), a.Heads)
	k := SplitHeads(a.K.Forward(x), a.Heads)
	v := SplitHeads(a.V.Forward(x), a.Heads)
	return a.Out.Forward(MergeHeads(tensor.Attention(q, k, v, bias, a.Scale, causal)))
}

// TestAttentionLayersMatchConcat checks that SpatialAttention (plain and
// added-KV, with and without the context mask) and Attention (causal, with
// a bias) give what they gave with the concatenated keys and merged copies,
// under the reference and the fast CPU kernels.
func TestAttentionLayersMatchConcat(t *testing.T) {
	prev := cpu.Kernels()
	defer cpu.SetKernels(prev)
	sd := NewRandomStateDict(5, tensor.F32)
	defer sd.Release()
	b := NewBinder(sd, Target{})
	addedKV := NewSpatialAttention(b.Sub("added_kv"), AttentionOptions{Channels: 24, HeadDim: 8, Groups: 4, Eps: 1e-5, ContextDim: 10, RescaleOutput: 2})
	plain := NewSpatialAttention(b.Sub("plain"), AttentionOptions{Channels: 24, HeadDim: 6, Groups: 3, Eps: 1e-5})
	self := &Attention{Q: NewLinear(b.Sub("q"), 20, 20, true), K: NewLinear(b.Sub("k"), 20, 20, true), V: NewLinear(b.Sub("v"), 20, 20, true),
		Out: NewLinear(b.Sub("out"), 20, 20, true), Heads: 4, HeadDim: 5, Scale: DefaultScale(5)}
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	x := tensortest.Rand(1, 2, 24, 5, 3)
	ctx := tensortest.Rand(2, 2, 7, 10)
	mv := tensortest.Rand(3, 2, 7).MustFloat32s()
	for i := range mv {
		if i%3 == 2 || i >= 10 { // the second sample has 3 context keys left
			mv[i] = float32(math.Inf(-1))
		}
	}
	ctxBias := tensor.FromFloat32(mv, 2, 1, 1, 7)
	tokens := tensortest.Rand(4, 3, 9, 20)
	sbias := tensortest.Rand(5, 3, 1, 1, 9)
	cases := []struct {
		name     string
		got, old func() *tensor.Tensor
	}{
		{"added-KV, masked", func() *tensor.Tensor { return addedKV.Forward(x, ctx, ctxBias) }, func() *tensor.Tensor { return oldSpatialForward(addedKV, x, ctx, ctxBias) }},
		{"added-KV, (N, Lc) mask", func() *tensor.Tensor { return addedKV.Forward(x, ctx, ctxBias.Reshape(2, 7)) }, func() *tensor.Tensor { return oldSpatialForward(addedKV, x, ctx, ctxBias) }},
		{"added-KV, no mask", func() *tensor.Tensor { return addedKV.Forward(x, ctx, nil) }, func() *tensor.Tensor { return oldSpatialForward(addedKV, x, ctx, nil) }},
		{"plain", func() *tensor.Tensor { return plain.Forward(x, nil, nil) }, func() *tensor.Tensor { return oldSpatialForward(plain, x, nil, nil) }},
		{"self causal", func() *tensor.Tensor { return self.Forward(tokens, nil, true) }, func() *tensor.Tensor { return oldAttentionForward(self, tokens, nil, true) }},
		{"self causal bias", func() *tensor.Tensor { return self.Forward(tokens, sbias, true) }, func() *tensor.Tensor { return oldAttentionForward(self, tokens, sbias, true) }},
		{"self bias", func() *tensor.Tensor { return self.Forward(tokens, sbias, false) }, func() *tensor.Tensor { return oldAttentionForward(self, tokens, sbias, false) }},
	}
	for _, k := range []string{"ref", "auto"} {
		if err := cpu.SetKernels(k); err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			name := fmt.Sprintf("%s/%s", k, c.name)
			got, old := c.got(), c.old()
			if got.Err() != nil || old.Err() != nil {
				t.Fatalf("%s: %v, %v", name, got.Err(), old.Err())
			}
			if fmt.Sprint(got.Shape()) != fmt.Sprint(old.Shape()) {
				t.Fatalf("%s: shape %v, want %v", name, got.Shape(), old.Shape())
			}
			if d := tensortest.MaxAbsDiff(got.MustFloat32s(), old.MustFloat32s()); d > 1e-5 || math.IsNaN(d) {
				t.Errorf("%s: differs from the concatenated way by %g", name, d)
			}
		}
	}
}
