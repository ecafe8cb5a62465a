package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/klauspost/cpuid/v2"

	"github.com/unclip-go/unclip/kernels/cpu"
	"github.com/unclip-go/unclip/tensor"
)

func init() {
	benchSubcommands = append(benchSubcommands,
		command{"kernels", "time single ops: GFLOP/s or GB/s and % of the measured FMA peak", runBenchKernels},
		command{"peak", "measure the CPU's FMA peak with an assembly loop", runBenchPeak})
}

// kernelShapes are the default shapes of "unclip bench kernels", taken from
// the Karlo models.
var kernelShapes = map[string][]string{
	// M×K×N; "/linear" multiplies by a transposed (out, in) weight, as
	// nn.Linear does.
	"matmul": {"1024x1024x1024", "2048x2048x2048", "4096x4096x4096",
		"162x2048x2048/linear", "162x2048x8192/linear"},
	// N×C×H×W[:O[:K]], stride 1, "same" padding; O defaults to C, K to 3.
	"conv2d": {"2x320x64x64", "2x640x32x32", "2x1280x8x8"},
	// B×H×Lq×Lk×D: the decoder's self+text attention at 32×32.
	"attention": {"2x10x1024x1105x64"},
	// N×C×H×W[:groups], with SiLU.
	"groupnorm": {"2x320x64x64", "2x640x32x32"},
	// rows×width.
	"layernorm": {"162x2048", "2x77x768"},
	// rows×width.
	"softmax": {"20480x1105"},
}

var kernelOps = []string{"matmul", "conv2d", "attention", "groupnorm", "layernorm", "softmax"}

// kernelResult is one line of "unclip bench kernels --json".
type kernelResult struct {
	Op      string `json:"op"`
	Shape   string `json:"shape"`
	DType   string `json:"dtype"`
	Device  string `json:"device"`
	Kernels string `json:"kernels,omitempty"` // CPU kernel variant
	// Winograd is the CPU's Winograd mode (auto, off or always).
	Winograd string `json:"winograd,omitempty"`
	// Packed: the weights were packed once, as a loaded model's are.
	Packed bool `json:"packed,omitempty"`
	// Cold: each run read its weight from memory (--cold).
	Cold    bool    `json:"cold,omitempty"`
	Threads int     `json:"threads"`
	Reps    int     `json:"reps"`
	Seconds float64 `json:"seconds"` // median
	GFLOPS  float64 `json:"gflops"`
	GBPS    float64 `json:"gbps"`
	// PeakPct is GFLOPS as a percentage of the measured FMA peak on the
	// same threads, or of the bf16 dot-product peak for bf16 products
	// (CPU only; 0 when not measured).
	PeakPct float64 `json:"peak_pct,omitempty"`
}

// benchCase is a prepared op: run executes its node once on a
// preallocated destination (the kernel alone, as the baselines time
// theirs); flops and bytes size the work.
type benchCase struct {
	node         *tensor.Node
	flops, bytes float64
}

// newNode builds a node with a fresh F32 destination of shape on dev.
func newNode(dev tensor.Backend, op tensor.Op, shape []int, src ...*tensor.Tensor) *tensor.Node {
	return &tensor.Node{Op: op, Dst: tensor.New(dev, tensor.F32, shape...), Src: src}
}

