package cpu

import (
	"sync"
	"sync/atomic"

	"github.com/unclip-go/unclip/tensor"
)

// bfloat16 compute (--precision bf16 on the CPU). With it on, matrix
// products and convolutions round their operands to bfloat16 (to nearest
// even) while packing them and accumulate in float32: through VDPBF16PS
// (bf16Kernel) where the CPU has AVX512_BF16, elsewhere through the
// float32 micro-kernel on rounded operands (the same arithmetic: a product
// of two bf16 values is exact in float32, each addition rounds once).
// Activations stay float32 tensors, and norms, softmax, attention and
// every elementwise op stay float32.
var bf16Mode atomic.Bool

// SetBF16 turns bfloat16 compute on or off (see bf16Mode). It is meant for
// start-up.
func SetBF16(on bool) { bf16Mode.Store(on) }

// BF16 reports whether bfloat16 compute is on, and whether it runs on the
// CPU's bf16 instructions (native) or on rounded float32 operands.
func BF16() (on, native bool) { return bf16Mode.Load(), bf16Kernel != nil }

// rounded caches, per micro-kernel, its bf16-rounding twin.
var rounded sync.Map // *microKernel → *microKernel

// computeKernel is the kernel products and convolutions use: mk, or with
// bfloat16 compute on the bf16 kernel (or mk rounding its operands).
func computeKernel(mk *microKernel) *microKernel {
	if !bf16Mode.Load() {
		return mk
	}
	if bf16Kernel != nil {
		return bf16Kernel
	}
	return roundedKernel(mk)
}

// roundedKernel is mk fed operands rounded to bfloat16.
func roundedKernel(mk *microKernel) *microKernel {
	if r, ok := rounded.Load(mk); ok {
		return r.(*microKernel)
	}
	r := *mk
	r.name += "-bf16round"
	r.round = true
	r.conv = nil // the direct convolution reads its input unrounded
	r.alt = nil
	v, _ := rounded.LoadOrStore(mk, &r)
	return v.(*microKernel)
}

// bf16MinWork is the least work per converted operand value, 2mn/(m+n)
// FLOPs for an m×k by k×n product, for which a product runs in bf16: the
// packers convert each value in Go (about 2 ns), which costs more than the
// faster arithmetic saves below it. On the 2-core AMD EPYC family 25
// (Zen 4), Karlo's prior (162 rows by 2048: 300 FLOPs per value) took
// 2.02 s per step in bf16 against 1.78 in float32. The rule depends on
// shapes only, so a run rounds the same products on every CPU.
const bf16MinWork = 1024

// matmulWorthBF16 reports whether bfloat16 compute applies to a matrix
// product node (see bf16MinWork).
func matmulWorthBF16(n *tensor.Node) bool {
	if !bf16Mode.Load() {
		return false
	}
	m, nn := n.Src[0].Dim(-2), n.Src[1].Dim(-1)
	return 2*m*nn >= bf16MinWork*(m+nn)
}

// roundBF16 rounds every value of s to bfloat16, in place.
func roundBF16(s []float32) {
	for i, v := range s {
		s[i] = tensor.BF16ToF32(tensor.F32ToBF16(v))
	}
}
