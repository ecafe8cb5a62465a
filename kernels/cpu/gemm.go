package cpu

import (
	"sync"
	"unsafe"
)

// The blocked SGEMM that the fast matmul, convolution and attention kernels
// share. It follows the BLIS scheme:
//
//	for jc over N in steps of NC            (B block, kept in L3)
//	  for pc over K in steps of KC          (pack B[pc:pc+KC, jc:jc+NC] once, in parallel)
//	    for ic over M in steps of MC        (tasks: pack A[ic:ic+MC, pc:pc+KC] into L2)
//	      for jr over the block's NR panels (B micro-panel, L1)
//	        for ir over the block's MR panels
//	          micro-kernel: C[MR×NR] (+)= Apanel·Bpanel
//
// Packing copies each operand into micro-panels the register kernel reads
// sequentially: A panels hold MR values per k, B panels NR values per k,
// zero-padded at the edges. Operands therefore may have any strides (and
// F16/BF16 operands are converted while packing); only packing knows the
// source layout, which is how convolution runs as an implicit GEMM (its B
// packer reads the image directly).
//
// gemmJob.run is this scheme; runCols (gemm_cols.go) is the variant for
// several threads and many columns, which packs all of A once and splits
// the columns instead of the rows.

// microKernel is one register micro-kernel with its blocking.
type microKernel struct {
	name       string
	mr, nr     int // register tile
	mc, kc, nc int // cache blocking (mc a multiple of mr, nc of nr)
	// fn computes the mr×nr tile c = (acc ? c : 0) + Σ_p a[p·mr:]ᵀ·b[p·nr:]
	// for k steps; c is row-major with ldc elements per row.
	fn func(k int, a, b, c *float32, ldc int, acc bool)
	ok bool // usable on this machine
	// conv, where not nil, is the direct 3×3 convolution kernel with the
	// same register tile (see conv2dDirect and conv3x3Go).
	conv func(nci int, a, b, c *float32, ldc, wp, hwp int, acc bool)
	// alt is a kernel with the same nr and a smaller mr, for products
	// whose row count mr does not divide (attention's Oᵀ has Dv = 64
	// rows: 12 leaves a third of a panel idle, 8 none).
	alt *microKernel
	// pairs marks a bfloat16 kernel: its panels hold pairs of bf16 values
	// (k = 2p in the low half, 2p+1 in the high half of each 32-bit
	// element) and fn's k counts pairs. The driver packs as for float32,
	// rounds to bf16 (to nearest even) and interleaves; kc is even.
	pairs bool
	// round marks a float32 kernel fed operands rounded to bfloat16 (the
	// bf16 compute fallback without AVX512_BF16).
	round bool
}

// forRows is the kernel for products of m rows: mk's alt when mk.mr does
// not divide m and alt.mr does (no partial row panel), else mk.
func (mk *microKernel) forRows(m int) *microKernel {
	if a := mk.alt; a != nil && a.ok && m%mk.mr != 0 && m%a.mr == 0 {
		return a
	}
	return mk
}

// kernels lists the micro-kernels from most to least preferred; the last
// is the pure-Go one, always usable.
var kernels = append(archKernels[:len(archKernels):len(archKernels)], genericKernel)

// genericKernel is the pure-Go micro-kernel: the fallback on machines
// without a SIMD kernel (amd64 without AVX2, architectures other than
// amd64 and arm64, the purego tag). Its 4×4 tile lives in 16 local
// variables, which the compiler keeps in registers (and fuses into FMAs
// where the architecture has them). microGo is the reference twin the
// assembly kernels are tested against.
var genericKernel = &microKernel{
	name: "generic", mr: 4, nr: 4, mc: 128, kc: 256, nc: 2048, ok: true,
	fn: micro4x4,
}

