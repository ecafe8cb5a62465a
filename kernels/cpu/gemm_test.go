package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/unclip-go/unclip/tensor"
)

// randSlice returns n values uniform in [−1, 1).
func randSlice(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = 2*rng.Float32() - 1
	}
	return s
}

// checkClose fails when some |got−want| exceeds tol·max|want| (a float32
// kernel against the float64-accumulating reference).
func checkClose(t *testing.T, name string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	scale := 1e-30
	for _, v := range want {
		scale = max(scale, math.Abs(float64(v)))
	}
	worst, at := 0.0, -1
	for i := range got {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
		if d > worst {
			worst, at = d, i
		}
	}
	if worst > tol*scale {
		t.Errorf("%s: max error %.3g at %d (got %v, want %v), tolerance %.3g", name, worst, at, got[at], want[at], tol*scale)
	}
}

// usableKernels returns every micro-kernel this CPU can run, alternates
// included.
func usableKernels() []*microKernel {
	var ks []*microKernel
	for _, k := range kernels {
		if k.ok {
			ks = append(ks, k)
		}
		if k.alt != nil && k.alt.ok {
			ks = append(ks, k.alt)
		}
	}
	return ks
}

// TestMicroKernels compares every micro-kernel with its pure-Go twin on the
// same packed panels, for odd k, both accumulate modes and a wide ldc.
func TestMicroKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, mk := range usableKernels() {
		for _, k := range []int{0, 1, 2, 3, 7, 33, 257} {
			for _, acc := range []bool{false, true} {
				a := randSlice(rng, mk.mr*k)
				b := randSlice(rng, mk.nr*k)
				ldc := mk.nr + 5
				c0 := randSlice(rng, mk.mr*ldc)
				got := append([]float32(nil), c0...)
				want := append([]float32(nil), c0...)
				var ap, bp *float32
				if k > 0 {
					ap, bp = &a[0], &b[0]
				} else {
					ap, bp = &c0[0], &c0[0] // not read
				}
				mk.fn(k, ap, bp, &got[0], ldc, acc)
				microGo(mk.mr, mk.nr, k, a, b, &want[0], ldc, acc)
				for i := range got {
					if d := math.Abs(float64(got[i] - want[i])); d > 1e-5*math.Sqrt(float64(k+1)) {
						t.Fatalf("%s k=%d acc=%v: c[%d] = %v, twin %v", mk.name, k, acc, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// matmulCase is one matmul operand layout.
type matmulCase struct {
	name    string
	batch   []int
	m, k, n int
	transA  bool // A stored (K, M) and transposed
	transB  bool // B stored (N, K) and transposed (a Linear weight)
	stride  bool // B a column slice of a wider matrix
	bcastA  bool // A broadcast over the batch (stride 0)
	dtB     tensor.DType
	dtA     tensor.DType
	bias    bool
}

func (c matmulCase) build(rng *rand.Rand) (a, b, bias *tensor.Tensor) {
	bshape := func(r, q int) []int { return append(append([]int(nil), c.batch...), r, q) }
	if c.transA {
		a = tensor.FromFloat32(randSlice(rng, numelOf(bshape(c.k, c.m))), bshape(c.k, c.m)...).T()
	} else {
		a = tensor.FromFloat32(randSlice(rng, numelOf(bshape(c.m, c.k))), bshape(c.m, c.k)...)
	}
	if c.bcastA {
		a = tensor.FromFloat32(randSlice(rng, c.m*c.k), c.m, c.k).Expand(bshape(c.m, c.k)...)
	}
	if c.dtA != 0 && c.dtA != tensor.F32 {
		a = a.Cast(c.dtA)
		if c.transA {
			a = a.T().Contiguous().T()
		}
	}
	switch {
	case c.transB:
		b = tensor.FromFloat32(randSlice(rng, numelOf(bshape(c.n, c.k))), bshape(c.n, c.k)...).T()
	case c.stride:
		b = tensor.FromFloat32(randSlice(rng, numelOf(bshape(c.k, c.n+3))), bshape(c.k, c.n+3)...).Narrow(-1, 2, c.n)
	default:
		b = tensor.FromFloat32(randSlice(rng, numelOf(bshape(c.k, c.n))), bshape(c.k, c.n)...)
	}
	if c.dtB != 0 && c.dtB != tensor.F32 {
		b = b.Contiguous().Cast(c.dtB)
		if c.transB {
			b = b.T().Contiguous().T()
		}
	}
	if c.bias {
		bias = tensor.FromFloat32(randSlice(rng, c.n), c.n)
	}
	return a, b, bias
}

func numelOf(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// poison fills an F32 destination with NaN, so that a kernel that
// accumulates into it instead of overwriting it fails the comparison.
func poison(t *tensor.Tensor) {
	for i, f := 0, tensor.Float32View(t.Storage().Host); i < len(f); i++ {
		f[i] = float32(math.NaN())
	}
}

func matmulNode(a, b, bias *tensor.Tensor) *tensor.Node {
	as := a.Shape()
	r := len(as)
	shape := append(append([]int(nil), as[:r-2]...), as[r-2], b.Dim(-1))
	src := []*tensor.Tensor{a, b}
	if bias != nil {
		src = append(src, bias)
	}
	return &tensor.Node{Op: tensor.OpMatMul, Dst: tensor.New(tensor.CPU(), tensor.F32, shape...), Src: src}
}

func matmulCases() []matmulCase {
	var cs []matmulCase
	sizes := []int{1, 7, 33, 257}
	for _, m := range sizes {
		for _, k := range sizes {
			for _, n := range sizes {
				if m*k*n > 33*257*257 {
					continue
				}
				cs = append(cs, matmulCase{m: m, k: k, n: n})
			}
		}
	}
	cs = append(cs,
		matmulCase{name: "transA", m: 33, k: 65, n: 47, transA: true},
		matmulCase{name: "transB", m: 37, k: 300, n: 70, transB: true, bias: true},
		matmulCase{name: "strided", m: 13, k: 29, n: 40, stride: true},
		matmulCase{name: "batch", batch: []int{2, 3}, m: 17, k: 31, n: 45},
		matmulCase{name: "bcast", batch: []int{3}, m: 19, k: 23, n: 35, bcastA: true},
		matmulCase{name: "f16", m: 25, k: 70, n: 41, transB: true, dtB: tensor.F16, bias: true},
		matmulCase{name: "bf16", m: 25, k: 70, n: 41, dtB: tensor.BF16},
		matmulCase{name: "bf16T", m: 9, k: 1100, n: 41, transB: true, dtB: tensor.BF16},
		matmulCase{name: "f16A", m: 30, k: 50, n: 33, dtA: tensor.F16},
		matmulCase{name: "k0", m: 5, k: 0, n: 7, bias: true},
		matmulCase{name: "bf16AT", m: 30, k: 50, n: 33, dtA: tensor.BF16, transA: true, dtB: tensor.F16},
		matmulCase{name: "big", m: 300, k: 600, n: 500, transB: true, bias: true},
		matmulCase{name: "kblocks", m: 30, k: 1300, n: 70},
		matmulCase{name: "cols", m: 37, k: 1100, n: 700, bias: true},
		matmulCase{name: "colsT", m: 130, k: 90, n: 1030, transB: true, dtB: tensor.F16},
	)
	return cs
}

// TestMatMulFast compares the blocked GEMM with every micro-kernel to the
// reference matmul, on odd sizes, transposed, strided, broadcast and
// 16-bit operands, on one and two threads.
func TestMatMulFast(t *testing.T) {
	defer SetThreads(Threads())
	rng := rand.New(rand.NewPCG(3, 4))
	for _, c := range matmulCases() {
		a, b, bias := c.build(rng)
		ref := matmulNode(a, b, bias)
		if err := matmulOp(ref); err != nil {
			t.Fatal(err)
		}
		want := ref.Dst.MustFloat32s()
		for _, mk := range usableKernels() {
			for _, th := range []int{1, 2} {
				SetThreads(th)
				n := matmulNode(a, b, bias)
				poison(n.Dst)
				if err := matmulFast(n, mk); err != nil {
					t.Fatal(err)
				}
				name := fmt.Sprintf("%s %d×%d×%d/%s/%dthr", c.name, c.m, c.k, c.n, mk.name, th)
				checkClose(t, name, n.Dst.MustFloat32s(), want, 1e-5*math.Sqrt(float64(c.k)))
			}
		}
	}
}

// TestPack12 compares the A packer of the 12-row kernels with the plain
// definition d[p·12 + r] = src[r·rs + p], for k counts around the 8- and
// 16-wide blocks it works in.
func TestPack12(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, kc := range []int{0, 1, 7, 8, 9, 15, 16, 17, 33, 257} {
		for _, rs := range []int{kc, kc + 3, 1024} {
			if rs == 0 {
				rs = 1
			}
			src := randSlice(rng, 11*rs+kc)
			got := make([]float32, 12*kc)
			pack12(got, src, rs, kc)
			for p := 0; p < kc; p++ {
				for r := 0; r < 12; r++ {
					if w := src[r*rs+p]; got[p*12+r] != w {
						t.Fatalf("kc=%d rs=%d: d[%d·12+%d] = %v, want %v", kc, rs, p, r, got[p*12+r], w)
					}
				}
			}
		}
	}
}

// TestFillBias checks fillBias against its definition, C[i+r][j+q] =
// rb[i+r] + cb[j+q], with either bias absent, on a tile inside a larger
// row stride (the columns past the tile are left alone).
func TestFillBias(t *testing.T) {
	rb := []float32{1, 2, 3, 4, 5}
	cb := []float32{10, 20, 30, 40, 50, 60}
	const rows, cols, ldc, i, j = 3, 4, 7, 1, 2
	for _, c := range []struct {
		name   string
		rb, cb []float32
	}{{"both", rb, cb}, {"rows", rb, nil}, {"columns", nil, cb}, {"none", nil, nil}} {
		got := make([]float32, rows*ldc)
		for k := range got {
			got[k] = -1
		}
		fillBias(got, ldc, rows, cols, i, j, c.rb, c.cb)
		for r := 0; r < rows; r++ {
			for q := 0; q < ldc; q++ {
				want := float32(-1)
				if q < cols {
					want = 0
					if c.rb != nil {
						want += c.rb[i+r]
					}
					if c.cb != nil {
						want += c.cb[j+q]
					}
				}
				if g := got[r*ldc+q]; g != want {
					t.Errorf("%s: [%d][%d] = %g, want %g", c.name, r, q, g, want)
				}
			}
		}
	}
}
