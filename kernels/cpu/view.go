package cpu

import (
	"github.com/unclip-go/unclip/tensor"
)

// view is a float32 strided view: element idx is d[off + Σ idx[i]·strides[i]].
type view struct {
	d       []float32
	shape   []int
	strides []int
	off     int
}

// f32 returns an F32 view of t: zero-copy for F32 storage, a dense converted
// copy for F16 and BF16.
func f32(t *tensor.Tensor) view {
	h := t.Storage().Host
	switch t.DType() {
	case tensor.F32:
		return view{d: tensor.Float32View(h), shape: t.Shape(), strides: t.Strides(), off: t.Offset()}
	case tensor.F16, tensor.BF16:
		u := tensor.Uint16View(h)
		out := make([]float32, t.Numel())
		conv := tensor.F16ToF32
		if t.DType() == tensor.BF16 {
			conv = tensor.BF16ToF32
		}
		i := 0
		rows(t.Shape(), [][]int{t.Strides()}, []int{t.Offset()}, func(o []int, n int, st []int) {
			for j := 0; j < n; j++ {
				out[i] = conv(u[o[0]+j*st[0]])
				i++
			}
		})
		return view{d: out, shape: t.Shape(), strides: tensor.ContiguousStrides(t.Shape())}
	}
	panic("cpu: float view of " + t.DType().String())
}

// dense returns the view's elements as a dense row-major slice, without a
// copy when already dense.
func (v view) dense() []float32 {
	n := 1
	for _, d := range v.shape {
		n *= d
	}
	if isDense(v.shape, v.strides) {
		return v.d[v.off : v.off+n]
	}
	out := make([]float32, n)
	i := 0
	rows(v.shape, [][]int{v.strides}, []int{v.off}, func(o []int, n int, st []int) {
		for j := 0; j < n; j++ {
			out[i] = v.d[o[0]+j*st[0]]
			i++
		}
	})
	return out
}

func isDense(shape, strides []int) bool {
	acc := 1
	for i := len(shape) - 1; i >= 0; i-- {
		if shape[i] != 1 && strides[i] != acc {
			return false
		}
		acc *= shape[i]
	}
	return true
}

// out returns the float32 memory of a dense F32 destination tensor.
func out(t *tensor.Tensor) []float32 {
	if t.DType() != tensor.F32 {
		panic("cpu: destination of type " + t.DType().String())
	}
	return tensor.Float32View(t.Storage().Host)[t.Offset() : t.Offset()+t.Numel()]
}

// rows walks every innermost row of a shape shared by several strided
// operands. For each row it calls fn with each operand's offset of the row's
// first element, the row length and each operand's innermost stride.
func rows(shape []int, strides [][]int, offs []int, fn func(o []int, n int, inner []int)) {
	r := len(shape)
	for _, d := range shape {
		if d == 0 {
			return
		}
	}
	k := len(strides)
	inner := make([]int, k)
	n := 1
	if r > 0 {
		n = shape[r-1]
		for j := range strides {
			inner[j] = strides[j][r-1]
		}
	}
	idx := make([]int, max(r-1, 0))
	o := append([]int(nil), offs...)
	for {
		fn(o, n, inner)
		// advance the outer index
		d := r - 2
		for ; d >= 0; d-- {
			idx[d]++
			for j := range o {
				o[j] += strides[j][d]
			}
			if idx[d] < shape[d] {
				break
			}
			for j := range o {
				o[j] -= strides[j][d] * shape[d]
			}
			idx[d] = 0
		}
		if d < 0 {
			return
		}
	}
}
