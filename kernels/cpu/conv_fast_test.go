package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/unclip-go/unclip/tensor"
)

func convNode(x, w, bias *tensor.Tensor, stride, pad int) *tensor.Node {
	oh := (x.Dim(2)+2*pad-w.Dim(2))/stride + 1
	ow := (x.Dim(3)+2*pad-w.Dim(3))/stride + 1
	src := []*tensor.Tensor{x, w}
	if bias != nil {
		src = append(src, bias)
	}
	n := &tensor.Node{Op: tensor.OpConv2d, Dst: tensor.New(tensor.CPU(), tensor.F32, x.Dim(0), w.Dim(0), oh, ow), Src: src}
	n.Int[0], n.Int[1], n.Int[2], n.Int[3] = stride, stride, pad, pad
	return n
}

// TestConv2dFast compares the implicit-GEMM convolution with every
// micro-kernel to the reference, over odd channel counts and image sizes,
// 1×1 and 3×3 kernels, strides, padding, F16 weights and a strided input.
func TestConv2dFast(t *testing.T) {
	defer SetThreads(Threads())
	rng := rand.New(rand.NewPCG(7, 8))
	type cse struct {
		n, c, h, w, o, k, stride, pad int
		f16, permuted, bias           bool
	}
	var cases []cse
	for _, c := range []int{1, 7, 33} {
		for _, hw := range []int{1, 7, 9} {
			for _, o := range []int{1, 7, 33} {
				for _, k := range []int{1, 3} {
					cases = append(cases, cse{n: 2, c: c, h: hw, w: hw + 2, o: o, k: k, stride: 1, pad: k / 2, bias: o != 7})
				}
			}
		}
	}
	cases = append(cases,
		cse{n: 1, c: 5, h: 11, w: 13, o: 9, k: 3, stride: 2, pad: 1, bias: true},
		cse{n: 1, c: 4, h: 8, w: 8, o: 6, k: 1, stride: 2, pad: 0},
		cse{n: 2, c: 3, h: 5, w: 2, o: 4, k: 3, stride: 1, pad: 3, bias: true},
		cse{n: 1, c: 2, h: 7, w: 3, o: 5, k: 3, stride: 2, pad: 2},
		cse{n: 2, c: 3, h: 10, w: 7, o: 5, k: 3, stride: 1, pad: 0},
		cse{n: 1, c: 33, h: 12, w: 12, o: 40, k: 3, stride: 1, pad: 1, f16: true, bias: true},
		cse{n: 2, c: 6, h: 9, w: 9, o: 8, k: 3, stride: 1, pad: 1, permuted: true},
		cse{n: 1, c: 257, h: 17, w: 15, o: 65, k: 3, stride: 1, pad: 1, bias: true},
		cse{n: 1, c: 64, h: 33, w: 33, o: 257, k: 1, stride: 1, pad: 0, bias: true},
		// Column-partitioned (runCols at 2 threads): two K blocks, chunks
		// that straddle the two images.
		cse{n: 2, c: 61, h: 17, w: 19, o: 45, k: 3, stride: 1, pad: 1, bias: true},
		cse{n: 3, c: 61, h: 15, w: 13, o: 13, k: 3, stride: 1, pad: 1, f16: true},
		// Direct 3×3 (rows of at least nr pixels): partial tiles at the
		// row ends and in the channel blocks, two K blocks, F16 weights.
		cse{n: 2, c: 5, h: 3, w: 37, o: 14, k: 3, stride: 1, pad: 1, bias: true},
		cse{n: 1, c: 61, h: 9, w: 32, o: 25, k: 3, stride: 1, pad: 1, f16: true, bias: true},
		cse{n: 3, c: 3, h: 34, w: 16, o: 12, k: 3, stride: 1, pad: 1},
		cse{n: 2, c: 130, h: 4, w: 65, o: 7, k: 3, stride: 1, pad: 1, permuted: true},
		// Empty operands on the direct path: no input channels (the
		// output is the bias), no output channels, no rows.
		cse{n: 1, c: 0, h: 3, w: 40, o: 5, k: 3, stride: 1, pad: 1, bias: true},
		cse{n: 1, c: 4, h: 3, w: 40, o: 0, k: 3, stride: 1, pad: 1},
		cse{n: 1, c: 4, h: 0, w: 40, o: 5, k: 3, stride: 1, pad: 1},
	)
	for _, c := range cases {
		x, w := convOperands(rng, c.n, c.c, c.h, c.w, c.o, c.k, c.permuted, c.f16)
		var bias *tensor.Tensor
		if c.bias {
			bias = tensor.FromFloat32(randSlice(rng, c.o), c.o)
		}
		ref := convNode(x, w, bias, c.stride, c.pad)
		if err := conv2dOp(ref); err != nil {
			t.Fatal(err)
		}
		want := ref.Dst.MustFloat32s()
		ckk := c.c * c.k * c.k
		for _, mk := range convKernels() {
			for _, th := range []int{1, 2} {
				SetThreads(th)
				n := convNode(x, w, bias, c.stride, c.pad)
				poison(n.Dst)
				if err := conv2dFast(n, mk); err != nil {
					t.Fatal(err)
				}
				name := fmt.Sprintf("%+v/%s/%dthr", c, mk.name, th)
				checkClose(t, name, n.Dst.MustFloat32s(), want, 1e-5*math.Sqrt(float64(ckk)))
			}
		}
	}
}