// micro4x4 computes the 4×4 tile c = (acc ? c : 0) + Σ_p a[4p:]ᵀ·b[4p:].
func micro4x4(k int, ap, bp, cp *float32, ldc int, acc bool) {
	a := unsafe.Slice(ap, 4*k)
	b := unsafe.Slice(bp, 4*k)
	var c00, c01, c02, c03, c10, c11, c12, c13 float32
	var c20, c21, c22, c23, c30, c31, c32, c33 float32
	for p := 0; p < k; p++ {
		av := a[4*p : 4*p+4 : 4*p+4]
		bv := b[4*p : 4*p+4 : 4*p+4]
		a0, a1, a2, a3 := av[0], av[1], av[2], av[3]
		b0, b1, b2, b3 := bv[0], bv[1], bv[2], bv[3]
		c00, c01, c02, c03 = c00+a0*b0, c01+a0*b1, c02+a0*b2, c03+a0*b3
		c10, c11, c12, c13 = c10+a1*b0, c11+a1*b1, c12+a1*b2, c13+a1*b3
		c20, c21, c22, c23 = c20+a2*b0, c21+a2*b1, c22+a2*b2, c23+a2*b3
		c30, c31, c32, c33 = c30+a3*b0, c31+a3*b1, c32+a3*b2, c33+a3*b3
	}
	c := unsafe.Slice(cp, 3*ldc+4)
	rows := [4][4]float32{{c00, c01, c02, c03}, {c10, c11, c12, c13}, {c20, c21, c22, c23}, {c30, c31, c32, c33}}
	for i, r := range rows {
		d := c[i*ldc : i*ldc+4 : i*ldc+4]
		if acc {
			d[0], d[1], d[2], d[3] = d[0]+r[0], d[1]+r[1], d[2]+r[2], d[3]+r[3]
		} else {
			d[0], d[1], d[2], d[3] = r[0], r[1], r[2], r[3]
		}
	}
}

