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
	)
	for _, c := range cases {
		var x *tensor.Tensor
		if c.permuted {
			x = tensor.FromFloat32(randSlice(rng, c.n*c.c*c.h*c.w), c.n, c.h, c.w, c.c).Permute(0, 3, 1, 2)
		} else {
			x = tensor.FromFloat32(randSlice(rng, c.n*c.c*c.h*c.w), c.n, c.c, c.h, c.w)
		}
		w := tensor.FromFloat32(randSlice(rng, c.o*c.c*c.k*c.k), c.o, c.c, c.k, c.k)
		if c.f16 {
			w = w.Cast(tensor.F16)
		}
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
		for _, mk := range usableKernels() {
			for _, th := range []int{1, 2} {
				SetThreads(th)
				n := convNode(x, w, bias, c.stride, c.pad)
				if err := conv2dFast(n, mk); err != nil {
					t.Fatal(err)
				}
				name := fmt.Sprintf("%+v/%s/%dthr", c, mk.name, th)
				checkClose(t, name, n.Dst.MustFloat32s(), want, 1e-5*math.Sqrt(float64(ckk)))
			}
		}
	}
}
