package cpu

import (
	"github.com/unclip-go/unclip/tensor"
)

// conv2dFast runs a 3×3, stride-1, padding-1 convolution with rows of at
// least NR pixels as a direct convolution (conv2dDirect), and any other as
// an implicit GEMM per image:
//
//	Y[b] (O, OH·OW) = W (O, C·KH·KW) · col(X[b]) (C·KH·KW, OH·OW) + bias
//
// The B packer reads the im2col matrix straight from the image, one KC×NC
// block at a time, so the only scratch is the GEMM's packing buffers (no
// im2col of the whole map). A 1×1, stride-1, unpadded convolution is a
// plain GEMM on the image. With several threads and enough pixels the
// images run as one column-partitioned job (runCols); small maps of a batch
// run as one GEMM over all the images' pixels.
func conv2dFast(n *tensor.Node, mk *microKernel) error {
	xs, ws := n.Src[0].Shape(), n.Src[1].Shape()
	x := f32(n.Src[0]).dense()
	wt := n.Src[1]
	o, kh, kw := ws[0], ws[2], ws[3]
	ds := n.Dst.Shape()
	oh, ow := ds[2], ds[3]
	sy, sx, py, px := n.Int[0], n.Int[1], n.Int[2], n.Int[3]
	bsz, c, h, w := xs[0], xs[1], xs[2], xs[3]
	ckk := c * kh * kw
	route := convRoute(n, mk)
	winograd, direct := route == routeWinograd, route == routeDirect
	// The weight packed once (not for Winograd, which transforms it at
	// every call); resolved before the weight is read, as it may unpack it.
	var pa *packedOp
	if !winograd && wt.IsContiguous() && ckk > 0 && o > 0 {
		kcB := mk.kBlock(ckk)
		if direct {
			kcB = 9 * directBlock(mk, c)
		}
		var err error
		if pa, err = packedGemmA(wt, mk, o, ckk, kcB, direct); err != nil {
			return err
		}
	} else if err := wt.Storage().Unpack(); err != nil {
		return err
	}
	var wo operand
	if wt.IsContiguous() {
		wo = matOperand(wt.Reshape(ws[0], ws[1]*ws[2]*ws[3]))
		wo.off = wt.Offset() // a view of a larger buffer (a graph's arena)
	} else {
		wd := f32(wt).dense()
		wo = operand{f: wd, rs: len(wd) / max(ws[0], 1), cs: 1}
	}
	var bias []float32
	if len(n.Src) > 2 && n.Src[2] != nil {
		bias = f32(n.Src[2]).dense()
	}
	ep, err := epilogueOf(n, true)
	if err != nil {
		return err
	}
	y := out(n.Dst)
	hwo := oh * ow
	pointwise := route == routePointwise
	threads := Threads()
	if winograd {
		conv2dWinograd(mk, threads, x, wo, bias, ep, y, bsz, c, h, w, o)
		return nil
	}
	if direct {
		conv2dDirect(mk, threads, x, wo, pa, bias, ep, y, bsz, c, h, w, o)
		return nil
	}
	cols := colsWorthIt(o, bsz*hwo, ckk, threads) && !mk.pairs && !mk.round
	// The implicit im2col matrix of the whole batch (columns (b, oy, ox));
	// with "in" set to one image, that image's.
	im := im2col{in: x, chw: c * h * w, hwo: hwo, h: h, w: w, kh: kh, kw: kw, ow: ow, sy: sy, sx: sx, py: py, px: px}
	if !cols && bsz > 1 && bsz*hwo <= 4096 && !pointwise {
		// Small maps: one GEMM over the whole batch (columns (b, oy, ox)),
		// so the weights are packed once, into a scratch C that is then
		// scattered to (N, O, OH, OW).
		tmp := getScratch(o * bsz * hwo)
		defer putScratch(tmp)
		g := gemmJob{m: o, n: bsz * hwo, k: ckk, packA: wo.packA, packB: im.packB, c: tmp, ldc: bsz * hwo, rowBias: bias, pa: pa}
		g.run(mk, threads)
		parallelFor(o, o*bsz*hwo/2, func(lo, hi int) {
			for oc := lo; oc < hi; oc++ {
				for b := 0; b < bsz; b++ {
					at := (b*o + oc) * hwo
					copy(y[at:at+hwo], tmp[oc*bsz*hwo+b*hwo:])
					if ep != nil {
						ep.apply(y[at:at+hwo], at)
					}
				}
			}
		})
		return nil
	}
	jobs := make([]gemmJob, bsz)
	for b := range jobs {
		in := x[b*c*h*w : (b+1)*c*h*w]
		jobs[b] = gemmJob{
			m: o, n: hwo, k: ckk,
			packA: wo.packA, pa: pa,
			c: y[b*o*hwo : (b+1)*o*hwo], ldc: hwo,
			rowBias: bias,
			ep:      ep, at: b * o * hwo,
		}
		if pointwise {
			xo := operand{f: in, rs: h * w, cs: 1}
			jobs[b].packB = xo.packB
		} else {
			imb := im
			imb.in = in
			jobs[b].packB = imb.packB
		}
	}
	if cols {
		// Many columns: the images run as one column-partitioned job
		// (the weights packed once for all of them).
		runCols(mk, threads, jobs)
		return nil
	}
	for i := range jobs {
		jobs[i].run(mk, threads)
	}
	return nil
}

