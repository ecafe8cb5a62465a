package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/unclip-go/unclip/tensor"
)

// TestToomCook checks the 1-D transforms against the correlation they
// stand for, y_i = Σ_k g_k d_{i+k}, for F(4, 3) with the points used and
// for other point sets and sizes (the construction is general).
func TestToomCook(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		points []float64
		m, r   int
	}{
		{[]float64{0, 1, -1, 2, -2}, 4, 3},
		{[]float64{0, 1, -1}, 2, 3},
		{[]float64{0, 1, -1, 0.5, -2}, 4, 3},
		{[]float64{0, 1, -1, 2, -2, 0.5, -0.5}, 6, 3},
		{[]float64{0, 1, -1, 2}, 3, 3},
	} {
		at, g, bt := toomCook(tc.points, tc.m, tc.r)
		n := tc.m + tc.r - 1
		for trial := 0; trial < 20; trial++ {
			d, f := make([]float64, n), make([]float64, tc.r)
			for i := range d {
				d[i] = rng.NormFloat64()
			}
			for i := range f {
				f[i] = rng.NormFloat64()
			}
			prod := make([]float64, n)
			for j := 0; j < n; j++ {
				var gf, bd float64
				for k := 0; k < tc.r; k++ {
					gf += g[j][k] * f[k]
				}
				for l := 0; l < n; l++ {
					bd += bt[j][l] * d[l]
				}
				prod[j] = gf * bd
			}
			for i := 0; i < tc.m; i++ {
				var got, want float64
				for j := 0; j < n; j++ {
					got += at[i][j] * prod[j]
				}
				for k := 0; k < tc.r; k++ {
					want += f[k] * d[i+k]
				}
				if math.Abs(got-want) > 1e-9*(1+math.Abs(want)) {
					t.Fatalf("F(%d,%d) points %v: y[%d] = %v, want %v", tc.m, tc.r, tc.points, i, got, want)
				}
			}
		}
	}
	// The points used give dyadic constants for the input and output
	// transforms (exact in float32).
	at, _, bt := toomCook(winoPoints, 4, 3)
	for _, m := range [][][]float64{at, bt} {
		for _, row := range m {
			for _, v := range row {
				if q := v * 64; q != math.Round(q) || float64(float32(v)) != v {
					t.Fatalf("transform constant %v is not a multiple of 1/64", v)
				}
			}
		}
	}
}

// winoBound returns, per output element, the first-order float32 error
// bound of F(4×4, 3×3) for x (n, c, h, w) and weights (o, c, 3, 3):
// (c + 90)·2⁻²⁴·S, where S is the same computation carried out on the
// absolute values of the transforms, the weights and the input
// (|Aᵀ⊗Aᵀ| Σ_c (|G⊗G||g|) ⊙ (|Bᵀ⊗Bᵀ||d|)). Each stage is a sum whose
// rounding error is bounded by its length times 2⁻²⁴ times the sum of its
// terms' magnitudes: the input transform (36 terms), the weight transform
// (9 terms, constants like 1/6 themselves rounded), the sum over channels
// (c terms, plus one per K block), the output transform (36) and the bias.
func winoBound(x, w []float32, n, c, h, wd, o int) []float64 {
	mats := winoOnce()
	abs := func(m []float32) []float64 {
		a := make([]float64, len(m))
		for i, v := range m {
			a[i] = math.Abs(float64(v))
		}
		return a
	}
	kin, kout, kwt := abs(mats.in), abs(mats.out), abs(mats.wt)
	u := make([]float64, o*c*winoX) // |G⊗G| |g|
	for oc := 0; oc < o; oc++ {
		for ci := 0; ci < c; ci++ {
			for xi := 0; xi < winoX; xi++ {
				var s float64
				for k := 0; k < 9; k++ {
					s += kwt[xi*9+k] * math.Abs(float64(w[(oc*c+ci)*9+k]))
				}
				u[(oc*c+ci)*winoX+xi] = s
			}
		}
	}
	out := make([]float64, n*o*h*wd)
	v := make([]float64, c*winoX)
	var patch [winoX]float64
	for b := 0; b < n; b++ {
		for oy := 0; oy < h; oy += winoM {
			for ox := 0; ox < wd; ox += winoM {
				for ci := 0; ci < c; ci++ {
					for p := 0; p < winoX; p++ {
						iy, ix := oy-1+p/winoN, ox-1+p%winoN
						patch[p] = 0
						if iy >= 0 && iy < h && ix >= 0 && ix < wd {
							patch[p] = math.Abs(float64(x[((b*c+ci)*h+iy)*wd+ix]))
						}
					}
					for xi := 0; xi < winoX; xi++ {
						var s float64
						for p := 0; p < winoX; p++ {
							s += kin[xi*winoX+p] * patch[p]
						}
						v[ci*winoX+xi] = s
					}
				}
				for oc := 0; oc < o; oc++ {
					var m [winoX]float64
					for ci := 0; ci < c; ci++ {
						for xi := 0; xi < winoX; xi++ {
							m[xi] += u[(oc*c+ci)*winoX+xi] * v[ci*winoX+xi]
						}
					}
					for q := 0; q < winoY; q++ {
						iy, ix := oy+q/winoM, ox+q%winoM
						if iy >= h || ix >= wd {
							continue
						}
						var s float64
						for xi := 0; xi < winoX; xi++ {
							s += kout[q*winoX+xi] * m[xi]
						}
						out[((b*o+oc)*h+iy)*wd+ix] = float64(c+90) * 0x1p-24 * s
					}
				}
			}
		}
	}
	return out
}

