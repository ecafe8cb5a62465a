package cpu_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/unclip-go/unclip/tensor"
)

// mhaCase is one tensor.MultiHeadAttention call.
type mhaCase struct {
	b, h, lq, lk, lp, d, dv int
	// layout of q, k, v (and the prefix keys and values): "dense" (B, H,
	// L, D); "split" SplitHeads' permuted views of (B, L, H·D); "fused"
	// such views of slices of one (B, L, 3·H·D) projection (an offset and
	// a row stride wider than the heads).
	layout string
	// bias: "" none; "full" (B, H, Lq, Lp+Lk); "keys" (B, 1, 1, Lp+Lk);
	// "prefix" (B, 1, 1, Lp), the decoder's text mask, the second sample's
	// prefix keys all masked; "prefix-q" (B, 1, Lq, Lp); "prefix-1d" (Lp).
	bias           string
	causal, merged bool
	f16Keys        bool // k and the prefix keys F16
}

func (c mhaCase) String() string {
	s := fmt.Sprintf("b%d-h%d-lq%d-lk%d-lp%d-d%d-dv%d-%s", c.b, c.h, c.lq, c.lk, c.lp, c.d, c.dv, c.layout)
	if c.bias != "" {
		s += "-bias:" + c.bias
	}
	if c.causal {
		s += "-causal"
	}
	if c.merged {
		s += "-merged"
	}
	if c.f16Keys {
		s += "-f16keys"
	}
	return s
}

// mhaInputs are a case's operands.
type mhaInputs struct {
	q, k, v, kp, vp, bias *tensor.Tensor
}

func (c mhaCase) inputs(seed uint64) mhaInputs {
	// view makes the (B, H, L, dd) operand number i of a sequence of
	// length l in the case's layout.
	view := func(i uint64, l, dd int) *tensor.Tensor {
		s := seed*16 + i
		switch c.layout {
		case "split":
			return rndIn(s, -2, 2, c.b, l, c.h*dd).Reshape(c.b, l, c.h, dd).Permute(0, 2, 1, 3)
		case "fused":
			w := c.h * max(c.d, c.dv)
			x := rndIn(s, -2, 2, c.b, l, 3*w)
			return x.Narrow(2, w+int(i%2), c.h*dd).Reshape(c.b, l, c.h, dd).Permute(0, 2, 1, 3)
		}
		return rndIn(s, -2, 2, c.b, c.h, l, dd)
	}
	var in mhaInputs
	in.q, in.k, in.v = view(1, c.lq, c.d), view(2, c.lk, c.d), view(3, c.lk, c.dv)
	if c.lp > 0 {
		in.kp, in.vp = view(4, c.lp, c.d), view(5, c.lp, c.dv)
	}
	if c.f16Keys {
		in.k = in.k.Cast(tensor.F16)
		if in.kp != nil {
			in.kp = in.kp.Cast(tensor.F16)
		}
	}
	withInf := func(shape ...int) *tensor.Tensor {
		bv := rnd(seed*16+6, shape...).MustFloat32s()
		for i := 2; i < len(bv); i += 7 {
			bv[i] = float32(math.Inf(-1))
		}
		return tensor.FromFloat32(bv, shape...)
	}
	switch c.bias {
	case "full":
		in.bias = withInf(c.b, c.h, c.lq, c.lp+c.lk)
	case "keys":
		in.bias = withInf(c.b, 1, 1, c.lp+c.lk)
	case "prefix":
		in.bias = withInf(c.b, 1, 1, c.lp)
		if c.b > 1 {
			bv := in.bias.MustFloat32s()
			for j := c.lp; j < 2*c.lp; j++ {
				bv[j] = float32(math.Inf(-1))
			}
			in.bias = tensor.FromFloat32(bv, c.b, 1, 1, c.lp)
		}
	case "prefix-q":
		in.bias = withInf(c.b, 1, c.lq, c.lp)
	case "prefix-1d":
		in.bias = withInf(c.lp)
	}
	return in
}

