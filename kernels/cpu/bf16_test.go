package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"unsafe"

	"github.com/unclip-go/unclip/tensor"
)

// bf16 rounds to bfloat16 and back (to nearest even).
func bf16(x float32) float64 { return float64(tensor.BF16ToF32(tensor.F32ToBF16(x))) }

// bf16Bound is the float32 accumulation bound for a k-term sum of exact
// products: every addition rounds once (to nearest, unit 2⁻²⁴) and the
// partial sums never exceed Σ|aᵢbᵢ|, so |error| ≤ k·2⁻²⁴·Σ|aᵢbᵢ| (k
// additions, counting the final add into C).
func bf16Bound(k int, absSum float64) float64 { return float64(k+1) * 0x1p-24 * absSum }

// TestBF16MicroKernel runs the assembly kernel on one register tile, an
// odd k (the last pair half empty), into zero and into an existing C, and
// checks every element against the float64 product of the bf16-rounded
// inputs within the float32 accumulation bound.
func TestBF16MicroKernel(t *testing.T) {
	mk := bf16Kernel
	if mk == nil {
		t.Skip("no AVX512_BF16 on this CPU")
	}
	rng := rand.New(rand.NewPCG(7, 8))
	mr, nr := mk.mr, mk.nr
	for _, k := range []int{1, 2, 37, 512} {
		a, b := randSlice(rng, mr*k), randSlice(rng, k*nr) // A panel (k × mr), B panel (k × nr)
		kp := ceilDiv(k, 2)
		ap, bp := make([]float32, kp*mr), make([]float32, kp*nr)
		toPairs(ap, a, 1, k, mr)
		toPairs(bp, b, 1, k, nr)
		for _, acc := range []bool{false, true} {
			c0 := randSlice(rng, mr*nr)
			c := append([]float32(nil), c0...)
			mk.fn(kp, &ap[0], &bp[0], &c[0], nr, acc)
			for i := 0; i < mr; i++ {
				for j := 0; j < nr; j++ {
					var want, abs float64
					if acc {
						want, abs = float64(c0[i*nr+j]), math.Abs(float64(c0[i*nr+j]))
					}
					for p := 0; p < k; p++ {
						prod := bf16(a[p*mr+i]) * bf16(b[p*nr+j])
						want += prod
						abs += math.Abs(prod)
					}
					if d := math.Abs(float64(c[i*nr+j]) - want); d > bf16Bound(k, abs) {
						t.Fatalf("k %d acc %v: c[%d][%d] = %g, want %g (error %g, bound %g)", k, acc, i, j, c[i*nr+j], want, d, bf16Bound(k, abs))
					}
				}
			}
		}
	}
}

// TestBF16GEMM runs the blocked driver with the bf16 kernel on odd sizes,
// K past one block (with an odd last block), a transposed B, a batch and a
// bias, against the float64 product of the bf16-rounded inputs.
func TestBF16GEMM(t *testing.T) {
	for _, mk := range bf16Kernels() {
		t.Run(mk.name, func(t *testing.T) { testBF16GEMM(t, mk) })
	}
}

// bf16Kernels are the kernels of bfloat16 compute on this machine: the
// native one where there is one, and the rounding fallback of the generic
// and the selected float32 kernels.
func bf16Kernels() []*microKernel {
	var out []*microKernel
	if bf16Kernel != nil {
		out = append(out, bf16Kernel)
	}
	out = append(out, roundedKernel(genericKernel))
	if mk := active.Load(); mk != nil && mk != genericKernel {
		out = append(out, roundedKernel(mk))
	}
	return out
}

