//go:build cgo && !novulkan

package vulkan

import (
	"testing"

	"github.com/unclip-go/unclip/tensor"
	"github.com/unclip-go/unclip/tensor/tensortest"
)

// benchOp times f (one op on device tensors) including the wait for its
// result, and reports GFLOP/s for flops per call.
func benchOp(b *testing.B, flops float64, f func() *tensor.Tensor) {
	dev := f().Backend()
	if err := dev.Sync(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var y *tensor.Tensor
	for i := 0; i < b.N; i++ {
		y = f()
	}
	if err := dev.Sync(); err != nil {
		b.Fatal(err)
	}
	if err := y.Err(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

func benchDevice(b *testing.B) *Backend {
	dev, err := Open(-1)
	if err != nil {
		b.Skip(err)
	}
	return dev.(*Backend)
}

func BenchmarkMatMul256(b *testing.B) {
	dev := benchDevice(b)
	x := tensortest.Rand(1, 256, 256).To(dev)
	benchOp(b, 2*256*256*256, func() *tensor.Tensor { return tensor.MatMul(x, x) })
}

func BenchmarkConv3x3(b *testing.B) {
	dev := benchDevice(b)
	x := tensortest.Rand(1, 1, 32, 64, 64).To(dev)
	w := tensortest.Rand(2, 32, 32, 3, 3).To(dev)
	benchOp(b, 2*32*32*9*64*64, func() *tensor.Tensor { return tensor.Conv2d(x, w, nil, 1, 1) })
}

func BenchmarkAttention(b *testing.B) {
	dev := benchDevice(b)
	q := tensortest.Rand(1, 1, 2, 1024, 64).To(dev)
	k := tensortest.Rand(2, 1, 2, 1024, 64).To(dev)
	benchOp(b, 2*2*1024*1024*(64+64), func() *tensor.Tensor { return tensor.Attention(q, k, k, nil, 0.125, false) })
}

// BenchmarkConv3x3Dtype compares the convolution's storage types on the
// same shape (fp32 accumulation throughout).
func BenchmarkConv3x3Dtype(b *testing.B) {
	dev := benchDevice(b)
	for _, dt := range []tensor.DType{tensor.F32, tensor.F16, tensor.BF16} {
		b.Run(dt.String(), func(b *testing.B) {
			x := tensortest.Rand(1, 1, 64, 32, 32).Cast(dt).To(dev)
			w := tensortest.Rand(2, 64, 64, 3, 3).Cast(dt).To(dev)
			benchOp(b, 2*64*64*9*32*32, func() *tensor.Tensor { return tensor.Conv2d(x, w, nil, 1, 1) })
		})
	}
}