func runBenchKernels(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench kernels", flag.ContinueOnError)
	op := fs.String("op", "all", "op to time: "+strings.Join(kernelOps, ", ")+" or all")
	var shapes listFlag
	fs.Var(&shapes, "shape", "shape to time (repeatable; default: the Karlo set of the op); see 'unclip bench kernels -h'")
	threads := fs.Int("threads", 0, threadsFlagHelp)
	reps := fs.Int("reps", 5, "timed runs per shape (the median is reported)")
	device := fs.String("device", "cpu", deviceFlagHelp)
	kernels := fs.String("kernels", "", "CPU kernels: ref, auto or a variant ("+strings.Join(cpu.KernelVariants(), ", ")+")")
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	noPeak := fs.Bool("no-peak", false, "do not measure the FMA peak")
	winograd := fs.String("winograd", "", "CPU 3×3 convolutions as Winograd F(4×4,3×3): auto, always or off (default: $UNCLIP_WINOGRAD, else auto)")
	precision := fs.String("precision", "fp32", "CPU compute precision of matmul, conv2d and attention: fp32 or bf16 (bfloat16 operands, float32 accumulation; % peak is then of the bf16 dot-product peak)")
	cold := fs.Bool("cold", false, "matmul and conv2d on the CPU: rotate over copies of the weight that together exceed twice the last-level cache, so that each run reads its weight from memory, as a model step does (with --packed: the in-model cost)")
	packed := fs.Bool("packed", false, "mark the weights (a /linear matmul's B, a convolution's kernel) as model weights, so the CPU kernels pack them once in the warm-up run, as they do for a loaded model")
	tile := fs.String("tile", "", "Vulkan: force the kernel tile of --op (matmul, conv2d: BMxBNxBKxTMxTN such as 128x128x16x8x8; attention: BQxBKV such as 64x32), for tuning sweeps")
	fs.Usage = func() {
		stderr := fs.Output()
		fmt.Fprintln(stderr, "usage: unclip bench kernels [--op OP] [--shape S]... [--precision fp32|bf16] [--packed] [--cold] [--threads N] [--reps N] [--json]")
		fmt.Fprintln(stderr, "\nshapes (x-separated):")
		fmt.Fprintln(stderr, "  matmul     MxKxN[/linear]       (/linear: B is a transposed (N, K) weight)")
		fmt.Fprintln(stderr, "  conv2d     NxCxHxW[:O[:K]]      (stride 1, same padding; O=C, K=3 by default)")
		fmt.Fprintln(stderr, "  attention  BxHxLqxLkxD")
		fmt.Fprintln(stderr, "  groupnorm  NxCxHxW[:G]          (G=32 groups, with SiLU)")
		fmt.Fprintln(stderr, "  layernorm  RxC")
		fmt.Fprintln(stderr, "  softmax    RxC")
		fmt.Fprintln(stderr, "\nflags:")
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args, stderr)
	if err != nil {
		return err
	}
	if len(pos) > 0 || *reps < 1 {
		fs.Usage()
		return errUsage
	}
	ops := kernelOps
	if *op != "all" {
		if _, ok := kernelShapes[*op]; !ok {
			return fmt.Errorf("unknown op %q (%s or all)", *op, strings.Join(kernelOps, ", "))
		}
		ops = []string{*op}
	} else if len(shapes) > 0 {
		return fmt.Errorf("--shape needs a single --op")
	}
	// Parse and size every shape first: a bad or oversized one fails
	// before the device is opened and the peak measured.
	var specs []*benchSpec
	for _, o := range ops {
		list := kernelShapes[o]
		if len(shapes) > 0 {
			list = shapes
		}
		for _, s := range list {
			sp, err := parseBench(o, s)
			if err != nil {
				return fmt.Errorf("%s: %w", o, err)
			}
			specs = append(specs, sp)
		}
	}
	if *kernels != "" {
		if err := cpu.SetKernels(*kernels); err != nil {
			return err
		}
	}
	if *winograd != "" {
		if err := cpu.SetWinograd(*winograd); err != nil {
			return fmt.Errorf("--winograd: %w", err)
		}
	}
	bf16 := false
	switch strings.ToLower(*precision) {
	case "fp32", "f32", "float32":
	case "bf16", "bfloat16":
		bf16 = true
	default:
		return fmt.Errorf("--precision %q: want fp32 or bf16", *precision)
	}
	if *tile != "" && len(ops) != 1 {
		return fmt.Errorf("--tile needs a single --op")
	}
	dev, err := openDevice(*device, *threads, stderr)
	if err != nil {
		return err
	}
	if *tile != "" {
		tiler, ok := dev.(interface{ ForceTile(op, tile string) error })
		if !ok {
			return fmt.Errorf("--tile: %s has no kernel tiles (Vulkan devices do)", dev.Name())
		}
		if err := tiler.ForceTile(ops[0], *tile); err != nil {
			return fmt.Errorf("--tile: %w", err)
		}
	}
	isCPU := dev == tensor.CPU()
	if bf16 {
		if !isCPU {
			return fmt.Errorf("--precision bf16: %s computes in its own precision (bench kernels times float32 there)", dev.Name())
		}
		if cpu.Kernels() == "ref" {
			return fmt.Errorf("--precision bf16 runs in the fast CPU kernels, and the reference kernels are selected")
		}
		cpu.SetBF16(true)
		defer cpu.SetBF16(false)
	}
	nthr := cpu.Threads()
	// peak is the FMA peak; bf16Peak the bf16 dot-product peak that
	// --precision bf16's products are measured against (the FMA peak
	// where the CPU lacks AVX512_BF16 and rounds float32 operands).
	var peak, bf16Peak float64
	if isCPU && !*noPeak {
		_, peak = cpu.MeasurePeak(nthr, 5)
		bf16Peak = peak
		if bf16 {
			if v, g := cpu.MeasureBF16Peak(nthr, 5); v != "" {
				bf16Peak = g
			}
		}
	}
	var results []kernelResult
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	if !*asJSON {
		fmt.Fprintf(stdout, "device %s, %d threads", dev.Name(), nthr)
		if isCPU {
			fmt.Fprintf(stdout, ", kernels %s, winograd %s", cpu.Kernels(), cpu.Winograd())
		}
		if bf16 {
			_, native := cpu.BF16()
			if native {
				fmt.Fprintf(stdout, ", bf16 products (AVX512_BF16)")
			} else {
				fmt.Fprintf(stdout, ", bf16 products (rounded float32 operands: no AVX512_BF16)")
			}
		}
		if *packed {
			fmt.Fprintf(stdout, ", weights packed once")
		}
		if *cold {
			fmt.Fprintf(stdout, ", weights cold")
		}
		if peak > 0 {
			fmt.Fprintf(stdout, ", measured FMA peak %.1f GFLOP/s", peak)
		}
		if bf16 && bf16Peak != peak {
			fmt.Fprintf(stdout, ", bf16 peak %.1f GFLOP/s", bf16Peak)
		}
		fmt.Fprintf(stdout, ", median of %d runs\n", *reps)
		fmt.Fprintln(tw, "op\tshape\tms\tGFLOP/s\tGB/s\t% peak\t")
	}
	for _, sp := range specs {
		o, s := sp.op, sp.shape
		bc := prepareBench(dev, sp, *packed)
		nodes := []*tensor.Node{bc.node}
		if *cold && isCPU {
			nodes = coldCopies(dev, bc.node, *packed)
		}
		// One warm-up run of each node (packing buffers and weights,
		// page faults, weight uploads).
		for _, nd := range nodes {
			if err := dev.Run(nd); err != nil {
				return fmt.Errorf("%s %s: %w", o, s, err)
			}
		}
		if err := dev.Sync(); err != nil {
			return err
		}
		times := make([]float64, 0, *reps)
		for r := 0; r < *reps; r++ {
			t0 := time.Now()
			err := dev.Run(nodes[r%len(nodes)])
			if err == nil {
				err = dev.Sync()
			}
			if err != nil {
				return fmt.Errorf("%s %s: %w", o, s, err)
			}
			times = append(times, time.Since(t0).Seconds())
		}
		sort.Float64s(times)
		med := times[len(times)/2]
		if len(times)%2 == 0 {
			med = (times[len(times)/2-1] + times[len(times)/2]) / 2
		}
		// bf16 applies to the products: matmul, conv2d and attention.
		products := o == "matmul" || o == "conv2d" || o == "attention"
		res := kernelResult{Op: o, Shape: s, DType: "f32", Device: dev.Name(), Threads: nthr, Reps: *reps,
			Seconds: med, GFLOPS: bc.flops / med / 1e9, GBPS: bc.bytes / med / 1e9, Packed: *packed, Cold: len(nodes) > 1}
		if isCPU {
			res.Kernels = cpu.Kernels()
			res.Winograd = cpu.Winograd()
			p := peak
			if bf16 && products {
				res.DType, p = "bf16", bf16Peak
			}
			if p > 0 && bc.flops > 0 {
				res.PeakPct = 100 * res.GFLOPS / p
			}
		}
		results = append(results, res)
		if *asJSON {
			if err := json.NewEncoder(stdout).Encode(res); err != nil {
				return err
			}
			continue
		}
		pct := ""
		if res.PeakPct > 0 {
			pct = fmt.Sprintf("%.0f%%", res.PeakPct)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.3f\t%.1f\t%.1f\t%s\t\n", o, s, med*1e3, res.GFLOPS, res.GBPS, pct)
	}
	if !*asJSON {
		tw.Flush()
	}
	return nil
}

// parseDims parses "AxBxC..." into exactly n positive integers.
func parseDims(s string, n int) ([]int, error) {
	parts := strings.Split(s, "x")
	if len(parts) != n {
		return nil, fmt.Errorf("shape %q: want %d x-separated sizes", s, n)
	}
	out := make([]int, n)
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 1 {
			return nil, fmt.Errorf("shape %q: bad size %q (sizes are positive integers)", s, p)
		}
		out[i] = v
	}
	return out, nil
}

