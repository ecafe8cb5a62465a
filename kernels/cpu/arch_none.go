//go:build (!amd64 && !arm64) || purego

package cpu

// archKernels is empty: no assembly micro-kernels on this platform (or with
// the purego tag); the pure-Go kernel runs.
// bf16Kernel is the bfloat16 micro-kernel; none on this architecture.
var bf16Kernel *microKernel

// pairBF16 is the pair conversion of the bf16 packers (pairBF16Go).
func pairBF16(dst, lo, hi []float32) { pairBF16Go(dst, lo, hi) }

// pairRows is the row-pair conversion of the bf16 packers (pairRowsGo).
func pairRows(dst, src []float32, kp, w int) { pairRowsGo(dst, src, kp, w) }

var archKernels []*microKernel

// peakLoops and bf16PeakLoops are empty without assembly.
var peakLoops, bf16PeakLoops []peakLoop
