package cpu

import (
	"fmt"
	"os"
	"sort"
	"sync/atomic"
	"time"

	"github.com/unclip-go/unclip/tensor"
)

// Kernel selection. By default Backend.Run uses the fast kernels (blocked
// GEMM with the best register micro-kernel for this CPU, implicit-GEMM
// convolution, fused attention, vectorised norms); the reference kernels
// remain the oracle and run when the environment sets
// UNCLIP_CPU_KERNELS=ref, when the program is built with the purego tag,
// or after SetKernels("ref"). UNCLIP_CPU_KERNELS may also name a variant
// ("avx512", "avx2" on amd64, "neon" on arm64, "generic" everywhere).

// active is the micro-kernel of the fast path; nil selects the reference
// kernels.
var active atomic.Pointer[microKernel]

func init() {
	name := "auto"
	if pureGo {
		name = "ref"
	}
	if env := os.Getenv("UNCLIP_CPU_KERNELS"); env != "" {
		name = env
	}
	if err := SetKernels(name); err != nil {
		fmt.Fprintf(os.Stderr, "unclip: UNCLIP_CPU_KERNELS: %v; using the reference kernels\n", err)
		active.Store(nil)
	}
}

// SetKernels selects the CPU kernels: "ref" for the reference kernels,
// "auto" for the fastest variant this CPU supports, or a variant by name
// (see KernelVariants). It is meant for start-up, tests and benchmarks.
func SetKernels(name string) error {
	switch name {
	case "ref":
		active.Store(nil)
		return nil
	case "auto", "":
		for _, k := range kernels {
			if k.ok {
				active.Store(k)
				return nil
			}
		}
	}
	for _, k := range kernels {
		if k.name == name {
			if !k.ok {
				return fmt.Errorf("cpu: kernel variant %q is not supported on this CPU", name)
			}
			active.Store(k)
			return nil
		}
	}
	return fmt.Errorf("cpu: unknown kernel variant %q (have ref, auto, %v)", name, KernelVariants())
}

// Kernels names the selected kernels: "ref" or a variant.
func Kernels() string {
	if k := active.Load(); k != nil {
		return k.name
	}
	return "ref"
}

// KernelVariants lists the fast-kernel variants usable on this CPU, most
// preferred first.
func KernelVariants() []string {
	var out []string
	for _, k := range kernels {
		if k.ok {
			out = append(out, k.name)
		}
	}
	return out
}

// runFast runs n with the fast kernels; done is false when it has no fast
// kernel for this node (then the reference kernel runs).
func runFast(n *tensor.Node, mk *microKernel) (done bool, err error) {
	if dt := n.Dst.DType(); dt != tensor.F32 {
		if (dt != tensor.F16 && dt != tensor.BF16) || n.Op == tensor.OpCopy || n.Op == tensor.OpEmbedding {
			return false, nil
		}
		// A 16-bit result (--precision fp16): computed in float32 by the
		// fast kernel, which widens 16-bit operands while packing or
		// viewing them, then rounded once (as the reference kernels do).
		tmp := tensor.New(Backend{}, tensor.F32, n.Dst.Shape()...)
		m := *n
		m.Dst = tmp
		if done, err := runFast(&m, mk); !done || err != nil {
			return done, err
		}
		return true, copyOp(n.Dst, tmp)
	}
	switch n.Op {
	case tensor.OpCopy:
		return copyFast(n)
	case tensor.OpMatMul:
		return true, matmulFast(n, computeKernel(mk))
	case tensor.OpAttention:
		return true, attentionFast(n, computeKernel(mk))
	case tensor.OpConv2d:
		return true, conv2dFast(n, convKernel(n, mk))
	case tensor.OpUpsampleNearest:
		return true, upsampleNearestFast(n)
	case tensor.OpLayerNorm:
		return true, layerNormFast(n)
	case tensor.OpGroupNorm:
		return true, groupNormFast(n)
	case tensor.OpSoftmax:
		return true, softmaxFast(n)
	case tensor.OpBinary:
		return binaryFast(n)
	case tensor.OpUnary:
		switch tensor.UnaryKind(n.Int[0]) {
		case tensor.UnarySiLU:
			return true, siluFast(n)
		case tensor.UnaryGELU:
			return true, geluFast(n)
		}
	}
	return false, nil
}

// convKernel is the kernel a convolution node runs on: mk, or with
// bfloat16 compute on the bf16 kernel, except where F(4×4, 3×3) in
// float32 is both faster and more accurate than the bf16 direct kernel
// (large maps).
func convKernel(n *tensor.Node, mk *microKernel) *microKernel {
	ck := computeKernel(mk)
	if ck != mk && winogradBeatsBF16(n, mk) {
		return mk
	}
	return ck
}

// peakLoop is an FMA throughput loop: n iterations of flopsPerIter FLOPs.
type peakLoop struct {
	name         string
	flopsPerIter int
	fn           func(n int)
	ok           bool
}

// PeakVariant names the FMA loop MeasurePeak runs on this CPU ("" when
// there is none).
func PeakVariant() string { return loopVariant(peakLoops) }

// BF16PeakVariant names the loop MeasureBF16Peak runs on this CPU (""
// when there is none).
func BF16PeakVariant() string { return loopVariant(bf16PeakLoops) }

// loopVariant names the first usable loop of loops ("" when none is).
func loopVariant(loops []peakLoop) string {
	if pl := firstLoop(loops); pl != nil {
		return pl.name
	}
	return ""
}

// firstLoop is the first usable loop of loops, or nil.
func firstLoop(loops []peakLoop) *peakLoop {
	for i := range loops {
		if loops[i].ok {
			return &loops[i]
		}
	}
	return nil
}

// MeasurePeak times the FMA throughput loop of the widest vector unit on
// the given number of goroutines (one loop each, run concurrently) and
// returns the variant timed and the median GFLOP/s of reps runs. It reports
// ("", 0) where no assembly loop exists.
func MeasurePeak(threads, reps int) (variant string, gflops float64) {
	return measureLoop(peakLoops, threads, reps)
}

// MeasureBF16Peak is MeasurePeak for the bfloat16 dot product that
// --precision bf16 computes with (VDPBF16PS: two products per float32
// lane, so twice the FMA rate where the CPU runs it at full width). It
// reports ("", 0) where the CPU lacks AVX512_BF16.
func MeasureBF16Peak(threads, reps int) (variant string, gflops float64) {
	return measureLoop(bf16PeakLoops, threads, reps)
}

// measureLoop times the first usable loop of loops (see MeasurePeak).
func measureLoop(loops []peakLoop, threads, reps int) (variant string, gflops float64) {
	pl := firstLoop(loops)
	if pl == nil {
		return "", 0
	}
	threads = max(threads, 1)
	const iters = 1 << 22
	var rates []float64
	for r := 0; r < max(reps, 1); r++ {
		t0 := time.Now()
		parallelN(threads, threads, func(_, _ int) { pl.fn(iters) })
		s := time.Since(t0).Seconds()
		rates = append(rates, float64(threads)*float64(iters)*float64(pl.flopsPerIter)/s/1e9)
	}
	sort.Float64s(rates)
	return pl.name, rates[len(rates)/2]
}