func (c mhaCase) options(in mhaInputs) tensor.AttentionOptions {
	return tensor.AttentionOptions{Scale: float32(1 / math.Sqrt(float64(c.d))), Causal: c.causal, Bias: in.bias,
		PrefixK: in.kp, PrefixV: in.vp, MergeHeads: c.merged}
}

func (c mhaCase) prefixBias() bool { return len(c.bias) >= 6 && c.bias[:6] == "prefix" }

// oldWay computes the case as the callers did before MultiHeadAttention:
// the prefix keys and values concatenated in front of k and v, a prefix-only
// bias zero-padded over k's keys, tensor.Attention, then the heads merged
// by a permuted copy.
func (c mhaCase) oldWay(in mhaInputs) *tensor.Tensor {
	o := c.options(in)
	k, v, bias := in.k, in.v, in.bias
	if in.kp != nil {
		k = tensor.Concat(2, in.kp.Contiguous(), k.Contiguous())
		v = tensor.Concat(2, in.vp.Contiguous(), v.Contiguous())
		if c.prefixBias() {
			bias = tensor.Concat(3, bias.Expand(c.b, 1, c.lq, c.lp).Contiguous(), tensor.Zeros(c.b, 1, c.lq, c.lk))
		}
	}
	r := tensor.Attention(in.q, k, v, bias, o.Scale, o.Causal)
	if c.merged {
		r = r.Permute(0, 2, 1, 3).Reshape(c.b, c.lq, c.h*c.dv).Contiguous()
	}
	return r
}

// naive is the float64 oracle on the concatenated keys and values, with
// the bias padded (or not) in float64 and the heads merged by index.
func (c mhaCase) naive(in mhaInputs) (want, mag []float64, shape []int) {
	nk := c.lp + c.lk
	q := logical(in.q)
	cat := func(p, x *tensor.Tensor, dd int) []float64 {
		xs := logical(x)
		if p == nil {
			return xs
		}
		ps := logical(p)
		out := make([]float64, 0, len(xs)+len(ps))
		for bh := 0; bh < c.b*c.h; bh++ {
			out = append(out, ps[bh*c.lp*dd:(bh+1)*c.lp*dd]...)
			out = append(out, xs[bh*c.lk*dd:(bh+1)*c.lk*dd]...)
		}
		return out
	}
	k, v := cat(in.kp, in.k, c.d), cat(in.vp, in.v, c.dv)
	var bias []float64
	switch {
	case in.bias == nil:
	case c.prefixBias():
		pb := logical(in.bias.Expand(c.b, c.h, c.lq, c.lp))
		bias = make([]float64, c.b*c.h*c.lq*nk) // zero over k's keys
		for r := 0; r < c.b*c.h*c.lq; r++ {
			copy(bias[r*nk:r*nk+c.lp], pb[r*c.lp:(r+1)*c.lp])
		}
	default:
		bias = logical(in.bias.Expand(c.b, c.h, c.lq, nk))
	}
	scale := float64(float32(1 / math.Sqrt(float64(c.d))))
	want, mag = naiveAttention(q, k, v, c.b, c.h, c.lq, nk, c.d, c.dv, bias, scale, c.causal)
	shape = []int{c.b, c.h, c.lq, c.dv}
	if c.merged {
		mw, mm := make([]float64, len(want)), make([]float64, len(mag))
		for b := 0; b < c.b; b++ {
			for hh := 0; hh < c.h; hh++ {
				for i := 0; i < c.lq; i++ {
					for e := 0; e < c.dv; e++ {
						from := ((b*c.h+hh)*c.lq+i)*c.dv + e
						to := ((b*c.lq+i)*c.h+hh)*c.dv + e
						mw[to], mm[to] = want[from], mag[from]
					}
				}
			}
		}
		want, mag, shape = mw, mm, []int{c.b, c.lq, c.h * c.dv}
	}
	return want, mag, shape
}