func testBF16GEMM(t *testing.T, mk *microKernel) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, c := range []struct {
		batch, m, k, n int
		transB, bias   bool
	}{
		{1, 1, 1, 1, false, false},
		{1, 13, 37, 33, false, true},
		{1, 100, 2049, 65, true, false},
		{3, 25, 64, 40, true, true},
		{1, 300, 77, 512, false, false},
	} {
		t.Run(fmt.Sprintf("%dx%dx%dx%d/t%v", c.batch, c.m, c.k, c.n, c.transB), func(t *testing.T) {
			a := tensor.FromFloat32(randSlice(rng, c.batch*c.m*c.k), c.batch, c.m, c.k)
			var b *tensor.Tensor
			if c.transB {
				b = tensor.FromFloat32(randSlice(rng, c.batch*c.n*c.k), c.batch, c.n, c.k).Transpose(1, 2)
			} else {
				b = tensor.FromFloat32(randSlice(rng, c.batch*c.k*c.n), c.batch, c.k, c.n)
			}
			var bias *tensor.Tensor
			if c.bias {
				bias = tensor.FromFloat32(randSlice(rng, c.n), c.n)
			}
			node := matmulNode(a, b, bias)
			if err := matmulFast(node, mk); err != nil {
				t.Fatal(err)
			}
			got := node.Dst.MustFloat32s()
			av, bv := a.MustFloat32s(), b.Contiguous().MustFloat32s()
			var bb []float32
			if bias != nil {
				bb = bias.MustFloat32s()
			}
			for bi := 0; bi < c.batch; bi++ {
				for i := 0; i < c.m; i++ {
					for j := 0; j < c.n; j++ {
						var want, abs float64
						if bb != nil {
							want, abs = float64(bb[j]), math.Abs(float64(bb[j]))
						}
						for p := 0; p < c.k; p++ {
							prod := bf16(av[(bi*c.m+i)*c.k+p]) * bf16(bv[(bi*c.k+p)*c.n+j])
							want += prod
							abs += math.Abs(prod)
						}
						g := float64(got[(bi*c.m+i)*c.n+j])
						if d := math.Abs(g - want); d > bf16Bound(c.k+1, abs) {
							t.Fatalf("[%d][%d][%d] = %g, want %g (error %g, bound %g)", bi, i, j, g, want, d, bf16Bound(c.k+1, abs))
						}
					}
				}
			}
		})
	}
}

// TestToPairs checks the interleaving: step 2p in the low half, 2p+1 in the
// high half, zero past an odd kc, rounded to nearest even.
func TestToPairs(t *testing.T) {
	src := []float32{1, 2, 3, 4, 5, 6, 1 + 0x1p-8, 1 + 3*0x1p-9, 7, 8} // kc 5 steps of w 2
	dst := make([]float32, 3*2)
	toPairs(dst, src, 1, 5, 2)
	bits := unsafe.Slice((*uint32)(unsafe.Pointer(&dst[0])), len(dst))
	half := func(v uint32) float32 { return tensor.BF16ToF32(uint16(v)) }
	want := [][2]float32{{1, 3}, {2, 4}, {5, 1}, {6, 1 + 0x1p-7}, {7, 0}, {8, 0}}
	for i, w := range want {
		if lo, hi := half(bits[i]), half(bits[i]>>16); lo != w[0] || hi != w[1] {
			t.Errorf("element %d: (%g, %g), want (%g, %g)", i, lo, hi, w[0], w[1])
		}
	}
}