// im2col is the implicit im2col matrix of a batch of images (B, C, H, W)
// stored densely in "in": row (ci, ky, kx), column (b, oy, ox) holds
// x[b, ci, oy·sy+ky−py, ox·sx+kx−px], or 0 in the padding.
type im2col struct {
	in               []float32
	chw, hwo         int // elements per input image, output pixels per image
	h, w, kh, kw, ow int
	sy, sx, py, px   int
}

// packB writes rows [k0, k0+kc) × columns [j0, j0+nc) as B panels, one
// panel at a time (sequential writes: walking all panels per row would put
// every store 4 KiB-aliased into the same L1 set). Each panel row is a few
// runs of consecutive output pixels, copied from the matching input row
// with the padding zeroed.
func (m *im2col) packB(dst []float32, k0, kc, j0, nc, nr int) {
	ohw := m.hwo / m.ow // output rows per image
	ci0, ky0, kx0 := k0/(m.kh*m.kw), (k0/m.kw)%m.kh, k0%m.kw
	for jp := 0; jp*nr < nc; jp++ {
		d := dst[jp*kc*nr : (jp+1)*kc*nr]
		cols := min(nr, nc-jp*nr)
		if cols < nr {
			clear(d)
		}
		j := j0 + jp*nr
		q := j % m.hwo
		b0, oy0, ox0 := j/m.hwo, q/m.ow, q%m.ow
		ci, ky, kx := ci0, ky0, kx0
		for p := 0; p < kc; p++ {
			drow := d[p*nr : p*nr+cols]
			b, oy, ox := b0, oy0, ox0
			for c := 0; c < cols; {
				run := min(cols-c, m.ow-ox)
				seg := drow[c : c+run]
				iy := oy*m.sy + ky - m.py
				switch {
				case iy < 0 || iy >= m.h:
					clear(seg)
				case m.sx == 1:
					src := m.in[b*m.chw+(ci*m.h+iy)*m.w : b*m.chw+(ci*m.h+iy+1)*m.w]
					ix0 := ox + kx - m.px
					lo := min(max(0, -ix0), run)
					hi := max(min(run, m.w-ix0), lo)
					clear(seg[:lo])
					if hi > lo {
						copy(seg[lo:hi], src[ix0+lo:ix0+hi])
					}
					clear(seg[hi:])
				default:
					src := m.in[b*m.chw+(ci*m.h+iy)*m.w : b*m.chw+(ci*m.h+iy+1)*m.w]
					for q := range seg {
						ix := (ox+q)*m.sx + kx - m.px
						if ix < 0 || ix >= m.w {
							seg[q] = 0
						} else {
							seg[q] = src[ix]
						}
					}
				}
				c += run
				ox = 0
				if oy++; oy == ohw {
					oy = 0
					b++
				}
			}
			// next row of the im2col matrix: (ci, ky, kx) + 1
			if kx++; kx == m.kw {
				kx = 0
				if ky++; ky == m.kh {
					ky = 0
					ci++
				}
			}
		}
	}
}

// upsampleNearestFast repeats every pixel f×f times (as upsampleNearestOp),
// building each output row once and copying it for the f−1 rows below,
// with the planes split over the workers.
func upsampleNearestFast(n *tensor.Node) error {
	x, y, np, h, w, oh, ow := planes(n)
	f := n.Int[0]
	parallelFor(np, len(y), func(lo, hi int) {
		for p := lo; p < hi; p++ {
			in := x[p*h*w : (p+1)*h*w]
			o := y[p*oh*ow : (p+1)*oh*ow]
			for i := 0; i < oh; i += f {
				row := o[i*ow : (i+1)*ow]
				src := in[(i/f)*w : (i/f+1)*w]
				for j := range row {
					row[j] = src[j/f]
				}
				for r := i + 1; r < min(i+f, oh); r++ {
					copy(o[r*ow:(r+1)*ow], row)
				}
			}
		}
	})
	return nil
}

// convPath is how conv2dFast runs a convolution (convRoute).
type convPath int

const (
	routeIm2col    convPath = iota // an implicit GEMM over the im2col matrix
	routeWinograd                  // Winograd F(4×4, 3×3)
	routeDirect                    // the direct 3×3 kernel
	routePointwise                 // 1×1, stride 1, unpadded: a plain GEMM on the image
)

func (r convPath) String() string {
	return [...]string{"im2col", "winograd", "direct", "gemm"}[r]
}

// convRoute reports how conv2dFast runs the convolution node n on mk.
func convRoute(n *tensor.Node, mk *microKernel) convPath {
	if winogradFor(n, mk) {
		return routeWinograd
	}
	xs, ws, ds := n.Src[0].Shape(), n.Src[1].Shape(), n.Dst.Shape()
	kh, kw, sy, sx, py, px := ws[2], ws[3], n.Int[0], n.Int[1], n.Int[2], n.Int[3]
	switch {
	case directWorthIt(mk, xs[1], ws[0], kh, kw, sy, sx, py, px, ds[3]):
		return routeDirect
	case kh == 1 && kw == 1 && sy == 1 && sx == 1 && py == 0 && px == 0:
		return routePointwise
	}
	return routeIm2col
}
