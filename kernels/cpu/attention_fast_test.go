package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/unclip-go/unclip/tensor"
)

func attentionNode(q, k, v, bias *tensor.Tensor, scale float32, causal bool) *tensor.Node {
	b, h, lq, lk := q.Dim(0), q.Dim(1), q.Dim(2), k.Dim(2)
	src := []*tensor.Tensor{q, k, v, nil}
	if bias != nil {
		src[3] = bias.Expand(b, h, lq, lk)
	}
	n := &tensor.Node{Op: tensor.OpAttention, Dst: tensor.New(tensor.CPU(), tensor.F32, b, h, lq, v.Dim(3)), Src: src}
	n.Float[0] = scale
	if causal {
		n.Int[0] = 1
	}
	return n
}

// TestAttentionFast compares the blocked online-softmax attention with
// every micro-kernel to the reference: odd lengths (more keys than one
// block), causal masks, full and broadcast biases with −Inf entries,
// strided (B, L, H, D) views and F16 keys.
func TestAttentionFast(t *testing.T) {
	defer SetThreads(Threads())
	rng := rand.New(rand.NewPCG(11, 12))
	type cse struct {
		b, h, lq, lk, d, dv int
		causal, bias, mask  bool
		strided, f16        bool
	}
	var cases []cse
	for _, lq := range []int{1, 7, 33, 257} {
		for _, lk := range []int{1, 7, 33, 300} {
			cases = append(cases, cse{b: 1, h: 2, lq: lq, lk: lk, d: 16, dv: 16})
		}
	}
	cases = append(cases,
		cse{b: 2, h: 3, lq: 77, lk: 77, d: 64, dv: 64, causal: true},
		cse{b: 1, h: 1, lq: 300, lk: 300, d: 8, dv: 5, causal: true},
		cse{b: 2, h: 2, lq: 40, lk: 90, d: 33, dv: 7, bias: true},
		cse{b: 2, h: 2, lq: 40, lk: 90, d: 33, dv: 7, mask: true},
		cse{b: 1, h: 3, lq: 65, lk: 530, d: 64, dv: 64, strided: true},
		cse{b: 1, h: 2, lq: 20, lk: 45, d: 1, dv: 1},
		cse{b: 1, h: 2, lq: 50, lk: 61, d: 32, dv: 32, f16: true, causal: true},
	)
	for _, c := range cases {
		mk4 := func(l, d int) *tensor.Tensor {
			if c.strided {
				return tensor.FromFloat32(randSlice(rng, c.b*l*c.h*d), c.b, l, c.h, d).Permute(0, 2, 1, 3)
			}
			return tensor.FromFloat32(randSlice(rng, c.b*c.h*l*d), c.b, c.h, l, d)
		}
		q, k, v := mk4(c.lq, c.d), mk4(c.lk, c.d), mk4(c.lk, c.dv)
		if c.f16 {
			k = k.Cast(tensor.F16)
		}
		var bias *tensor.Tensor
		switch {
		case c.bias:
			bias = tensor.FromFloat32(randSlice(rng, c.b*c.h*c.lq*c.lk), c.b, c.h, c.lq, c.lk)
		case c.mask:
			// (B, 1, 1, Lk): the text-padding mask, with a fully masked row
			// of keys for the second sample.
			mv := make([]float32, c.b*c.lk)
			for i := range mv {
				if i%3 == 1 || i >= c.lk {
					mv[i] = float32(math.Inf(-1))
				}
			}
			bias = tensor.FromFloat32(mv, c.b, 1, 1, c.lk)
		}
		scale := float32(1 / math.Sqrt(float64(c.d)))
		ref := attentionNode(q, k, v, bias, scale, c.causal)
		if err := attentionOp(ref); err != nil {
			t.Fatal(err)
		}
		want := ref.Dst.MustFloat32s()
		for _, mk := range usableKernels() {
			for _, th := range []int{1, 2} {
				SetThreads(th)
				n := attentionNode(q, k, v, bias, scale, c.causal)
				if err := attentionFast(n, mk); err != nil {
					t.Fatal(err)
				}
				checkClose(t, fmt.Sprintf("%+v/%s/%dthr", c, mk.name, th), n.Dst.MustFloat32s(), want, 2e-6*math.Sqrt(float64(c.d*c.lk)))
			}
		}
	}
}