// BenchmarkBF16GEMM times square GEMMs with the bf16 kernel beside the
// float32 one (same driver, same threads).
func BenchmarkBF16GEMM(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{1024, 2048} {
		x := tensor.FromFloat32(randSlice(rng, n*n), n, n)
		w := tensor.FromFloat32(randSlice(rng, n*n), n, n)
		for _, mk := range []*microKernel{active.Load(), bf16Kernel} {
			if mk == nil {
				continue
			}
			b.Run(fmt.Sprintf("%s/%d", mk.name, n), func(b *testing.B) {
				node := matmulNode(x, w, nil)
				for b.Loop() {
					if err := matmulFast(node, mk); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(2*float64(n)*float64(n)*float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// TestBF16Conv runs 3×3 convolutions with the bf16 kernels — direct (rows
// of at least 32 pixels: an odd channel count, K blocks of channel pairs
// with a shorter last one, output channels that are not a multiple of 12)
// and through the implicit GEMM (a small map) — against the float64
// convolution of the bf16-rounded inputs, within the float32 accumulation
// bound.
func TestBF16Conv(t *testing.T) {
	for _, mk := range bf16Kernels() {
		t.Run(mk.name, func(t *testing.T) { testBF16Conv(t, mk) })
	}
}

func testBF16Conv(t *testing.T, mk *microKernel) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, c := range []struct{ b, ci, co, h, w int }{
		{1, 8, 12, 4, 32},
		{2, 7, 13, 5, 40},
		{1, 70, 24, 3, 33},
		{2, 16, 20, 8, 8},
	} {
		t.Run(fmt.Sprintf("%dx%dx%dx%d->%d", c.b, c.ci, c.h, c.w, c.co), func(t *testing.T) {
			x := tensor.FromFloat32(randSlice(rng, c.b*c.ci*c.h*c.w), c.b, c.ci, c.h, c.w)
			w := tensor.FromFloat32(randSlice(rng, c.co*c.ci*9), c.co, c.ci, 3, 3)
			bias := tensor.FromFloat32(randSlice(rng, c.co), c.co)
			node := convNode(x, w, bias, 1, 1)
			if err := conv2dFast(node, mk); err != nil {
				t.Fatal(err)
			}
			got := node.Dst.MustFloat32s()
			xv, wv, bv := x.MustFloat32s(), w.MustFloat32s(), bias.MustFloat32s()
			for b := 0; b < c.b; b++ {
				for o := 0; o < c.co; o++ {
					for y := 0; y < c.h; y++ {
						for xx := 0; xx < c.w; xx++ {
							want, abs := float64(bv[o]), math.Abs(float64(bv[o]))
							for ci := 0; ci < c.ci; ci++ {
								for ky := 0; ky < 3; ky++ {
									for kx := 0; kx < 3; kx++ {
										iy, ix := y+ky-1, xx+kx-1
										if iy < 0 || iy >= c.h || ix < 0 || ix >= c.w {
											continue
										}
										prod := bf16(wv[((o*c.ci+ci)*3+ky)*3+kx]) * bf16(xv[((b*c.ci+ci)*c.h+iy)*c.w+ix])
										want += prod
										abs += math.Abs(prod)
									}
								}
							}
							g := float64(got[((b*c.co+o)*c.h+y)*c.w+xx])
							k := 9*c.ci + c.ci + 2 // products, block sums, bias
							if d := math.Abs(g - want); d > bf16Bound(k, abs) {
								t.Fatalf("[%d][%d][%d][%d] = %g, want %g (error %g, bound %g)", b, o, y, xx, g, want, d, bf16Bound(k, abs))
							}
						}
					}
				}
			}
		})
	}
}

// BenchmarkBF16Conv times the decoder's 3×3 convolutions with the bf16
// kernels beside the float32 ones.
func BenchmarkBF16Conv(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, s := range [][2]int{{320, 64}, {640, 32}, {1280, 16}, {1280, 8}} {
		c, hw := s[0], s[1]
		x := tensor.FromFloat32(randSlice(rng, 2*c*hw*hw), 2, c, hw, hw)
		w := tensor.FromFloat32(randSlice(rng, c*c*9), c, c, 3, 3)
		for _, mk := range []*microKernel{active.Load(), bf16Kernel} {
			if mk == nil {
				continue
			}
			b.Run(fmt.Sprintf("%s/2x%dx%dx%d", mk.name, c, hw, hw), func(b *testing.B) {
				node := convNode(x, w, nil, 1, 1)
				for b.Loop() {
					if err := conv2dFast(node, mk); err != nil {
						b.Fatal(err)
					}
				}
				flops := 2 * 2 * float64(c) * float64(c) * 9 * float64(hw*hw)
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// TestSetBF16 checks that bfloat16 compute reaches the backend's matrix
// products (the result changes, to the bf16 kernels') and that turning it
// off restores float32.
func TestSetBF16(t *testing.T) {
	if active.Load() == nil {
		t.Skip("reference kernels selected: bf16 compute applies to the fast kernels")
	}
	rng := rand.New(rand.NewPCG(13, 14))
	a := tensor.FromFloat32(randSlice(rng, 40*70), 40, 70)
	b := tensor.FromFloat32(randSlice(rng, 70*33), 70, 33)
	run := func() []float32 { return tensor.MatMul(a, b).MustFloat32s() }
	f32 := run()
	SetBF16(true)
	got := run()
	SetBF16(false)
	node := matmulNode(a, b, nil)
	if err := matmulFast(node, computeKernelFor(true)); err != nil {
		t.Fatal(err)
	}
	want := node.Dst.MustFloat32s()
	if !slices.Equal(got, want) {
		t.Error("with SetBF16(true) the backend's product is not the bf16 kernels'")
	}
	if slices.Equal(got, f32) {
		t.Error("SetBF16(true) left the product in float32")
	}
	if again := run(); !slices.Equal(again, f32) {
		t.Error("SetBF16(false) did not restore float32")
	}
}

// computeKernelFor is computeKernel of the selected kernel with bf16
// compute on or off, without changing the mode.
func computeKernelFor(on bool) *microKernel {
	old := bf16Mode.Load()
	bf16Mode.Store(on)
	defer bf16Mode.Store(old)
	return computeKernel(active.Load())
}

// TestPairBF16 compares the pair conversion (AVX-512 where there is one)
// with its Go twin bit for bit: ties, values that round up into the next
// binade, ±0, denormals, ±Inf, NaNs (one whose rounding would carry into
// the sign), lengths that are not multiples of 16, and a nil hi.
func TestPairBF16(t *testing.T) {
	special := []uint32{0, 0x80000000, 0x00008000, 0x00018000, 0x3f808000, 0x3f818000, 0x7f7fffff, 0xff7fffff,
		0x7f800000, 0xff800000, 0x7fc00000, 0x7fffffff, 0xffffffff, 0x7f800001, 0x00000001, 0x807fffff}
	rng := rand.New(rand.NewPCG(15, 16))
	for _, n := range []int{1, 15, 16, 17, 64, 100} {
		lo, hi := make([]float32, n), make([]float32, n)
		for i := range lo {
			lo[i], hi[i] = math.Float32frombits(rng.Uint32()), math.Float32frombits(rng.Uint32())
			if i < len(special) {
				lo[i], hi[i] = math.Float32frombits(special[i]), math.Float32frombits(special[len(special)-1-i])
			}
		}
		for _, h := range [][]float32{hi, nil} {
			got, want := make([]float32, n), make([]float32, n)
			pairBF16(got, lo, h)
			pairBF16Go(want, lo, h)
			for i := range got {
				if g, w := math.Float32bits(got[i]), math.Float32bits(want[i]); g != w {
					t.Fatalf("n %d, hi nil %v: pair %d of (%#08x, %#08x) = %#08x, want %#08x", n, h == nil, i, math.Float32bits(lo[i]), math.Float32bits(hi[i]), g, w)
				}
			}
		}
	}
}

// TestFastF16Results checks that ops with a 16-bit result (--precision
// fp16 on the CPU) run on the fast kernels rather than the reference
// ones, and that each result is the float32 computation rounded once:
// both sides round a float32 value to the 16-bit type, so they may differ
// by the two roundings (half an ulp each: 2⁻¹¹ of the value for F16,
// 2⁻⁸ for BF16) plus the float32 kernels' own difference.
func TestFastF16Results(t *testing.T) {
	mk := active.Load()
	if mk == nil {
		t.Skip("reference kernels selected")
	}
	rng := rand.New(rand.NewPCG(11, 12))
	rnd := func(dt tensor.DType, shape ...int) *tensor.Tensor {
		n := 1
		for _, d := range shape {
			n *= d
		}
		return tensor.FromFloat32(randSlice(rng, n), shape...).Cast(dt)
	}
	for _, dt := range []tensor.DType{tensor.F16, tensor.BF16} {
		half := 0x1p-11
		if dt == tensor.BF16 {
			half = 0x1p-8
		}
		for _, c := range []struct {
			name string
			node func() *tensor.Node
			k    int // terms per output (the float32 kernels' error grows with it)
		}{
			{"matmul", func() *tensor.Node { return matmulNode(rnd(dt, 37, 70), rnd(dt, 70, 45), rnd(dt, 45)) }, 70},
			{"conv2d", func() *tensor.Node { return convNode(rnd(dt, 2, 9, 11, 40), rnd(dt, 13, 9, 3, 3), rnd(dt, 13), 1, 1) }, 81},
			{"attention", func() *tensor.Node {
				return attentionNode(rnd(dt, 1, 2, 19, 16), rnd(dt, 1, 2, 23, 16), rnd(dt, 1, 2, 23, 16), nil, 0.25, false)
			}, 23},
			{"layernorm", func() *tensor.Node {
				n := &tensor.Node{Op: tensor.OpLayerNorm, Src: []*tensor.Tensor{rnd(dt, 7, 40), rnd(dt, 40), rnd(dt, 40)}, Dst: tensor.New(tensor.CPU(), dt, 7, 40)}
				n.Float[0] = 1e-5
				return n
			}, 40},
		} {
			n := c.node()
			n.Dst = tensor.New(tensor.CPU(), dt, n.Dst.Shape()...)
			done, err := runFast(n, mk)
			if err != nil || !done {
				t.Fatalf("%v %s: runFast done=%v err=%v, want the fast kernel", dt, c.name, done, err)
			}
			ref := *n
			ref.Dst = tensor.New(tensor.CPU(), dt, n.Dst.Shape()...)
			if err := runRef(&ref); err != nil {
				t.Fatal(err)
			}
			got, want := n.Dst.Cast(tensor.F32).MustFloat32s(), ref.Dst.Cast(tensor.F32).MustFloat32s()
			scale := 0.0
			for _, v := range want {
				scale = max(scale, math.Abs(float64(v)))
			}
			for i := range got {
				g, w := float64(got[i]), float64(want[i])
				lim := half*(math.Abs(g)+math.Abs(w)) + 1e-5*math.Sqrt(float64(c.k))*scale
				if math.Abs(g-w) > lim {
					t.Fatalf("%v %s: y[%d] = %v, reference %v (bound %.3g)", dt, c.name, i, g, w, lim)
				}
			}
		}
	}
}

// TestToPairsWidths checks the panel conversion, bit for bit, against the
// definition (step 2p's value in the low half, 2p+1's in the high half,
// zero past kc), for narrow panels (converted in batches of steps) and
// wide ones, odd and even step counts, and several panels.
func TestToPairsWidths(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	for _, w := range []int{1, 4, 12, 16, 32, 300} {
		for _, kc := range []int{1, 2, 7, 64, 91} {
			const panels = 3
			src := randSlice(rng, panels*kc*w)
			kp := ceilDiv(kc, 2)
			dst := make([]float32, panels*kp*w)
			toPairs(dst, src, panels, kc, w)
			for q := 0; q < panels; q++ {
				for p := 0; p < kp; p++ {
					for j := 0; j < w; j++ {
						want := uint32(tensor.F32ToBF16(src[(q*kc+2*p)*w+j]))
						if 2*p+1 < kc {
							want |= uint32(tensor.F32ToBF16(src[(q*kc+2*p+1)*w+j])) << 16
						}
						if got := math.Float32bits(dst[(q*kp+p)*w+j]); got != want {
							t.Fatalf("w=%d kc=%d: panel %d step %d lane %d = %#x, want %#x", w, kc, q, p, j, got, want)
						}
					}
				}
			}
		}
	}
}

// TestPairRows compares the row-pair conversion of a panel (one AVX-512
// call where there is one) with its Go twin bit for bit, on widths that
// are and are not multiples of 16, in place too, and checks that nothing
// past the kp converted rows is written.
func TestPairRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	for _, c := range []struct{ kp, w int }{{1, 16}, {3, 32}, {5, 48}, {2, 12}, {4, 33}, {64, 32}} {
		src := make([]float32, 2*c.kp*c.w)
		for i := range src {
			src[i] = math.Float32frombits(rng.Uint32())
		}
		want := make([]float32, c.kp*c.w+1)
		pairRowsGo(want, src, c.kp, c.w)
		got := make([]float32, c.kp*c.w+1)
		got[len(got)-1] = 7
		pairRows(got, src, c.kp, c.w)
		inPlace := slices.Clone(src)
		pairRows(inPlace, inPlace, c.kp, c.w)
		for i := 0; i < c.kp*c.w; i++ {
			if g, w, ip := math.Float32bits(got[i]), math.Float32bits(want[i]), math.Float32bits(inPlace[i]); g != w || ip != w {
				t.Fatalf("kp %d, w %d: word %d = %#08x (in place %#08x), want %#08x", c.kp, c.w, i, g, ip, w)
			}
		}
		if got[len(got)-1] != 7 {
			t.Errorf("kp %d, w %d: wrote past the converted rows", c.kp, c.w)
		}
	}
}