// TestWinograd compares the F(4×4, 3×3) convolution, with every
// micro-kernel on 1, 2, 3 (an uneven split) and 12 threads (products split
// by row block too), to the float64-accumulating reference,
// elementwise within winoBound (plus the reference's own rounding to
// float32): odd channel counts, maps whose sides are not multiples of 4
// (partial tiles), a single pixel, a batch whose chunks straddle images,
// F16 weights, a strided input, a fused activation and residual, and
// budgets small enough to force several tile groups and output-channel
// blocks.
func TestWinograd(t *testing.T) {
	defer SetThreads(Threads())
	defer SetWinograd(Winograd())
	if err := SetWinograd(WinogradAlways); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	type cse struct {
		n, c, h, w, o       int
		f16, permuted, bias bool
		epi, small          bool
	}
	cases := []cse{
		{n: 1, c: 1, h: 1, w: 1, o: 1},
		{n: 2, c: 7, h: 7, w: 9, o: 13, bias: true},
		{n: 1, c: 33, h: 12, w: 12, o: 40, f16: true, bias: true},
		{n: 3, c: 5, h: 13, w: 6, o: 3, bias: true},
		{n: 2, c: 6, h: 9, w: 9, o: 8, permuted: true},
		{n: 2, c: 70, h: 17, w: 19, o: 45, bias: true, epi: true},
		{n: 2, c: 19, h: 30, w: 22, o: 29, bias: true, small: true},
		{n: 1, c: 130, h: 8, w: 40, o: 7, small: true},
		{n: 1, c: 20, h: 9, w: 11, o: 300, bias: true}, // several row blocks
		{n: 1, c: 521, h: 6, w: 5, o: 14, bias: true},  // several K blocks, a short last one
		{n: 2, c: 3, h: 6, w: 139, o: 5, bias: true},   // rows of tiles past 16 (the vector shuffles)
		{n: 1, c: 4, h: 9, w: 66, o: 3},
		{n: 1, c: 0, h: 5, w: 5, o: 4, bias: true},
	}
	for _, c := range cases {
		x, w := convOperands(rng, c.n, c.c, c.h, c.w, c.o, 3, c.permuted, c.f16)
		var bias, res *tensor.Tensor
		if c.bias {
			bias = tensor.FromFloat32(randSlice(rng, c.o), c.o)
		}
		node := func() *tensor.Node {
			n := convNode(x, w, bias, 1, 1)
			if c.epi {
				if res == nil {
					res = tensor.FromFloat32(randSlice(rng, n.Dst.Numel()), n.Dst.Shape()...)
				}
				if len(n.Src) == 2 {
					n.Src = append(n.Src, nil)
				}
				n.Src = append(n.Src, res)
				n.Int[tensor.EpilogueAct] = int(tensor.UnarySiLU)
			}
			return n
		}
		ref := node()
		if err := conv2dOp(ref); err != nil {
			t.Fatal(err)
		}
		want := ref.Dst.MustFloat32s()
		xd := x.Contiguous().MustFloat32s()
		wd := w.Cast(tensor.F32).MustFloat32s()
		bound := winoBound(xd, wd, c.n, c.c, c.h, c.w, c.o)
		if c.epi {
			// SiLU's slope is below 1.1 and the residual adds exactly
			// what the reference adds (one more rounding).
			for i := range bound {
				bound[i] *= 1.1
			}
		}
		kernels := convKernels()
		for _, mk := range kernels {
			for _, th := range []int{1, 2, 3, 12} {
				SetThreads(th)
				func() {
					if c.small {
						defer func(a, b, k int) { winoWeightBudget, winoInputBudget, winoKeepBudget = a, b, k }(winoWeightBudget, winoInputBudget, winoKeepBudget)
						winoWeightBudget, winoInputBudget = winoX*c.c*mk.mr, winoX*c.c*2*mk.nr
						// Weights transformed per group and block, or (every
						// other thread count) once for all groups.
						winoKeepBudget = 0
						if th%2 == 0 {
							winoKeepBudget = 1 << 30
						}
					}
					n := node()
					poison(n.Dst)
					if err := conv2dFast(n, mk); err != nil {
						t.Fatal(err)
					}
					name := fmt.Sprintf("%+v/%s/%dthr", c, mk.name, th)
					got := n.Dst.MustFloat32s()
					worst := 0.0
					for i := range got {
						d := math.Abs(float64(got[i]) - float64(want[i]))
						lim := bound[i] + 0x1p-23*math.Abs(float64(want[i]))
						if !(d <= lim) {
							t.Fatalf("%s: y[%d] = %v, reference %v: error %.3g over the bound %.3g", name, i, got[i], want[i], d, lim)
						}
						if lim > 0 {
							worst = max(worst, d/lim)
						}
					}
					if th == 1 && mk == kernels[0] {
						t.Logf("%s: worst error is %.4f of the bound", name, worst)
					}
				}()
			}
		}
	}
}