// TestMultiHeadAttentionOp holds tensor.MultiHeadAttention — prefix keys and
// values, both kinds of bias, merged heads, strided views — under the
// reference kernels and every fast variant, on 1 and 3 workers, to the
// float64 oracle on explicitly concatenated inputs, and to tensor.Attention
// on the concatenated and merged inputs computed the old way.
func TestMultiHeadAttentionOp(t *testing.T) {
	cases := []mhaCase{
		// The decoder's added-KV attention: a text prefix with its mask.
		{b: 2, h: 3, lq: 17, lk: 17, lp: 5, d: 8, dv: 8, layout: "split", bias: "prefix", merged: true},
		{b: 2, h: 3, lq: 17, lk: 17, lp: 5, d: 8, dv: 8, layout: "split", bias: "prefix"},
		{b: 2, h: 2, lq: 9, lk: 11, lp: 3, d: 5, dv: 7, layout: "fused", bias: "prefix", merged: true},
		{b: 2, h: 2, lq: 9, lk: 11, lp: 3, d: 5, dv: 7, layout: "fused", merged: true},
		{b: 2, h: 2, lq: 6, lk: 4, lp: 7, d: 4, dv: 3, layout: "dense", bias: "prefix-q", merged: true},
		{b: 1, h: 3, lq: 5, lk: 6, lp: 4, d: 4, dv: 4, layout: "split", bias: "prefix-1d"},
		{b: 2, h: 2, lq: 7, lk: 5, lp: 6, d: 6, dv: 5, layout: "dense", bias: "full"},
		{b: 2, h: 2, lq: 7, lk: 5, lp: 6, d: 6, dv: 5, layout: "fused", bias: "keys", merged: true},
		{b: 1, h: 2, lq: 3, lk: 1, lp: 1, d: 3, dv: 2, layout: "split", bias: "prefix", merged: true},
		{b: 2, h: 1, lq: 1, lk: 1, lp: 1, d: 4, dv: 4, layout: "dense", bias: "prefix", merged: true},
		// More keys than one key block, in the prefix, in k and in both.
		{b: 1, h: 2, lq: 33, lk: 300, lp: 77, d: 16, dv: 12, layout: "split", bias: "full", merged: true},
		{b: 1, h: 1, lq: 65, lk: 64, lp: 270, d: 16, dv: 16, layout: "fused", bias: "prefix", merged: true},
		{b: 1, h: 2, lq: 20, lk: 261, lp: 259, d: 8, dv: 8, layout: "dense"},
		// F16 keys.
		{b: 2, h: 2, lq: 9, lk: 13, lp: 6, d: 8, dv: 8, layout: "split", bias: "prefix", merged: true, f16Keys: true},
		// No prefix: CLIP's and the prior's self-attention.
		{b: 2, h: 3, lq: 13, lk: 13, d: 8, dv: 8, layout: "split", causal: true, merged: true},
		{b: 2, h: 3, lq: 13, lk: 13, d: 8, dv: 8, layout: "fused", causal: true, bias: "keys", merged: true},
		{b: 1, h: 2, lq: 9, lk: 5, d: 5, dv: 6, layout: "split", bias: "full", merged: true},
		{b: 1, h: 1, lq: 70, lk: 70, d: 4, dv: 3, layout: "split", causal: true, merged: true},
		{b: 2, h: 2, lq: 7, lk: 9, d: 4, dv: 4, layout: "dense"},
	}
	type prepared struct {
		c         mhaCase
		in        mhaInputs
		want, mag []float64
		shape     []int
	}
	var ps []prepared
	for i, c := range cases {
		in := c.inputs(uint64(i + 1))
		want, mag, shape := c.naive(in)
		ps = append(ps, prepared{c, in, want, mag, shape})
	}
	threadCounts(t, func(t *testing.T) {
		for _, p := range ps {
			name := p.c.String()
			got := tensor.MultiHeadAttention(p.in.q, p.in.k, p.in.v, p.c.options(p.in))
			check(t, name, got, p.shape, p.want, p.mag, 1e-5)
			old := p.c.oldWay(p.in)
			check(t, name+"/old-way", got, old.Shape(), logical(old), p.mag, 1e-5)
		}
	})
}