// benchFits fails when float32 tensors of the given shapes (the operands
// and the result; each is also built once in host memory) would not fit
// in the memory available, or overflow a byte count.
func benchFits(shape string, tensors [][]int) error {
	const limit = math.MaxInt64 / 8
	var total int64
	for _, dims := range tensors {
		n := int64(4)
		for _, d := range dims {
			if n > limit/int64(d) {
				return fmt.Errorf("shape %q: its tensors overflow a byte count", shape)
			}
			n *= int64(d)
		}
		if total += n; total > limit {
			return fmt.Errorf("shape %q: its tensors overflow a byte count", shape)
		}
	}
	avail := int64(memAvailable())
	if avail == 0 {
		avail = int64(physicalMemory())
	}
	if avail > 0 && total > avail/10*9 {
		return fmt.Errorf("shape %q needs %s for its tensors; %s of memory is available", shape, gib(total), gib(avail))
	}
	return nil
}

// gib formats a byte count in GiB.
func gib(n int64) string { return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30)) }

// splitOpts splits "dims:a:b" into the dims and up to max integer options.
func splitOpts(s string, maxOpts int) (string, []int, error) {
	parts := strings.Split(s, ":")
	if len(parts)-1 > maxOpts {
		return "", nil, fmt.Errorf("shape %q: at most %d ':' options", s, maxOpts)
	}
	var opts []int
	for _, p := range parts[1:] {
		v, err := strconv.Atoi(p)
		if err != nil || v < 1 {
			return "", nil, fmt.Errorf("shape %q: bad option %q (options are positive integers)", s, p)
		}
		opts = append(opts, v)
	}
	return parts[0], opts, nil
}

