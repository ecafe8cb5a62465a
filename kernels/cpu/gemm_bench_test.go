package cpu

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/unclip-go/unclip/tensor"
)

// BenchmarkSGEMM times square F32 GEMMs with the selected micro-kernel.
func BenchmarkSGEMM(b *testing.B) {
	mk := active.Load()
	if mk == nil {
		b.Skip("reference kernels selected")
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{256, 1024, 2048} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			x := tensor.FromFloat32(randSlice(rng, n*n), n, n)
			w := tensor.FromFloat32(randSlice(rng, n*n), n, n)
			node := matmulNode(x, w, nil)
			b.ResetTimer()
			for b.Loop() {
				if err := matmulFast(node, mk); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(2*float64(n)*float64(n)*float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkConv2d times 3×3 convolutions at the Karlo decoder shapes.
func BenchmarkConv2d(b *testing.B) {
	mk := active.Load()
	if mk == nil {
		b.Skip("reference kernels selected")
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for _, s := range [][2]int{{320, 64}, {640, 32}, {1280, 8}} {
		c, hw := s[0], s[1]
		b.Run(fmt.Sprintf("2x%dx%dx%d", c, hw, hw), func(b *testing.B) {
			x := tensor.FromFloat32(randSlice(rng, 2*c*hw*hw), 2, c, hw, hw)
			w := tensor.FromFloat32(randSlice(rng, c*c*9), c, c, 3, 3)
			node := convNode(x, w, nil, 1, 1)
			b.ResetTimer()
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

// BenchmarkAttention times the decoder's 32×32-level attention.
func BenchmarkAttention(b *testing.B) {
	mk := active.Load()
	if mk == nil {
		b.Skip("reference kernels selected")
	}
	rng := rand.New(rand.NewPCG(5, 6))
	q := tensor.FromFloat32(randSlice(rng, 2*10*1024*64), 2, 10, 1024, 64)
	k := tensor.FromFloat32(randSlice(rng, 2*10*1105*64), 2, 10, 1105, 64)
	v := tensor.FromFloat32(randSlice(rng, 2*10*1105*64), 2, 10, 1105, 64)
	node := attentionNode(q, k, v, nil, 0.125, false)
	for b.Loop() {
		if err := attentionFast(node, mk); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(4*20*1024*1105*64*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// BenchmarkLinear times the prior's linears: x (162, 2048) · Wᵀ.
func BenchmarkLinear(b *testing.B) {
	mk := active.Load()
	if mk == nil {
		b.Skip("reference kernels selected")
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{2048, 8192} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			x := tensor.FromFloat32(randSlice(rng, 162*2048), 162, 2048)
			w := tensor.FromFloat32(randSlice(rng, n*2048), n, 2048)
			node := matmulNode(x, w.T(), nil)
			for b.Loop() {
				if err := matmulFast(node, mk); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(2*162*2048*float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
