package cpu

import (
	"fmt"
	"math"

	"github.com/unclip-go/unclip/tensor"
)

// copyOp writes src into dst (same shape, any strides), converting between
// float types; other types must match.
func copyOp(dst, src *tensor.Tensor) error {
	ds, ss := dst.DType(), src.DType()
	if !tensor.SameShape(dst.Shape(), src.Shape()) {
		return fmt.Errorf("cpu: copy %v into %v", src.Shape(), dst.Shape())
	}
	strides := [][]int{dst.Strides(), src.Strides()}
	offs := []int{dst.Offset(), src.Offset()}
	dh, sh := dst.Storage().Host, src.Storage().Host
	if ds == ss && !ds.IsFloat() {
		es := ds.Size()
		rows(dst.Shape(), strides, offs, func(o []int, n int, in []int) {
			for j := 0; j < n; j++ {
				d, s := (o[0]+j*in[0])*es, (o[1]+j*in[1])*es
				copy(dh[d:d+es], sh[s:s+es])
			}
		})
		return nil
	}
	if !ds.IsFloat() || !ss.IsFloat() {
		return fmt.Errorf("cpu: copy %v into %v", ss, ds)
	}
	var load func(i int) float32
	switch ss {
	case tensor.F32:
		s := tensor.Float32View(sh)
		load = func(i int) float32 { return s[i] }
	case tensor.F16:
		s := tensor.Uint16View(sh)
		load = func(i int) float32 { return tensor.F16ToF32(s[i]) }
	case tensor.BF16:
		s := tensor.Uint16View(sh)
		load = func(i int) float32 { return tensor.BF16ToF32(s[i]) }
	}
	var store func(i int, v float32)
	switch ds {
	case tensor.F32:
		d := tensor.Float32View(dh)
		store = func(i int, v float32) { d[i] = v }
	case tensor.F16:
		d := tensor.Uint16View(dh)
		store = func(i int, v float32) { d[i] = tensor.F32ToF16(v) }
	case tensor.BF16:
		d := tensor.Uint16View(dh)
		store = func(i int, v float32) { d[i] = tensor.F32ToBF16(v) }
	}
	rows(dst.Shape(), strides, offs, func(o []int, n int, in []int) {
		for j := 0; j < n; j++ {
			store(o[0]+j*in[0], load(o[1]+j*in[1]))
		}
	})
	return nil
}

func sigmoid(x float32) float32 { return float32(1 / (1 + math.Exp(-float64(x)))) }

// unaryFunc returns the scalar function of a unary node.
func unaryFunc(n *tensor.Node) (func(float32) float32, error) {
	return unaryKindFunc(tensor.UnaryKind(n.Int[0]), n.Float[0], n.Float[1])
}

// unaryKindFunc returns the scalar function of a unary kind with its
// parameters.
func unaryKindFunc(kind tensor.UnaryKind, f0, f1 float32) (func(float32) float32, error) {
	switch kind {
	case tensor.UnarySiLU:
		return func(x float32) float32 { return x * sigmoid(x) }, nil
	case tensor.UnaryGELU:
		return func(x float32) float32 {
			return float32(0.5 * float64(x) * (1 + math.Erf(float64(x)/math.Sqrt2)))
		}, nil
	case tensor.UnaryQuickGELU:
		return func(x float32) float32 { return x * sigmoid(1.702*x) }, nil
	case tensor.UnarySigmoid:
		return sigmoid, nil
	case tensor.UnaryExp:
		return func(x float32) float32 { return float32(math.Exp(float64(x))) }, nil
	case tensor.UnaryNeg:
		return func(x float32) float32 { return -x }, nil
	case tensor.UnaryAffine:
		return func(x float32) float32 { return float32(x*f0) + f1 }, nil // no fused multiply-add, as torch
	case tensor.UnaryClamp:
		return func(x float32) float32 { return min(max(x, f0), f1) }, nil
	}
	return nil, fmt.Errorf("cpu: unknown unary kind %d", kind)
}

func unaryOp(n *tensor.Node) error {
	f, err := unaryFunc(n)
	if err != nil {
		return err
	}
	if n.Dst.DType() != tensor.F32 {
		return fmt.Errorf("cpu: unary on %v", n.Dst.DType())
	}
	x := f32(n.Src[0]).dense()
	y := out(n.Dst)
	parallelFor(len(y), len(y)*8, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			y[i] = f(x[i])
		}
	})
	return nil
}

func binaryOp(n *tensor.Node) error {
	if n.Dst.DType() != tensor.F32 {
		return fmt.Errorf("cpu: binary on %v", n.Dst.DType())
	}
	a, b := f32(n.Src[0]), f32(n.Src[1])
	y := out(n.Dst)
	var f func(x, y float32) float32
	switch tensor.BinaryKind(n.Int[0]) {
	case tensor.BinaryAdd:
		f = func(x, y float32) float32 { return x + y }
	case tensor.BinarySub:
		f = func(x, y float32) float32 { return x - y }
	case tensor.BinaryMul:
		f = func(x, y float32) float32 { return x * y }
	case tensor.BinaryDiv:
		f = func(x, y float32) float32 { return x / y }
	default:
		return fmt.Errorf("cpu: unknown binary kind %d", n.Int[0])
	}
	i := 0
	rows(n.Dst.Shape(), [][]int{a.strides, b.strides}, []int{a.off, b.off}, func(o []int, m int, in []int) {
		ad, bd := a.d, b.d
		for j := 0; j < m; j++ {
			y[i] = f(ad[o[0]+j*in[0]], bd[o[1]+j*in[1]])
			i++
		}
	})
	return nil
}
