package cpu

import (
	"fmt"
	"math"

	"github.com/unclip-go/unclip/tensor"
)

// layerNormOp normalises each row of the last dimension. Statistics are
// accumulated in float64.
func layerNormOp(n *tensor.Node) error {
	if n.Dst.DType() != tensor.F32 {
		return fmt.Errorf("cpu: layernorm into %v", n.Dst.DType())
	}
	x := f32(n.Src[0]).dense()
	w := f32(n.Src[1]).dense()
	var b []float32
	if len(n.Src) > 2 && n.Src[2] != nil {
		b = f32(n.Src[2]).dense()
	}
	y := out(n.Dst)
	c := len(w)
	nr := len(x) / max(c, 1)
	eps := float64(n.Float[0])
	parallelFor(nr, len(x)*4, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, yr := x[r*c:r*c+c], y[r*c:r*c+c]
			mean, inv := stats(xr, eps)
			for i, v := range xr {
				o := float32((float64(v)-mean)*inv) * w[i]
				if b != nil {
					o += b[i]
				}
				yr[i] = o
			}
		}
	})
	return nil
}

// stats returns the mean and 1/√(biased variance + eps) of xs.
func stats(xs []float32, eps float64) (mean, inv float64) {
	var s float64
	for _, v := range xs {
		s += float64(v)
	}
	mean = s / float64(len(xs))
	var q float64
	for _, v := range xs {
		d := float64(v) - mean
		q += d * d
	}
	return mean, 1 / math.Sqrt(q/float64(len(xs))+eps)
}

// groupNormOp normalises x (N, C, *) per sample and group of channels,
// applies the per-channel affine and optionally SiLU.
func groupNormOp(n *tensor.Node) error {
	if n.Dst.DType() != tensor.F32 {
		return fmt.Errorf("cpu: groupnorm into %v", n.Dst.DType())
	}
	x := f32(n.Src[0]).dense()
	w := f32(n.Src[1]).dense()
	b := f32(n.Src[2]).dense()
	y := out(n.Dst)
	shape := n.Dst.Shape()
	bsz, c := shape[0], shape[1]
	hw := 1
	for _, d := range shape[2:] {
		hw *= d
	}
	g := n.Int[0]
	cg := c / g
	silu := n.Int[1] == 1
	eps := float64(n.Float[0])
	scale, shift := scaleShift(n, bsz, c)
	parallelFor(bsz*g, len(x)*4, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			bi, gi := i/g, i%g
			base := (bi*c + gi*cg) * hw
			seg := x[base : base+cg*hw]
			mean, inv := stats(seg, eps)
			for ch := 0; ch < cg; ch++ {
				wc, bc := w[gi*cg+ch], b[gi*cg+ch]
				xs := seg[ch*hw : ch*hw+hw]
				ys := y[base+ch*hw : base+ch*hw+hw]
				for j, v := range xs {
					o := float32((float64(v)-mean)*inv)*wc + bc
					if scale != nil {
						o = o*(1+scale[bi*c+gi*cg+ch]) + shift[bi*c+gi*cg+ch]
					}
					if silu {
						o *= sigmoid(o)
					}
					ys[j] = o
				}
			}
		}
	})
	return nil
}

// scaleShift returns GroupNormScaleShift's (N, C) scale and shift dense,
// or nils for a plain GroupNorm node.
func scaleShift(n *tensor.Node, bsz, c int) (scale, shift []float32) {
	s, t := n.ScaleShift()
	if s == nil {
		return nil, nil
	}
	return f32(s).dense()[:bsz*c], f32(t).dense()[:bsz*c]
}

// softmaxOp normalises each row of the last dimension.
func softmaxOp(n *tensor.Node) error {
	if n.Dst.DType() != tensor.F32 {
		return fmt.Errorf("cpu: softmax into %v", n.Dst.DType())
	}
	x := f32(n.Src[0]).dense()
	y := out(n.Dst)
	shape := n.Dst.Shape()
	c := 1
	if len(shape) > 0 {
		c = shape[len(shape)-1]
	}
	if c == 0 {
		return nil
	}
	nr := len(x) / c
	parallelFor(nr, len(x)*8, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			softmaxRow(y[r*c:r*c+c], x[r*c:r*c+c])
		}
	})
	return nil
}

// softmaxRow writes softmax(x) to y. A row of only −Inf gives zeros.
func softmaxRow(y, x []float32) {
	m := float32(math.Inf(-1))
	for _, v := range x {
		m = max(m, v)
	}
	if math.IsInf(float64(m), -1) {
		clear(y)
		return
	}
	var s float64
	for i, v := range x {
		e := float32(math.Exp(float64(v - m)))
		y[i] = e
		s += float64(e)
	}
	inv := float32(1 / s)
	for i := range y {
		y[i] *= inv
	}
}