// randTensor returns a tensor of uniform values in [−1, 1) on dev.
func randTensor(dev tensor.Backend, rng *rand.Rand, shape ...int) *tensor.Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = 2*rng.Float32() - 1
	}
	return tensor.FromFloat32(v, shape...).To(dev)
}

// benchSpec is a parsed op and shape of "unclip bench kernels", checked to
// fit in memory before anything is allocated.
type benchSpec struct {
	op, shape string
	dims      []int // the x-separated sizes
	linear    bool  // matmul: B is a transposed (N, K) weight
	out, k    int   // conv2d: output channels and kernel size
	groups    int   // groupnorm
}

// parseBench parses shape for op and checks that its tensors fit in the
// memory available; it allocates nothing.
func parseBench(op, shape string) (*benchSpec, error) {
	sp := &benchSpec{op: op, shape: shape}
	var tensors [][]int
	var err error
	switch op {
	case "matmul":
		s, linear := strings.CutSuffix(shape, "/linear")
		if sp.dims, err = parseDims(s, 3); err != nil {
			return nil, err
		}
		m, k, n := sp.dims[0], sp.dims[1], sp.dims[2]
		sp.linear = linear
		tensors = [][]int{{m, k}, {k, n}, {m, n}}
	case "conv2d":
		s, opts, err := splitOpts(shape, 2)
		if err != nil {
			return nil, err
		}
		if sp.dims, err = parseDims(s, 4); err != nil {
			return nil, err
		}
		n, c, h, w := sp.dims[0], sp.dims[1], sp.dims[2], sp.dims[3]
		sp.out, sp.k = c, 3
		if len(opts) > 0 {
			sp.out = opts[0]
		}
		if len(opts) > 1 {
			sp.k = opts[1]
		}
		o, k := sp.out, sp.k
		// "Same" padding k/2: the output is H×W, or (H+1)×(W+1) for even K.
		oh, ow := h+2*(k/2)-k+1, w+2*(k/2)-k+1
		tensors = [][]int{{n, c, h, w}, {o, c, k, k}, {o}, {n, o, oh, ow}}
	case "attention":
		if sp.dims, err = parseDims(shape, 5); err != nil {
			return nil, err
		}
		b, h, lq, lk, dh := sp.dims[0], sp.dims[1], sp.dims[2], sp.dims[3], sp.dims[4]
		tensors = [][]int{{b, h, lq, dh}, {b, h, lk, dh}, {b, h, lk, dh}, {b, h, lq, dh}}
	case "groupnorm":
		s, opts, err := splitOpts(shape, 1)
		if err != nil {
			return nil, err
		}
		if sp.dims, err = parseDims(s, 4); err != nil {
			return nil, err
		}
		sp.groups = 32
		if len(opts) > 0 {
			sp.groups = opts[0]
		}
		if sp.dims[1]%sp.groups != 0 {
			return nil, fmt.Errorf("shape %q: %d channels in %d groups", shape, sp.dims[1], sp.groups)
		}
		tensors = [][]int{sp.dims, sp.dims, {sp.dims[1]}, {sp.dims[1]}}
	case "layernorm", "softmax":
		if sp.dims, err = parseDims(shape, 2); err != nil {
			return nil, err
		}
		tensors = [][]int{sp.dims, sp.dims, {sp.dims[1]}, {sp.dims[1]}}
	default:
		return nil, fmt.Errorf("unknown op %q", op)
	}
	if err := benchFits(shape, tensors); err != nil {
		return nil, err
	}
	return sp, nil
}

