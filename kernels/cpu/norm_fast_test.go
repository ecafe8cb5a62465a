package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/unclip-go/unclip/tensor"
)

// runBoth runs a node through the reference kernel and a fast kernel on
// fresh destinations and compares the results.
func runBoth(t *testing.T, name string, mk func() *tensor.Node, ref, fast func(*tensor.Node) error, tol float64) {
	t.Helper()
	defer SetThreads(Threads())
	r := mk()
	if err := ref(r); err != nil {
		t.Fatal(err)
	}
	want := r.Dst.MustFloat32s()
	for _, th := range []int{1, 2} {
		SetThreads(th)
		f := mk()
		if err := fast(f); err != nil {
			t.Fatal(err)
		}
		checkClose(t, fmt.Sprintf("%s/%dthr", name, th), f.Dst.MustFloat32s(), want, tol)
	}
}

// TestNormsFast compares LayerNorm, GroupNorm(+SiLU), softmax and SiLU
// with the reference on odd sizes, offsets from zero (to exercise the
// variance) and strided inputs.
func TestNormsFast(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	shifted := func(n int, off float32) []float32 {
		s := randSlice(rng, n)
		for i := range s {
			s[i] = s[i]*3 + off
		}
		return s
	}
	for _, c := range []int{1, 7, 33, 257, 2048, 1100} {
		rowsList := []int{1, 7}
		if c == 1100 {
			rowsList = []int{300} // large enough to run split over workers
		}
		for _, rows := range rowsList {
			x := tensor.FromFloat32(shifted(rows*c, 5), rows, c)
			w := tensor.FromFloat32(randSlice(rng, c), c)
			b := tensor.FromFloat32(randSlice(rng, c), c)
			for _, withB := range []bool{true, false} {
				mk := func() *tensor.Node {
					src := []*tensor.Tensor{x, w}
					if withB {
						src = append(src, b)
					}
					n := &tensor.Node{Op: tensor.OpLayerNorm, Dst: tensor.New(tensor.CPU(), tensor.F32, rows, c), Src: src}
					n.Float[0] = 1e-5
					return n
				}
				runBoth(t, fmt.Sprintf("layernorm %dx%d bias=%v", rows, c, withB), mk, layerNormOp, layerNormFast, 2e-5)
			}
			mks := func() *tensor.Node {
				return &tensor.Node{Op: tensor.OpSoftmax, Dst: tensor.New(tensor.CPU(), tensor.F32, rows, c), Src: []*tensor.Tensor{x}}
			}
			runBoth(t, fmt.Sprintf("softmax %dx%d", rows, c), mks, softmaxOp, softmaxFast, 1e-5)
			mku := func() *tensor.Node {
				n := &tensor.Node{Op: tensor.OpUnary, Dst: tensor.New(tensor.CPU(), tensor.F32, rows, c), Src: []*tensor.Tensor{x.T().Contiguous().T()}}
				n.Int[0] = int(tensor.UnarySiLU)
				return n
			}
			runBoth(t, fmt.Sprintf("silu %dx%d", rows, c), mku, unaryOp, siluFast, 1e-6)
			mkg := func() *tensor.Node {
				n := &tensor.Node{Op: tensor.OpUnary, Dst: tensor.New(tensor.CPU(), tensor.F32, rows, c), Src: []*tensor.Tensor{x}}
				n.Int[0] = int(tensor.UnaryGELU)
				return n
			}
			runBoth(t, fmt.Sprintf("gelu %dx%d", rows, c), mkg, unaryOp, geluFast, 1e-6)
		}
	}
	// Softmax rows of −Inf (fully masked) give zeros, as in the reference.
	inf := float32(math.Inf(-1))
	xm := tensor.FromFloat32([]float32{inf, inf, inf, 1, inf, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}, 2, 9)
	runBoth(t, "softmax masked", func() *tensor.Node {
		return &tensor.Node{Op: tensor.OpSoftmax, Dst: tensor.New(tensor.CPU(), tensor.F32, 2, 9), Src: []*tensor.Tensor{xm}}
	}, softmaxOp, softmaxFast, 1e-6)
	for _, s := range [][4]int{{1, 4, 1, 1}, {2, 6, 7, 9}, {2, 64, 16, 16}, {1, 96, 33, 1}, {2, 64, 48, 48}} {
		for _, silu := range []bool{false, true} {
			bsz, c, h, w := s[0], s[1], s[2], s[3]
			groups := 2
			if c >= 32 {
				groups = 32
			}
			x := tensor.FromFloat32(shifted(bsz*c*h*w, -2), bsz, c, h, w)
			wt := tensor.FromFloat32(randSlice(rng, c), c)
			bs := tensor.FromFloat32(randSlice(rng, c), c)
			mk := func() *tensor.Node {
				n := &tensor.Node{Op: tensor.OpGroupNorm, Dst: tensor.New(tensor.CPU(), tensor.F32, bsz, c, h, w), Src: []*tensor.Tensor{x, wt, bs}}
				n.Int[0] = groups
				if silu {
					n.Int[1] = 1
				}
				n.Float[0] = 1e-6
				return n
			}
			runBoth(t, fmt.Sprintf("groupnorm %v silu=%v", s, silu), mk, groupNormOp, groupNormFast, 2e-5)
		}
	}
}

