// Package cpu is the CPU backend: plain, obviously-correct Go reference
// kernels that every faster kernel (SIMD or shader) is tested against. It
// registers itself with package tensor as "cpu" when imported.
//
// Kernels accept any strides. Work is split over GOMAXPROCS goroutines (or
// the count set with SetThreads) when an op is large enough to pay for it.
// This package must not import nn or models.
package cpu

import (
	"fmt"
	"runtime"
	"sync/atomic"

	"github.com/unclip-go/unclip/tensor"
)

// Backend is the CPU backend. Its storage is host memory.
type Backend struct{}

var threads atomic.Int32

func init() { tensor.Register(Backend{}) }

// SetThreads sets how many goroutines kernels use; n ≤ 0 means GOMAXPROCS.
func SetThreads(n int) { threads.Store(int32(n)) }

// Threads returns the number of goroutines kernels use.
func Threads() int {
	if n := int(threads.Load()); n > 0 {
		return n
	}
	return runtime.GOMAXPROCS(0)
}

// Name returns "cpu".
func (Backend) Name() string { return "cpu" }

// Alloc returns n zeroed bytes.
func (b Backend) Alloc(n int) (*tensor.Storage, error) {
	return tensor.NewHostStorage(b, tensor.HostBytes(n)), nil
}

// Upload copies src into new host memory.
func (b Backend) Upload(src []byte) (*tensor.Storage, error) {
	h := tensor.HostBytes(len(src))
	copy(h, src)
	return tensor.NewHostStorage(b, h), nil
}

// Download copies bytes out of host storage.
func (Backend) Download(s *tensor.Storage, dst []byte, off int) error {
	if off < 0 || off+len(dst) > len(s.Host) {
		return fmt.Errorf("cpu: read [%d, %d) of a %d-byte buffer", off, off+len(dst), len(s.Host))
	}
	copy(dst, s.Host[off:])
	return nil
}

// Sync does nothing: CPU ops finish before Run returns.
func (Backend) Sync() error { return nil }

// Run executes one op, with the fast kernels unless the reference kernels
// are selected (see SetKernels).
func (Backend) Run(n *tensor.Node) error {
	if mk := active.Load(); mk != nil {
		if done, err := runFast(n, mk); done {
			return err
		}
	}
	return runRef(n)
}

// runRef executes one op with the reference kernels.
func runRef(n *tensor.Node) error {
	switch n.Op {
	case tensor.OpCopy:
		return copyOp(n.Dst, n.Src[0])
	case tensor.OpUnary:
		return unaryOp(n)
	case tensor.OpBinary:
		return binaryOp(n)
	case tensor.OpMatMul:
		return matmulOp(n)
	case tensor.OpLayerNorm:
		return layerNormOp(n)
	case tensor.OpGroupNorm:
		return groupNormOp(n)
	case tensor.OpSoftmax:
		return softmaxOp(n)
	case tensor.OpAttention:
		return attentionOp(n)
	case tensor.OpEmbedding:
		return embeddingOp(n)
	case tensor.OpConv2d:
		return conv2dOp(n)
	case tensor.OpAvgPool2d:
		return avgPoolOp(n)
	case tensor.OpUpsampleNearest:
		return upsampleNearestOp(n)
	case tensor.OpUpsampleBicubic:
		return upsampleBicubicOp(n)
	case tensor.OpSchedulerStep:
		return schedulerStepOp(n)
	}
	return fmt.Errorf("cpu: unsupported op %v", n.Op)
}
