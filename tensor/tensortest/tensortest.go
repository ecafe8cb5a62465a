// Package tensortest is the backend conformance suite: one table of op cases
// (every op of package tensor, with broadcast, strided and permuted operands
// and odd sizes) that runs on a backend and on the CPU reference and compares
// the results, in the manner of ggml's test-backend-ops and gonum's testblas.
//
// It is imported only by tests, which must also link the CPU reference
// backend (it does not import it, so that package cpu's own tests may use
// it without an import cycle):
//
//	import _ "github.com/unclip-go/unclip/kernels/cpu"
//
//	func TestConformance(t *testing.T) {
//		tensortest.Conformance(t, myBackend, 1e-4)
//	}
//
// ConformanceF16 (and ConformanceDType for BF16) runs a second table with
// 16-bit operands and results against the reference's float32-then-round-
// once semantics, within 2 ulps of the 16-bit type plus an absolute term.
//
// Every case is tiny (the largest is well under 10 MFLOP) so that the suite
// also runs on a software Vulkan device.
package tensortest

import (
	"fmt"
	"math"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/unclip-go/unclip/tensor"
)

// Rand returns a CPU F32 tensor of the given shape filled with values
// uniform in [−1, 1), from a small PRNG (splitmix64) seeded with seed: the
// same seed and shape give the same tensor on every platform.
func Rand(seed uint64, shape ...int) *tensor.Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	s := seed*0x9e3779b97f4a7c15 + 0x632be59bd9b4e5
	for i := range v {
		s += 0x9e3779b97f4a7c15
		z := s
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		z ^= z >> 31
		v[i] = float32(z>>40)/(1<<23) - 1
	}
	return tensor.FromFloat32(v, shape...)
}

// MaxAbsDiff returns the largest |a[i] − b[i]|. NaN matches NaN and an
// infinity matches the same infinity; any other mismatch involving NaN or
// Inf, or a length mismatch, gives +Inf.
func MaxAbsDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var m float64
	for i := range a {
		d := elemDiff(a[i], b[i])
		if d > m || math.IsNaN(d) {
			m = d
		}
	}
	return m
}

func elemDiff(a, b float32) float64 {
	x, y := float64(a), float64(b)
	switch {
	case math.IsNaN(x) || math.IsNaN(y):
		if math.IsNaN(x) && math.IsNaN(y) {
			return 0
		}
		return math.Inf(1)
	case math.IsInf(x, 0) || math.IsInf(y, 0):
		if x == y {
			return 0
		}
		return math.Inf(1)
	}
	return math.Abs(x - y)
}

// opCase is one conformance case. inputs builds fresh CPU tensors (it is
// called once per backend, since some cases write into their inputs); run
// applies the op under test, including any view of the inputs, on whatever
// backend the inputs live on.
type opCase struct {
	name    string
	inputs  func() []*tensor.Tensor
	run     func(x []*tensor.Tensor) *tensor.Tensor
	wantErr bool    // the op must fail on both backends
	tolMul  float64 // multiplies the tolerance (1 when zero)
	// fuseTol is the least tolerance of the graph form when its fused
	// ops round differently from the eager ops (a bias accumulated first).
	fuseTol float64
}

// Conformance runs every op case on backend b and on the CPU reference and
// fails where an element differs by more than tol·(1 + |reference|). Inputs
// are made on the CPU and moved with To(b); results are read back with
// Float32s (or Bytes for integer results). With tol 0 the results must be
// identical.
func Conformance(t *testing.T, b tensor.Backend, tol float64) {
	t.Helper()
	conform(t, b, tol, false, runCase)
}

// conform runs every case (but those expected to fail, with noErrCases)
// eagerly on the CPU reference and with run on b, and compares.
func conform(t *testing.T, b tensor.Backend, tol float64, noErrCases bool, run func(opCase, tensor.Backend) (*tensor.Tensor, error)) {
	t.Helper()
	ref := tensor.CPU()
	for _, c := range cases() {
		if noErrCases && c.wantErr {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			want, err := runCase(c, ref)
			if err != nil {
				t.Fatalf("on the CPU reference: %v", err)
			}
			got, err := run(c, b)
			if err != nil {
				t.Fatalf("on %s: %v", b.Name(), err)
			}
			ctol := tol
			if c.tolMul != 0 {
				ctol *= c.tolMul
			}
			if noErrCases {
				ctol = max(ctol, c.fuseTol)
			}
			compare(t, b, c, want, got, ctol)
		})
	}
}

// runCase builds the inputs, moves them to b and runs the case, turning any
// panic into an error.
func runCase(c opCase, b tensor.Backend) (out *tensor.Tensor, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	in := c.inputs()
	for i, x := range in {
		in[i] = x.To(b)
		if e := in[i].Err(); e != nil {
			return nil, fmt.Errorf("input %d to %s: %w", i, b.Name(), e)
		}
	}
	err = tensor.Catch(func() error {
		out = c.run(in)
		return nil
	})
	return out, err
}

type readout struct {
	f   []float32
	raw []byte
	err error
}

func read(x *tensor.Tensor) (r readout) {
	defer func() {
		if p := recover(); p != nil {
			r.err = fmt.Errorf("panic while reading %v: %v\n%s", x, p, debug.Stack())
		}
	}()
	if x.DType().IsFloat() {
		r.f, r.err = x.Float32s()
	} else {
		r.raw, r.err = x.Bytes()
	}
	return r
}

