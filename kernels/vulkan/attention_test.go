//go:build cgo && !novulkan

package vulkan

import (
	"testing"

	"github.com/unclip-go/unclip/tensor"
	"github.com/unclip-go/unclip/tensor/tensortest"
)

// liveBytes is the device memory held by allocations (freed ones still
// pending included), summed over the allocator's blocks.
func liveBytes(b *Backend) uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var n uint64
	for _, blk := range b.mem.blocks {
		n += blk.used
	}
	return n
}

// TestAttentionMemory shows that an attention call allocates its result
// and nothing that grows with Lq×Lk: the score matrix is never written.
func TestAttentionMemory(t *testing.T) {
	b := openTest(t)
	for _, l := range []int{64, 256, 1024} {
		q := tensortest.Rand(51, 1, 2, l, 64).To(b)
		k := tensortest.Rand(52, 1, 2, l, 64).To(b)
		if err := b.Sync(); err != nil {
			t.Fatal(err)
		}
		before := liveBytes(b)
		y := tensor.Attention(q, k, k, nil, 0.125, false)
		grown := liveBytes(b) - before
		out := uint64(y.Numel() * 4)
		t.Logf("Lq = Lk = %d: %d bytes allocated by the call (result %d bytes; a score matrix would be %d)", l, grown, out, 2*l*l*4)
		if err := y.Err(); err != nil {
			t.Fatal(err)
		}
		if grown > b.mem.roundSize(out) {
			t.Errorf("Lq = Lk = %d: the call allocated %d bytes, more than its %d-byte result", l, grown, out)
		}
		y.Storage().Free()
	}
}

// TestMultiHeadAttention runs the node fields of tensor.MultiHeadAttention
// — strided (SplitHeads) views, prefix keys and values, a bias over all
// keys or over the prefix alone, causal masks, merged heads, F16 — on the
// device at every attention test tile, against the CPU.
func TestMultiHeadAttention(t *testing.T) {
	b := openTest(t)
	type cse struct {
		name                    string
		bsz, h, lq, lk, lp, d   int
		bias                    string
		merged, causal, strided bool
		dt                      tensor.DType
	}
	cases := []cse{
		{"added-kv", 2, 3, 37, 37, 9, 16, "prefix", true, false, true, tensor.F32},
		{"long-prefix", 1, 2, 20, 70, 77, 32, "all", true, false, false, tensor.F32},
		{"causal-merged", 2, 2, 45, 45, 0, 64, "", true, true, true, tensor.F32},
		{"causal-bias", 1, 2, 33, 33, 0, 24, "all", false, true, false, tensor.F32},
		{"f16-added-kv", 1, 2, 16, 16, 5, 8, "prefix", true, false, true, tensor.F16},
	}
	defer b.ForceTile("attention", "")
	for _, tile := range []string{"32x32", "16x32", "32x16"} {
		if err := b.ForceTile("attention", tile); err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			t.Run(tile+"/"+c.name, func(t *testing.T) {
				mk := func(seed uint64, l int) *tensor.Tensor {
					if c.strided {
						return tensortest.Rand(seed, c.bsz, l, c.h*c.d)
					}
					return tensortest.Rand(seed, c.bsz, c.h, l, c.d)
				}
				in := []*tensor.Tensor{mk(61, c.lq), mk(62, c.lk), mk(63, c.lk), nil, nil, nil}
				if c.lp > 0 {
					in[4], in[5] = mk(64, c.lp), mk(65, c.lp)
				}
				switch c.bias {
				case "all":
					in[3] = tensortest.Rand(66, c.bsz, 1, c.lq, c.lp+c.lk)
				case "prefix":
					in[3] = tensortest.Rand(67, c.bsz, 1, 1, c.lp)
				}
				tol := 2e-5
				if c.dt != tensor.F32 {
					for i := range in {
						if in[i] != nil && i != 3 {
							in[i] = in[i].Cast(c.dt)
						}
					}
					tol = 1e-2
				}
				compareOn(t, b, tol, in, func(x []*tensor.Tensor) *tensor.Tensor {
					heads := func(v *tensor.Tensor) *tensor.Tensor {
						if v == nil || !c.strided {
							return v
						}
						return v.Reshape(c.bsz, v.Dim(1), c.h, c.d).Permute(0, 2, 1, 3)
					}
					return tensor.MultiHeadAttention(heads(x[0]), heads(x[1]), heads(x[2]), tensor.AttentionOptions{
						Scale: 0.3, Causal: c.causal, Bias: x[3], PrefixK: heads(x[4]), PrefixV: heads(x[5]), MergeHeads: c.merged})
				})
			})
		}
	}
}
