package cpu_test

// These tests hold the CPU reference kernels to independent float64
// implementations written from each op's definition with plain nested loops
// (llm.c style). Inputs and outputs are read straight from storage through
// shape, strides and offset, so no kernel takes part in checking itself.

import (
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/unclip-go/unclip/kernels/cpu"
	"github.com/unclip-go/unclip/tensor"
	"github.com/unclip-go/unclip/tensor/tensortest"
)

// ---- helpers ----

var rnd = tensortest.Rand

// rndIn is Rand mapped to [lo, hi).
func rndIn(seed uint64, lo, hi float64, shape ...int) *tensor.Tensor {
	v := rnd(seed, shape...).MustFloat32s()
	for i := range v {
		v[i] = float32(lo + (float64(v[i])+1)/2*(hi-lo))
	}
	return tensor.FromFloat32(v, shape...)
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// forEach calls fn with every index of shape in row-major order.
func forEach(shape []int, fn func(idx []int)) {
	if numel(shape) == 0 {
		return
	}
	idx := make([]int, len(shape))
	for {
		fn(idx)
		d := len(shape) - 1
		for ; d >= 0; d-- {
			idx[d]++
			if idx[d] < shape[d] {
				break
			}
			idx[d] = 0
		}
		if d < 0 {
			return
		}
	}
}

// logical returns the elements of a CPU tensor (any view, any dtype) in
// row-major order, read from its storage by shape, strides and offset.
func logical(x *tensor.Tensor) []float64 {
	h := x.Storage().Host
	var at func(i int) float64
	switch x.DType() {
	case tensor.F32:
		f := tensor.Float32View(h)
		at = func(i int) float64 { return float64(f[i]) }
	case tensor.F16:
		u := tensor.Uint16View(h)
		at = func(i int) float64 { return float64(tensor.F16ToF32(u[i])) }
	case tensor.BF16:
		u := tensor.Uint16View(h)
		at = func(i int) float64 { return float64(tensor.BF16ToF32(u[i])) }
	case tensor.I64:
		v := tensor.Int64View(h)
		at = func(i int) float64 { return float64(v[i]) }
	case tensor.I32:
		v := tensor.Int32View(h)
		at = func(i int) float64 { return float64(v[i]) }
	default:
		panic("logical: " + x.DType().String())
	}
	st, off := x.Strides(), x.Offset()
	out := make([]float64, 0, x.Numel())
	forEach(x.Shape(), func(idx []int) {
		p := off
		for d, i := range idx {
			p += i * st[d]
		}
		out = append(out, at(p))
	})
	return out
}

func unflat(shape []int, i int) []int {
	idx := make([]int, len(shape))
	for d := len(shape) - 1; d >= 0; d-- {
		if shape[d] > 0 {
			idx[d] = i % shape[d]
			i /= shape[d]
		}
	}
	return idx
}

// check compares got with want element by element: |got − want| must be at
// most tol·(|want| + mag[i]) (mag nil means 0: a purely relative test; tol
// 0 means exact). NaN must meet NaN and infinities must match.
func check(t *testing.T, name string, got *tensor.Tensor, shape []int, want, mag []float64, tol float64) {
	t.Helper()
	if err := got.Err(); err != nil {
		t.Errorf("%s: %v", name, err)
		return
	}
	if !slices.Equal(got.Shape(), shape) {
		t.Errorf("%s: shape %v, want %v", name, got.Shape(), shape)
		return
	}
	g := logical(got)
	if len(g) != len(want) {
		t.Errorf("%s: %d values, reference has %d", name, len(g), len(want))
		return
	}
	bad := 0
	worst, worstAt := 0.0, 0
	for i, w := range want {
		m := 0.0
		if mag != nil {
			m = mag[i]
		}
		d := math.Abs(g[i] - w)
		ok := d <= tol*(math.Abs(w)+m)
		switch {
		case math.IsNaN(w):
			ok = math.IsNaN(g[i])
		case math.IsInf(w, 0):
			ok = g[i] == w
		case math.IsNaN(g[i]):
			ok = false
		}
		if !ok {
			if bad++; bad <= 5 {
				t.Errorf("%s: at %v got %.9g, want %.9g (diff %.3g, allowed %.3g)", name, unflat(shape, i), g[i], w, d, tol*(math.Abs(w)+m))
			}
		}
		if d > worst && !math.IsNaN(d) {
			worst, worstAt = d, i
		}
	}
	if bad > 5 {
		t.Errorf("%s: %d of %d elements out of tolerance; worst diff %.3g at %v", name, bad, len(want), worst, unflat(shape, worstAt))
	}
}

// kernelSets runs fn under the reference kernels (the oracle itself) and
// under every fast kernel variant this CPU supports, since Backend.Run uses
// the fast kernels by default.
func kernelSets(t *testing.T, fn func(t *testing.T)) {
	prev := cpu.Kernels()
	defer func() {
		if err := cpu.SetKernels(prev); err != nil {
			t.Errorf("restoring kernels %q: %v", prev, err)
		}
	}()
	for _, name := range append([]string{"ref"}, cpu.KernelVariants()...) {
		if err := cpu.SetKernels(name); err != nil {
			t.Fatalf("SetKernels(%q): %v", name, err)
		}
		t.Run("kernels="+name, fn)
	}
}

// threadCounts is kernelSets with each set run on 1 and on 3 workers, so
// that both the serial and the split paths of every kernel are checked (3
// splits unevenly).
func threadCounts(t *testing.T, fn func(t *testing.T)) {
	defer cpu.SetThreads(0)
	kernelSets(t, func(t *testing.T) {
		for _, n := range []int{1, 3} {
			cpu.SetThreads(n)
			t.Run(fmt.Sprintf("threads=%d", n), fn)
		}
	})
}

// broadcast is the numpy broadcast of two shapes.
func broadcast(a, b []int) []int {
	r := max(len(a), len(b))
	out := make([]int, r)
	for i := range out {
		da, db := 1, 1
		if j := i - (r - len(a)); j >= 0 {
			da = a[j]
		}
		if j := i - (r - len(b)); j >= 0 {
			db = b[j]
		}
		switch {
		case da == db || db == 1:
			out[i] = da
		case da == 1:
			out[i] = db
		default:
			panic(fmt.Sprintf("shapes %v %v do not broadcast", a, b))
		}
	}
	return out
}

// bflat is the row-major position in an operand of shape s of the index
// idx of the broadcast shape (right-aligned; size-1 dimensions repeat).
func bflat(idx, s []int) int {
	lead := len(idx) - len(s)
	p := 0
	for i, d := range s {
		v := idx[lead+i]
		if d == 1 {
			v = 0
		}
		p = p*d + v
	}
	return p
}

func ids32(v []int32, shape ...int) *tensor.Tensor {
	b := tensor.HostBytes(4 * len(v))
	if len(v) > 0 {
		copy(b, unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v)))
	}
	return tensor.FromBytes(tensor.I32, b, shape...)
}

// ---- naive references ----

// naiveMatMul multiplies a (..., M, K) by b (..., K, N) with broadcast batch
// dimensions and adds bias (N) when given. mag[i] is Σ|a·b| + |bias|, the
// scale of float32 rounding in the result.
func naiveMatMul(a []float64, as []int, b []float64, bs []int, bias []float64) (out, mag []float64, shape []int) {
	ra, rb := len(as), len(bs)
	m, k, n := as[ra-2], as[ra-1], bs[rb-1]
	batch := broadcast(as[:ra-2], bs[:rb-2])
	shape = append(slices.Clone(batch), m, n)
	out = make([]float64, numel(shape))
	mag = make([]float64, len(out))
	bi := 0
	forEach(append(slices.Clone(batch), 1), func(idx []int) {
		idx = idx[:len(batch)]
		pa, pb := bflat(idx, as[:ra-2])*m*k, bflat(idx, bs[:rb-2])*k*n
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				var s, q float64
				for p := 0; p < k; p++ {
					s += a[pa+i*k+p] * b[pb+p*n+j]
					q += math.Abs(a[pa+i*k+p] * b[pb+p*n+j])
				}
				if bias != nil {
					s += bias[j]
					q += math.Abs(bias[j])
				}
				out[(bi*m+i)*n+j] = s
				mag[(bi*m+i)*n+j] = q
			}
		}
		bi++
	})
	return out, mag, shape
}

