package cpu

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unclip-go/unclip/tensor"
)

// Op profiling: with SetProfile(true), Backend.Run times every op it
// runs and adds the time to the op's class: its kind, the path the fast
// kernels take (a 3×3 convolution's Winograd, direct or implicit-GEMM
// route), its output map size for convolutions, and bf16 where the products
// round their operands. A run's table (Profile) shows where the time goes
// beyond the kernels' own benchmarks: norms, copies and elementwise ops
// included. Every op runs to completion inside Run, so wall time is the
// op's time.

// OpStat is the time spent in one class of ops while profiling was on.
type OpStat struct {
	Name  string // the class, e.g. "conv2d 3x3 winograd 64x64" or "matmul bf16"
	Calls int
	Time  time.Duration
	// Flops counts the multiply-adds (two FLOPs each) of the products:
	// matmul, convolution (as a direct convolution) and attention; 0 for
	// the other ops.
	Flops float64
}

var prof struct {
	on atomic.Bool
	// packing accumulates the time spent packing weights (packedWeight),
	// which the first op to use a weight pays: profiled moves it from the
	// op's class to packingClass.
	packing atomic.Int64
	mu      sync.Mutex
	stats   map[string]*OpStat
}

// packingClass is the profile's class of weight packing: once per weight,
// on first use, so a short run's first step is not the ops' steady state.
const packingClass = "weight packing (first use)"

// SetProfile turns op profiling on (from the next op, with empty totals)
// or off. It never fails on the CPU.
func (Backend) SetProfile(on bool) error {
	prof.mu.Lock()
	defer prof.mu.Unlock()
	if on && !prof.on.Load() {
		prof.stats = map[string]*OpStat{}
	}
	prof.on.Store(on)
	return nil
}

// Profile returns the totals per op class since profiling was turned on,
// the most expensive first.
func (Backend) Profile() ([]OpStat, error) {
	prof.mu.Lock()
	defer prof.mu.Unlock()
	out := make([]OpStat, 0, len(prof.stats))
	for _, s := range prof.stats {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b OpStat) int {
		return cmp.Or(cmp.Compare(b.Time, a.Time), strings.Compare(a.Name, b.Name))
	})
	return out, nil
}

// profiled runs n through run and adds its time to n's class, and the
// time it spent packing weights to packingClass.
func profiled(n *tensor.Node, mk *microKernel, run func() error) error {
	p0 := prof.packing.Load()
	t0 := time.Now()
	err := run()
	d := time.Since(t0)
	packing := time.Duration(prof.packing.Load() - p0)
	name, flops := opClass(n, mk)
	prof.mu.Lock()
	defer prof.mu.Unlock()
	addStat(name, d-packing, flops)
	if packing > 0 {
		addStat(packingClass, packing, 0)
	}
	return err
}

// addStat adds one call of d to the class name (prof.mu held).
func addStat(name string, d time.Duration, flops float64) {
	if prof.stats == nil {
		prof.stats = map[string]*OpStat{}
	}
	s := prof.stats[name]
	if s == nil {
		s = &OpStat{Name: name}
		prof.stats[name] = s
	}
	s.Calls++
	s.Time += d
	s.Flops += flops
}

var unaryNames = map[tensor.UnaryKind]string{
	tensor.UnarySiLU: "silu", tensor.UnaryGELU: "gelu", tensor.UnaryQuickGELU: "quick_gelu", tensor.UnaryExp: "exp",
	tensor.UnaryNeg: "neg", tensor.UnaryAffine: "affine", tensor.UnaryClamp: "clamp", tensor.UnarySigmoid: "sigmoid",
}

var binaryNames = map[tensor.BinaryKind]string{
	tensor.BinaryAdd: "add", tensor.BinarySub: "sub", tensor.BinaryMul: "mul", tensor.BinaryDiv: "div",
}

// opClass names n's class for the profile (mk: the fast kernels, nil for
// the reference ones) and counts its products' FLOPs.
func opClass(n *tensor.Node, mk *microKernel) (name string, flops float64) {
	name = n.Op.String()
	var ck *microKernel // the kernel a product runs on
	switch n.Op {
	case tensor.OpMatMul:
		as := n.Src[0].Shape()
		flops = 2 * float64(n.Dst.Numel()) * float64(as[len(as)-1])
		if mk != nil {
			ck = computeKernel(mk)
		}
	case tensor.OpConv2d:
		ws, ds := n.Src[1].Shape(), n.Dst.Shape()
		flops = 2 * float64(n.Dst.Numel()) * float64(ws[1]*ws[2]*ws[3])
		name = fmt.Sprintf("conv2d %dx%d", ws[2], ws[3])
		if mk != nil {
			ck = convKernel(n, mk)
			name += " " + convRoute(n, ck).String()
		}
		name += fmt.Sprintf(" %dx%d", ds[2], ds[3])
	case tensor.OpAttention:
		q := n.Src[0].Shape()
		bh, lq, d := q[0]*q[1], q[2], q[3]
		lk, dv := n.Src[1].Dim(2), n.Src[2].Dim(3)
		if kp, _ := n.AttentionPrefix(); kp != nil {
			lk += kp.Dim(2)
		}
		flops = 2 * float64(bh) * float64(lq) * float64(lk) * float64(d+dv)
		if mk != nil {
			ck = computeKernel(mk)
		}
	case tensor.OpUnary:
		if s, ok := unaryNames[tensor.UnaryKind(n.Int[0])]; ok {
			name += " " + s
		}
	case tensor.OpBinary:
		if s, ok := binaryNames[tensor.BinaryKind(n.Int[0])]; ok {
			name += " " + s
		}
	case tensor.OpGroupNorm:
		if n.Int[1] == 1 {
			name += "+silu"
		}
	}
	if ck != nil && (ck.pairs || ck.round) {
		name += " bf16"
	}
	if mk == nil {
		name += " (ref)"
	}
	return name, flops
}

// FormatProfile formats a profile as a table: calls, time, share of the
// total and, for the products, GFLOP/s.
func FormatProfile(stats []OpStat) string {
	var b strings.Builder
	var total time.Duration
	w := len("total")
	for _, s := range stats {
		total += s.Time
		w = max(w, len(s.Name))
	}
	fmt.Fprintf(&b, "%-*s %8s %12s %6s %8s\n", w, "op", "calls", "time", "share", "GFLOP/s")
	for _, s := range stats {
		share, rate := 0.0, ""
		if total > 0 {
			share = 100 * float64(s.Time) / float64(total)
		}
		if s.Flops > 0 && s.Time > 0 {
			rate = fmt.Sprintf("%.1f", s.Flops/s.Time.Seconds()/1e9)
		}
		fmt.Fprintf(&b, "%-*s %8d %12v %5.1f%% %8s\n", w, s.Name, s.Calls, roundDuration(s.Time), share, rate)
	}
	fmt.Fprintf(&b, "%-*s %8s %12v\n", w, "total", "", roundDuration(total))
	return b.String()
}

// roundDuration keeps four or so significant digits: milliseconds from a
// second up, microseconds below.
func roundDuration(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Microsecond)
}
