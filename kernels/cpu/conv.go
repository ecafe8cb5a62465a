package cpu

import (
	"fmt"

	"github.com/unclip-go/unclip/tensor"
)

// conv2dOp is a direct convolution: for every output plane, each weight
// scales a shifted input plane into it (row by row, bounds hoisted).
func conv2dOp(n *tensor.Node) error {
	if n.Dst.DType() != tensor.F32 {
		return fmt.Errorf("cpu: conv2d into %v", n.Dst.DType())
	}
	xs, ws := n.Src[0].Shape(), n.Src[1].Shape()
	x := f32(n.Src[0]).dense()
	w := f32(n.Src[1]).dense()
	var bias []float32
	if len(n.Src) > 2 && n.Src[2] != nil {
		bias = f32(n.Src[2]).dense()
	}
	y := out(n.Dst)
	bsz, c, h, wd := xs[0], xs[1], xs[2], xs[3]
	o, kh, kw := ws[0], ws[2], ws[3]
	ds := n.Dst.Shape()
	oh, ow := ds[2], ds[3]
	sy, sx, py, px := n.Int[0], n.Int[1], n.Int[2], n.Int[3]
	parallelFor(bsz*o, len(y)*c*kh*kw, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			b, oc := i/o, i%o
			plane := y[i*oh*ow : (i+1)*oh*ow]
			bv := float32(0)
			if bias != nil {
				bv = bias[oc]
			}
			for j := range plane {
				plane[j] = bv
			}
			for ci := 0; ci < c; ci++ {
				in := x[(b*c+ci)*h*wd : (b*c+ci+1)*h*wd]
				for ky := 0; ky < kh; ky++ {
					for kx := 0; kx < kw; kx++ {
						wv := w[((oc*c+ci)*kh+ky)*kw+kx]
						// output columns whose input column ox·sx+kx−px is inside [0, wd)
						x0 := ceilDiv(px-kx, sx)
						x1 := (wd-1+px-kx)/sx + 1
						if wd-1+px-kx < 0 {
							x1 = 0
						}
						x0, x1 = max(x0, 0), min(x1, ow)
						for oy := 0; oy < oh; oy++ {
							iy := oy*sy + ky - py
							if iy < 0 || iy >= h {
								continue
							}
							row := in[iy*wd : iy*wd+wd]
							orow := plane[oy*ow : oy*ow+ow]
							for ox := x0; ox < x1; ox++ {
								orow[ox] += wv * row[ox*sx+kx-px]
							}
						}
					}
				}
			}
		}
	})
	return nil
}

func ceilDiv(a, b int) int {
	if a <= 0 {
		return -((-a) / b)
	}
	return (a + b - 1) / b
}

// avgPoolOp averages k×k windows with stride k.
func avgPoolOp(n *tensor.Node) error {
	x := f32(n.Src[0]).dense()
	y := out(n.Dst)
	xs, ds := n.Src[0].Shape(), n.Dst.Shape()
	h, w := xs[2], xs[3]
	oh, ow := ds[2], ds[3]
	k := n.Int[0]
	inv := 1 / float32(k*k)
	for p := 0; p < ds[0]*ds[1]; p++ {
		in := x[p*h*w : (p+1)*h*w]
		o := y[p*oh*ow : (p+1)*oh*ow]
		for i := 0; i < oh; i++ {
			for j := 0; j < ow; j++ {
				var s float32
				for a := 0; a < k; a++ {
					for b := 0; b < k; b++ {
						s += in[(i*k+a)*w+j*k+b]
					}
				}
				o[i*ow+j] = s * inv
			}
		}
	}
	return nil
}

// upsampleNearestOp repeats pixels f×f times.
func upsampleNearestOp(n *tensor.Node) error {
	x := f32(n.Src[0]).dense()
	y := out(n.Dst)
	xs, ds := n.Src[0].Shape(), n.Dst.Shape()
	h, w := xs[2], xs[3]
	oh, ow := ds[2], ds[3]
	f := n.Int[0]
	for p := 0; p < ds[0]*ds[1]; p++ {
		in := x[p*h*w : (p+1)*h*w]
		o := y[p*oh*ow : (p+1)*oh*ow]
		for i := 0; i < oh; i++ {
			for j := 0; j < ow; j++ {
				o[i*ow+j] = in[(i/f)*w+j/f]
			}
		}
	}
	return nil
}

// AATaps returns torch's antialiased bicubic taps (a = −0.5) for resizing
// nIn samples to nOut: for output i, first[i] is the first input index and
// weights[i] the normalised weights, computed in float32 as torch does.
func AATaps(nIn, nOut int) (first []int, weights [][]float32) {
	scale := float32(nIn) / float32(nOut)
	support := float32(2)
	invscale := float32(1)
	if scale >= 1 {
		support *= scale
		invscale = 1 / scale
	}
	first = make([]int, nOut)
	weights = make([][]float32, nOut)
	for i := 0; i < nOut; i++ {
		center := scale * (float32(i) + 0.5)
		lo := max(int(center-support+0.5), 0)
		hi := min(int(center+support+0.5), nIn)
		ws := make([]float32, hi-lo)
		var total float32
		for j := range ws {
			ws[j] = cubicAA((float32(j+lo) - center + 0.5) * invscale)
			total += ws[j]
		}
		if total != 0 {
			for j := range ws {
				ws[j] /= total
			}
		}
		first[i], weights[i] = lo, ws
	}
	return first, weights
}

// cubicAA is Keys' cubic convolution kernel with a = −0.5.
func cubicAA(x float32) float32 {
	const a = -0.5
	if x < 0 {
		x = -x
	}
	switch {
	case x < 1:
		return ((a+2)*x-(a+3))*x*x + 1
	case x < 2:
		return ((a*x-5*a)*x+8*a)*x - 4*a
	}
	return 0
}

// upsampleBicubicOp resizes with the antialiased bicubic filter: rows
// first, then columns.
func upsampleBicubicOp(n *tensor.Node) error {
	x := f32(n.Src[0]).dense()
	y := out(n.Dst)
	xs, ds := n.Src[0].Shape(), n.Dst.Shape()
	h, w := xs[2], xs[3]
	oh, ow := ds[2], ds[3]
	fx, wx := AATaps(w, ow)
	fy, wy := AATaps(h, oh)
	tmp := make([]float32, h*ow)
	for p := 0; p < ds[0]*ds[1]; p++ {
		in := x[p*h*w : (p+1)*h*w]
		for i := 0; i < h; i++ {
			for j := 0; j < ow; j++ {
				ws := wx[j]
				row := in[i*w+fx[j]:]
				t := row[0] * ws[0]
				for q := 1; q < len(ws); q++ {
					t += row[q] * ws[q]
				}
				tmp[i*ow+j] = t
			}
		}
		o := y[p*oh*ow : (p+1)*oh*ow]
		for i := 0; i < oh; i++ {
			ws := wy[i]
			for j := 0; j < ow; j++ {
				t := tmp[fy[i]*ow+j] * ws[0]
				for q := 1; q < len(ws); q++ {
					t += tmp[(fy[i]+q)*ow+j] * ws[q]
				}
				o[i*ow+j] = t
			}
		}
	}
	return nil
}