// naiveConv2d is the direct 7-loop convolution of x (N, C, H, W) with
// w (O, C, KH, KW), zero padding pad and stride s.
func naiveConv2d(x []float64, xs []int, w []float64, ws []int, bias []float64, s, pad int) (out, mag []float64, shape []int) {
	bn, c, h, wd := xs[0], xs[1], xs[2], xs[3]
	o, kh, kw := ws[0], ws[2], ws[3]
	oh := (h+2*pad-kh)/s + 1
	ow := (wd+2*pad-kw)/s + 1
	shape = []int{bn, o, oh, ow}
	out = make([]float64, numel(shape))
	mag = make([]float64, len(out))
	for n := 0; n < bn; n++ {
		for oc := 0; oc < o; oc++ {
			for oy := 0; oy < oh; oy++ {
				for ox := 0; ox < ow; ox++ {
					var acc, q float64
					if bias != nil {
						acc, q = bias[oc], math.Abs(bias[oc])
					}
					for ci := 0; ci < c; ci++ {
						for ky := 0; ky < kh; ky++ {
							for kx := 0; kx < kw; kx++ {
								iy, ix := oy*s+ky-pad, ox*s+kx-pad
								if iy < 0 || iy >= h || ix < 0 || ix >= wd {
									continue
								}
								v := x[((n*c+ci)*h+iy)*wd+ix] * w[((oc*c+ci)*kh+ky)*kw+kx]
								acc += v
								q += math.Abs(v)
							}
						}
					}
					i := ((n*o+oc)*oh+oy)*ow + ox
					out[i], mag[i] = acc, q
				}
			}
		}
	}
	return out, mag, shape
}

// naiveSoftmax normalises exp over a row in float64; a row of −Inf gives zeros.
func naiveSoftmax(row []float64) []float64 {
	m := math.Inf(-1)
	for _, v := range row {
		m = max(m, v)
	}
	out := make([]float64, len(row))
	if math.IsInf(m, -1) {
		return out
	}
	var s float64
	for i, v := range row {
		out[i] = math.Exp(v - m)
		s += out[i]
	}
	for i := range out {
		out[i] /= s
	}
	return out
}

// naiveAttention materialises the (Lq, Lk) score matrix of each (b, h):
// scores = q·kᵀ·scale + bias, −Inf where causal and j > i, softmax, · v.
// bias is (B, H, Lq, Lk) dense (already broadcast) or nil.
func naiveAttention(q, k, v []float64, b, h, lq, lk, d, dv int, bias []float64, scale float64, causal bool) (out, mag []float64) {
	out = make([]float64, b*h*lq*dv)
	mag = make([]float64, len(out))
	for bh := 0; bh < b*h; bh++ {
		for i := 0; i < lq; i++ {
			s := make([]float64, lk)
			for j := 0; j < lk; j++ {
				if causal && j > i {
					s[j] = math.Inf(-1)
					continue
				}
				var dot float64
				for c := 0; c < d; c++ {
					dot += q[(bh*lq+i)*d+c] * k[(bh*lk+j)*d+c]
				}
				s[j] = dot * scale
				if bias != nil {
					s[j] += bias[(bh*lq+i)*lk+j]
				}
			}
			p := naiveSoftmax(s)
			for c := 0; c < dv; c++ {
				var acc, m float64
				for j := 0; j < lk; j++ {
					acc += p[j] * v[(bh*lk+j)*dv+c]
					m += p[j] * math.Abs(v[(bh*lk+j)*dv+c])
				}
				out[(bh*lq+i)*dv+c] = acc
				mag[(bh*lq+i)*dv+c] = m + 1e-3 // score rounding moves p by ~1e-7 of max|v|
			}
		}
	}
	return out, mag
}

// ---- tests ----

func TestConformanceSmoke(t *testing.T) { kernelSets(t, testConformanceSmoke) }

func testConformanceSmoke(t *testing.T) {
	// The CPU against itself: proves the suite runs and is deterministic.
	tensortest.Conformance(t, tensor.CPU(), 0)
}

// TestConformanceGraph: every op case captured as a graph and replayed
// from a planned arena matches eager execution, with every kernel set.
func TestConformanceGraph(t *testing.T) {
	kernelSets(t, func(t *testing.T) { tensortest.ConformanceGraph(t, tensor.CPU(), 0) })
}

// shadow is a second backend built from the CPU kernels but owning its
// own storage, so that tensortest.Conformance meets a backend other than
// its reference: inputs must move with To and results come back from it.
// With fault set it corrupts the last element of every matmul result.
type shadow struct{ fault bool }

func (s *shadow) Name() string {
	if s.fault {
		return "faulty"
	}
	return "shadow"
}

func (s *shadow) Alloc(n int) (*tensor.Storage, error) {
	return tensor.NewHostStorage(s, tensor.HostBytes(n)), nil
}

func (s *shadow) Upload(src []byte) (*tensor.Storage, error) {
	h := tensor.HostBytes(len(src))
	copy(h, src)
	return tensor.NewHostStorage(s, h), nil
}

func (s *shadow) Download(st *tensor.Storage, dst []byte, off int) error {
	copy(dst, st.Host[off:])
	return nil
}

func (s *shadow) Run(n *tensor.Node) error {
	if err := (cpu.Backend{}).Run(n); err != nil {
		return err
	}
	if s.fault && n.Op == tensor.OpMatMul && n.Dst.Numel() > 0 {
		y := tensor.Float32View(n.Dst.Storage().Host)
		y[n.Dst.Offset()+n.Dst.Numel()-1] += 1e-3
	}
	return nil
}

func (s *shadow) Sync() error { return nil }

func (s *shadow) Reserve(n int) (*tensor.Storage, error) { return s.Alloc(n) }

func (s *shadow) Free(*tensor.Storage) {}

func (s *shadow) Write(st *tensor.Storage, off int, src []byte) error {
	copy(st.Host[off:], src)
	return nil
}

func TestConformanceShadow(t *testing.T) {
	kernelSets(t, func(t *testing.T) { tensortest.Conformance(t, &shadow{}, 0) })
}

// TestConformanceDetectsFaults runs the suite on a backend that corrupts
// matmul results, in a child process (the suite must fail there), and
// checks that exactly the cases built on matmul failed.
func TestConformanceDetectsFaults(t *testing.T) {
	if os.Getenv("UNCLIP_TENSORTEST_FAULTY") == "1" {
		tensortest.Conformance(t, &shadow{fault: true}, 1e-5)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestConformanceDetectsFaults$", "-test.count=1")
	cmd.Env = append(os.Environ(), "UNCLIP_TENSORTEST_FAULTY=1")
	out, err := cmd.CombinedOutput()
	if errors.Is(err, syscall.ENOEXEC) {
		// A cross-compiled test binary run by an emulator (go test -exec
		// qemu-aarch64) cannot start itself.
		t.Skipf("cannot re-run the test binary on this machine: %v", err)
	}
	if err == nil {
		t.Fatalf("Conformance passed a backend that corrupts every matmul:\n%s", out)
	}
	const prefix = "--- FAIL: TestConformanceDetectsFaults/"
	var failed []string
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if name, ok := strings.CutPrefix(line, prefix); ok {
			failed = append(failed, strings.Fields(name)[0])
		}
	}
	nmm := 0
	for _, name := range failed {
		switch {
		case strings.HasPrefix(name, "matmul/"):
			nmm++
		case strings.HasPrefix(name, "linear/"), strings.HasPrefix(name, "chain/"),
			strings.HasPrefix(name, "fused/") && !strings.Contains(name, "conv"):
		default:
			t.Errorf("case %s failed, but it does not use matmul", name)
		}
	}
	t.Logf("%d cases caught the fault, %d of them matmul cases", len(failed), nmm)
	if nmm < 20 {
		t.Errorf("only %d matmul cases caught the fault; failures: %v\n%s", nmm, failed, out)
	}
}