// prepareBench builds the operands of a parsed op and shape on dev; with
// packed, the weights are marked as a model's are (tensor.Storage.MarkWeight).
func prepareBench(dev tensor.Backend, sp *benchSpec, packed bool) *benchCase {
	rng := rand.New(rand.NewPCG(1, 2))
	d := sp.dims
	switch sp.op {
	case "matmul":
		m, k, n := d[0], d[1], d[2]
		a := randTensor(dev, rng, m, k)
		var b *tensor.Tensor
		if sp.linear {
			b = randTensor(dev, rng, n, k).T()
		} else {
			b = randTensor(dev, rng, k, n)
		}
		if packed {
			b.Storage().MarkWeight()
		}
		return &benchCase{node: newNode(dev, tensor.OpMatMul, []int{m, n}, a, b),
			flops: 2 * float64(m) * float64(k) * float64(n), bytes: 4 * float64(m*k+k*n+m*n)}
	case "conv2d":
		n, c, h, w := d[0], d[1], d[2], d[3]
		o, k := sp.out, sp.k
		oh, ow := h+2*(k/2)-k+1, w+2*(k/2)-k+1
		x := randTensor(dev, rng, n, c, h, w)
		wt := randTensor(dev, rng, o, c, k, k)
		if packed {
			wt.Storage().MarkWeight()
		}
		bias := randTensor(dev, rng, o)
		nd := newNode(dev, tensor.OpConv2d, []int{n, o, oh, ow}, x, wt, bias)
		nd.Int[0], nd.Int[1], nd.Int[2], nd.Int[3] = 1, 1, k/2, k/2
		return &benchCase{node: nd,
			flops: 2 * float64(n) * float64(o) * float64(c*k*k) * float64(oh*ow),
			bytes: 4 * float64(n*c*h*w+o*c*k*k+n*o*oh*ow)}
	case "attention":
		b, h, lq, lk, dh := d[0], d[1], d[2], d[3], d[4]
		q := randTensor(dev, rng, b, h, lq, dh)
		k := randTensor(dev, rng, b, h, lk, dh)
		v := randTensor(dev, rng, b, h, lk, dh)
		scale := float32(1 / math.Sqrt(float64(dh)))
		nd := newNode(dev, tensor.OpAttention, []int{b, h, lq, dh}, q, k, v, nil)
		nd.Float[0] = scale
		return &benchCase{node: nd,
			flops: 4 * float64(b*h) * float64(lq) * float64(lk) * float64(dh),
			bytes: 4 * float64(b*h) * float64(2*lq*dh+2*lk*dh)}
	case "groupnorm":
		x := randTensor(dev, rng, d...)
		w, b := randTensor(dev, rng, d[1]), randTensor(dev, rng, d[1])
		numel := float64(d[0] * d[1] * d[2] * d[3])
		nd := newNode(dev, tensor.OpGroupNorm, d, x, w, b)
		nd.Int[0], nd.Int[1], nd.Float[0] = sp.groups, 1, 1e-5
		return &benchCase{node: nd, bytes: 8 * numel}
	case "softmax":
		x := randTensor(dev, rng, d...)
		return &benchCase{node: newNode(dev, tensor.OpSoftmax, d, x), bytes: 8 * float64(d[0]*d[1])}
	}
	// layernorm
	x := randTensor(dev, rng, d...)
	w, b := randTensor(dev, rng, d[1]), randTensor(dev, rng, d[1])
	nd := newNode(dev, tensor.OpLayerNorm, d, x, w, b)
	nd.Float[0] = 1e-5
	return &benchCase{node: nd, bytes: 8 * float64(d[0]*d[1])}
}

// maxColdCopies bounds --cold's copies of a weight.
const maxColdCopies = 256