// microGo computes the mr×nr tile c = (acc ? c : 0) + Σ_p a[p·mr:]ᵀ·b[p·nr:]
// in float32 with fused multiply-adds, as the assembly kernels do.
func microGo(mr, nr, k int, a, b []float32, c *float32, ldc int, acc bool) {
	var t [512]float32
	s := t[:mr*nr]
	for p := 0; p < k; p++ {
		ap := a[p*mr : p*mr+mr]
		bp := b[p*nr : p*nr+nr]
		for i, av := range ap {
			row := s[i*nr : i*nr+nr]
			for j, bv := range bp {
				row[j] = fma32(av, bv, row[j])
			}
		}
	}
	cs := unsafe.Slice(c, (mr-1)*ldc+nr)
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

// fma32 is a·b + c rounded once to float32 (the product of two float32s is
// exact in float64, so this matches a hardware FMA except for rare double
// rounding).
func fma32(a, b, c float32) float32 { return float32(float64(a)*float64(b) + float64(c)) }

// gemmJob describes C = A·B (+ biases) for the blocked driver. The packers
// hide the operand layouts.
type gemmJob struct {
	m, n, k int
	// packA writes rows [i0, i0+mc) × columns [k0, k0+kc) of A as
	// ⌈mc/mr⌉ panels of kc·mr values (row index fastest), zero-padded.
	packA func(dst []float32, i0, mc, k0, kc, mr int)
	// packB writes rows [k0, k0+kc) × columns [j0, j0+nc) of B as
	// ⌈nc/nr⌉ panels of kc·nr values (column index fastest), zero-padded.
	packB func(dst []float32, k0, kc, j0, nc, nr int)
	c     []float32 // C[i·ldc + j]
	ldc   int
	// rowBias (M) and colBias (N), either or both nil, are added to C.
	rowBias, colBias []float32
	// ep, when not nil, runs on each block of C once its last K block is
	// done (while it is in cache); c[0] is element at of its destination.
	ep *epilogue
	at int
	// pa and pb, when not nil, are A and B packed whole for the kernel
	// (weights packed once, see packedOp): their blocks are read in place
	// instead of packA and packB.
	pa, pb *packedOp
}

// finish runs the job's epilogue on the rows×cols block of C at (i, j).
func (g *gemmJob) finish(i, j, rows, cols int) {
	if g.ep != nil {
		g.ep.block(g.c[i*g.ldc+j:], g.at+i*g.ldc+j, g.ldc, rows, cols)
	}
}

// serialFlops is the work under which a GEMM runs on one goroutine
// (~40 µs at 100 GFLOP/s: less than the hand-off is worth).
const serialFlops = 1 << 22

// scratch recycles packing buffers. A plain free list rather than a
// sync.Pool: the pool is emptied at every GC, and a fresh multi-megabyte
// buffer costs zeroing and page faults that serialise the workers packing
// into it. The list keeps at most scratchMax floats.
var scratch struct {
	sync.Mutex
	free  [][]float32
	total int // floats held in free
}

const scratchMax = 64 << 20 // 256 MiB of float32s

func getScratch(n int) []float32 {
	scratch.Lock()
	best := -1
	for i, b := range scratch.free {
		if cap(b) >= n && (best < 0 || cap(b) < cap(scratch.free[best])) {
			best = i
		}
	}
	if best >= 0 {
		b := scratch.free[best]
		last := len(scratch.free) - 1
		scratch.free[best] = scratch.free[last]
		scratch.free = scratch.free[:last]
		scratch.total -= cap(b)
		scratch.Unlock()
		return b[:n]
	}
	scratch.Unlock()
	return make([]float32, n)
}

func putScratch(s []float32) {
	scratch.Lock()
	defer scratch.Unlock()
	// Make room by dropping the smallest buffers held.
	for scratch.total+cap(s) > scratchMax && len(scratch.free) > 0 {
		small := 0
		for i, b := range scratch.free {
			if cap(b) < cap(scratch.free[small]) {
				small = i
			}
		}
		if cap(scratch.free[small]) >= cap(s) {
			return // s is the smallest: drop it instead
		}
		scratch.total -= cap(scratch.free[small])
		last := len(scratch.free) - 1
		scratch.free[small] = scratch.free[last]
		scratch.free = scratch.free[:last]
	}
	if cap(s) > scratchMax {
		return
	}
	scratch.free = append(scratch.free, s[:cap(s)])
	scratch.total += cap(s)
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// rowBlock is the row block (MC) for m > 0 rows: at most mk.mc, a multiple
// of mr, and as even as that allows (no thin last block).
func (mk *microKernel) rowBlock(m int) int {
	return ceilDiv(ceilDiv(m, ceilDiv(m, mk.mc)), mk.mr) * mk.mr
}

// run computes the product with micro-kernel mk on up to threads goroutines.
func (g *gemmJob) run(mk *microKernel, threads int) {
	m, n, k := g.m, g.n, g.k
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		// No products: C is the bias (or zero).
		for i := 0; i < m; i++ {
			row := g.c[i*g.ldc : i*g.ldc+n]
			clear(row)
			biasTile(row, 1, n, 0, rowAt(g.rowBias, i), g.colBias)
		}
		g.finish(0, 0, m, n)
		return
	}
	if 2*m*n*k < serialFlops {
		threads = 1
	}
	mr, nr := mk.mr, mk.nr
	kcB := mk.kBlock(k)
	ncB := ceilDiv(ceilDiv(n, ceilDiv(n, mk.nc)), nr) * nr
	mcB := mk.rowBlock(m)
	if threads > 1 && ceilDiv(m, mcB) < threads && m > mr {
		// Few row blocks: split rows evenly over the threads.
		mcB = ceilDiv(ceilDiv(m, threads), mr) * mr
	}
	var bbuf []float32
	if g.pb == nil {
		bbuf = getScratch(kcB * ncB)
		defer putScratch(bbuf)
	}
	abufs := make([][]float32, threads)
	packed := make([]int, threads) // row block in each worker's abufs (this pc)
	defer func() {
		for _, b := range abufs {
			if b != nil {
				putScratch(b)
			}
		}
	}()
	nIC := ceilDiv(m, mcB)
	for jc := 0; jc < n; jc += ncB {
		nc := min(ncB, n-jc)
		npan := ceilDiv(nc, nr)
		for pc := 0; pc < k; pc += kcB {
			kc := min(kcB, k-pc)
			ks := mk.steps(kc) // kernel steps: kc, or its pairs
			acc := pc > 0
			var rb, cb []float32 // biases, added by the first K block
			if pc == 0 {
				rb, cb = g.rowBias, g.colBias
			}
			bblk := bbuf
			if g.pb != nil {
				bblk = g.pb.block(pc, jc)
			} else {
				// Pack the B block, in parallel when it is big.
				nPack := 1
				if threads > 1 && kc*nc >= 1<<15 {
					nPack = min(npan, 4*threads)
				}
				parallelN(nPack, threads, func(t, _ int) {
					p0, p1 := npan*t/nPack, npan*(t+1)/nPack
					if p1 > p0 {
						g.packBFor(mk, bbuf[p0*ks*nr:], pc, kc, jc+p0*nr, min(nc-p0*nr, (p1-p0)*nr))
					}
				})
			}
			// Tasks: row blocks × column chunks of the B block.
			// Enough tasks (≥ 32 per thread) that the atomic hand-out
			// balances them, but column chunks of ≥ 16 panels so that
			// re-packing the A block stays cheap.
			nJ := 1
			if threads > 1 {
				nJ = max(1, min(ceilDiv(32*threads, nIC), npan/16, npan))
				if nIC < threads {
					nJ = max(nJ, min(npan, ceilDiv(threads, nIC)))
				}
			}
			for w := range packed {
				packed[w] = -1
			}
			parallelN(nIC*nJ, threads, func(t, w int) {
				ic := (t / nJ) * mcB
				jt := t % nJ
				mc := min(mcB, m-ic)
				p0, p1 := npan*jt/nJ, npan*(jt+1)/nJ
				if p1 <= p0 {
					return
				}
				var ab []float32
				if g.pa != nil {
					ab = g.pa.block(pc, ic)
				} else {
					if abufs[w] == nil {
						abufs[w] = getScratch(mcB * kcB)
					}
					ab = abufs[w]
					if packed[w] != ic { // this worker's A block is not that one yet
						g.packAFor(mk, ab, ic, mc, pc, kc)
						packed[w] = ic
					}
				}
				j := jc + p0*nr
				var brb, bcb []float32
				if rb != nil {
					brb = rb[ic:]
				}
				if cb != nil {
					bcb = cb[j:]
				}
				cols := min(n-j, (p1-p0)*nr)
				mk.block(mc, cols, ks, ab, bblk[p0*ks*nr:], g.c[ic*g.ldc+j:], g.ldc, acc, brb, bcb)
				if pc+kc == k {
					g.finish(ic, j, mc, cols)
				}
			})
		}
	}
}

// kBlock is the K block (KC) for a depth of k: at most mk.kc, and as even
// as that allows (no thin last block); even for a bf16 pairs kernel (whole
// pairs in every block but the last).
func (mk *microKernel) kBlock(k int) int {
	kc := ceilDiv(k, ceilDiv(k, mk.kc))
	if mk.pairs {
		kc += kc & 1
	}
	return kc
}

// steps is the number of kernel steps for kc values of K: kc, or ⌈kc/2⌉
// pairs.
func (mk *microKernel) steps(kc int) int {
	if mk.pairs {
		return ceilDiv(kc, 2)
	}
	return kc
}

// packAFor packs rows [i0, i0+mc) × K [k0, k0+kc) of A for mk.
func (g *gemmJob) packAFor(mk *microKernel, dst []float32, i0, mc, k0, kc int) {
	mk.packFor(dst, ceilDiv(mc, mk.mr), kc, mk.mr, func(d []float32) { g.packA(d, i0, mc, k0, kc, mk.mr) })
}

// packBFor packs K [k0, k0+kc) × columns [j0, j0+nc) of B for mk.
func (g *gemmJob) packBFor(mk *microKernel, dst []float32, k0, kc, j0, nc int) {
	mk.packFor(dst, ceilDiv(nc, mk.nr), kc, mk.nr, func(d []float32) { g.packB(d, k0, kc, j0, nc, mk.nr) })
}

// packFor runs pack, which writes panels float32 panels of kc steps of w
// values, for mk: into dst as they are, rounded to bf16 for a rounding
// kernel, or through scratch and toPairs for a bf16-pairs kernel.
func (mk *microKernel) packFor(dst []float32, panels, kc, w int, pack func(dst []float32)) {
	n := panels * w * kc
	if !mk.pairs {
		pack(dst)
		if mk.round {
			roundBF16(dst[:n])
		}
		return
	}
	tmp := getScratch(n)
	pack(tmp)
	toPairs(dst, tmp, panels, kc, w)
	putScratch(tmp)
}

// toPairs rewrites panels float32 panels of kc steps of w values (src) as
// panels of ⌈kc/2⌉ steps of w bf16 pairs (dst, not overlapping src): the
// value at step 2p rounded to bf16 in the low half, the one at 2p+1 in the
// high half, zero past kc. Narrow panels (A's mr = 12, under one 16-lane
// vector) are converted several steps at a time: their low and high rows
// are gathered into contiguous buffers first, so that the conversion
// runs vectorised instead of element by element.
func toPairs(dst, src []float32, panels, kc, w int) {
	kp := ceilDiv(kc, 2)
	const batch = 256
	var lob, hib [batch]float32
	for q := 0; q < panels; q++ {
		s := src[q*kc*w : (q+1)*kc*w]
		d := dst[q*kp*w : (q+1)*kp*w]
		if w >= 16 || w > batch {
			full := kc / 2 // row pairs; an odd kc leaves a last row paired with zeros
			pairRows(d, s, full, w)
			if full < kp {
				pairBF16(d[full*w:kp*w], s[(kc-1)*w:kc*w], nil)
			}
			continue
		}
		per := batch / w
		for p0 := 0; p0 < kp; p0 += per {
			n := min(per, kp-p0)
			for i := 0; i < n; i++ {
				p := p0 + i
				copy(lob[i*w:(i+1)*w], s[2*p*w:2*p*w+w])
				if 2*p+1 < kc {
					copy(hib[i*w:(i+1)*w], s[(2*p+1)*w:(2*p+1)*w+w])
				} else {
					clear(hib[i*w : (i+1)*w])
				}
			}
			pairBF16(d[p0*w:(p0+n)*w], lob[:n*w], hib[:n*w])
		}
	}
}

// block computes the m×n matrix c = (acc ? c : 0) + A·B from packed
// operands: ap holds ⌈m/mr⌉ A panels and bp ⌈n/nr⌉ B panels, both of k
// steps; c is row-major with ldc elements per row. With a row bias rb (m)
// or column bias cb (n) (either may be nil), c is instead set to bias +
// A·B: each tile is filled with its bias just before the kernel
// accumulates into it, while it is in L1 (no separate pass over C). B
// panels run in the outer loop so each stays close while the A panels
// stream past.
func (mk *microKernel) block(m, n, k int, ap, bp, c []float32, ldc int, acc bool, rb, cb []float32) {
	mr, nr := mk.mr, mk.nr
	plain := rb == nil && cb == nil
	var tile []float32
	defer func() { putTile(tile) }()
	for j := 0; j < n; j += nr {
		b := &bp[(j/nr)*k*nr]
		for i := 0; i < m; i += mr {
			a := &ap[(i/mr)*k*mr]
			if plain && i+mr <= m && j+nr <= n {
				// The common case, called directly: attention runs many
				// short-k tiles, where the closure below costs ~2 %.
				mk.fn(k, a, b, &c[i*ldc+j], ldc, acc)
				continue
			}
			kern := func(d *float32, ld int, acc bool) { mk.fn(k, a, b, d, ld, acc) }
			mk.tileTo(kern, min(mr, m-i), min(nr, n-j), c[i*ldc+j:], ldc, acc, rowAt(rb, i), colFrom(cb, j), &tile)
		}
	}
}

// tileTo runs a register-tile kernel for the rows×cols block at c (row
// stride ldc), rows ≤ mr and cols ≤ nr. kern(dst, ld, acc) computes the
// mr×nr product into dst (row stride ld), added to what is there when acc
// is set. The block gets bias + product when a row bias rb (rb[r] for its
// row r) or column bias cb is given, else product added to c when acc is
// set, else the product. A whole tile with a bias is filled with it just
// before the kernel accumulates into it, while it is in L1 (no separate
// pass over C); a partial block is computed into *tile (made on first use:
// it escapes, the kernel being a func value) and copied out.
func (mk *microKernel) tileTo(kern func(dst *float32, ld int, acc bool), rows, cols int, c []float32, ldc int, acc bool, rb, cb []float32, tile *[]float32) {
	mr, nr := mk.mr, mk.nr
	if rows == mr && cols == nr {
		if rb != nil || cb != nil {
			fillBias(c, ldc, mr, nr, 0, 0, rb, cb)
			acc = true
		}
		kern(&c[0], ldc, acc)
		return
	}
	if *tile == nil {
		*tile = getTile(mr * nr) // the caller returns it (putTile)
	}
	kern(&(*tile)[0], nr, false)
	storeTile(*tile, nr, c, ldc, rows, cols, acc, rb, cb)
}

// tilePool recycles the edge tiles of tileTo: a per-call allocation
// otherwise (the kernel's destination escapes through the func value).
var tilePool = sync.Pool{New: func() any { return new([maxTile]float32) }}

// maxTile bounds mr·nr of every register tile.
const maxTile = 512

func getTile(n int) []float32 {
	if n > maxTile {
		return make([]float32, n)
	}
	return tilePool.Get().(*[maxTile]float32)[:n]
}

func putTile(t []float32) {
	if cap(t) == maxTile {
		tilePool.Put((*[maxTile]float32)(t[:maxTile]))
	}
}

// storeTile writes the top-left rows×cols of a computed tile (row stride
// nr) to c (row stride ldc): bias + tile when a row bias rb or column bias
// cb is given (either may be nil; rb[r] and cb[q] belong to tile element
// (r, q)), else tile added to c when acc is set, else the tile itself.
func storeTile(tile []float32, nr int, c []float32, ldc, rows, cols int, acc bool, rb, cb []float32) {
	bias := rb != nil || cb != nil
	for r := 0; r < rows; r++ {
		dst := c[r*ldc : r*ldc+cols]
		src := tile[r*nr : r*nr+cols]
		switch {
		case bias:
			copy(dst, src)
			biasTile(dst, 1, cols, 0, rowAt(rb, r), cb)
		case acc:
			for q, v := range src {
				dst[q] += v
			}
		default:
			copy(dst, src)
		}
	}
}

// fillBias sets the rows×cols tile at c (row stride ldc), whose first
// element is C[i][j], to rb[i+r] + cb[j+q] (a nil bias counts as zero).
func fillBias(c []float32, ldc, rows, cols, i, j int, rb, cb []float32) {
	// Per row one pass that writes (a copy of the column bias, or a
	// fill), not a clear and an add: this runs before every first-K-block
	// tile of a product with a bias.
	for r := 0; r < rows; r++ {
		row := c[r*ldc : r*ldc+cols]
		switch {
		case cb != nil:
			copy(row, cb[j:j+cols])
			if rb != nil {
				biasTile(row, 1, cols, 0, rb[i+r:], nil)
			}
		case rb != nil:
			v := rb[i+r]
			for q := range row {
				row[q] = v
			}
		default:
			clear(row)
		}
	}
}

// biasTile adds rb[0] (if rb is not nil) and cb[q] (if cb is not nil) to
// every element q of the rows×cols block at c.
func biasTile(c []float32, rows, cols, ldc int, rb, cb []float32) {
	for r := 0; r < rows; r++ {
		row := c[r*ldc : r*ldc+cols]
		if rb != nil {
			v := rb[0]
			for q := range row {
				row[q] += v
			}
		}
		if cb != nil {
			cb := cb[:len(row)]
			for q := range row {
				row[q] += cb[q]
			}
		}
	}
}

// rowAt returns rb[i:] (nil for a nil rb).
func rowAt(rb []float32, i int) []float32 {
	if rb == nil {
		return nil
	}
	return rb[i:]
}

// colFrom returns cb[j:] (nil for a nil cb).
func colFrom(cb []float32, j int) []float32 {
	if cb == nil {
		return nil
	}
	return cb[j:]
}

// operand is a strided matrix: element (i, j) is at off + i·rs + j·cs of
// f (F32 data) or of h (F16 or BF16 bits, decoded by convert).
type operand struct {
	f       []float32
	h       []uint16
	off     int
	rs, cs  int
	convert func(uint16) float32
}

// row returns n elements starting at (i, j) along a row into dst (only
// used where cs == 1).
func (o *operand) row(dst []float32, i, j int) {
	s := o.off + i*o.rs + j
	if o.f != nil {
		copy(dst, o.f[s:s+len(dst)])
		return
	}
	for q, v := range o.h[s : s+len(dst)] {
		dst[q] = o.convert(v)
	}
}

// at returns element (i, j).
func (o *operand) at(i, j int) float32 {
	s := o.off + i*o.rs + j*o.cs
	if o.f != nil {
		return o.f[s]
	}
	return o.convert(o.h[s])
}

// packA packs o as the A operand (see gemmJob.packA).
func (o *operand) packA(dst []float32, i0, mc, k0, kc, mr int) {
	var buf [1024]float32
	for ip := 0; ip*mr < mc; ip++ {
		d := dst[ip*kc*mr : (ip+1)*kc*mr]
		rows := min(mr, mc-ip*mr)
		if rows < mr {
			clear(d)
		}
		i := i0 + ip*mr
		switch {
		case o.cs == 1 && o.f != nil && rows == 12 && mr == 12:
			base := o.off + i*o.rs + k0
			pack12(d[:kc*12], o.f[base:], o.rs, kc)
		case o.cs == 1 && o.f != nil:
			for r := 0; r < rows; r++ {
				src := o.f[o.off+(i+r)*o.rs+k0:]
				src = src[:kc]
				for p, v := range src {
					d[p*mr+r] = v
				}
			}
		case o.rs == 1 && o.f != nil:
			for p := 0; p < kc; p++ {
				s := o.off + i + (k0+p)*o.cs
				copy(d[p*mr:p*mr+rows], o.f[s:s+rows])
			}
		case o.cs == 1:
			for r := 0; r < rows; r++ {
				for p0 := 0; p0 < kc; p0 += len(buf) {
					seg := buf[:min(len(buf), kc-p0)]
					o.row(seg, i+r, k0+p0)
					for p, v := range seg {
						d[(p0+p)*mr+r] = v
					}
				}
			}
		default:
			for p := 0; p < kc; p++ {
				for r := 0; r < rows; r++ {
					d[p*mr+r] = o.at(i+r, k0+p)
				}
			}
		}
	}
}

// packB packs o as the B operand (see gemmJob.packB).
func (o *operand) packB(dst []float32, k0, kc, j0, nc, nr int) {
	var buf [1024]float32
	for jp := 0; jp*nr < nc; jp++ {
		d := dst[jp*kc*nr : (jp+1)*kc*nr]
		cols := min(nr, nc-jp*nr)
		if cols < nr {
			clear(d)
		}
		j := j0 + jp*nr
		switch {
		case o.cs == 1:
			for p := 0; p < kc; p++ {
				o.row(d[p*nr:p*nr+cols], k0+p, j)
			}
		case o.rs == 1 && o.f != nil:
			// B = Wᵀ of a row-major weight: columns are contiguous along K.
			// Gather 8 columns at a time (8 sequential read streams).
			c := 0
			for ; c+8 <= cols; c += 8 {
				gather8(d[c:], nr, o.f[o.off+(j+c)*o.cs+k0:], o.cs, kc)
			}
			for ; c < cols; c++ {
				src := o.f[o.off+(j+c)*o.cs+k0:]
				src = src[:kc]
				for p, v := range src {
					d[p*nr+c] = v
				}
			}
		case o.rs == 1:
			for c := 0; c < cols; c++ {
				for p0 := 0; p0 < kc; p0 += len(buf) {
					seg := buf[:min(len(buf), kc-p0)]
					s := o.off + (j+c)*o.cs + k0 + p0
					for q, v := range o.h[s : s+len(seg)] {
						seg[q] = o.convert(v)
					}
					for p, v := range seg {
						d[(p0+p)*nr+c] = v
					}
				}
			}
		default:
			for p := 0; p < kc; p++ {
				for c := 0; c < cols; c++ {
					d[p*nr+c] = o.at(k0+p, j+c)
				}
			}
		}
	}
}

// pack12 gathers 12 rows of kc values (row stride rs, starting at src[0])
// into d as kc groups of 12: the A panel of the 12-row micro-kernel. Rows
// 0–7 go through gather8 (8×8 register transposes in assembly where
// available); rows 8–11 are read 16 values (one cache line) of a row at a
// time: walking the rows per value would keep a line of each in use at
// once, which for a row stride of a multiple of 4 KiB (a 1024-wide matrix)
// all fall in one L1 set and evict each other on every access.
func pack12(d, src []float32, rs, kc int) {
	d = d[:12*kc]
	if kc == 0 {
		return
	}
	// Rows 0–7 as 8×8 transposes (the assembly gather8 where there is
	// one), rows 8–11 by lines as below.
	gather8(d, 12, src, rs, kc)
	for p0 := 0; p0 < kc; p0 += 16 {
		n := min(16, kc-p0)
		blk := d[12*p0 : 12*(p0+n)]
		for r := 8; r < 12; r++ {
			row := src[r*rs+p0 : r*rs+p0+n]
			for q, v := range row {
				blk[12*q+r] = v
			}
		}
	}
}

// gather8Go is the pure-Go twin of gather8: d[p·stride + r] =
// src[r·rs + p] for r < 8 and p < kc.
func gather8Go(d []float32, stride int, src []float32, rs, kc int) {
	if kc == 0 {
		return
	}
	r0 := src[0*rs:][:kc]
	r1 := src[1*rs:][:len(r0)]
	r2 := src[2*rs:][:len(r0)]
	r3 := src[3*rs:][:len(r0)]
	r4 := src[4*rs:][:len(r0)]
	r5 := src[5*rs:][:len(r0)]
	r6 := src[6*rs:][:len(r0)]
	r7 := src[7*rs:][:len(r0)]
	for p := range r0 {
		dp := d[p*stride : p*stride+8 : p*stride+8]
		dp[0], dp[1], dp[2], dp[3] = r0[p], r1[p], r2[p], r3[p]
		dp[4], dp[5], dp[6], dp[7] = r4[p], r5[p], r6[p], r7[p]
	}
}
