//go:build !purego

package cpu

// NEON assembly leaf kernels (gemm_arm64.s, written by _asm -arch arm64).
// Advanced SIMD is part of every arm64 CPU Go supports, so they are always
// usable. Each call covers one register tile over at most one KC block, so
// it returns within microseconds.

//go:noescape
func sgemm8x12NEON(k int, a, b, c *float32, ldc int, acc bool)

//go:noescape
func conv3x3x8x12NEON(nci int, a, b, c *float32, ldc, wp, hwp int, acc bool)

//go:noescape
func fmaPeakNEON(n int)

// archKernels are the assembly micro-kernels. The 8×12 tile keeps 24
// accumulators, two A vectors (used by lane) and two sets of three B
// vectors in the 32 V registers. The blocking suits a 64 KiB L1 and a
// 1 MiB L2 (Neoverse; Apple cores have more): a 512×12 B micro-panel is
// 24 KiB, a 128×512 A block 256 KiB.
// bf16Kernel is the bfloat16 micro-kernel; none on this architecture.
var bf16Kernel *microKernel

// pairBF16 is the pair conversion of the bf16 packers (pairBF16Go).
func pairBF16(dst, lo, hi []float32) { pairBF16Go(dst, lo, hi) }

// pairRows is the row-pair conversion of the bf16 packers (pairRowsGo).
func pairRows(dst, src []float32, kp, w int) { pairRowsGo(dst, src, kp, w) }

var archKernels = []*microKernel{
	{name: "neon", mr: 8, nr: 12, mc: 128, kc: 512, nc: 4092, fn: sgemm8x12NEON, conv: conv3x3x8x12NEON, ok: true},
}

// peakLoops is the NEON FMA throughput loop: 24 independent 4-lane FMAs.
var peakLoops = []peakLoop{
	{name: "neon", flopsPerIter: 24 * 8, fn: fmaPeakNEON, ok: true},
}

// bf16PeakLoops is empty: no bf16 dot-product kernel on arm64.
var bf16PeakLoops []peakLoop
