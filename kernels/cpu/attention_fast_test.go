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