// TestVectorTwins compares the assembly vector helpers with their pure-Go
// twins on odd lengths.
func TestVectorTwins(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	for _, n := range []int{1, 7, 8, 15, 16, 33, 257, 5000} {
		x := randSlice(rng, n)
		for i := range x {
			x[i] = x[i]*40 + 1
		}
		a1, a2 := sums(x, 0.5)
		g1, g2 := sumsGo(x, 0.5)
		if math.Abs(a1-g1) > 1e-5*math.Sqrt(g2*float64(n))+1e-6 || math.Abs(a2-g2) > 1e-5*g2 {
			t.Errorf("n=%d: sums (%v, %v), twin (%v, %v)", n, a1, a2, g1, g2)
		}
		for _, silu := range []bool{false, true} {
			got, want := make([]float32, n), make([]float32, n)
			affine(got, x, 0.3, 0.7, -0.2, silu)
			affineGo(want, x, 0.3, 0.7, -0.2, silu)
			checkClose(t, fmt.Sprintf("affine n=%d silu=%v", n, silu), got, want, 1e-6)
		}
		w, b := randSlice(rng, n), randSlice(rng, n)
		got, want := make([]float32, n), make([]float32, n)
		normAffine(got, x, w, b, 1.5, 0.01, 0.3)
		normAffineGo(want, x, w, b, 1.5, 0.01, 0.3)
		checkClose(t, fmt.Sprintf("normAffine n=%d", n), got, want, 1e-6)
		// gelu: relative accuracy over the whole range, tails included
		// (there the float32 exponent −x²/2 + P carries ~x²/2 ulps).
		gx := make([]float32, n)
		for i := range gx {
			gx[i] = float32(rng.NormFloat64() * 4)
		}
		gg, gw := make([]float32, n), make([]float32, n)
		gelu(gg, gx)
		geluGo(gw, gx)
		for i := range gg {
			x2 := float64(gx[i]) * float64(gx[i])
			if d := math.Abs(float64(gg[i] - gw[i])); d > 1e-6*(1+x2/8)*math.Abs(float64(gw[i]))+1e-30 {
				t.Errorf("gelu(%v) = %v, twin %v", gx[i], gg[i], gw[i])
				break
			}
		}
		// gather8: eight rows of n values into a panel of stride 11.
		src := randSlice(rng, 8*n+5)
		p1, p2 := make([]float32, n*11), make([]float32, n*11)
		gather8(p1, 11, src, n, n)
		gather8Go(p2, 11, src, n, n)
		checkClose(t, fmt.Sprintf("gather8 n=%d", n), p1, p2, 0)
		rows, width := 3, 16
		s := randSlice(rng, rows*width)
		s2 := append([]float32(nil), s...)
		m, l, corr := randSlice(rng, width), randSlice(rng, width), make([]float32, width)
		for i := range l {
			l[i] = 1 + l[i]
		}
		m2, l2, corr2 := append([]float32(nil), m...), append([]float32(nil), l...), make([]float32, width)
		colSoftmax(s, rows, width, m, l, corr)
		colSoftmaxGo(s2, rows, width, m2, l2, corr2)
		for _, pair := range [][2][]float32{{s, s2}, {m, m2}, {l, l2}, {corr, corr2}} {
			checkClose(t, "colSoftmax", pair[0], pair[1], 1e-6)
		}
	}
}
