package cpu

import "unsafe"

// Direct 3×3 convolution (stride 1, padding 1: every 3×3 convolution of the
// U-Nets' resnets). The implicit GEMM copies each input value into the B
// panels nine times, once per tap; here the micro-kernel reads its B
// vectors straight from a zero-padded copy of the input rows instead
// (microKernel.conv), so the only copy is that padding, about once per
// input value. A register tile is mr output channels × nr consecutive
// output pixels of one row, which is why this path needs rows of at least
// nr pixels.
//
// Work is split as in runCols: the weights are packed once, then workers
// take chunks of output rows (of any image). For each K block of cb input
// channels a worker copies the cb × (rows+2) padded input rows its chunk
// reads into a private slab, then runs every row block of the weights
// over the chunk's tiles.

// directChannels is the most input channels in one K block of the direct
// convolution (288 products of a sum per pass of the micro-kernel). The
// K blocks are also the summation blocks: the kernel sums a block in its
// registers and adds that to the output, so shorter blocks round less. At
// 56 channels (a 504-deep block, as for the GEMM's KC = 512) the fixture
// pipeline's image error was 3× that at 4–43 channels, where it hardly
// changes (its small U-Nets then sum each output in one block); 32 costs
// under 1 % in speed at the Karlo shapes.
const directChannels = 32

// directWorthIt reports whether conv2dDirect handles a convolution with
// c input and o output channels, kernel kh×kw, strides sy, sx, paddings
// py, px and output width ow.
func directWorthIt(mk *microKernel, c, o, kh, kw, sy, sx, py, px, ow int) bool {
	return mk.conv != nil && c > 0 && o > 0 && kh == 3 && kw == 3 && sy == 1 && sx == 1 && py == 1 && px == 1 && ow >= mk.nr
}

// directBlock is the direct convolution's K block in input channels, for
// c of them: at most directChannels, as even as that allows, and whole
// channel pairs for a bf16 pairs kernel.
func directBlock(mk *microKernel, c int) int {
	cb := ceilDiv(c, ceilDiv(c, directChannels))
	if mk.pairs {
		cb += cb & 1
	}
	return cb
}

// conv2dDirect computes y = conv(x, W) + bias, then the epilogue ep (or
// nil), for x (bsz, c, h, w) dense and y (bsz, o, h, w); wo is the weight
// as an O × C·9 GEMM operand, or pa (when not nil) the weight packed once
// with K blocks of 9·directBlock(mk, c).
func conv2dDirect(mk *microKernel, threads int, x []float32, wo operand, pa *packedOp, bias []float32, ep *epilogue, y []float32, bsz, c, h, w, o int) {
	mr, nr := mk.mr, mk.nr
	k := 9 * c
	cb := directBlock(mk, c)
	kcB := 9 * cb
	var ap []float32
	var mcB, mPad int
	if pa != nil {
		ap, mcB, mPad = pa.data, mk.rowBlock(o), pa.span()
	} else {
		ap, mcB, mPad = mk.packDirect(wo.packA, o, c, cb, threads)
		defer putScratch(ap)
	}
	// step is the channel count the kernel steps over: channels, or pairs
	// of them (then the slab holds pairs, and A and the slab are indexed
	// by pair).
	step := func(n int) int {
		if mk.pairs {
			return ceilDiv(n, 2)
		}
		return n
	}

	// Chunks of rows: about as many tiles as runCols puts in a column
	// chunk, but at least two chunks per thread when the batch allows.
	tilesRow := ceilDiv(w, nr)
	rows := max(1, min(h, chunkPanels(mPad, k)/tilesRow))
	for rows > 1 && bsz*ceilDiv(h, rows) < 2*threads {
		rows = ceilDiv(rows, 2)
	}
	perImage := ceilDiv(h, rows)
	nch := bsz * perImage
	wp := w + 2
	plane := (rows + 2) * wp
	slabLen := step(cb)*plane + nr + 2 // slack: an edge tile reads past its row
	// The chunk's outputs are summed in a staging buffer whose rows (one
	// per output channel) are ls apart: in y they are H·W apart, a power
	// of two at every U-Net level, so a tile's rows would share an L1 set.
	ls := rows*w + 16
	slabs, stages := make([][]float32, threads), make([][]float32, threads)
	defer func() {
		for _, s := range append(slabs, stages...) {
			if s != nil {
				putScratch(s)
			}
		}
	}()
	parallelN(nch, threads, func(t, wk int) {
		if slabs[wk] == nil {
			slabs[wk] = getScratch(slabLen)
			clear(slabs[wk][step(cb)*plane:])
			stages[wk] = getScratch(o * ls)
		}
		slab, stage := slabs[wk], stages[wk]
		b, oy0 := t/perImage, (t%perImage)*rows
		nrows := min(rows, h-oy0)
		in := x[b*c*h*w : (b+1)*c*h*w]
		out := y[b*o*h*w : (b+1)*o*h*w]
		defer func() {
			for oc := 0; oc < o; oc++ {
				at := (oc*h + oy0) * w
				copy(out[at:at+nrows*w], stage[oc*ls:])
				if ep != nil {
					ep.apply(out[at:at+nrows*w], b*o*h*w+at)
				}
			}
		}()
		var tile []float32
		defer func() { putTile(tile) }()
		for pc := 0; pc < k; pc += kcB {
			kc := min(kcB, k-pc)
			ci0, nci := pc/9, kc/9
			// The padded input rows oy0−1 … oy0+nrows of channels ci0….
			if mk.pairs {
				padPairs(slab, in, ci0, nci, h, w, oy0, nrows, plane)
			} else {
				for ci := 0; ci < nci; ci++ {
					src := in[(ci0+ci)*h*w : (ci0+ci+1)*h*w]
					padRows(slab[ci*plane:], h, w, oy0, nrows, func(d []float32, iy int) { copy(d, src[iy*w:(iy+1)*w]) })
				}
			}
			ns := step(nci)
			kcs := 9 * ns // A steps of this block
			for ic := 0; ic < o; ic += mcB {
				mc := min(mcB, o-ic)
				a := ap[9*step(ci0)*mPad+ic*kcs:]
				for r := 0; r < nrows; r++ {
					for ox := 0; ox < w; ox += nr {
						cols := min(nr, w-ox)
						bp := &slab[r*wp+ox]
						for i := 0; i < mc; i += mr {
							oc := ic + i
							apan := &a[i*kcs]
							var rb []float32
							if pc == 0 && bias != nil {
								rb = bias[oc:]
							}
							kern := func(d *float32, ld int, acc bool) { mk.conv(ns, apan, bp, d, ld, wp, plane, acc) }
							mk.tileTo(kern, min(mr, mc-i), cols, stage[oc*ls+r*w+ox:], ls, pc > 0, rb, nil, &tile)
						}
					}
				}
			}
		}
	})
}