// TestBF16Attention checks attention with the bf16 kernels (pairs, and
// float32 rounding where there is no AVX512_BF16) against a float64
// reference on the same bf16-rounded operands (scale·Q rounded after the
// float32 scaling, K, V). What remains is the rounding of the
// probabilities P to bf16 before P·V, at most 2⁻⁸ of each term (the unit
// roundoff of an 8-bit significand), so the bound is 2⁻⁸·Σⱼ Pⱼ|Vⱼ| plus
// the float32 kernels' own tolerance. The result must also lie closer (in
// RMS) to that reference than to float32 attention's: the operands were
// rounded.
func TestBF16Attention(t *testing.T) {
	defer SetThreads(Threads())
	rng := rand.New(rand.NewPCG(41, 42))
	type cse struct {
		b, h, lq, lk, d, dv int
		causal, mask        bool
	}
	for _, c := range []cse{
		{1, 2, 7, 33, 16, 16, false, false},
		{2, 3, 77, 77, 64, 64, true, false},
		{1, 1, 65, 530, 33, 7, false, false}, // three key blocks, odd depths
		{2, 2, 40, 90, 31, 64, false, true},
		{1, 2, 1, 1, 1, 1, false, false},
	} {
		q := tensor.FromFloat32(randSlice(rng, c.b*c.h*c.lq*c.d), c.b, c.h, c.lq, c.d)
		k := tensor.FromFloat32(randSlice(rng, c.b*c.h*c.lk*c.d), c.b, c.h, c.lk, c.d)
		v := tensor.FromFloat32(randSlice(rng, c.b*c.h*c.lk*c.dv), c.b, c.h, c.lk, c.dv)
		var bias *tensor.Tensor
		mv := make([]float32, c.b*c.lk)
		if c.mask {
			for i := range mv {
				if i%3 == 1 {
					mv[i] = float32(math.Inf(-1))
				}
			}
			bias = tensor.FromFloat32(mv, c.b, 1, 1, c.lk)
		}
		scale := float32(1 / math.Sqrt(float64(c.d)))
		qv, kv, vv := q.MustFloat32s(), k.MustFloat32s(), v.MustFloat32s()
		want := make([]float64, c.b*c.h*c.lq*c.dv)
		bound := make([]float64, len(want))
		for bh := 0; bh < c.b*c.h; bh++ {
			for i := 0; i < c.lq; i++ {
				s := make([]float64, c.lk)
				mx := math.Inf(-1)
				for j := range s {
					for e := 0; e < c.d; e++ {
						s[j] += bf16(qv[(bh*c.lq+i)*c.d+e]*scale) * bf16(kv[(bh*c.lk+j)*c.d+e])
					}
					s[j] += float64(mv[(bh/c.h)*c.lk+j])
					if c.causal && j > i {
						s[j] = math.Inf(-1)
					}
					mx = max(mx, s[j])
				}
				var sum float64
				for j := range s {
					s[j] = math.Exp(s[j] - mx)
					sum += s[j]
				}
				for e := 0; e < c.dv; e++ {
					var o, a float64
					for j := range s {
						vj := bf16(vv[(bh*c.lk+j)*c.dv+e])
						o += s[j] / sum * vj
						a += s[j] / sum * math.Abs(vj)
					}
					want[(bh*c.lq+i)*c.dv+e] = o
					bound[(bh*c.lq+i)*c.dv+e] = 0x1p-8*a + 2e-6*math.Sqrt(float64(c.d*c.lk))
				}
			}
		}
		f32 := attentionNode(q, k, v, bias, scale, c.causal)
		if err := attentionOp(f32); err != nil {
			t.Fatal(err)
		}
		ref := f32.Dst.MustFloat32s()
		for _, mk := range bf16Kernels() {
			for _, th := range []int{1, 2} {
				SetThreads(th)
				n := attentionNode(q, k, v, bias, scale, c.causal)
				if err := attentionFast(n, mk); err != nil {
					t.Fatal(err)
				}
				got := n.Dst.MustFloat32s()
				var toBF16, toF32 float64
				for x, g := range got {
					d := math.Abs(float64(g) - want[x])
					if !(d <= bound[x]) {
						t.Fatalf("%+v/%s/%dthr: [%d] = %g, want %g (error %.3g, bound %.3g)", c, mk.name, th, x, g, want[x], d, bound[x])
					}
					toBF16 += d * d
					toF32 += float64(g-ref[x]) * float64(g-ref[x])
				}
				if !(toBF16 < toF32) {
					t.Errorf("%+v/%s/%dthr: no closer to bf16 attention (RMS %.3g) than to float32 attention (%.3g)", c, mk.name, th,
						math.Sqrt(toBF16/float64(len(got))), math.Sqrt(toF32/float64(len(got))))
				}
			}
		}
	}
}