// coldCopies returns n and copies of it that differ only in their weight
// (Src[1] of a matmul or convolution; other ops return n alone): enough
// copies that their weights together exceed twice the last-level cache
// (cpuid's; 32 MiB where it reports none), so that running them in turn
// reads each weight from memory. The copies are capped at a quarter of
// the memory available, and at maxColdCopies (tiny weights stay in cache
// whatever their number).
func coldCopies(dev tensor.Backend, n *tensor.Node, packed bool) []*tensor.Node {
	if n.Op != tensor.OpMatMul && n.Op != tensor.OpConv2d {
		return []*tensor.Node{n}
	}
	w := n.Src[1]
	wbytes := int64(4 * w.Numel())
	llc := int64(cpuid.CPU.Cache.L3)
	if llc <= 0 {
		llc = 32 << 20
	}
	copies := min(maxColdCopies, max(2, int(2*llc/max(wbytes, 1))+1))
	if avail := int64(memAvailable()); avail > 0 {
		if fit := int(avail / 4 / max(wbytes, 1)); fit < copies {
			if fit < 2 {
				return []*tensor.Node{n} // no room for a second copy: warm (JSON cold false)
			}
			copies = fit
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	out := []*tensor.Node{n}
	for i := 1; i < copies; i++ {
		var nw *tensor.Tensor
		if w.IsContiguous() {
			nw = randTensor(dev, rng, w.Shape()...)
		} else { // a /linear weight, (N, K) viewed transposed
			sh := w.Shape()
			nw = randTensor(dev, rng, sh[1], sh[0]).T()
		}
		if packed {
			nw.Storage().MarkWeight()
		}
		c := *n
		c.Src = slices.Clone(n.Src)
		c.Src[1] = nw
		out = append(out, &c)
	}
	return out
}

// peakResult is one line of "unclip bench peak --json".
type peakResult struct {
	Op      string  `json:"op"` // "fma_peak" or "bf16_peak"
	Variant string  `json:"variant"`
	Device  string  `json:"device"`
	Threads int     `json:"threads"`
	GFLOPS  float64 `json:"gflops"` // median
}

func runBenchPeak(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench peak", flag.ContinueOnError)
	threads := fs.Int("threads", 0, "measure 1..N threads (0: all cores; at most 1024)")
	reps := fs.Int("reps", 9, "timed runs (the median is reported)")
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	setUsage(fs, "unclip bench peak [--threads N] [--reps N] [--json]\n\nMeasures the CPU's FMA peak (and, where the CPU has AVX512_BF16, its bf16 dot-product peak) on 1..N threads and keeps it for 'unclip devices'.")
	pos, err := parseFlags(fs, args, stderr)
	if err != nil {
		return err
	}
	if len(pos) > 0 || *reps < 1 {
		fmt.Fprintln(stderr, "usage: unclip bench peak [--threads N] [--reps N] [--json]")
		return errUsage
	}
	if err := setThreads(*threads, stderr); err != nil {
		return err
	}
	// report keeps a measured peak for "unclip devices" (warning once
	// when it cannot) and prints it.
	warned := false
	report := func(r peakResult) error {
		if err := savePeak(r.Variant, r.Threads, r.GFLOPS); err != nil && !warned {
			fmt.Fprintf(stderr, "warning: the peak is not kept for 'unclip devices': %v\n", err)
			warned = true
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(r)
		}
		what := "FMA peak"
		if r.Op == "bf16_peak" {
			what = "bf16 dot-product peak"
		}
		_, err := fmt.Fprintf(stdout, "%s (%s, %d thread(s)): %.1f GFLOP/s\n", what, r.Variant, r.Threads, r.GFLOPS)
		return err
	}
	n := cpu.Threads()
	for t := 1; t <= n; t++ {
		variant, g := cpu.MeasurePeak(t, *reps)
		if variant == "" {
			return fmt.Errorf("no FMA peak loop for this CPU or build (purego or not amd64)")
		}
		if err := report(peakResult{Op: "fma_peak", Variant: variant, Device: "cpu", Threads: t, GFLOPS: g}); err != nil {
			return err
		}
		// The bf16 dot product (--precision bf16), where the CPU has it.
		if bv, bg := cpu.MeasureBF16Peak(t, *reps); bv != "" {
			if err := report(peakResult{Op: "bf16_peak", Variant: bv, Device: "cpu", Threads: t, GFLOPS: bg}); err != nil {
				return err
			}
		}
	}
	return nil
}
