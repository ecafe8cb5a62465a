package cpu

import (
	"math"

	"github.com/unclip-go/unclip/tensor"
)

// Fast normalisation and softmax kernels (parallel only above ~128K
// elements, i.e. ~50 µs of memory traffic): one pass for the shifted sums
// (vector lanes in float64), one fused pass for
// normalise·scale+shift(+SiLU), parallel over rows or (sample, group).

// layerNormFast normalises each row of the last dimension.
func layerNormFast(n *tensor.Node) error {
	x := f32(n.Src[0]).dense()
	w := f32(n.Src[1]).dense()
	var b []float32
	if len(n.Src) > 2 && n.Src[2] != nil {
		b = f32(n.Src[2]).dense()
	} else {
		b = make([]float32, len(w))
	}
	y := out(n.Dst)
	c := len(w)
	if c == 0 {
		return nil
	}
	nr := len(x) / c
	eps := float64(n.Float[0])
	parallelFor(nr, len(x)/2, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, yr := x[r*c:r*c+c], y[r*c:r*c+c]
			c, d, inv := fastStats(xr, eps)
			normAffine(yr, xr, w, b, c, float32(d), float32(inv))
		}
	})
	return nil
}

// fastStats returns the mean of xs split as c + d, the float32 nearest
// the mean and the small float64 remainder, and 1/√(biased variance + eps).
// The sums are of x − (an estimate of the mean), so the variance has no
// cancellation; and x − c is exact for x near the mean (Sterbenz), so the
// normalised values keep float32 relative accuracy even where they are
// tiny.
func fastStats(xs []float32, eps float64) (c float32, d, inv float64) {
	var e float64
	m := min(len(xs), 64)
	for _, v := range xs[:m] {
		e += float64(v)
	}
	shift := float32(e / float64(m))
	s1, s2 := sums(xs, shift)
	nf := float64(len(xs))
	dm := s1 / nf
	v := max(s2/nf-dm*dm, 0)
	mean := float64(shift) + dm
	c = float32(mean)
	return c, mean - float64(c), 1 / math.Sqrt(v+eps)
}

// groupNormFast normalises x (N, C, *) per sample and group, applies the
// per-channel affine and optionally SiLU.
func groupNormFast(n *tensor.Node) error {
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
	nc := c
	parallelFor(bsz*g, len(x)/2, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			bi, gi := i/g, i%g
			base := (bi*c + gi*cg) * hw
			c, d, inv := fastStats(x[base:base+cg*hw], eps)
			for ch := 0; ch < cg; ch++ {
				// y = (x − mean)·inv·w + b = (x − c)·a + s, then
				// ·(1 + scale) + shift folded into a and s.
				a := inv * float64(w[gi*cg+ch])
				s := float64(b[gi*cg+ch]) - d*a
				if scale != nil {
					k := bi*nc + gi*cg + ch
					m := float64(1 + scale[k])
					a, s = a*m, s*m+float64(shift[k])
				}
				o := base + ch*hw
				affine(y[o:o+hw], x[o:o+hw], c, float32(a), float32(s), silu)
			}
		}
	})
	return nil
}

// softmaxFast normalises each row of the last dimension.
func softmaxFast(n *tensor.Node) error {
	x := f32(n.Src[0]).dense()
	y := out(n.Dst)
	shape := n.Dst.Shape()
	c := 1
	if len(shape) > 0 {
		c = shape[len(shape)-1]
	}
	if c == 0 || len(y) == 0 {
		return nil
	}
	nr := len(x) / c
	parallelFor(nr, len(x), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			yr := y[r*c : r*c+c]
			copy(yr, x[r*c:r*c+c])
			m := rowMax(yr)
			if math.IsInf(float64(m), -1) {
				clear(yr)
				continue
			}
			s := expSum(yr, m)
			affine(yr, yr, 0, 1/s, 0, false)
		}
	})
	return nil
}

// siluFast applies x·σ(x) elementwise.
func siluFast(n *tensor.Node) error {
	x := f32(n.Src[0]).dense()
	y := out(n.Dst)
	const chunk = 1 << 14
	nc := ceilDiv(len(y), chunk)
	parallelFor(nc, len(y)/2, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			s, e := i*chunk, min(len(y), (i+1)*chunk)
			affine(y[s:e], x[s:e], 0, 1, 0, true)
		}
	})
	return nil
}

// sumsGo is the pure-Go twin of sums.
func sumsGo(x []float32, c float32) (s1, s2 float64) {
	for _, v := range x {
		d := float64(v) - float64(c)
		s1 += d
		s2 += d * d
	}
	return s1, s2
}

// affineGo is the pure-Go twin of affine.
func affineGo(dst, src []float32, c, a, b float32, silu bool) {
	for i, v := range src {
		o := (v-c)*a + b
		if silu {
			o = o / (1 + float32(math.Exp(float64(-o))))
		}
		dst[i] = o
	}
}

// normAffineGo is the pure-Go twin of normAffine.
func normAffineGo(dst, src, w, b []float32, c, d, inv float32) {
	for i, v := range src {
		dst[i] = ((v-c)-d)*inv*w[i] + b[i]
	}
}

// geluFast applies the exact GELU x·Φ(x) elementwise.
func geluFast(n *tensor.Node) error {
	x := f32(n.Src[0]).dense()
	y := out(n.Dst)
	const chunk = 1 << 14
	nc := ceilDiv(len(y), chunk)
	parallelFor(nc, len(y), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			s, e := i*chunk, min(len(y), (i+1)*chunk)
			gelu(y[s:e], x[s:e])
		}
	})
	return nil
}

// geluGo is the pure-Go twin of gelu: ½·x·erfc(−x/√2), which keeps its
// relative accuracy in the negative tail (where 1 + erf(x/√2) cancels).
func geluGo(dst, src []float32) {
	for i, v := range src {
		dst[i] = float32(0.5 * float64(v) * math.Erfc(-float64(v)/math.Sqrt2))
	}
}
