package cpu

import (
	"fmt"

	"github.com/unclip-go/unclip/tensor"
)

// conv2dOp lowers the convolution to a matrix product over chunks of
// output rows: an im2col buffer (C·KH·KW, rows·OW) is filled for the chunk,
// then every output channel accumulates weight × buffer row in float64
// (the reference is as exact as it can be; fast kernels are compared with
// it). The buffer is bounded (about 4 MiB), whatever the image size.
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
	ep, err := epilogueOf(n, false)
	if err != nil {
		return err
	}
	y := out(n.Dst)
	bsz, c, h, wd := xs[0], xs[1], xs[2], xs[3]
	o, kh, kw := ws[0], ws[2], ws[3]
	ds := n.Dst.Shape()
	oh, ow := ds[2], ds[3]
	sy, sx, py, px := n.Int[0], n.Int[1], n.Int[2], n.Int[3]
	ckk := c * kh * kw
	chunk := max(1, min(oh, (1<<20)/max(ckk*ow, 1)))
	col := make([]float32, ckk*chunk*ow)
	for b := 0; b < bsz; b++ {
		in := x[b*c*h*wd : (b+1)*c*h*wd]
		yb := y[b*o*oh*ow : (b+1)*o*oh*ow]
		for r0 := 0; r0 < oh; r0 += chunk {
			rows := min(chunk, oh-r0)
			np := rows * ow
			// im2col: row (ci, ky, kx), column (oy − r0, ox)
			parallelFor(ckk, ckk*np, func(lo, hi int) {
				for p := lo; p < hi; p++ {
					ci, ky, kx := p/(kh*kw), (p/kw)%kh, p%kw
					dst := col[p*np : (p+1)*np]
					for r := 0; r < rows; r++ {
						iy := (r0+r)*sy + ky - py
						drow := dst[r*ow : (r+1)*ow]
						if iy < 0 || iy >= h {
							clear(drow)
							continue
						}
						src := in[(ci*h+iy)*wd : (ci*h+iy+1)*wd]
						for ox := range drow {
							ix := ox*sx + kx - px
							if ix < 0 || ix >= wd {
								drow[ox] = 0
							} else {
								drow[ox] = src[ix]
							}
						}
					}
				}
			})
			parallelFor(o, o*ckk*np, func(lo, hi int) {
				acc := make([]float64, np)
				for oc := lo; oc < hi; oc++ {
					dst := yb[oc*oh*ow+r0*ow : oc*oh*ow+r0*ow+np]
					clear(acc)
					wr := w[oc*ckk : (oc+1)*ckk]
					for p, wv := range wr {
						src := col[p*np : (p+1)*np]
						w64 := float64(wv)
						for i, v := range src {
							acc[i] += w64 * float64(v)
						}
					}
					bv := float32(0)
					if bias != nil {
						bv = bias[oc]
					}
					for i, a := range acc {
						dst[i] = float32(a) + bv
					}
				}
			})
		}
	}
	ep.all(y)
	return nil
}

// planes returns the dense input and the output of a per-plane op on
// (N, C, H, W), the number of planes N·C and the plane sizes h×w and
// oh×ow.
func planes(n *tensor.Node) (x, y []float32, np, h, w, oh, ow int) {
	xs, ds := n.Src[0].Shape(), n.Dst.Shape()
	return f32(n.Src[0]).dense(), out(n.Dst), ds[0] * ds[1], xs[2], xs[3], ds[2], ds[3]
}

// avgPoolOp averages k×k windows with stride k.
func avgPoolOp(n *tensor.Node) error {
	if n.Dst.DType() != tensor.F32 {
		return fmt.Errorf("cpu: %v into %v", n.Op, n.Dst.DType())
	}
	x, y, np, h, w, oh, ow := planes(n)
	k := n.Int[0]
	inv := 1 / float32(k*k)
	for p := 0; p < np; p++ {
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
	if n.Dst.DType() != tensor.F32 {
		return fmt.Errorf("cpu: %v into %v", n.Op, n.Dst.DType())
	}
	x, y, np, h, w, oh, ow := planes(n)
	f := n.Int[0]
	for p := 0; p < np; p++ {
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

// upsampleBicubicOp resizes with the antialiased bicubic filter: rows
// first, then columns.
func upsampleBicubicOp(n *tensor.Node) error {
	if n.Dst.DType() != tensor.F32 {
		return fmt.Errorf("cpu: %v into %v", n.Op, n.Dst.DType())
	}
	x, y, np, h, w, oh, ow := planes(n)
	fx, wx := tensor.AntialiasTaps(w, ow)
	fy, wy := tensor.AntialiasTaps(h, oh)
	tmp := make([]float32, h*ow)
	for p := 0; p < np; p++ {
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
