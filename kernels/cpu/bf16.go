package cpu

import (
	"math"
	"sync"
	"sync/atomic"

	"github.com/unclip-go/unclip/tensor"
)

// bfloat16 compute (--precision bf16 on the CPU). With it on, matrix
// products, convolutions and attention's two products round their
// operands to bfloat16 (to nearest even) while packing them and accumulate
// in float32: through VDPBF16PS (bf16Kernel) where the CPU has
// AVX512_BF16, elsewhere through the float32 micro-kernel on rounded
// operands (the same arithmetic: a product of two bf16 values is exact in
// float32, each addition rounds once). A weight packed once (packedOp) is
// kept as bf16. Activations stay float32 tensors, and norms, softmax
// (attention's too) and every elementwise op stay float32.
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

// roundBF16 rounds every value of s to bfloat16, in place.
func roundBF16(s []float32) {
	for i, v := range s {
		s[i] = tensor.BF16ToF32(tensor.F32ToBF16(v))
	}
}

// pairBF16Go is the pure-Go twin of the pair conversion: dst[i] holds
// lo[i] rounded to bf16 in its low half and hi[i] (0 when hi is nil) in
// its high half.
func pairBF16Go(dst, lo, hi []float32) {
	for i := range dst {
		v := uint32(tensor.F32ToBF16(lo[i]))
		if hi != nil {
			v |= uint32(tensor.F32ToBF16(hi[i])) << 16
		}
		dst[i] = math.Float32frombits(v)
	}
}

// pairRowsGo is the pure-Go twin of pairRows: row p < kp of dst (w
// values) pairs row 2p of src (the low halves) with row 2p+1 (row stride
// w), as pairBF16Go does. dst may be src itself: each row pair is read
// before the row it becomes is written.
func pairRowsGo(dst, src []float32, kp, w int) { pairRowsWith(pairBF16Go, dst, src, kp, w) }

// pairRowsWith converts the row pairs one row at a time with pair.
func pairRowsWith(pair func(dst, lo, hi []float32), dst, src []float32, kp, w int) {
	for p := 0; p < kp; p++ {
		pair(dst[p*w:(p+1)*w], src[2*p*w:(2*p+1)*w], src[(2*p+1)*w:(2*p+2)*w])
	}
}

// tail is s[i:], or nil for a nil s.
func tail(s []float32, i int) []float32 {
	if s == nil {
		return nil
	}
	return s[i:]
}