// convOperands returns a random input (n, c, h, w), dense or (with
// permuted) a channels-last view, and random weights (o, c, k, k), F32 or
// (with f16) F16.
func convOperands(rng *rand.Rand, n, c, h, w, o, k int, permuted, f16 bool) (x, wt *tensor.Tensor) {
	if permuted {
		x = tensor.FromFloat32(randSlice(rng, n*c*h*w), n, h, w, c).Permute(0, 3, 1, 2)
	} else {
		x = tensor.FromFloat32(randSlice(rng, n*c*h*w), n, c, h, w)
	}
	wt = tensor.FromFloat32(randSlice(rng, o*c*k*k), o, c, k, k)
	if f16 {
		wt = wt.Cast(tensor.F16)
	}
	return x, wt
}

// convKernels are the usable micro-kernels plus a pure-Go one whose direct
// convolution kernel is the twin conv3x3Go, so that conv2dDirect is
// covered on every platform (and with -tags purego).
func convKernels() []*microKernel {
	twin := *genericKernel
	twin.name = "generic-direct"
	twin.conv = func(nci int, a, b, c *float32, ldc, wp, hwp int, acc bool) {
		conv3x3Go(twin.mr, twin.nr, nci, a, b, c, ldc, wp, hwp, acc)
	}
	return append(usableKernels(), &twin)
}

// TestConvMicroKernels compares every direct convolution micro-kernel with
// its pure-Go twin conv3x3Go, for odd channel counts, row lengths and
// plane sizes, in both accumulate modes.
func TestConvMicroKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, mk := range usableKernels() {
		if mk.conv == nil {
			continue
		}
		for _, nci := range []int{0, 1, 2, 7, 33} {
			for _, acc := range []bool{false, true} {
				wp := mk.nr + 7
				hwp := 3*wp + 5
				a := randSlice(rng, max(1, 9*nci*mk.mr))
				b := randSlice(rng, max(1, nci)*hwp+mk.nr)
				ldc := mk.nr + 3
				c0 := randSlice(rng, mk.mr*ldc)
				got := append([]float32(nil), c0...)
				want := append([]float32(nil), c0...)
				mk.conv(nci, &a[0], &b[0], &got[0], ldc, wp, hwp, acc)
				conv3x3Go(mk.mr, mk.nr, nci, &a[0], &b[0], &want[0], ldc, wp, hwp, acc)
				for i := range got {
					if d := math.Abs(float64(got[i] - want[i])); d > 1e-5*math.Sqrt(float64(9*nci+1)) {
						t.Fatalf("%s nci=%d acc=%v: c[%d] = %v, twin %v", mk.name, nci, acc, i, got[i], want[i])
					}
				}
			}
		}
	}
}