// BenchmarkConv3x3 times the U-Nets' 3×3 convolution shapes with the
// direct kernel, as F(4×4, 3×3), and on the bf16 direct kernel.
func BenchmarkConv3x3(b *testing.B) {
	defer SetWinograd(Winograd())
	rng := rand.New(rand.NewPCG(5, 6))
	for _, s := range []struct{ n, c, h int }{{2, 320, 64}, {2, 640, 32}, {1, 320, 256}, {1, 640, 128}, {2, 1280, 16}, {1, 1280, 32}, {1, 64, 32}, {2, 32, 32}} {
		x := tensor.FromFloat32(randSlice(rng, s.n*s.c*s.h*s.h), s.n, s.c, s.h, s.h)
		w := tensor.FromFloat32(randSlice(rng, s.c*s.c*9), s.c, s.c, 3, 3)
		for _, mode := range []string{WinogradOff, WinogradAlways, "bf16-" + WinogradOff} {
			b.Run(fmt.Sprintf("%dx%dx%dx%d/%s", s.n, s.c, s.h, s.h, mode), func(b *testing.B) {
				mk, m := active.Load(), mode
				if bf, ok := strings.CutPrefix(mode, "bf16-"); ok {
					mk, m = bf16Kernel, bf
				}
				SetWinograd(m)
				n := convNode(x, w, nil, 1, 1)
				if mk == nil {
					b.Skip("no such kernel here")
				}
				for b.Loop() {
					if err := conv2dFast(n, mk); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(2*float64(s.n*s.c*s.c*9*s.h*s.h)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// TestInterleave4 checks the Winograd gather's and scatter's stride-4
// shuffles (AVX-512 where the CPU has it) against their definitions, on
// lengths around the vector width.
func TestInterleave4(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, n := range []int{0, 1, 2, 5, 7, 15, 16, 17, 31, 32, 33, 47, 48, 64, 70} {
		src := randSlice(rng, 4*n+3)
		var d [4][]float32
		for k := range d {
			d[k] = randSlice(rng, n+2)
		}
		var ends [4][]float32
		for k := range d {
			ends[k] = slices.Clone(d[k][n:])
		}
		deinterleave4(src[:4*n], d[0][:n], d[1][:n], d[2][:n], d[3][:n])
		for k := range d {
			for q := 0; q < n; q++ {
				if d[k][q] != src[4*q+k] {
					t.Fatalf("deinterleave4 n=%d: d%d[%d] = %v, want src[%d] = %v", n, k, q, d[k][q], 4*q+k, src[4*q+k])
				}
			}
			if !slices.Equal(d[k][n:], ends[k]) {
				t.Fatalf("deinterleave4 n=%d wrote past the end of d%d", n, k)
			}
		}
		bias := float32(0.375)
		dst := randSlice(rng, 4*n+4)
		tail := slices.Clone(dst[4*n:])
		interleave4(dst[:4*n], d[0][:n], d[1][:n], d[2][:n], d[3][:n], bias)
		for i := 0; i < 4*n; i++ {
			if want := d[i%4][i/4] + bias; dst[i] != want {
				t.Fatalf("interleave4 n=%d: dst[%d] = %v, want %v", n, i, dst[i], want)
			}
		}
		if !slices.Equal(dst[4*n:], tail) {
			t.Fatalf("interleave4 n=%d wrote past its end", n)
		}
	}
}