// packDirect packs the direct convolution's weights (o rows of 9·c, as
// packA reads them) whole, in K blocks of cb channels: packAll's layout,
// rewritten as channel pairs (convPairs) for a bf16 pairs kernel. The
// buffer is scratch for the caller to put back.
func (mk *microKernel) packDirect(packA func(dst []float32, i0, mc, k0, kc, mr int), o, c, cb, threads int) (ap []float32, mcB, mPad int) {
	ap, mcB, mPad = mk.packAll(packA, o, 9*c, 9*cb, threads)
	if mk.pairs {
		p := convPairs(ap, o, c, cb, mk.mr, mcB, mPad)
		putScratch(ap)
		ap = p
	}
	return ap, mcB, mPad
}

// convPairs rewrites the packed conv weights ap (packAll's layout: K
// blocks of cb channels × 9 taps, row blocks of mcB rows, panels of mr
// rows) as bf16 pairs of channels: per block, per panel, for each channel
// pair p and tap t, mr 32-bit pairs (channel 2p's weight low, 2p+1's high,
// zero past the block's channels). The block of channel c0 starts at
// 9·(c0/2)·mPad, its row block at ic at ic·9·⌈nci/2⌉.
func convPairs(ap []float32, o, c, cb, mr, mcB, mPad int) []float32 {
	out := getScratch(9 * ceilDiv(c, 2) * mPad)
	for c0 := 0; c0 < c; c0 += cb {
		nci := min(cb, c-c0)
		kc, ncp := 9*nci, ceilDiv(nci, 2)
		for ic := 0; ic < o; ic += mcB {
			mc := min(mcB, o-ic)
			for q := 0; q < ceilDiv(mc, mr); q++ {
				src := ap[9*c0*mPad+ic*kc+q*kc*mr:]
				dst := out[9*(c0/2)*mPad+ic*9*ncp+q*9*ncp*mr:]
				// A channel's 9 taps are 9·mr consecutive values, so each
				// pair of channels converts in one call.
				for p := 0; p < ncp; p++ {
					lo := src[9*2*p*mr : 9*(2*p+1)*mr]
					var hi []float32
					if 2*p+1 < nci {
						hi = src[9*(2*p+1)*mr : 9*(2*p+2)*mr]
					}
					pairBF16(dst[9*p*mr:9*(p+1)*mr], lo, hi)
				}
			}
		}
	}
	return out
}