func TestRandAndMaxAbsDiff(t *testing.T) {
	a := rnd(7, 3, 5).MustFloat32s()
	b := rnd(7, 3, 5).MustFloat32s()
	c := rnd(8, 3, 5).MustFloat32s()
	if tensortest.MaxAbsDiff(a, b) != 0 {
		t.Error("Rand is not deterministic")
	}
	if tensortest.MaxAbsDiff(a, c) == 0 {
		t.Error("Rand ignores the seed")
	}
	for _, v := range rnd(9, 10000).MustFloat32s() {
		if v < -1 || v >= 1 || math.IsNaN(float64(v)) {
			t.Fatalf("Rand value %v outside [-1, 1)", v)
		}
	}
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	for _, c := range []struct {
		a, b []float32
		want float64
	}{
		{[]float32{1, 2}, []float32{1, 2.5}, 0.5},
		{[]float32{nan, inf}, []float32{nan, inf}, 0},
		{[]float32{nan}, []float32{0}, math.Inf(1)},
		{[]float32{inf}, []float32{-inf}, math.Inf(1)},
		{[]float32{1}, []float32{1, 2}, math.Inf(1)},
		{nil, nil, 0},
	} {
		if got := tensortest.MaxAbsDiff(c.a, c.b); got != c.want {
			t.Errorf("MaxAbsDiff(%v, %v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

type mmCase struct {
	name string
	// a and b build the operands (views included) from fresh CPU tensors.
	a, b func() *tensor.Tensor
	bias func() *tensor.Tensor
}

func matmulCases() []mmCase {
	var cs []mmCase
	add := func(name string, a, b func() *tensor.Tensor) { cs = append(cs, mmCase{name: name, a: a, b: b}) }
	for _, s := range [][3]int{{1, 1, 1}, {1, 7, 1}, {7, 1, 33}, {1, 257, 7}, {33, 7, 1}, {7, 33, 257}, {257, 33, 7}, {33, 257, 33}, {3, 0, 4}} {
		m, k, n := s[0], s[1], s[2]
		sd := uint64(10*m + 100*k + 1000*n)
		id := fmt.Sprintf("%dx%dx%d", m, k, n)
		// B rows contiguous along N: the row-update path.
		add(id+"/rows", func() *tensor.Tensor { return rnd(sd, m, k) }, func() *tensor.Tensor { return rnd(sd+1, k, n) })
		// B columns contiguous along K (b = wᵀ): the dot-product path.
		add(id+"/cols", func() *tensor.Tensor { return rnd(sd+2, m, k) }, func() *tensor.Tensor { return rnd(sd+3, n, k).T() })
		// B a narrowed view (row stride ≠ N): the copy fallback.
		add(id+"/copy", func() *tensor.Tensor { return rnd(sd+4, m, k) }, func() *tensor.Tensor { return rnd(sd+5, k, n+3).Narrow(1, 2, n) })
		// A transposed (copied into rows) with each B layout.
		add(id+"/aT-rows", func() *tensor.Tensor { return rnd(sd+6, k, m).T() }, func() *tensor.Tensor { return rnd(sd+7, k, n) })
		add(id+"/aT-cols", func() *tensor.Tensor { return rnd(sd+8, k, m).T() }, func() *tensor.Tensor { return rnd(sd+9, n, k).T() })
	}
	add("a-narrowed-rows", func() *tensor.Tensor { return rnd(1, 9, 40).Narrow(1, 3, 33) }, func() *tensor.Tensor { return rnd(2, 33, 7) })
	add("a-narrowed-contiguous", func() *tensor.Tensor { return rnd(3, 12, 33).Narrow(0, 5, 7) }, func() *tensor.Tensor { return rnd(4, 33, 7) })
	add("a-expanded-rows", func() *tensor.Tensor { return rnd(5, 1, 33).Expand(7, 33) }, func() *tensor.Tensor { return rnd(6, 33, 5) })
	add("m1-strided-row", func() *tensor.Tensor { return rnd(7, 4, 33).Narrow(0, 2, 1) }, func() *tensor.Tensor { return rnd(8, 33, 9) })
	add("b-cols-narrowed-k", func() *tensor.Tensor { return rnd(9, 7, 33) }, func() *tensor.Tensor { return rnd(10, 9, 40).Narrow(1, 4, 33).T() })
	add("b-cols-expanded-n", func() *tensor.Tensor { return rnd(11, 7, 33) }, func() *tensor.Tensor { return rnd(12, 33, 1).Expand(33, 9) })
	add("b-expanded-k", func() *tensor.Tensor { return rnd(13, 7, 33) }, func() *tensor.Tensor { return rnd(14, 1, 9).Expand(33, 9) })
	add("b-strided-inner", func() *tensor.Tensor { return rnd(15, 7, 33) }, func() *tensor.Tensor { return rnd(16, 33, 9, 2).Index(2, 1) })
	add("b-k1-strided", func() *tensor.Tensor { return rnd(17, 7, 1) }, func() *tensor.Tensor { return rnd(18, 3, 9).Narrow(0, 1, 1) })
	add("b-n1-column", func() *tensor.Tensor { return rnd(19, 7, 33) }, func() *tensor.Tensor { return rnd(20, 33, 4).Narrow(1, 2, 1) })
	add("batched/rows", func() *tensor.Tensor { return rnd(21, 3, 7, 33) }, func() *tensor.Tensor { return rnd(22, 3, 33, 5) })
	add("batched/cols", func() *tensor.Tensor { return rnd(23, 3, 7, 33) }, func() *tensor.Tensor { return rnd(24, 3, 5, 33).T() })
	add("batched/copy", func() *tensor.Tensor { return rnd(25, 3, 7, 33) }, func() *tensor.Tensor { return rnd(26, 33, 3, 5).Permute(1, 0, 2) })
	add("broadcast/b-2d", func() *tensor.Tensor { return rnd(27, 2, 3, 7, 9) }, func() *tensor.Tensor { return rnd(28, 9, 5) })
	add("broadcast/a-2d", func() *tensor.Tensor { return rnd(29, 7, 9) }, func() *tensor.Tensor { return rnd(30, 2, 3, 9, 5) })
	add("broadcast/both", func() *tensor.Tensor { return rnd(31, 3, 1, 7, 9) }, func() *tensor.Tensor { return rnd(32, 4, 9, 5) })
	add("broadcast/both-cols", func() *tensor.Tensor { return rnd(33, 1, 4, 7, 9) }, func() *tensor.Tensor { return rnd(34, 3, 1, 5, 9).T() })
	add("broadcast/both-copy", func() *tensor.Tensor { return rnd(35, 2, 1, 9, 7).T() }, func() *tensor.Tensor { return rnd(36, 3, 9, 8).Narrow(2, 1, 5) })
	add("broadcast/a-batch-expanded", func() *tensor.Tensor { return rnd(37, 1, 7, 9).Expand(3, 7, 9) }, func() *tensor.Tensor { return rnd(38, 3, 9, 5) })
	add("heads/permuted", func() *tensor.Tensor { return rnd(39, 2, 5, 3, 4).Permute(0, 2, 1, 3) }, func() *tensor.Tensor { return rnd(40, 2, 7, 3, 4).Permute(0, 2, 3, 1) })
	add("F16-b", func() *tensor.Tensor { return rnd(41, 5, 33) }, func() *tensor.Tensor { return rnd(42, 33, 7).Cast(tensor.F16) })
	add("BF16-bT", func() *tensor.Tensor { return rnd(43, 5, 33) }, func() *tensor.Tensor { return rnd(44, 7, 33).Cast(tensor.BF16).T() })
	add("F16-a-F32-b", func() *tensor.Tensor { return rnd(45, 5, 33).Cast(tensor.F16) }, func() *tensor.Tensor { return rnd(46, 33, 7) })
	for _, c := range []mmCase{
		{name: "bias/rows", a: func() *tensor.Tensor { return rnd(50, 7, 33) }, b: func() *tensor.Tensor { return rnd(51, 33, 9) }, bias: func() *tensor.Tensor { return rnd(52, 9) }},
		{name: "bias/cols-batched", a: func() *tensor.Tensor { return rnd(53, 2, 7, 33) }, b: func() *tensor.Tensor { return rnd(54, 9, 33).T() }, bias: func() *tensor.Tensor { return rnd(55, 9) }},
		{name: "bias/F16", a: func() *tensor.Tensor { return rnd(56, 3, 16) }, b: func() *tensor.Tensor { return rnd(57, 5, 16).Cast(tensor.F16).T() }, bias: func() *tensor.Tensor { return rnd(58, 5).Cast(tensor.F16) }},
		{name: "bias/copy", a: func() *tensor.Tensor { return rnd(59, 4, 7) }, b: func() *tensor.Tensor { return rnd(60, 7, 12).Narrow(1, 1, 10) }, bias: func() *tensor.Tensor { return rnd(61, 10) }},
	} {
		cs = append(cs, c)
	}
	return cs
}

func TestMatMul(t *testing.T) {
	threadCounts(t, func(t *testing.T) {
		for _, c := range matmulCases() {
			a, b := c.a(), c.b()
			var bias *tensor.Tensor
			var bv []float64
			var got *tensor.Tensor
			if c.bias != nil {
				bias = c.bias()
				bv = logical(bias)
				// the bias form: Linear(x, w, bias) = x·wᵀ + bias
				got = tensor.Linear(a, b.T(), bias)
			} else {
				got = tensor.MatMul(a, b)
			}
			want, mag, shape := naiveMatMul(logical(a), a.Shape(), logical(b), b.Shape(), bv)
			check(t, c.name, got, shape, want, mag, 1e-5)
		}
	})
}

func TestLinear(t *testing.T) { kernelSets(t, testLinear) }

func testLinear(t *testing.T) {
	for _, c := range []struct {
		name    string
		x, w, b *tensor.Tensor
	}{
		{"3d-bias", rnd(1, 2, 3, 33), rnd(2, 17, 33), rnd(3, 17)},
		{"nobias", rnd(4, 5, 7), rnd(5, 65, 7), nil},
		{"F16-weight", rnd(6, 4, 65), rnd(7, 9, 65).Cast(tensor.F16), rnd(8, 9)},
		{"BF16-weight", rnd(9, 4, 65), rnd(10, 9, 65).Cast(tensor.BF16), rnd(11, 9)},
		{"1d-input", rnd(12, 7), rnd(13, 3, 7), rnd(14, 3)},
		{"permuted-input", rnd(15, 7, 3, 9).Permute(1, 0, 2), rnd(16, 5, 9), rnd(17, 5)},
	} {
		got := tensor.Linear(c.x, c.w, c.b)
		xs := c.x.Shape()
		in := xs[len(xs)-1]
		x2 := []int{numel(xs) / in, in}
		var bv []float64
		if c.b != nil {
			bv = logical(c.b)
		}
		// w is (out, in): multiply by its transpose, written out by hand
		w := logical(c.w)
		o := c.w.Dim(0)
		wt := make([]float64, len(w))
		for i := 0; i < o; i++ {
			for j := 0; j < in; j++ {
				wt[j*o+i] = w[i*in+j]
			}
		}
		want, mag, _ := naiveMatMul(logical(c.x), x2, wt, []int{in, o}, bv)
		shape := append(slices.Clone(xs[:len(xs)-1]), o)
		check(t, c.name, got, shape, want, mag, 1e-5)
		if got.DType() != tensor.F32 {
			t.Errorf("%s: result %v, want F32", c.name, got.DType())
		}
	}
}

func TestConv2d(t *testing.T) {
	type cc struct {
		name         string
		x, w, b      *tensor.Tensor
		stride, pad  int
		permuteInput bool
	}
	cases := func() []cc {
		return []cc{
			{name: "3x3-pad1-bias", x: rnd(1, 2, 3, 7, 9), w: rnd(2, 4, 3, 3, 3), b: rnd(3, 4), stride: 1, pad: 1},
			{name: "3x3-pad1-nobias", x: rnd(4, 1, 5, 6, 6), w: rnd(5, 3, 5, 3, 3), stride: 1, pad: 1},
			{name: "3x3-pad0-odd", x: rnd(6, 1, 2, 7, 9), w: rnd(7, 3, 2, 3, 3), b: rnd(8, 3), stride: 1, pad: 0},
			{name: "1x1", x: rnd(9, 2, 8, 5, 3), w: rnd(10, 6, 8, 1, 1), b: rnd(11, 6), stride: 1, pad: 0},
			{name: "1x1-C33", x: rnd(12, 1, 33, 7, 1), w: rnd(13, 7, 33, 1, 1), stride: 1, pad: 0},
			{name: "stride2-pad1", x: rnd(14, 2, 4, 9, 7), w: rnd(15, 5, 4, 3, 3), b: rnd(16, 5), stride: 2, pad: 1},
			{name: "stride2-pad1-even", x: rnd(17, 1, 3, 8, 8), w: rnd(18, 2, 3, 3, 3), b: rnd(19, 2), stride: 2, pad: 1},
			{name: "stride2-pad0", x: rnd(20, 1, 3, 7, 9), w: rnd(21, 2, 3, 3, 3), stride: 2, pad: 0},
			{name: "stride3-pad2", x: rnd(22, 1, 2, 11, 10), w: rnd(23, 2, 2, 3, 3), b: rnd(24, 2), stride: 3, pad: 2},
			{name: "C1", x: rnd(25, 2, 1, 7, 9), w: rnd(26, 3, 1, 3, 3), b: rnd(27, 3), stride: 1, pad: 1},
			{name: "O1", x: rnd(28, 1, 4, 5, 5), w: rnd(29, 1, 4, 3, 3), b: rnd(30, 1), stride: 1, pad: 1},
			{name: "1x1-image", x: rnd(31, 1, 3, 1, 1), w: rnd(32, 2, 3, 3, 3), b: rnd(33, 2), stride: 1, pad: 1},
			{name: "4x4-stride2", x: rnd(34, 1, 2, 9, 8), w: rnd(35, 3, 2, 4, 4), b: rnd(36, 3), stride: 2, pad: 1},
			{name: "1x3-kernel", x: rnd(37, 1, 2, 6, 7), w: rnd(38, 2, 2, 1, 3), b: rnd(39, 2), stride: 1, pad: 1},
			{name: "kernel-wider-than-image", x: rnd(40, 1, 2, 2, 3), w: rnd(41, 2, 2, 5, 5), stride: 1, pad: 2},
			{name: "F16-weight-bias", x: rnd(42, 1, 4, 5, 6), w: rnd(43, 3, 4, 3, 3).Cast(tensor.F16), b: rnd(44, 3).Cast(tensor.F16), stride: 1, pad: 1},
			{name: "permuted-input", x: rnd(45, 2, 7, 9, 3), w: rnd(46, 4, 3, 3, 3), b: rnd(47, 4), stride: 1, pad: 1, permuteInput: true},
			// Large enough that the im2col buffer holds fewer output rows
			// than the image has (27 of 61): three chunks, the last partial.
			{name: "chunked-im2col", x: rnd(48, 1, 128, 61, 33), w: rnd(49, 2, 128, 3, 3), b: rnd(50, 2), stride: 1, pad: 1},
		}
	}
	threadCounts(t, func(t *testing.T) {
		for _, c := range cases() {
			x := c.x
			if c.permuteInput {
				x = x.Permute(0, 3, 1, 2)
			}
			var bias []float64
			if c.b != nil {
				bias = logical(c.b)
			}
			got := tensor.Conv2d(x, c.w, c.b, c.stride, c.pad)
			want, mag, shape := naiveConv2d(logical(x), x.Shape(), logical(c.w), c.w.Shape(), bias, c.stride, c.pad)
			check(t, c.name, got, shape, want, mag, 1e-5)
		}
	})
}

func TestAttention(t *testing.T) {
	type ac struct {
		name                string
		q, k, v, bias       *tensor.Tensor
		causal              bool
		b, h, lq, lk, d, dv int
		biasShape           []int
		permute             bool // q, k, v are (B, L, H, D)
		scale               float64
	}
	mk := func(name string, b, h, lq, lk, d, dv int, causal bool, biasShape []int, permute bool) ac {
		seed := uint64(len(name)*1000 + b*100 + h*10 + lq + lk + d + dv)
		c := ac{name: name, b: b, h: h, lq: lq, lk: lk, d: d, dv: dv, causal: causal, biasShape: biasShape, permute: permute}
		if permute {
			c.q = rndIn(seed, -2, 2, b, lq, h, d)
			c.k = rndIn(seed+1, -2, 2, b, lk, h, d)
			c.v = rnd(seed+2, b, lk, h, dv)
		} else {
			c.q = rndIn(seed, -2, 2, b, h, lq, d)
			c.k = rndIn(seed+1, -2, 2, b, h, lk, d)
			c.v = rnd(seed+2, b, h, lk, dv)
		}
		if biasShape != nil {
			bv := rnd(seed+3, biasShape...).MustFloat32s()
			for i := 2; i < len(bv); i += 7 {
				bv[i] = float32(math.Inf(-1))
			}
			c.bias = tensor.FromFloat32(bv, biasShape...)
		}
		c.scale = 1 / math.Sqrt(float64(d))
		return c
	}
	cases := []ac{
		mk("plain", 2, 3, 5, 5, 8, 8, false, nil, false),
		mk("causal", 2, 3, 7, 7, 8, 8, true, nil, false),
		mk("lq-ne-lk-dv-ne-d", 2, 3, 5, 7, 8, 6, false, nil, false),
		mk("causal-lq-lt-lk", 1, 2, 5, 9, 4, 6, true, nil, false),
		mk("causal-lq-gt-lk", 1, 2, 9, 5, 4, 3, true, nil, false),
		mk("bias-broadcast-B11Lk", 2, 3, 5, 7, 8, 6, false, []int{2, 1, 1, 7}, false),
		mk("bias-full", 2, 3, 5, 7, 8, 6, false, []int{2, 3, 5, 7}, false),
		mk("bias-causal", 2, 2, 6, 6, 8, 8, true, []int{1, 1, 6, 6}, false),
		mk("bias-Lk-only", 1, 2, 4, 7, 8, 8, false, []int{7}, false),
		mk("lq1-lk257", 1, 2, 1, 257, 16, 16, false, []int{1, 1, 1, 257}, false),
		mk("lk1", 1, 2, 7, 1, 4, 5, false, nil, false),
		mk("d1", 1, 1, 3, 4, 1, 1, false, nil, false),
		mk("long-33", 1, 1, 33, 33, 64, 64, true, nil, false),
		mk("permuted-BLHD", 2, 3, 5, 7, 8, 6, false, nil, true),
		mk("permuted-BLHD-causal-bias", 2, 3, 7, 7, 8, 8, true, []int{2, 1, 1, 7}, true),
	}
	threadCounts(t, func(t *testing.T) {
		for _, c := range cases {
			q, k, v := c.q, c.k, c.v
			if c.permute {
				q, k, v = q.Permute(0, 2, 1, 3), k.Permute(0, 2, 1, 3), v.Permute(0, 2, 1, 3)
			}
			var bias []float64
			if c.bias != nil {
				bias = logical(c.bias.Expand(c.b, c.h, c.lq, c.lk))
			}
			got := tensor.Attention(q, k, v, c.bias, float32(c.scale), c.causal)
			want, mag := naiveAttention(logical(q), logical(k), logical(v), c.b, c.h, c.lq, c.lk, c.d, c.dv, bias, float64(float32(c.scale)), c.causal)
			check(t, c.name, got, []int{c.b, c.h, c.lq, c.dv}, want, mag, 1e-5)
		}
	})

	// A query whose every key is masked by the bias gives a zero row.
	q, k, v := rnd(1, 1, 1, 3, 4), rnd(2, 1, 1, 5, 4), rnd(3, 1, 1, 5, 2)
	bv := make([]float32, 15)
	for j := 5; j < 10; j++ {
		bv[j] = float32(math.Inf(-1))
	}
	bias := tensor.FromFloat32(bv, 1, 1, 3, 5)
	want, mag := naiveAttention(logical(q), logical(k), logical(v), 1, 1, 3, 5, 4, 2, logical(bias), 0.5, false)
	if want[2] != 0 || want[3] != 0 {
		t.Fatalf("reference: masked row %v", want[2:4])
	}
	check(t, "all-masked-row", tensor.Attention(q, k, v, bias, 0.5, false), []int{1, 1, 3, 2}, want, mag, 1e-5)
}

func TestLayerNorm(t *testing.T) { kernelSets(t, testLayerNorm) }

func testLayerNorm(t *testing.T) {
	for _, c := range []struct {
		name    string
		x, w, b *tensor.Tensor
		eps     float32
	}{
		{"bias", rnd(1, 3, 7, 33), rnd(2, 33), rnd(3, 33), 1e-5},
		{"nobias", rnd(4, 5, 65), rnd(5, 65), nil, 1e-5},
		{"C1", rnd(6, 6, 1), rnd(7, 1), rnd(8, 1), 1e-5},
		{"C257", rnd(9, 2, 257), rnd(10, 257), rnd(11, 257), 1e-6},
		{"large-eps", rnd(12, 4, 7), rnd(13, 7), rnd(14, 7), 0.5},
		{"offset-mean", rndIn(15, 99, 101, 4, 33), rnd(16, 33), rnd(17, 33), 1e-5},
		{"permuted", rnd(18, 9, 4, 3).Permute(2, 0, 1), rnd(19, 4), rnd(20, 4), 1e-5},
		{"F16-params", rnd(21, 3, 8), rnd(22, 8).Cast(tensor.F16), rnd(23, 8).Cast(tensor.BF16), 1e-5},
		{"rank1", rnd(24, 7), rnd(25, 7), rnd(26, 7), 1e-5},
	} {
		xs := c.x.Shape()
		cn := xs[len(xs)-1]
		x, w := logical(c.x), logical(c.w)
		var b []float64
		if c.b != nil {
			b = logical(c.b)
		}
		want := make([]float64, len(x))
		mag := make([]float64, len(x))
		for r := 0; r < len(x)/cn; r++ {
			var mean, vr float64
			for i := 0; i < cn; i++ {
				mean += x[r*cn+i]
			}
			mean /= float64(cn)
			for i := 0; i < cn; i++ {
				vr += (x[r*cn+i] - mean) * (x[r*cn+i] - mean)
			}
			vr /= float64(cn) // biased
			for i := 0; i < cn; i++ {
				xh := (x[r*cn+i] - mean) / math.Sqrt(vr+float64(c.eps))
				want[r*cn+i] = xh * w[i]
				mag[r*cn+i] = math.Abs(xh * w[i])
				if b != nil {
					want[r*cn+i] += b[i]
					mag[r*cn+i] += math.Abs(b[i])
				}
			}
		}
		check(t, c.name, tensor.LayerNorm(c.x, c.w, c.b, c.eps), xs, want, mag, 2e-6)
	}
}

func TestGroupNorm(t *testing.T) { kernelSets(t, testGroupNorm) }

func testGroupNorm(t *testing.T) {
	for _, silu := range []bool{false, true} {
		for _, c := range []struct {
			name    string
			x, w, b *tensor.Tensor
			groups  int
			eps     float32
		}{
			{"NCHW-32", rnd(1, 2, 64, 3, 5), rnd(2, 64), rnd(3, 64), 32, 1e-5},
			{"NC-32", rnd(4, 3, 64), rnd(5, 64), rnd(6, 64), 32, 1e-5},
			{"NC-one-channel-per-group", rnd(7, 2, 32), rnd(8, 32), rnd(9, 32), 32, 1e-5},
			{"NCL", rnd(10, 1, 96, 7), rnd(11, 96), rnd(12, 96), 32, 1e-6},
			{"groups1", rnd(13, 2, 5, 3, 3), rnd(14, 5), rnd(15, 5), 1, 1e-5},
			{"groups-equal-C", rnd(16, 1, 7, 4, 4), rnd(17, 7), rnd(18, 7), 7, 1e-5},
			{"large-eps", rnd(19, 1, 8, 2, 2), rnd(20, 8), rnd(21, 8), 4, 0.5},
			{"offset-mean", rndIn(22, 49, 51, 1, 64, 4, 4), rnd(23, 64), rnd(24, 64), 32, 1e-5},
			{"permuted", rnd(25, 2, 3, 5, 32).Permute(0, 3, 1, 2), rnd(26, 32), rnd(27, 32), 32, 1e-5},
			{"F16-params", rnd(28, 1, 64, 2, 3), rnd(29, 64).Cast(tensor.F16), rnd(30, 64).Cast(tensor.F16), 32, 1e-5},
		} {
			xs := c.x.Shape()
			n, ch := xs[0], xs[1]
			hw := numel(xs[2:])
			cg := ch / c.groups
			x, w, b := logical(c.x), logical(c.w), logical(c.b)
			want := make([]float64, len(x))
			mag := make([]float64, len(x))
			for s := 0; s < n; s++ {
				for g := 0; g < c.groups; g++ {
					base := (s*ch + g*cg) * hw
					var mean, vr float64
					for i := 0; i < cg*hw; i++ {
						mean += x[base+i]
					}
					mean /= float64(cg * hw)
					for i := 0; i < cg*hw; i++ {
						vr += (x[base+i] - mean) * (x[base+i] - mean)
					}
					vr /= float64(cg * hw)
					for cc := 0; cc < cg; cc++ {
						ci := g*cg + cc
						for p := 0; p < hw; p++ {
							i := base + cc*hw + p
							xh := (x[i] - mean) / math.Sqrt(vr+float64(c.eps))
							o := xh*w[ci] + b[ci]
							mag[i] = math.Abs(xh*w[ci]) + math.Abs(b[ci])
							if silu {
								o = o / (1 + math.Exp(-o))
							}
							want[i] = o
						}
					}
				}
			}
			name := c.name
			if silu {
				name += "+silu"
			}
			check(t, name, tensor.GroupNorm(c.x, c.groups, c.w, c.b, c.eps, silu), xs, want, mag, 2e-6)
		}
	}
}

func TestSoftmax(t *testing.T) { kernelSets(t, testSoftmax) }

func testSoftmax(t *testing.T) {
	ninf := float32(math.Inf(-1))
	withInf := rnd(5, 4, 7).MustFloat32s()
	for _, i := range []int{0, 3, 6} { // row 0: some −Inf
		withInf[i] = ninf
	}
	for i := 7; i < 14; i++ { // row 1: all −Inf → zeros
		withInf[i] = ninf
	}
	for i := 14; i < 21; i++ { // row 2: one finite value → one-hot
		if i != 17 {
			withInf[i] = ninf
		}
	}
	withInf[22] = 80 // row 3: a large value
	for _, c := range []struct {
		name string
		x    *tensor.Tensor
	}{
		{"plain", rndIn(1, -8, 8, 5, 33)},
		{"long-row-257", rndIn(2, -20, 20, 2, 257)},
		{"len1", rnd(3, 4, 1)},
		{"rank1", rnd(4, 7)},
		{"neg-inf-rows", tensor.FromFloat32(withInf, 4, 7)},
		{"permuted", rnd(6, 7, 3, 5).Permute(1, 2, 0)},
		{"expanded", rnd(7, 1, 9).Expand(3, 9)},
		{"huge-values", rndIn(8, 1e30, 3e30, 2, 5)},
	} {
		x := logical(c.x)
		shape := c.x.Shape()
		cn := shape[len(shape)-1]
		want := make([]float64, 0, len(x))
		for r := 0; r < len(x)/cn; r++ {
			want = append(want, naiveSoftmax(x[r*cn:r*cn+cn])...)
		}
		check(t, c.name, tensor.Softmax(c.x), shape, want, nil, 1e-5)
	}
}

func TestUnary(t *testing.T) { kernelSets(t, testUnary) }

func testUnary(t *testing.T) {
	erfGELU := func(x float64) float64 { return 0.5 * x * (1 + math.Erf(x/math.Sqrt2)) }
	sig := func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
	for _, c := range []struct {
		name string
		op   func(*tensor.Tensor) *tensor.Tensor
		ref  func(float64) float64
		tol  float64
	}{
		{"silu", tensor.SiLU, func(x float64) float64 { return x * sig(x) }, 1e-5},
		{"gelu", tensor.GELU, erfGELU, 1e-5},
		{"quickgelu", tensor.QuickGELU, func(x float64) float64 { return x * sig(1.702*x) }, 1e-5},
		{"sigmoid", tensor.Sigmoid, sig, 1e-5},
		{"exp", tensor.Exp, math.Exp, 1e-5},
		{"neg", tensor.Neg, func(x float64) float64 { return -x }, 0},
		{"affine", func(x *tensor.Tensor) *tensor.Tensor { return tensor.Affine(x, 1.5, -0.25) }, func(x float64) float64 { return 1.5*x - 0.25 }, 1e-6},
		{"scale", func(x *tensor.Tensor) *tensor.Tensor { return tensor.Scale(x, -0.125) }, func(x float64) float64 { return -0.125 * x }, 0},
		{"clamp", func(x *tensor.Tensor) *tensor.Tensor { return tensor.Clamp(x, -0.3, 0.5) }, func(x float64) float64 {
			return min(max(x, float64(float32(-0.3))), float64(float32(0.5)))
		}, 0},
	} {
		for _, in := range []struct {
			name string
			x    *tensor.Tensor
		}{
			{"", rndIn(11, -8, 8, 3, 7, 11)},
			{"/transposed", rndIn(12, -4, 4, 2, 33, 5).T()},
			{"/expanded", rndIn(13, -4, 4, 1, 7).Expand(3, 7)},
			{"/0d", tensor.Scalar(0.75)},
			{"/257", rndIn(14, -10, 10, 257)},
		} {
			x := logical(in.x)
			want := make([]float64, len(x))
			mag := make([]float64, len(x))
			for i, v := range x {
				want[i] = c.ref(v)
				mag[i] = 1e-7 // absolute floor where a result cancels to ~0
			}
			check(t, c.name+in.name, c.op(in.x), in.x.Shape(), want, mag, c.tol)
		}
	}
	// GELU at named points (erf, not the tanh approximation).
	g := tensor.GELU(tensor.FromFloat32([]float32{-3, -1, 0, 0.5, 1, 3}, 6)).MustFloat32s()
	for i, x := range []float64{-3, -1, 0, 0.5, 1, 3} {
		if d := math.Abs(float64(g[i]) - erfGELU(x)); d > 1e-7 {
			t.Errorf("GELU(%v) = %v, want %v", x, g[i], erfGELU(x))
		}
	}
}

func TestBinary(t *testing.T) { kernelSets(t, testBinary) }

func testBinary(t *testing.T) {
	ops := []struct {
		name string
		op   func(a, b *tensor.Tensor) *tensor.Tensor
		f    func(a, b float32) float32
	}{
		{"add", tensor.Add, func(a, b float32) float32 { return a + b }},
		{"sub", tensor.Sub, func(a, b float32) float32 { return a - b }},
		{"mul", tensor.Mul, func(a, b float32) float32 { return a * b }},
		{"div", tensor.Div, func(a, b float32) float32 { return a / b }},
	}
	for _, o := range ops {
		for _, c := range []struct {
			name string
			a, b *tensor.Tensor
		}{
			{"same", rnd(1, 3, 7, 5), rndIn(2, 0.5, 2, 3, 7, 5)},
			{"broadcast", rnd(3, 4, 1, 7), rndIn(4, 0.5, 2, 5, 1)},
			{"scalar-like", rnd(5, 3, 33), rndIn(6, 0.5, 2, 1)},
			{"scalar-first", rnd(7, 1), rndIn(8, 0.5, 2, 2, 9)},
			{"0d", rnd(9, 2, 5), tensor.Scalar(-1.75)},
			{"transposed", rnd(10, 7, 5).T(), rndIn(11, 0.5, 2, 5, 7)},
			{"both-strided", rnd(12, 6, 9).Narrow(1, 2, 5).T(), rndIn(13, 0.5, 2, 2, 9, 6).Narrow(2, 0, 6).Narrow(1, 1, 5).Index(0, 1)},
			{"channel-bias", rnd(14, 2, 3, 5, 5), rndIn(15, 0.5, 2, 3, 1, 1)},
			{"257", rnd(16, 257), rndIn(17, 0.5, 2, 257)},
			{"F16-F32", rnd(18, 4, 6).Cast(tensor.F16), rndIn(19, 0.5, 2, 6)},
			{"BF16-F32", rnd(20, 4, 6), rndIn(21, 0.5, 2, 6).Cast(tensor.BF16)},
		} {
			shape := broadcast(c.a.Shape(), c.b.Shape())
			av, bv := logical(c.a), logical(c.b)
			want := make([]float64, 0, numel(shape))
			forEach(shape, func(idx []int) {
				x := float32(av[bflat(idx, c.a.Shape())])
				y := float32(bv[bflat(idx, c.b.Shape())])
				want = append(want, float64(o.f(x, y)))
			})
			got := o.op(c.a, c.b)
			check(t, o.name+"/"+c.name, got, shape, want, nil, 0)
			if got.DType() != tensor.F32 {
				t.Errorf("%s/%s: result %v", o.name, c.name, got.DType())
			}
		}
	}
}

func TestAvgPoolNearest(t *testing.T) { kernelSets(t, testAvgPoolNearest) }

func testAvgPoolNearest(t *testing.T) {
	for _, c := range []struct {
		name string
		x    *tensor.Tensor
		k    int
	}{
		{"2", rnd(1, 2, 3, 6, 8), 2},
		{"2-odd", rnd(2, 1, 2, 7, 9), 2},
		{"3", rnd(3, 1, 2, 9, 7), 3},
		{"1", rnd(4, 1, 1, 3, 5), 1},
		{"permuted", rnd(5, 1, 6, 4, 2).Permute(0, 3, 1, 2), 2},
		{"whole", rnd(6, 1, 2, 4, 4), 4},
	} {
		xs := c.x.Shape()
		x := logical(c.x)
		oh, ow := xs[2]/c.k, xs[3]/c.k
		shape := []int{xs[0], xs[1], oh, ow}
		var want []float64
		for p := 0; p < xs[0]*xs[1]; p++ {
			for i := 0; i < oh; i++ {
				for j := 0; j < ow; j++ {
					var s float64
					for a := 0; a < c.k; a++ {
						for b := 0; b < c.k; b++ {
							s += x[(p*xs[2]+i*c.k+a)*xs[3]+j*c.k+b]
						}
					}
					want = append(want, s/float64(c.k*c.k))
				}
			}
		}
		mag := make([]float64, len(want))
		for i := range mag {
			mag[i] = 1
		}
		check(t, "avgpool/"+c.name, tensor.AvgPool2d(c.x, c.k), shape, want, mag, 1e-6)
	}
	for _, c := range []struct {
		name string
		x    *tensor.Tensor
		f    int
	}{
		{"2", rnd(7, 2, 3, 3, 5), 2},
		{"3", rnd(8, 1, 2, 1, 4), 3},
		{"1", rnd(9, 1, 2, 3, 4), 1},
		{"transposed", rnd(10, 1, 2, 5, 3).T(), 2},
		{"odd planes", rnd(11, 3, 5, 7, 9), 2},
	} {
		xs := c.x.Shape()
		x := logical(c.x)
		shape := []int{xs[0], xs[1], xs[2] * c.f, xs[3] * c.f}
		var want []float64
		forEach(shape, func(idx []int) {
			want = append(want, x[((idx[0]*xs[1]+idx[1])*xs[2]+idx[2]/c.f)*xs[3]+idx[3]/c.f])
		})
		check(t, "nearest/"+c.name, tensor.UpsampleNearest(c.x, c.f), shape, want, nil, 0)
	}
}

func TestUpsampleBicubic(t *testing.T) { kernelSets(t, testUpsampleBicubic) }

func testUpsampleBicubic(t *testing.T) {
	for _, c := range []struct {
		name   string
		x      *tensor.Tensor
		oh, ow int
	}{
		{"7x5-to-17x13", rnd(1, 1, 2, 7, 5), 17, 13},
		{"16x4-to-48x12", rnd(2, 1, 1, 16, 4), 48, 12},
		{"16x64-to-64x256", rnd(3, 1, 1, 16, 64), 64, 256},
		{"9x9-to-4x4", rnd(4, 2, 2, 9, 9), 4, 4},
		{"9x13-to-4x5", rnd(5, 1, 1, 9, 13), 4, 5},
		{"7x7-identity", rnd(6, 1, 1, 7, 7), 7, 7},
		{"5x9-to-11x3", rnd(7, 1, 1, 5, 9), 11, 3},
		{"1x1-to-2x3", rnd(8, 1, 3, 1, 1), 2, 3},
		{"33x2-to-1x1", rnd(9, 1, 1, 33, 2), 1, 1},
		{"257x7-to-33x7", rnd(10, 1, 1, 257, 7), 33, 7},
		{"permuted", rnd(11, 1, 5, 7, 2).Permute(0, 3, 1, 2), 11, 9},
	} {
		xs := c.x.Shape()
		x := logical(c.x)
		h, w := xs[2], xs[3]
		Wy, Wx := tensortest.AntialiasWeights(h, c.oh), tensortest.AntialiasWeights(w, c.ow)
		shape := []int{xs[0], xs[1], c.oh, c.ow}
		want := make([]float64, 0, numel(shape))
		mag := make([]float64, 0, numel(shape))
		for p := 0; p < xs[0]*xs[1]; p++ {
			for i := 0; i < c.oh; i++ {
				for j := 0; j < c.ow; j++ {
					var s, m float64
					for y := 0; y < h; y++ {
						for xx := 0; xx < w; xx++ {
							v := Wy[i][y] * Wx[j][xx] * x[(p*h+y)*w+xx]
							s += v
							m += math.Abs(v)
						}
					}
					want = append(want, s)
					mag = append(mag, m)
				}
			}
		}
		check(t, c.name, tensor.UpsampleBicubic(c.x, c.oh, c.ow), shape, want, mag, 1e-5)
	}
	// A constant image stays constant (weights are normalised at the borders).
	ones := make([]float32, 7*9)
	for i := range ones {
		ones[i] = 0.625
	}
	got := tensor.UpsampleBicubic(tensor.FromFloat32(ones, 1, 1, 7, 9), 17, 4).MustFloat32s()
	for i, v := range got {
		if math.Abs(float64(v)-0.625) > 1e-6 {
			t.Fatalf("constant image: output %d = %v", i, v)
		}
	}
}

func TestEmbedding(t *testing.T) { kernelSets(t, testEmbedding) }

func testEmbedding(t *testing.T) {
	for _, c := range []struct {
		name  string
		table *tensor.Tensor
		ids   *tensor.Tensor
		idv   []int
	}{
		{"I64", rnd(1, 11, 7), tensor.FromInt64([]int64{0, 10, 3, 3, 7, 1}, 2, 3), []int{0, 10, 3, 3, 7, 1}},
		{"I32", rnd(2, 11, 7), ids32([]int32{5, 0, 10, 2}, 4), []int{5, 0, 10, 2}},
		{"F16-table", rnd(3, 13, 5).Cast(tensor.F16), tensor.FromInt64([]int64{12, 0, 6}, 3), []int{12, 0, 6}},
		{"BF16-table-I32", rnd(4, 13, 5).Cast(tensor.BF16), ids32([]int32{1, 12}, 1, 2), []int{1, 12}},
		{"transposed-ids", rnd(5, 9, 3), tensor.FromInt64([]int64{0, 1, 2, 3, 4, 5, 6, 7}, 2, 4).T(), []int{0, 4, 1, 5, 2, 6, 3, 7}},
		{"transposed-table", rnd(6, 4, 9).T(), tensor.FromInt64([]int64{8, 2}, 2), []int{8, 2}},
		{"0d-id", rnd(7, 5, 3), tensor.FromInt64([]int64{4}), []int{4}},
		{"D257", rnd(8, 3, 257), tensor.FromInt64([]int64{2, 0}, 2), []int{2, 0}},
	} {
		tab := logical(c.table)
		d := c.table.Dim(1)
		var want []float64
		for _, id := range c.idv {
			want = append(want, tab[id*d:id*d+d]...)
		}
		got := tensor.Embedding(c.table, c.ids)
		if got.DType() != c.table.DType() {
			t.Errorf("%s: result %v, want the table's %v", c.name, got.DType(), c.table.DType())
		}
		check(t, c.name, got, append(c.ids.Shape(), d), want, nil, 0)
	}
	// Ids out of range fail the op: Err and Float32s report it.
	for _, c := range []struct {
		name string
		ids  *tensor.Tensor
	}{
		{"I64-too-large", tensor.FromInt64([]int64{0, 11}, 2)},
		{"I64-negative", tensor.FromInt64([]int64{-1}, 1)},
		{"I32-too-large", ids32([]int32{3, 11, 2}, 3)},
		{"I32-negative", ids32([]int32{-5}, 1)},
		{"I64-huge", tensor.FromInt64([]int64{1 << 40}, 1)},
	} {
		got := tensor.Embedding(rnd(9, 11, 4), c.ids)
		if got.Err() == nil {
			t.Errorf("%s: Err() = nil, want an out-of-range error", c.name)
		}
		if _, err := got.Float32s(); err == nil || !strings.Contains(err.Error(), "range") {
			t.Errorf("%s: Float32s error %v, want an out-of-range error", c.name, err)
		}
		// The error carries through the ops computed from the result.
		if _, err := tensor.Add(got, got).Float32s(); err == nil {
			t.Errorf("%s: an op on the failed result did not fail", c.name)
		}
	}
}

func TestCopyCast(t *testing.T) { kernelSets(t, testCopyCast) }

func testCopyCast(t *testing.T) {
	f16 := func(v float64) float64 { return float64(tensor.F16ToF32(tensor.F32ToF16(float32(v)))) }
	bf16 := func(v float64) float64 { return float64(tensor.BF16ToF32(tensor.F32ToBF16(float32(v)))) }
	id := func(v float64) float64 { return v }
	views := []struct {
		name string
		x    func(dt tensor.DType) *tensor.Tensor
	}{
		{"contiguous", func(dt tensor.DType) *tensor.Tensor { return rndIn(1, -70000, 70000, 3, 33).Cast(dt) }},
		{"permuted", func(dt tensor.DType) *tensor.Tensor { return rnd(2, 5, 3, 7).Cast(dt).Permute(2, 0, 1) }},
		{"transposed", func(dt tensor.DType) *tensor.Tensor { return rnd(3, 33, 7).Cast(dt).T() }},
		{"narrowed", func(dt tensor.DType) *tensor.Tensor { return rnd(4, 7, 9, 5).Cast(dt).Narrow(1, 2, 5).Narrow(2, 1, 3) }},
		{"expanded", func(dt tensor.DType) *tensor.Tensor { return rnd(5, 3, 1, 5).Cast(dt).Expand(2, 3, 4, 5) }},
		{"index", func(dt tensor.DType) *tensor.Tensor { return rnd(6, 4, 257, 2).Cast(dt).Index(2, 1) }},
		{"tiny", func(dt tensor.DType) *tensor.Tensor { return rndIn(7, -1e-6, 1e-6, 257).Cast(dt) }},
	}
	conv := map[[2]tensor.DType]func(float64) float64{
		{tensor.F32, tensor.F32}: id, {tensor.F32, tensor.F16}: f16, {tensor.F32, tensor.BF16}: bf16,
		{tensor.F16, tensor.F32}: id, {tensor.F16, tensor.F16}: id, {tensor.F16, tensor.BF16}: bf16,
		{tensor.BF16, tensor.F32}: id, {tensor.BF16, tensor.F16}: f16, {tensor.BF16, tensor.BF16}: id,
	}
	for pair, f := range conv {
		for _, v := range views {
			x := v.x(pair[0])
			src := logical(x)
			want := make([]float64, len(src))
			for i, s := range src {
				want[i] = f(s)
			}
			got := x.Cast(pair[1])
			if got.DType() != pair[1] || !got.IsContiguous() {
				t.Errorf("%v→%v %s: result %v contiguous %v", pair[0], pair[1], v.name, got.DType(), got.IsContiguous())
			}
			check(t, fmt.Sprintf("cast %v→%v %s", pair[0], pair[1], v.name), got, x.Shape(), want, nil, 0)
		}
	}
	// Integer copies of strided views.
	ids := tensor.FromInt64([]int64{1, -2, 3, 1 << 40, 5, 6}, 2, 3).T()
	check(t, "I64 transposed", ids.Contiguous(), []int{3, 2}, logical(ids), nil, 0)
	i32 := ids32([]int32{1, -2, 3, 4, 5, 6, 7, -8}, 2, 2, 2).Permute(2, 0, 1)
	check(t, "I32 permuted", i32.Contiguous(), []int{2, 2, 2}, logical(i32), nil, 0)

	// Special values through the casts.
	sp := []float32{0, float32(math.Copysign(0, -1)), 65504, 65520, -65520, float32(math.Inf(1)), float32(math.Inf(-1)), 1e-8, float32(math.Ldexp(1, -25)), math.MaxFloat32}
	for _, dt := range []tensor.DType{tensor.F16, tensor.BF16} {
		got := tensor.FromFloat32(sp, len(sp)).Cast(dt)
		u := tensor.Uint16View(got.Storage().Host)
		for i, v := range sp {
			want := tensor.F32ToF16(v)
			if dt == tensor.BF16 {
				want = tensor.F32ToBF16(v)
			}
			if u[i] != want {
				t.Errorf("Cast(%v) of %v = %#04x, want %#04x", dt, v, u[i], want)
			}
		}
		nan := tensor.FromFloat32([]float32{float32(math.NaN()), math.Float32frombits(0x7f800001)}, 2).Cast(dt).Cast(tensor.F32).MustFloat32s()
		for _, v := range nan {
			if !math.IsNaN(float64(v)) {
				t.Errorf("NaN cast through %v gave %v", dt, v)
			}
		}
	}
}

func TestCopyIntoConcat(t *testing.T) { kernelSets(t, testCopyIntoConcat) }

func testCopyIntoConcat(t *testing.T) {
	// CopyInto a narrowed view writes the window and nothing else.
	for _, c := range []struct {
		name   string
		dst    *tensor.Tensor
		view   func(*tensor.Tensor) *tensor.Tensor
		src    *tensor.Tensor
		inside func(idx []int) (srcIdx []int, ok bool)
	}{
		{"narrow-cols", rnd(1, 5, 9), func(d *tensor.Tensor) *tensor.Tensor { return d.Narrow(1, 3, 4) }, rnd(2, 5, 4),
			func(idx []int) ([]int, bool) { return []int{idx[0], idx[1] - 3}, idx[1] >= 3 && idx[1] < 7 }},
		{"narrow-rows", rnd(3, 7, 6), func(d *tensor.Tensor) *tensor.Tensor { return d.Narrow(0, 4, 2) }, rnd(4, 2, 6),
			func(idx []int) ([]int, bool) { return []int{idx[0] - 4, idx[1]}, idx[0] >= 4 && idx[0] < 6 }},
		{"broadcast-src", rnd(5, 5, 9), func(d *tensor.Tensor) *tensor.Tensor { return d.Narrow(1, 2, 4) }, rnd(6, 1, 4),
			func(idx []int) ([]int, bool) { return []int{0, idx[1] - 2}, idx[1] >= 2 && idx[1] < 6 }},
		{"transposed-dst", rnd(7, 6, 5), func(d *tensor.Tensor) *tensor.Tensor { return d.T().Narrow(1, 1, 3) }, rnd(8, 5, 3),
			func(idx []int) ([]int, bool) { return []int{idx[1], idx[0] - 1}, idx[0] >= 1 && idx[0] < 4 }},
		{"F32-into-F16", rnd(9, 4, 8).Cast(tensor.F16), func(d *tensor.Tensor) *tensor.Tensor { return d.Narrow(1, 5, 3) }, rnd(10, 4, 3),
			func(idx []int) ([]int, bool) { return []int{idx[0], idx[1] - 5}, idx[1] >= 5 }},
	} {
		before := logical(c.dst)
		srcv := logical(c.src)
		ss := c.src.Shape()
		if err := tensor.CopyInto(c.view(c.dst), c.src); err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		var want []float64
		i := 0
		forEach(c.dst.Shape(), func(idx []int) {
			w := before[i]
			if si, ok := c.inside(idx); ok {
				w = srcv[si[0]*ss[1]+si[1]]
				if c.dst.DType() == tensor.F16 {
					w = float64(tensor.F16ToF32(tensor.F32ToF16(float32(w))))
				}
			}
			want = append(want, w)
			i++
		})
		check(t, "copyinto/"+c.name, c.dst, c.dst.Shape(), want, nil, 0)
	}

	// Concat along each dimension.
	for _, c := range []struct {
		dim int
		ts  []*tensor.Tensor
	}{
		{0, []*tensor.Tensor{rnd(11, 2, 3, 5), rnd(12, 1, 3, 5), rnd(13, 4, 3, 5)}},
		{1, []*tensor.Tensor{rnd(14, 2, 3, 5), rnd(15, 2, 7, 5)}},
		{2, []*tensor.Tensor{rnd(16, 2, 3, 5), rnd(17, 2, 3, 1), rnd(18, 2, 3, 4).Narrow(2, 0, 4)}},
		{-1, []*tensor.Tensor{rnd(19, 5, 2, 3).Permute(1, 2, 0), rnd(20, 2, 3, 2)}},
		{1, []*tensor.Tensor{rnd(21, 2, 0, 3), rnd(22, 2, 2, 3)}},
	} {
		d := c.dim
		if d < 0 {
			d += 3
		}
		shape := c.ts[0].Shape()
		shape[d] = 0
		for _, x := range c.ts {
			shape[d] += x.Dim(d)
		}
		var vals [][]float64
		for _, x := range c.ts {
			vals = append(vals, logical(x))
		}
		var want []float64
		forEach(shape, func(idx []int) {
			p := idx[d]
			for k, x := range c.ts {
				if p < x.Dim(d) {
					si := slices.Clone(idx)
					si[d] = p
					xs := x.Shape()
					want = append(want, vals[k][(si[0]*xs[1]+si[1])*xs[2]+si[2]])
					return
				}
				p -= x.Dim(d)
			}
		})
		check(t, fmt.Sprintf("concat/dim%d", c.dim), tensor.Concat(c.dim, c.ts...), shape, want, nil, 0)
	}
}

// TestReducedPrecisionActivations runs every op whose result takes the
// input's dtype on F16 and BF16 inputs. The CPU kernels compute in F32 only;
// where they do not support a dtype they must fail the op with an error
// (carried by the result, as the tensor package documents for backend
// failures), never panic: a panic that is not a *tensor.ShapeError escapes
// tensor.Catch and takes the program down. Where an op succeeds, the result
// must match the F32 computation rounded to the dtype.
func TestReducedPrecisionActivations(t *testing.T) { kernelSets(t, testReducedPrecisionActivations) }

func testReducedPrecisionActivations(t *testing.T) {
	for _, dt := range []tensor.DType{tensor.F16, tensor.BF16} {
		for _, c := range []struct {
			name string
			op   func(x2, x4 *tensor.Tensor) *tensor.Tensor // x2 (3, 8), x4 (1, 2, 4, 6)
		}{
			{"unary", func(x2, _ *tensor.Tensor) *tensor.Tensor { return tensor.SiLU(x2) }},
			{"binary", func(x2, _ *tensor.Tensor) *tensor.Tensor { return tensor.Add(x2, x2) }},
			{"matmul", func(x2, _ *tensor.Tensor) *tensor.Tensor { return tensor.MatMul(x2, x2.T()) }},
			{"layernorm", func(x2, _ *tensor.Tensor) *tensor.Tensor { return tensor.LayerNorm(x2, rnd(3, 8), nil, 1e-5) }},
			{"groupnorm", func(_, x4 *tensor.Tensor) *tensor.Tensor {
				return tensor.GroupNorm(x4, 2, rnd(4, 2), rnd(5, 2), 1e-5, false)
			}},
			{"softmax", func(x2, _ *tensor.Tensor) *tensor.Tensor { return tensor.Softmax(x2) }},
			{"attention", func(x2, _ *tensor.Tensor) *tensor.Tensor {
				q := x2.Reshape(1, 1, 3, 8)
				return tensor.Attention(q, q, q, nil, 0.5, false)
			}},
			{"conv2d", func(_, x4 *tensor.Tensor) *tensor.Tensor { return tensor.Conv2d(x4, rnd(6, 3, 2, 3, 3), nil, 1, 1) }},
			{"avgpool2d", func(_, x4 *tensor.Tensor) *tensor.Tensor { return tensor.AvgPool2d(x4, 2) }},
			{"upsample-nearest", func(_, x4 *tensor.Tensor) *tensor.Tensor { return tensor.UpsampleNearest(x4, 2) }},
			{"upsample-bicubic", func(_, x4 *tensor.Tensor) *tensor.Tensor { return tensor.UpsampleBicubic(x4, 7, 9) }},
		} {
			t.Run(fmt.Sprintf("%v/%s", dt, c.name), func(t *testing.T) {
				x2, x4 := rnd(1, 3, 8).Cast(dt), rnd(2, 1, 2, 4, 6).Cast(dt)
				var out *tensor.Tensor
				var panicked any
				func() {
					defer func() { panicked = recover() }()
					out = c.op(x2, x4)
				}()
				if panicked != nil {
					t.Fatalf("the CPU backend panicked (%v) instead of failing the op with an error", panicked)
				}
				if out.Err() != nil {
					return // an unsupported dtype, reported as the package documents
				}
				// Supported: the result is the F32 computation rounded to dt.
				ref := c.op(x2.Cast(tensor.F32), x4.Cast(tensor.F32)).Cast(dt)
				check(t, "result", out, ref.Shape(), logical(ref), nil, 1e-2)
			})
		}
	}
}

// TestSetThreads checks the worker-count setting itself.
func TestSetThreads(t *testing.T) {
	defer cpu.SetThreads(0)
	cpu.SetThreads(5)
	if cpu.Threads() != 5 {
		t.Errorf("Threads() = %d after SetThreads(5)", cpu.Threads())
	}
	cpu.SetThreads(0)
	if cpu.Threads() < 1 {
		t.Errorf("Threads() = %d with the default", cpu.Threads())
	}
}