func compare(t *testing.T, b tensor.Backend, c opCase, want, got *tensor.Tensor, tol float64) {
	t.Helper()
	rw, rg := read(want), read(got)
	if c.wantErr {
		if rw.err == nil {
			t.Fatalf("the CPU reference did not fail")
		}
		if rg.err == nil {
			t.Fatalf("%s did not fail; the CPU reference failed with %v", b.Name(), rw.err)
		}
		return
	}
	if rw.err != nil {
		t.Fatalf("reading the CPU reference: %v", rw.err)
	}
	if rg.err != nil {
		t.Fatalf("reading the %s result: %v", b.Name(), rg.err)
	}
	if !slices.Equal(want.Shape(), got.Shape()) || want.DType() != got.DType() {
		t.Fatalf("result %v%v, want %v%v", got.DType(), got.Shape(), want.DType(), want.Shape())
	}
	if got.Backend() != b {
		t.Errorf("result lives on %s, want %s", got.Backend().Name(), b.Name())
	}
	if rw.raw != nil || rg.raw != nil {
		if !slices.Equal(rw.raw, rg.raw) {
			t.Errorf("%v result bytes differ", want.DType())
		}
		return
	}
	if len(rw.f) != len(rg.f) {
		t.Fatalf("%d values, want %d", len(rg.f), len(rw.f))
	}
	bad, worst, worstAt := 0, 0.0, -1
	for i := range rw.f {
		d := elemDiff(rw.f[i], rg.f[i])
		if d > tol*(1+math.Abs(float64(rw.f[i]))) || math.IsNaN(d) {
			if bad++; bad <= 5 {
				t.Errorf("at %v: got %v, want %v", unflat(want.Shape(), i), rg.f[i], rw.f[i])
			}
		}
		if d > worst {
			worst, worstAt = d, i
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d elements differ; max abs diff %g at %v (tol %g)", bad, len(rw.f), worst, unflat(want.Shape(), worstAt), tol)
	}
}

func unflat(shape []int, i int) []int {
	idx := make([]int, len(shape))
	for d := len(shape) - 1; d >= 0 && i >= 0; d-- {
		if shape[d] > 0 {
			idx[d] = i % shape[d]
			i /= shape[d]
		}
	}
	return idx
}

// ---- input helpers ----

// randIn is Rand mapped to [lo, hi).
func randIn(seed uint64, lo, hi float32, shape ...int) *tensor.Tensor {
	v := Rand(seed, shape...).MustFloat32s()
	for i := range v {
		v[i] = lo + (v[i]+1)/2*(hi-lo)
	}
	return tensor.FromFloat32(v, shape...)
}

// withValues returns Rand(seed, shape) with the given flat positions set.
func withValues(seed uint64, set map[int]float32, shape ...int) *tensor.Tensor {
	v := Rand(seed, shape...).MustFloat32s()
	for i, x := range set {
		v[i] = x
	}
	return tensor.FromFloat32(v, shape...)
}

func ids64(v []int64, shape ...int) *tensor.Tensor {
	return tensor.FromInt64(slices.Clone(v), shape...)
}

func ids32(v []int32, shape ...int) *tensor.Tensor {
	b := tensor.HostBytes(4 * len(v))
	if len(v) > 0 {
		copy(b, unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v)))
	}
	return tensor.FromBytes(tensor.I32, b, shape...)
}

func in(ts ...func() *tensor.Tensor) func() []*tensor.Tensor {
	return func() []*tensor.Tensor {
		out := make([]*tensor.Tensor, len(ts))
		for i, f := range ts {
			out[i] = f()
		}
		return out
	}
}

// r is a deferred Rand.
func r(seed uint64, shape ...int) func() *tensor.Tensor {
	return func() *tensor.Tensor { return Rand(seed, shape...) }
}

// rc is a deferred Rand cast to dt on the CPU.
func rc(dt tensor.DType, seed uint64, shape ...int) func() *tensor.Tensor {
	return func() *tensor.Tensor { return Rand(seed, shape...).Cast(dt) }
}

// ri is a deferred randIn.
func ri(seed uint64, lo, hi float32, shape ...int) func() *tensor.Tensor {
	return func() *tensor.Tensor { return randIn(seed, lo, hi, shape...) }
}