// padPairs fills the slab with the zero-padded input rows oy0−1 …
// oy0+nrows of channels ci0 … ci0+nci−1 as bf16 pairs of channels: pair p
// holds channel ci0+2p in the low half and ci0+2p+1 (or zero) in the high
// half of each pixel.
func padPairs(slab, in []float32, ci0, nci, h, w, oy0, nrows, plane int) {
	for p := 0; p < ceilDiv(nci, 2); p++ {
		lo := in[(ci0+2*p)*h*w : (ci0+2*p+1)*h*w]
		var hi []float32
		if 2*p+1 < nci {
			hi = in[(ci0+2*p+1)*h*w : (ci0+2*p+2)*h*w]
		}
		padRows(slab[p*plane:], h, w, oy0, nrows, func(d []float32, iy int) {
			var h []float32
			if hi != nil {
				h = hi[iy*w : (iy+1)*w]
			}
			pairBF16(d, lo[iy*w:(iy+1)*w], h)
		})
	}
}

// padRows fills one channel's plane of the slab with the zero-padded input
// rows oy0−1 … oy0+nrows (each w+2 wide): rows outside the image and the
// two border columns are zero, and fill(d, iy) writes the w values of
// input row iy into d.
func padRows(plane []float32, h, w, oy0, nrows int, fill func(d []float32, iy int)) {
	wp := w + 2
	for r := 0; r < nrows+2; r++ {
		d := plane[r*wp : (r+1)*wp]
		iy := oy0 - 1 + r
		if iy < 0 || iy >= h {
			clear(d)
			continue
		}
		d[0], d[wp-1] = 0, 0
		fill(d[1:wp-1], iy)
	}
}

// packAll packs all of A (m × k) for the micro-kernel, on up to threads
// goroutines, in K blocks of kcB columns (the last one shorter) and row
// blocks of mcB = mk.rowBlock(m) rows: the K block at pc holds mPad =
// ⌈m/mr⌉·mr rows × kc as panels, and its row block at ic starts at ic·kc.
// The buffer is scratch for the caller to put back.
func (mk *microKernel) packAll(packA func(dst []float32, i0, mc, k0, kc, mr int), m, k, kcB, threads int) (ap []float32, mcB, mPad int) {
	mr := mk.mr
	mcB, mPad = mk.rowBlock(m), ceilDiv(m, mr)*mr
	ap = getScratch(mPad * k)
	nPC, nIC := ceilDiv(k, kcB), ceilDiv(m, mcB)
	parallelN(nPC*nIC, threads, func(t, _ int) {
		pc, ic := (t/nIC)*kcB, (t%nIC)*mcB
		kc := min(kcB, k-pc)
		packA(ap[pc*mPad+ic*kc:], ic, min(mcB, m-ic), pc, kc, mr)
	})
	return ap, mcB, mPad
}

// chunkPanels is the number of nr-column panels (or tiles) a worker takes
// at a time when A (mPad × k) is packed whole: each chunk re-reads all of
// A, so a larger A gets wider chunks (4 panels per 2 MiB of A, 4 to 16).
func chunkPanels(mPad, k int) int { return min(16, max(4, ceilDiv(mPad*k, 1<<19))) }

// conv3x3Go is the pure-Go twin of the conv micro-kernels: the mr×nr tile
// c = (acc ? c : 0) + Σ_{ci<nci, ky, kx} a[(9ci+3ky+kx)·mr:]ᵀ ·
// b[ci·hwp + ky·wp + kx:], in float32 with fused multiply-adds.
func conv3x3Go(mr, nr, nci int, ap, bp, cp *float32, ldc, wp, hwp int, acc bool) {
	var t [512]float32
	s := t[:mr*nr]
	if nci > 0 {
		a := unsafe.Slice(ap, 9*nci*mr)
		b := unsafe.Slice(bp, (nci-1)*hwp+2*wp+2+nr)
		for ci := 0; ci < nci; ci++ {
			for tap := 0; tap < 9; tap++ {
				av := a[(9*ci+tap)*mr : (9*ci+tap+1)*mr]
				off := ci*hwp + (tap/3)*wp + tap%3
				bv := b[off : off+nr]
				for i, x := range av {
					row := s[i*nr : i*nr+nr]
					for j, y := range bv {
						row[j] = fma32(x, y, row[j])
					}
				}
			}
		}
	}
	cs := unsafe.Slice(cp, (mr-1)*ldc+nr)
	for i := 0; i < mr; i++ {
		row := cs[i*ldc : i*ldc+nr]
		if acc {
			for j := range row {
				row[j] += s[i*nr+j]
			}
		} else {
			copy(row, s[i*nr:i*nr+nr])
		}
	}
}
