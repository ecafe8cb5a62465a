package cpu

import (
	"github.com/unclip-go/unclip/tensor"
)

// binaryFast computes Dst = Src[0] ∘ Src[1] for F32 operands: dense
// operands of Dst's shape run as flat slices split over the workers;
// broadcast and strided ones walk rows with loops specialised for unit and
// zero inner strides (no per-element function call).
func binaryFast(n *tensor.Node) (bool, error) {
	a, b := n.Src[0], n.Src[1]
	if a.DType() != tensor.F32 || b.DType() != tensor.F32 {
		return false, nil
	}
	kind := tensor.BinaryKind(n.Int[0])
	if kind < tensor.BinaryAdd || kind > tensor.BinaryDiv {
		return false, nil
	}
	av, bv := f32(a), f32(b)
	y := out(n.Dst)
	if a.IsContiguous() && b.IsContiguous() {
		ad := av.d[av.off : av.off+len(y)]
		bd := bv.d[bv.off : bv.off+len(y)]
		const chunk = 1 << 14
		nc := ceilDiv(len(y), chunk)
		parallelFor(nc, len(y)/2, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				s, e := i*chunk, min(len(y), (i+1)*chunk)
				binaryRow(kind, y[s:e], ad[s:e], 1, bd[s:e], 1)
			}
		})
		return true, nil
	}
	i := 0
	rows(n.Dst.Shape(), [][]int{av.strides, bv.strides}, []int{av.off, bv.off}, func(o []int, m int, in []int) {
		binaryRow(kind, y[i:i+m], av.d[o[0]:], in[0], bv.d[o[1]:], in[1])
		i += m
	})
	return true, nil
}

// binaryRow writes y[j] = a[j·sa] ∘ b[j·sb].
func binaryRow(kind tensor.BinaryKind, y, a []float32, sa int, b []float32, sb int) {
	switch {
	case sa == 1 && sb == 1:
		a, b = a[:len(y)], b[:len(y)]
		switch kind {
		case tensor.BinaryAdd:
			for j := range y {
				y[j] = a[j] + b[j]
			}
		case tensor.BinarySub:
			for j := range y {
				y[j] = a[j] - b[j]
			}
		case tensor.BinaryMul:
			for j := range y {
				y[j] = a[j] * b[j]
			}
		case tensor.BinaryDiv:
			for j := range y {
				y[j] = a[j] / b[j]
			}
		}
	case sa == 1 && sb == 0:
		a = a[:len(y)]
		s := b[0]
		switch kind {
		case tensor.BinaryAdd:
			for j := range y {
				y[j] = a[j] + s
			}
		case tensor.BinarySub:
			for j := range y {
				y[j] = a[j] - s
			}
		case tensor.BinaryMul:
			for j := range y {
				y[j] = a[j] * s
			}
		case tensor.BinaryDiv:
			for j := range y {
				y[j] = a[j] / s
			}
		}
	default:
		for j := range y {
			x, z := a[j*sa], b[j*sb]
			switch kind {
			case tensor.BinaryAdd:
				y[j] = x + z
			case tensor.BinarySub:
				y[j] = x - z
			case tensor.BinaryMul:
				y[j] = x * z
			case tensor.BinaryDiv:
				y[j] = x / z
			}
		}
	}
}

// copyFast copies an F32 source into an F32 destination of the same shape
// (any strides on both sides): rows with unit strides move with copy (a
// vectorised memmove), others element by element without a function call
// per element. Other dtype pairs go to the reference copy.
func copyFast(n *tensor.Node) (bool, error) {
	dst, src := n.Dst, n.Src[0]
	if dst.DType() != tensor.F32 || src.DType() != tensor.F32 || !tensor.SameShape(dst.Shape(), src.Shape()) {
		return false, nil
	}
	d := tensor.Float32View(dst.Storage().Host)
	s := tensor.Float32View(src.Storage().Host)
	rows(dst.Shape(), [][]int{dst.Strides(), src.Strides()}, []int{dst.Offset(), src.Offset()}, func(o []int, m int, in []int) {
		if in[0] == 1 && in[1] == 1 {
			copy(d[o[0]:o[0]+m], s[o[1]:o[1]+m])
			return
		}
		for j := 0; j < m; j++ {
			d[o[0]+j*in[0]] = s[o[1]+j*in[1]]
		}
	})
	return true, nil
}