func fixed(t *tensor.Tensor) func() *tensor.Tensor {
	return func() *tensor.Tensor {
		b, err := t.Bytes()
		if err != nil {
			panic(err)
		}
		return tensor.FromBytes(t.DType(), b, t.Shape()...)
	}
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

type ts = []*tensor.Tensor

// specials are float32 values that exercise casts: the f16 and bf16 range
// limits, exact ties, subnormals, signed zeros, infinities and NaN.
func specials() *tensor.Tensor {
	p := func(e int) float32 { return float32(math.Ldexp(1, e)) }
	inf := float32(math.Inf(1))
	v := []float32{
		0, float32(math.Copysign(0, -1)), 1, -1, 0.1, -1.0 / 3, 65504, 65519.99, 65520, -65520, 1e5, -1e5,
		p(-24), p(-25), math.Nextafter32(p(-25), 1), 3 * p(-25), p(-14), p(-14) - p(-25), 1e-9,
		1 + p(-11), 1 + 3*p(-11), math.Nextafter32(1+p(-11), 2),
		math.Float32frombits(0x3f808000), math.Float32frombits(0x3f818000), math.Float32frombits(0x3f808001),
		math.Float32frombits(0x7f7f8000), math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32,
		inf, -inf, float32(math.NaN()), math.Float32frombits(0x7f800001), math.Float32frombits(0xff800001),
		3.14159, -2.71828,
	}
	return tensor.FromFloat32(v, len(v))
}

// ---- the cases ----

func cases() []opCase {
	var cs []opCase
	add := func(c ...opCase) { cs = append(cs, c...) }
	F16, BF16, F32 := tensor.F16, tensor.BF16, tensor.F32

	// casts and copies
	for _, c := range []struct {
		from, to tensor.DType
	}{{F32, F16}, {F32, BF16}, {F16, F32}, {BF16, F32}, {F16, BF16}, {BF16, F16}, {F16, F16}} {
		add(opCase{
			name:   fmt.Sprintf("cast/%v-%v", c.from, c.to),
			inputs: in(rc(c.from, 1, 7, 33)),
			run:    func(x ts) *tensor.Tensor { return x[0].Cast(c.to) },
		})
	}
	for _, dt := range []tensor.DType{F16, BF16} {
		add(opCase{
			name:   fmt.Sprintf("cast/F32-%v-specials", dt),
			inputs: in(func() *tensor.Tensor { return specials() }),
			run:    func(x ts) *tensor.Tensor { return x[0].Cast(dt) },
		}, opCase{
			name:   fmt.Sprintf("cast/F32-%v-permuted", dt),
			inputs: in(r(2, 5, 3, 7)),
			run:    func(x ts) *tensor.Tensor { return x[0].Permute(2, 0, 1).Cast(dt) },
		}, opCase{
			name:   fmt.Sprintf("cast/%v-F32-transposed", dt),
			inputs: in(rc(dt, 3, 9, 4)),
			run:    func(x ts) *tensor.Tensor { return x[0].T().Cast(F32) },
		})
	}
	add(
		opCase{name: "contiguous/permuted", inputs: in(r(4, 3, 5, 7)),
			run: func(x ts) *tensor.Tensor { return x[0].Permute(2, 0, 1).Contiguous() }},
		opCase{name: "contiguous/permuted-4d", inputs: in(r(5, 2, 3, 5, 4)),
			run: func(x ts) *tensor.Tensor { return x[0].Permute(0, 2, 1, 3).Contiguous() }},
		opCase{name: "contiguous/transposed", inputs: in(r(6, 33, 7)),
			run: func(x ts) *tensor.Tensor { return x[0].T().Contiguous() }},
		opCase{name: "contiguous/narrowed", inputs: in(r(7, 4, 9, 5)),
			run: func(x ts) *tensor.Tensor { return x[0].Narrow(1, 2, 5).Narrow(2, 1, 3).Contiguous() }},
		opCase{name: "contiguous/expanded", inputs: in(r(8, 3, 1, 5)),
			run: func(x ts) *tensor.Tensor { return x[0].Expand(2, 3, 4, 5).Contiguous() }},
		opCase{name: "contiguous/permuted-narrowed-expanded", inputs: in(r(9, 5, 1, 7)),
			run: func(x ts) *tensor.Tensor { return x[0].Permute(2, 1, 0).Narrow(0, 1, 5).Expand(5, 3, 5).Contiguous() }},
		opCase{name: "contiguous/F16-transposed", inputs: in(rc(F16, 10, 7, 9)),
			run: func(x ts) *tensor.Tensor { return x[0].T().Contiguous() }},
		opCase{name: "contiguous/BF16-narrowed", inputs: in(rc(BF16, 11, 7, 9)),
			run: func(x ts) *tensor.Tensor { return x[0].Narrow(1, 3, 5).Contiguous() }},
		opCase{name: "contiguous/I64-transposed", inputs: in(func() *tensor.Tensor { return ids64([]int64{1, -2, 3, 4, 5, 1 << 40}, 2, 3) }),
			run: func(x ts) *tensor.Tensor { return x[0].T().Contiguous() }},
		opCase{name: "contiguous/I32-permuted", inputs: in(func() *tensor.Tensor { return ids32([]int32{1, -2, 3, 4, 5, 6, 7, 8}, 2, 2, 2) }),
			run: func(x ts) *tensor.Tensor { return x[0].Permute(2, 0, 1).Contiguous() }},
	)

	// CopyInto a view of a larger tensor; the result is the whole tensor.
	add(
		opCase{name: "copyinto/narrowed", inputs: in(r(12, 5, 9), r(13, 5, 4)),
			run: func(x ts) *tensor.Tensor { must(tensor.CopyInto(x[0].Narrow(1, 3, 4), x[1])); return x[0] }},
		opCase{name: "copyinto/narrowed-rows", inputs: in(r(14, 7, 6), r(15, 2, 6)),
			run: func(x ts) *tensor.Tensor { must(tensor.CopyInto(x[0].Narrow(0, 4, 2), x[1])); return x[0] }},
		opCase{name: "copyinto/broadcast", inputs: in(r(16, 5, 9), r(17, 1, 4)),
			run: func(x ts) *tensor.Tensor { must(tensor.CopyInto(x[0].Narrow(1, 2, 4), x[1])); return x[0] }},
		opCase{name: "copyinto/transposed-dst", inputs: in(r(18, 6, 5), r(19, 5, 3)),
			run: func(x ts) *tensor.Tensor { must(tensor.CopyInto(x[0].T().Narrow(1, 1, 3), x[1])); return x[0] }},
		opCase{name: "copyinto/F32-into-F16", inputs: in(rc(F16, 20, 4, 8), r(21, 4, 3)),
			run: func(x ts) *tensor.Tensor { must(tensor.CopyInto(x[0].Narrow(1, 5, 3), x[1])); return x[0] }},
		opCase{name: "copyinto/BF16-into-F32", inputs: in(r(22, 3, 2, 7), rc(BF16, 23, 3, 2, 2)),
			run: func(x ts) *tensor.Tensor { must(tensor.CopyInto(x[0].Narrow(2, 0, 2), x[1])); return x[0] }},
	)

	// Concat
	add(
		opCase{name: "concat/dim0", inputs: in(r(24, 2, 3, 5), r(25, 1, 3, 5), r(26, 4, 3, 5)),
			run: func(x ts) *tensor.Tensor { return tensor.Concat(0, x...) }},
		opCase{name: "concat/dim1", inputs: in(r(27, 2, 3, 5), r(28, 2, 7, 5)),
			run: func(x ts) *tensor.Tensor { return tensor.Concat(1, x...) }},
		opCase{name: "concat/dim-1", inputs: in(r(29, 2, 3, 5), r(30, 2, 3, 1), r(31, 2, 3, 4)),
			run: func(x ts) *tensor.Tensor { return tensor.Concat(-1, x...) }},
		opCase{name: "concat/permuted-input", inputs: in(r(32, 5, 2, 3), r(33, 2, 3, 2)),
			run: func(x ts) *tensor.Tensor { return tensor.Concat(2, x[0].Permute(1, 2, 0), x[1]) }},
		opCase{name: "concat/F16", inputs: in(rc(F16, 34, 3, 4), rc(F16, 35, 3, 2)),
			run: func(x ts) *tensor.Tensor { return tensor.Concat(1, x...) }},
		opCase{name: "concat/I64", inputs: in(func() *tensor.Tensor { return ids64([]int64{1, 2, 3}, 1, 3) }, func() *tensor.Tensor { return ids64([]int64{4, 5, 6, 7, 8, 9}, 2, 3) }),
			run: func(x ts) *tensor.Tensor { return tensor.Concat(0, x...) }},
	)

	// unary
	unaries := []struct {
		name string
		f    func(*tensor.Tensor) *tensor.Tensor
	}{
		{"silu", tensor.SiLU},
		{"gelu", tensor.GELU},
		{"quickgelu", tensor.QuickGELU},
		{"sigmoid", tensor.Sigmoid},
		{"exp", tensor.Exp},
		{"neg", tensor.Neg},
		{"affine", func(x *tensor.Tensor) *tensor.Tensor { return tensor.Affine(x, 1.5, -0.25) }},
		{"scale", func(x *tensor.Tensor) *tensor.Tensor { return tensor.Scale(x, -0.125) }},
		{"clamp", func(x *tensor.Tensor) *tensor.Tensor { return tensor.Clamp(x, -0.3, 0.5) }},
	}
	for i, u := range unaries {
		add(opCase{
			name:   "unary/" + u.name,
			inputs: in(ri(uint64(40+i), -6, 6, 3, 7, 11)),
			run:    func(x ts) *tensor.Tensor { return u.f(x[0]) },
		}, opCase{
			name:   "unary/" + u.name + "-transposed",
			inputs: in(ri(uint64(60+i), -4, 4, 2, 33, 5)),
			run:    func(x ts) *tensor.Tensor { return u.f(x[0].T()) },
		})
	}
	add(opCase{name: "unary/gelu-1", inputs: in(r(80, 1)), run: func(x ts) *tensor.Tensor { return tensor.GELU(x[0]) }},
		opCase{name: "unary/silu-expanded", inputs: in(r(81, 1, 7)), run: func(x ts) *tensor.Tensor { return tensor.SiLU(x[0].Expand(3, 7)) }},
		opCase{name: "unary/clamp-specials", inputs: in(func() *tensor.Tensor { return specials().Narrow(0, 0, 30) }),
			run: func(x ts) *tensor.Tensor { return tensor.Clamp(x[0], -1e4, 1e4) }})

	// binary
	binaries := []struct {
		name string
		f    func(a, b *tensor.Tensor) *tensor.Tensor
	}{{"add", tensor.Add}, {"sub", tensor.Sub}, {"mul", tensor.Mul}, {"div", tensor.Div}}
	for i, bn := range binaries {
		s := uint64(100 + 20*i)
		// Divisors stay away from zero.
		den := func(seed uint64, shape ...int) func() *tensor.Tensor {
			if bn.name != "div" {
				return r(seed, shape...)
			}
			return func() *tensor.Tensor {
				v := randIn(seed, 0.5, 2, shape...).MustFloat32s()
				for j := range v {
					if j%2 == 1 {
						v[j] = -v[j]
					}
				}
				return tensor.FromFloat32(v, shape...)
			}
		}
		f := bn.f
		add(
			opCase{name: "binary/" + bn.name + "/same", inputs: in(r(s, 3, 7, 5), den(s+1, 3, 7, 5)),
				run: func(x ts) *tensor.Tensor { return f(x[0], x[1]) }},
			opCase{name: "binary/" + bn.name + "/broadcast", inputs: in(r(s+2, 4, 1, 7), den(s+3, 5, 1)),
				run: func(x ts) *tensor.Tensor { return f(x[0], x[1]) }},
			opCase{name: "binary/" + bn.name + "/scalar-like", inputs: in(r(s+4, 3, 33), den(s+5, 1)),
				run: func(x ts) *tensor.Tensor { return f(x[0], x[1]) }},
			opCase{name: "binary/" + bn.name + "/scalar-first", inputs: in(r(s+6, 1), den(s+7, 2, 9)),
				run: func(x ts) *tensor.Tensor { return f(x[0], x[1]) }},
			opCase{name: "binary/" + bn.name + "/0d", inputs: in(r(s+8, 2, 5), func() *tensor.Tensor { return tensor.Scalar(-1.75) }),
				run: func(x ts) *tensor.Tensor { return f(x[0], x[1]) }},
			opCase{name: "binary/" + bn.name + "/transposed", inputs: in(r(s+9, 7, 5), den(s+10, 5, 7)),
				run: func(x ts) *tensor.Tensor { return f(x[0].T(), x[1]) }},
			opCase{name: "binary/" + bn.name + "/both-strided", inputs: in(r(s+11, 6, 9), den(s+12, 2, 9, 6)),
				run: func(x ts) *tensor.Tensor {
					return f(x[0].Narrow(1, 2, 5).T(), x[1].Narrow(2, 0, 6).Narrow(1, 1, 5).Index(0, 1))
				}},
			opCase{name: "binary/" + bn.name + "/bias-row", inputs: in(r(s+13, 2, 3, 5, 5), den(s+14, 3, 1, 1)),
				run: func(x ts) *tensor.Tensor { return f(x[0], x[1]) }},
			opCase{name: "binary/" + bn.name + "/F16-F32", inputs: in(rc(F16, s+15, 4, 6), den(s+16, 6)),
				run: func(x ts) *tensor.Tensor { return f(x[0], x[1]) }},
		)
	}

	// matmul
	mm := func(name string, a, b func() *tensor.Tensor, f func(a, b *tensor.Tensor) *tensor.Tensor) opCase {
		return opCase{name: "matmul/" + name, inputs: in(a, b), run: func(x ts) *tensor.Tensor { return f(x[0], x[1]) }}
	}
	plain := func(a, b *tensor.Tensor) *tensor.Tensor { return tensor.MatMul(a, b) }
	for _, sz := range [][3]int{{1, 1, 1}, {7, 33, 65}, {65, 7, 1}, {1, 129, 33}, {33, 1, 7}, {129, 65, 33}, {7, 129, 1}} {
		m, k, n := sz[0], sz[1], sz[2]
		seed := uint64(200 + m + 3*k + 7*n)
		add(
			mm(fmt.Sprintf("%dx%dx%d", m, k, n), r(seed, m, k), r(seed+1, k, n), plain),
			mm(fmt.Sprintf("%dx%dx%d/aT", m, k, n), r(seed+2, k, m), r(seed+3, k, n),
				func(a, b *tensor.Tensor) *tensor.Tensor { return tensor.MatMul(a.T(), b) }),
			mm(fmt.Sprintf("%dx%dx%d/bT", m, k, n), r(seed+4, m, k), r(seed+5, n, k),
				func(a, b *tensor.Tensor) *tensor.Tensor { return tensor.MatMul(a, b.T()) }),
			mm(fmt.Sprintf("%dx%dx%d/aT-bT", m, k, n), r(seed+6, k, m), r(seed+7, n, k),
				func(a, b *tensor.Tensor) *tensor.Tensor { return tensor.MatMul(a.T(), b.T()) }),
		)
	}
	add(
		mm("batched", r(300, 3, 7, 33), r(301, 3, 33, 5), plain),
		mm("batched-bT", r(302, 2, 7, 33), r(303, 2, 5, 33), func(a, b *tensor.Tensor) *tensor.Tensor { return tensor.MatMul(a, b.T()) }),
		mm("broadcast-batch", r(304, 3, 1, 7, 5), r(305, 4, 5, 9), plain),
		mm("broadcast-2d-b", r(306, 2, 3, 7, 9), r(307, 9, 4), plain),
		mm("broadcast-2d-a", r(308, 7, 9), r(309, 2, 9, 4), plain),
		mm("broadcast-batch-bT", r(310, 2, 1, 5, 33), r(311, 3, 7, 33), func(a, b *tensor.Tensor) *tensor.Tensor { return tensor.MatMul(a, b.T()) }),
		mm("b-narrowed-columns", r(312, 7, 9), r(313, 9, 12), func(a, b *tensor.Tensor) *tensor.Tensor { return tensor.MatMul(a, b.Narrow(1, 2, 7)) }),
		mm("b-expanded-rows", r(314, 7, 9), r(315, 1, 5), func(a, b *tensor.Tensor) *tensor.Tensor { return tensor.MatMul(a, b.Expand(9, 5)) }),
		mm("a-expanded-rows", r(316, 1, 9), r(317, 9, 5), func(a, b *tensor.Tensor) *tensor.Tensor { return tensor.MatMul(a.Expand(4, 9), b) }),
		mm("permuted-heads", r(318, 2, 5, 3, 4), r(319, 2, 7, 3, 4), func(a, b *tensor.Tensor) *tensor.Tensor {
			return tensor.MatMul(a.Permute(0, 2, 1, 3), b.Permute(0, 2, 3, 1)) // (B,H,Lq,D)·(B,H,D,Lk)
		}),
		mm("F16-weight", r(320, 5, 33), rc(F16, 321, 33, 7), plain),
	)
	lin := func(name string, x, w, b func() *tensor.Tensor) opCase {
		ins := []func() *tensor.Tensor{x, w}
		if b != nil {
			ins = append(ins, b)
		}
		return opCase{name: "linear/" + name, inputs: in(ins...), run: func(v ts) *tensor.Tensor {
			var bias *tensor.Tensor
			if len(v) > 2 {
				bias = v[2]
			}
			return tensor.Linear(v[0], v[1], bias)
		}}
	}
	add(
		lin("bias", r(330, 2, 3, 33), r(331, 17, 33), r(332, 17)),
		lin("nobias", r(333, 5, 7), r(334, 65, 7), nil),
		lin("F16-weight", r(335, 3, 33), rc(F16, 336, 9, 33), r(337, 9)),
		lin("BF16-weight", r(338, 3, 33), rc(BF16, 339, 9, 33), r(340, 9)),
		lin("F16-weight-F16-bias", r(341, 2, 2, 16), rc(F16, 342, 7, 16), rc(F16, 343, 7)),
		lin("1x1", r(344, 1), r(345, 1, 1), r(346, 1)),
		lin("K1", r(347, 4, 1), r(348, 5, 1), r(349, 5)),
		opCase{name: "linear/permuted-input", inputs: in(r(350, 7, 3, 9), r(351, 5, 9), r(352, 5)),
			run: func(v ts) *tensor.Tensor { return tensor.Linear(v[0].Permute(1, 0, 2), v[1], v[2]) }},
	)

	// normalisation
	add(
		opCase{name: "layernorm/bias", inputs: in(r(400, 3, 7, 33), r(401, 33), r(402, 33)),
			run: func(x ts) *tensor.Tensor { return tensor.LayerNorm(x[0], x[1], x[2], 1e-5) }},
		opCase{name: "layernorm/nobias", inputs: in(r(403, 5, 65), r(404, 65)),
			run: func(x ts) *tensor.Tensor { return tensor.LayerNorm(x[0], x[1], nil, 1e-5) }},
		opCase{name: "layernorm/permuted", inputs: in(r(405, 9, 4, 3), r(406, 4), r(407, 4)),
			run: func(x ts) *tensor.Tensor { return tensor.LayerNorm(x[0].Permute(2, 0, 1), x[1], x[2], 1e-6) }},
		opCase{name: "layernorm/C1", inputs: in(r(408, 6, 1), r(409, 1), r(410, 1)),
			run: func(x ts) *tensor.Tensor { return tensor.LayerNorm(x[0], x[1], x[2], 1e-5) }},
		opCase{name: "layernorm/offset-large-eps", inputs: in(ri(411, 99, 101, 4, 7), r(412, 7), r(413, 7)),
			run: func(x ts) *tensor.Tensor { return tensor.LayerNorm(x[0], x[1], x[2], 0.1) }, tolMul: 4},
		opCase{name: "layernorm/F16-params", inputs: in(r(414, 3, 8), rc(F16, 415, 8), rc(F16, 416, 8)),
			run: func(x ts) *tensor.Tensor { return tensor.LayerNorm(x[0], x[1], x[2], 1e-5) }},
	)
	for _, silu := range []bool{false, true} {
		sfx := ""
		if silu {
			sfx = "-silu"
		}
		add(
			opCase{name: "groupnorm/NCHW" + sfx, inputs: in(r(420, 2, 64, 3, 5), r(421, 64), r(422, 64)),
				run: func(x ts) *tensor.Tensor { return tensor.GroupNorm(x[0], 32, x[1], x[2], 1e-5, silu) }},
			opCase{name: "groupnorm/NC" + sfx, inputs: in(r(423, 3, 64), r(424, 64), r(425, 64)),
				run: func(x ts) *tensor.Tensor { return tensor.GroupNorm(x[0], 32, x[1], x[2], 1e-5, silu) }},
			opCase{name: "groupnorm/NC-one-per-group" + sfx, inputs: in(r(426, 2, 32), r(427, 32), r(428, 32)),
				run: func(x ts) *tensor.Tensor { return tensor.GroupNorm(x[0], 32, x[1], x[2], 1e-5, silu) }},
			opCase{name: "groupnorm/NCL" + sfx, inputs: in(r(429, 1, 96, 7), r(430, 96), r(431, 96)),
				run: func(x ts) *tensor.Tensor { return tensor.GroupNorm(x[0], 32, x[1], x[2], 1e-6, silu) }},
			opCase{name: "groupnorm/permuted" + sfx, inputs: in(r(432, 2, 3, 5, 32), r(433, 32), r(434, 32)),
				run: func(x ts) *tensor.Tensor {
					return tensor.GroupNorm(x[0].Permute(0, 3, 1, 2), 32, x[1], x[2], 1e-5, silu)
				}},
			opCase{name: "groupnorm/4groups" + sfx, inputs: in(r(435, 2, 12, 3, 3), r(436, 12), r(437, 12)),
				run: func(x ts) *tensor.Tensor { return tensor.GroupNorm(x[0], 4, x[1], x[2], 1e-5, silu) }},
		)
	}

	// softmax
	ninf := float32(math.Inf(-1))
	add(
		opCase{name: "softmax/plain", inputs: in(ri(450, -8, 8, 5, 33)),
			run: func(x ts) *tensor.Tensor { return tensor.Softmax(x[0]) }},
		opCase{name: "softmax/long-row", inputs: in(ri(451, -20, 20, 2, 257)),
			run: func(x ts) *tensor.Tensor { return tensor.Softmax(x[0]) }},
		opCase{name: "softmax/len1", inputs: in(r(452, 4, 1)),
			run: func(x ts) *tensor.Tensor { return tensor.Softmax(x[0]) }},
		opCase{name: "softmax/neg-inf", inputs: in(func() *tensor.Tensor {
			// row 0: some −Inf; row 1: all −Inf (gives zeros); row 2: one finite
			set := map[int]float32{0: ninf, 3: ninf, 6: ninf, 2: 50}
			for j := 7; j < 21; j++ {
				if j != 18 {
					set[j] = ninf
				}
			}
			return withValues(453, set, 3, 7)
		}), run: func(x ts) *tensor.Tensor { return tensor.Softmax(x[0]) }},
		opCase{name: "softmax/permuted", inputs: in(r(454, 7, 3, 5)),
			run: func(x ts) *tensor.Tensor { return tensor.Softmax(x[0].Permute(1, 2, 0)) }},
	)

	// attention
	att := func(name string, causal bool, biasShape []int, qkv func(x ts) (q, k, v *tensor.Tensor), inputs ...func() *tensor.Tensor) opCase {
		if biasShape != nil {
			inputs = append(inputs, func() *tensor.Tensor {
				// A bias with a few −Inf entries, as a key-padding mask has.
				b := Rand(470, biasShape...).MustFloat32s()
				for i := 3; i < len(b); i += 5 {
					b[i] = ninf
				}
				return tensor.FromFloat32(b, biasShape...)
			})
		}
		return opCase{name: "attention/" + name, inputs: in(inputs...), run: func(x ts) *tensor.Tensor {
			q, k, v := qkv(x)
			var bias *tensor.Tensor
			if biasShape != nil {
				bias = x[len(x)-1]
			}
			return tensor.Attention(q, k, v, bias, float32(1/math.Sqrt(float64(q.Dim(3)))), causal)
		}}
	}
	direct := func(x ts) (q, k, v *tensor.Tensor) { return x[0], x[1], x[2] }
	// q/k/v as (B, L, H, D) tensors permuted to (B, H, L, D)
	permuted := func(x ts) (q, k, v *tensor.Tensor) {
		return x[0].Permute(0, 2, 1, 3), x[1].Permute(0, 2, 1, 3), x[2].Permute(0, 2, 1, 3)
	}
	// one packed (B, L, 3·H·D) projection split into q, k, v
	packed := func(x ts) (q, k, v *tensor.Tensor) {
		p := x[0].Reshape(2, 5, 3, 3, 8) // (B, L, 3, H, D)
		return p.Index(2, 0).Permute(0, 2, 1, 3), p.Index(2, 1).Permute(0, 2, 1, 3), p.Index(2, 2).Permute(0, 2, 1, 3)
	}
	qkvIn := func(s uint64, b, h, lq, lk, d, dv int) []func() *tensor.Tensor {
		return []func() *tensor.Tensor{ri(s, -2, 2, b, h, lq, d), ri(s+1, -2, 2, b, h, lk, d), r(s+2, b, h, lk, dv)}
	}
	add(
		att("plain", false, nil, direct, qkvIn(480, 2, 3, 5, 5, 8, 8)...),
		att("causal", true, nil, direct, qkvIn(483, 2, 3, 6, 6, 8, 8)...),
		att("lq-ne-lk", false, nil, direct, qkvIn(486, 2, 3, 5, 7, 8, 6)...),
		att("causal-lq-lt-lk", true, nil, direct, qkvIn(489, 1, 2, 5, 9, 4, 6)...),
		att("causal-lq-gt-lk", true, nil, direct, qkvIn(492, 1, 2, 9, 5, 4, 3)...),
		att("bias-broadcast", false, []int{2, 1, 1, 7}, direct, qkvIn(495, 2, 3, 5, 7, 8, 6)...),
		att("bias-full", false, []int{2, 3, 5, 7}, direct, qkvIn(498, 2, 3, 5, 7, 8, 6)...),
		att("bias-causal", true, []int{2, 1, 5, 5}, direct, qkvIn(501, 2, 3, 5, 5, 8, 8)...),
		att("lq1", false, []int{1, 1, 1, 33}, direct, qkvIn(504, 1, 4, 1, 33, 16, 16)...),
		att("lk1", false, nil, direct, qkvIn(507, 1, 2, 7, 1, 4, 5)...),
		att("permuted-BLHD", false, nil, permuted, ri(510, -2, 2, 2, 5, 3, 8), ri(511, -2, 2, 2, 7, 3, 8), r(512, 2, 7, 3, 6)),
		att("permuted-BLHD-causal-bias", true, []int{2, 1, 1, 7}, permuted, ri(513, -2, 2, 2, 7, 3, 8), ri(514, -2, 2, 2, 7, 3, 8), r(515, 2, 7, 3, 8)),
		att("packed-qkv", true, nil, packed, ri(516, -2, 2, 2, 5, 72)),
		opCase{name: "attention/all-masked-row", inputs: in(ri(517, -2, 2, 1, 2, 3, 4), ri(518, -2, 2, 1, 2, 5, 4), r(519, 1, 2, 5, 4), func() *tensor.Tensor {
			b := make([]float32, 3*5)
			for j := 5; j < 10; j++ {
				b[j] = ninf // query 1 sees no key: its output is zero
			}
			b[12] = ninf
			return tensor.FromFloat32(b, 1, 1, 3, 5)
		}), run: func(x ts) *tensor.Tensor { return tensor.Attention(x[0], x[1], x[2], x[3], 0.5, false) }},
	)

	// embedding
	add(
		opCase{name: "embedding/I64", inputs: in(r(530, 11, 7), func() *tensor.Tensor { return ids64([]int64{0, 10, 3, 3, 7, 1}, 2, 3) }),
			run: func(x ts) *tensor.Tensor { return tensor.Embedding(x[0], x[1]) }},
		opCase{name: "embedding/I32", inputs: in(r(531, 11, 7), func() *tensor.Tensor { return ids32([]int32{5, 0, 10, 2}, 4) }),
			run: func(x ts) *tensor.Tensor { return tensor.Embedding(x[0], x[1]) }},
		opCase{name: "embedding/F16-table", inputs: in(rc(F16, 532, 13, 5), func() *tensor.Tensor { return ids64([]int64{12, 0, 6}, 3) }),
			run: func(x ts) *tensor.Tensor { return tensor.Embedding(x[0], x[1]) }},
		opCase{name: "embedding/BF16-table-I32", inputs: in(rc(BF16, 533, 13, 5), func() *tensor.Tensor { return ids32([]int32{1, 12}, 1, 2) }),
			run: func(x ts) *tensor.Tensor { return tensor.Embedding(x[0], x[1]) }},
		opCase{name: "embedding/transposed-ids", inputs: in(r(534, 9, 3), func() *tensor.Tensor { return ids64([]int64{0, 1, 2, 3, 4, 5, 6, 7}, 2, 4) }),
			run: func(x ts) *tensor.Tensor { return tensor.Embedding(x[0], x[1].T()) }},
		opCase{name: "embedding/out-of-range", inputs: in(r(535, 11, 7), func() *tensor.Tensor { return ids64([]int64{0, 11}, 2) }),
			run: func(x ts) *tensor.Tensor { return tensor.Embedding(x[0], x[1]) }, wantErr: true},
		opCase{name: "embedding/negative-id", inputs: in(r(536, 11, 7), func() *tensor.Tensor { return ids32([]int32{-1}, 1) }),
			run: func(x ts) *tensor.Tensor { return tensor.Embedding(x[0], x[1]) }, wantErr: true},
	)

	// convolution
	conv := func(name string, x, w, b func() *tensor.Tensor, stride, pad int) opCase {
		ins := []func() *tensor.Tensor{x, w}
		if b != nil {
			ins = append(ins, b)
		}
		return opCase{name: "conv2d/" + name, inputs: in(ins...), run: func(v ts) *tensor.Tensor {
			var bias *tensor.Tensor
			if len(v) > 2 {
				bias = v[2]
			}
			return tensor.Conv2d(v[0], v[1], bias, stride, pad)
		}}
	}
	add(
		conv("3x3-pad1-bias", r(550, 2, 3, 7, 9), r(551, 4, 3, 3, 3), r(552, 4), 1, 1),
		conv("3x3-pad1-nobias", r(553, 1, 5, 6, 6), r(554, 3, 5, 3, 3), nil, 1, 1),
		conv("3x3-pad0", r(555, 1, 2, 7, 9), r(556, 3, 2, 3, 3), r(557, 3), 1, 0),
		conv("1x1", r(558, 2, 8, 5, 3), r(559, 6, 8, 1, 1), r(560, 6), 1, 0),
		conv("1x1-nobias", r(561, 1, 33, 2, 2), r(562, 7, 33, 1, 1), nil, 1, 0),
		conv("stride2-pad1", r(563, 2, 4, 9, 7), r(564, 5, 4, 3, 3), r(565, 5), 2, 1),
		conv("stride2-even", r(566, 1, 3, 8, 8), r(567, 2, 3, 3, 3), r(568, 2), 2, 1),
		conv("stride2-pad0", r(569, 1, 3, 7, 9), r(570, 2, 3, 3, 3), nil, 2, 0),
		conv("C1", r(571, 2, 1, 7, 9), r(572, 3, 1, 3, 3), r(573, 3), 1, 1),
		conv("O1", r(574, 1, 4, 5, 5), r(575, 1, 4, 3, 3), r(576, 1), 1, 1),
		conv("1x1-input", r(577, 1, 3, 1, 1), r(578, 2, 3, 3, 3), r(579, 2), 1, 1),
		conv("4x4-stride2-pad1", r(580, 1, 2, 9, 8), r(581, 3, 2, 4, 4), r(582, 3), 2, 1),
		conv("rect-kernel", r(583, 1, 2, 6, 7), r(584, 2, 2, 1, 3), r(585, 2), 1, 1),
		conv("F16-weight", r(586, 1, 4, 5, 6), rc(F16, 587, 3, 4, 3, 3), rc(F16, 588, 3), 1, 1),
		opCase{name: "conv2d/permuted-input", inputs: in(r(589, 2, 7, 9, 3), r(590, 4, 3, 3, 3), r(591, 4)),
			run: func(v ts) *tensor.Tensor { return tensor.Conv2d(v[0].Permute(0, 3, 1, 2), v[1], v[2], 1, 1) }},
	)

	// pooling and resampling
	add(
		opCase{name: "avgpool2d/2", inputs: in(r(600, 2, 3, 6, 8)), run: func(x ts) *tensor.Tensor { return tensor.AvgPool2d(x[0], 2) }},
		opCase{name: "avgpool2d/2-odd", inputs: in(r(601, 1, 2, 7, 9)), run: func(x ts) *tensor.Tensor { return tensor.AvgPool2d(x[0], 2) }},
		opCase{name: "avgpool2d/3", inputs: in(r(602, 1, 2, 9, 7)), run: func(x ts) *tensor.Tensor { return tensor.AvgPool2d(x[0], 3) }},
		opCase{name: "avgpool2d/permuted", inputs: in(r(603, 1, 6, 4, 2)), run: func(x ts) *tensor.Tensor { return tensor.AvgPool2d(x[0].Permute(0, 3, 1, 2), 2) }},
		opCase{name: "nearest/2", inputs: in(r(610, 2, 3, 3, 5)), run: func(x ts) *tensor.Tensor { return tensor.UpsampleNearest(x[0], 2) }},
		opCase{name: "nearest/3", inputs: in(r(611, 1, 2, 1, 4)), run: func(x ts) *tensor.Tensor { return tensor.UpsampleNearest(x[0], 3) }},
		opCase{name: "nearest/1", inputs: in(r(612, 1, 2, 3, 4)), run: func(x ts) *tensor.Tensor { return tensor.UpsampleNearest(x[0], 1) }},
		opCase{name: "nearest/transposed", inputs: in(r(613, 1, 2, 5, 3)), run: func(x ts) *tensor.Tensor { return tensor.UpsampleNearest(x[0].T(), 2) }},
	)
	for _, c := range []struct {
		n, c, h, w, oh, ow int
	}{
		{1, 2, 7, 5, 17, 13},  // up, non-dyadic
		{1, 1, 16, 4, 48, 12}, // ×3
		{1, 1, 16, 64, 64, 256},
		{2, 2, 9, 9, 4, 4},   // down
		{1, 1, 9, 13, 4, 5},  // down, non-square
		{1, 1, 7, 7, 7, 7},   // identity
		{1, 1, 5, 9, 11, 3},  // up one axis, down the other
		{1, 3, 1, 1, 2, 3},   // one pixel
		{1, 1, 33, 2, 1, 1},  // down to one pixel
		{1, 1, 6, 6, 12, 12}, // ×2
	} {
		oh, ow := c.oh, c.ow
		add(opCase{
			name:   fmt.Sprintf("bicubic/%dx%d-to-%dx%d", c.h, c.w, oh, ow),
			inputs: in(r(uint64(620+c.h*c.w+oh), c.n, c.c, c.h, c.w)),
			run:    func(x ts) *tensor.Tensor { return tensor.UpsampleBicubic(x[0], oh, ow) },
		})
	}
	add(opCase{name: "bicubic/permuted", inputs: in(r(640, 1, 5, 7, 2)),
		run: func(x ts) *tensor.Tensor { return tensor.UpsampleBicubic(x[0].Permute(0, 3, 1, 2), 11, 9) }})

	// an op chain, as a model runs it: errors and pending work carry through
	add(opCase{name: "chain/linear-gelu-layernorm-softmax", inputs: in(r(650, 2, 5, 16), r(651, 24, 16), r(652, 24), r(653, 24)),
		run: func(x ts) *tensor.Tensor {
			h := tensor.GELU(tensor.Linear(x[0], x[1], x[2]))
			h = tensor.LayerNorm(h, x[3], x[2], 1e-5)
			return tensor.Softmax(tensor.Add(h, tensor.Scale(h.Narrow(1, 0, 1), 0.5)))
		}})

	// The unfused spellings of the epilogues (fuse.go): as graphs, each
	// chain is one MatMul or Conv2d node, which every kernel path (blocked
	// and column-partitioned GEMM, direct and implicit-GEMM convolution)
	// compute as the eager ops do: exactly, but for an ulp where a row's
	// activation runs the pure-Go tail of a vector function, or where a
	// fused bias is accumulated first.
	linear := func(x, w, b *tensor.Tensor) *tensor.Tensor { return tensor.Add(tensor.MatMul(x, w.T()), b) }
	add(
		opCase{name: "fused/linear-gelu-residual", inputs: in(r(660, 2, 7, 33), r(661, 65, 33), r(662, 65), r(663, 2, 7, 65)),
			run: func(x ts) *tensor.Tensor { return tensor.Add(x[3], tensor.GELU(linear(x[0], x[1], x[2]))) }},
		opCase{name: "fused/matmul-silu", inputs: in(r(664, 9, 17), r(665, 17, 31)),
			run: func(x ts) *tensor.Tensor { return tensor.SiLU(tensor.MatMul(x[0], x[1])) }},
		opCase{name: "fused/matmul-quickgelu-residual-first", inputs: in(r(666, 5, 12), r(667, 12, 3), r(668, 5, 3)),
			run: func(x ts) *tensor.Tensor { return tensor.Add(tensor.QuickGELU(tensor.MatMul(x[0], x[1])), x[2]) }},
		// Large enough for the threaded blocked and column-partitioned GEMM.
		opCase{name: "fused/linear-residual-large", inputs: in(r(669, 70, 300), r(670, 600, 300), r(671, 600), r(672, 70, 600)),
			run: func(x ts) *tensor.Tensor { return tensor.Add(linear(x[0], x[1], x[2]), x[3]) }},
		opCase{name: "fused/linear-gelu-large", inputs: in(r(673, 300, 64), r(674, 96, 64), r(675, 96)),
			run: func(x ts) *tensor.Tensor { return tensor.GELU(linear(x[0], x[1], x[2])) }},
		// The second product is the residual of the first only once it
		// exists: fused into the second instead.
		opCase{name: "fused/sum-of-products", inputs: in(r(676, 6, 10), r(677, 10, 7), r(678, 10, 7)),
			run: func(x ts) *tensor.Tensor { return tensor.Add(tensor.MatMul(x[0], x[1]), tensor.MatMul(x[0], x[2])) }},
		opCase{name: "fused/batched-matmul-residual", inputs: in(r(679, 3, 7, 9), r(680, 3, 9, 5), r(681, 3, 7, 5)),
			run: func(x ts) *tensor.Tensor { return tensor.Add(x[2], tensor.MatMul(x[0], x[1])) }},
		// Convolutions: direct 3×3 (wide rows), 1×1 pointwise, a batch of
		// small strided maps, each with bias, activation and residual.
		opCase{name: "fused/conv3x3-silu-residual", inputs: in(r(682, 2, 5, 6, 40), r(683, 4, 5, 3, 3), r(684, 4), r(685, 2, 4, 6, 40)),
			run: func(x ts) *tensor.Tensor {
				return tensor.Add(x[3], tensor.SiLU(tensor.Conv2d(x[0], x[1], x[2], 1, 1)))
			}},
		opCase{name: "fused/conv1x1-residual", inputs: in(r(686, 2, 8, 5, 7), r(687, 6, 8, 1, 1), r(688, 2, 6, 5, 7)),
			run: func(x ts) *tensor.Tensor { return tensor.Add(tensor.Conv2d(x[0], x[1], nil, 1, 0), x[2]) }},
		opCase{name: "fused/conv-stride2-gelu-residual", inputs: in(r(689, 3, 4, 9, 7), r(690, 5, 4, 3, 3), r(691, 5), r(692, 3, 5, 5, 4)),
			run: func(x ts) *tensor.Tensor {
				return tensor.Add(tensor.GELU(tensor.Conv2d(x[0], x[1], x[2], 2, 1)), x[3])
			}},
		opCase{name: "fused/conv-bias-residual-large", inputs: in(r(693, 1, 16, 24, 48), r(694, 24, 16, 3, 3), r(695, 24), r(696, 1, 24, 24, 48)),
			run: func(x ts) *tensor.Tensor {
				return tensor.Add(tensor.Add(tensor.Conv2d(x[0], x[1], nil, 1, 1), x[2].Reshape(1, 24, 1, 1)), x[3])
			}},
	)
	for i := range cs {
		if strings.HasPrefix(cs[i].name, "fused/") {
			cs[i].fuseTol = 1e-6
		}
	}

	return cs
}

// ConformanceGraph runs every op case as a captured graph on backend b —
// the case's inputs are the graph's inputs, its result the output — and
// compares the replayed result with eager execution on the CPU reference
// (within tol·(1 + |reference|)). Each graph is replayed twice, the second
// time after the arena was filled with NaNs, so a plan that reads a value
// before it is written, or overlaps two live values, fails.
func ConformanceGraph(t *testing.T, b tensor.Backend, tol float64) {
	t.Helper()
	conform(t, b, tol, true, runGraphCase)
}

// runGraphCase captures c on b, replays it once, poisons the arena, writes
// the inputs again and replays it a second time.
func runGraphCase(c opCase, b tensor.Backend) (out *tensor.Tensor, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	in := c.inputs()
	specs := make([]tensor.Spec, len(in))
	for i, x := range in {
		specs[i] = tensor.Spec{DType: x.DType(), Shape: x.Shape()}
		if in[i] = x.To(b); in[i].Err() != nil {
			return nil, in[i].Err()
		}
	}
	g, err := tensor.Capture(c.name, b, specs, func(x []*tensor.Tensor) ([]*tensor.Tensor, error) {
		y := c.run(x)
		return []*tensor.Tensor{y}, y.Err()
	})
	if err != nil {
		return nil, err
	}
	ex, err := g.Instantiate()
	if err != nil {
		return nil, err
	}
	defer ex.Free()
	for pass := 0; pass < 2; pass++ {
		if pass == 1 && len(in) > 0 && g.ArenaBytes() >= 4 {
			poison := tensor.OnStorage(ex.Input(0).Storage(), tensor.F32, g.ArenaBytes()/4)
			nan := tensor.FromFloat32([]float32{float32(math.NaN())}).To(b)
			if err := tensor.CopyInto(poison, nan.Expand(poison.Shape()...)); err != nil {
				return nil, err
			}
		}
		for i, x := range in {
			if err := tensor.CopyInto(ex.Input(i), x); err != nil {
				return nil, fmt.Errorf("input %d: %w", i, err)
			}
		}
		if err := ex.Run(); err != nil {
			return nil, err
		}
	}
	// The result is copied out of the arena before the arena goes.
	out = ex.Output(0).Cast(ex.Output(0).DType())
	if _, err := out.Bytes(); err != nil {
		return nil, err
	}
	return out, nil
}
