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

// microKernel is one register micro-kernel with its blocking.
type microKernel struct {
	name       string
	mr, nr     int // register tile
	mc, kc, nc int // cache blocking (mc a multiple of mr, nc of nr)
	// fn computes the mr×nr tile c = (acc ? c : 0) + Σ_p a[p·mr:]ᵀ·b[p·nr:]
	// for k steps; c is row-major with ldc elements per row.
	fn func(k int, a, b, c *float32, ldc int, acc bool)
	ok bool // usable on this machine
}

// kernels lists the micro-kernels from most to least preferred; the last
// is the pure-Go one, always usable.
var kernels = append(archKernels[:len(archKernels):len(archKernels)], genericKernel)

// genericKernel is the pure-Go micro-kernel: the fallback on machines
// without a SIMD kernel and the twin the assembly kernels are tested
// against (microGo with the same tile gives the same sums up to rounding).
var genericKernel = &microKernel{
	name: "generic", mr: 4, nr: 8, mc: 128, kc: 256, nc: 2048, ok: true,
	fn: func(k int, a, b, c *float32, ldc int, acc bool) {
		microGo(4, 8, k, unsafe.Slice(a, 4*k), unsafe.Slice(b, 8*k), c, ldc, acc)
	},
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
}

// serialFlops is the work under which a GEMM runs on one goroutine
// (~40 µs at 100 GFLOP/s: less than the hand-off is worth).
const serialFlops = 1 << 22

// scratch recycles packing buffers.
var scratch sync.Pool

func getScratch(n int) []float32 {
	if p, ok := scratch.Get().(*[]float32); ok && cap(*p) >= n {
		return (*p)[:n]
	}
	return make([]float32, n)
}

func putScratch(s []float32) { scratch.Put(&s) }

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// run computes the product with micro-kernel mk on up to threads goroutines.
func (g *gemmJob) run(mk *microKernel, threads int) {
	m, n, k := g.m, g.n, g.k
	if m == 0 || n == 0 {
		return
	}
	acc0 := false
	if g.rowBias != nil || g.colBias != nil || k == 0 {
		for i := 0; i < m; i++ {
			row := g.c[i*g.ldc : i*g.ldc+n]
			rb := float32(0)
			if g.rowBias != nil {
				rb = g.rowBias[i]
			}
			if g.colBias != nil {
				for j := range row {
					row[j] = g.colBias[j] + rb
				}
			} else {
				for j := range row {
					row[j] = rb
				}
			}
		}
		acc0 = true
	}
	if k == 0 {
		return
	}
	if 2*m*n*k < serialFlops {
		threads = 1
	}
	mr, nr := mk.mr, mk.nr
	// Even block sizes: no thin last block.
	kcB := ceilDiv(k, ceilDiv(k, mk.kc))
	ncB := ceilDiv(ceilDiv(n, ceilDiv(n, mk.nc)), nr) * nr
	mcB := ceilDiv(ceilDiv(m, ceilDiv(m, mk.mc)), mr) * mr
	if threads > 1 && ceilDiv(m, mcB) < threads && m > mr {
		// Few row blocks: split rows evenly over the threads.
		mcB = ceilDiv(ceilDiv(m, threads), mr) * mr
	}
	bbuf := getScratch(kcB * ncB)
	defer putScratch(bbuf)
	abufs := make([][]float32, threads)
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
			acc := acc0 || pc > 0
			// Pack the B block, in parallel when it is big.
			nPack := 1
			if threads > 1 && kc*nc >= 1<<15 {
				nPack = min(npan, 4*threads)
			}
			parallelN(nPack, threads, func(t, _ int) {
				p0, p1 := npan*t/nPack, npan*(t+1)/nPack
				if p1 > p0 {
					g.packB(bbuf[p0*kc*nr:], pc, kc, jc+p0*nr, min(nc-p0*nr, (p1-p0)*nr), nr)
				}
			})
			// Tasks: row blocks × column chunks of the B block.
			nJ := 1
			if threads > 1 && nIC < 4*threads {
				nJ = min(npan, ceilDiv(4*threads, nIC))
			}
			parallelN(nIC*nJ, threads, func(t, w int) {
				ic := (t / nJ) * mcB
				jt := t % nJ
				mc := min(mcB, m-ic)
				if abufs[w] == nil {
					abufs[w] = getScratch(mcB * kcB)
				}
				ab := abufs[w]
				g.packA(ab, ic, mc, pc, kc, mr)
				p0, p1 := npan*jt/nJ, npan*(jt+1)/nJ
				if p1 > p0 {
					j := jc + p0*nr
					mk.block(mc, min(n-j, (p1-p0)*nr), kc, ab, bbuf[p0*kc*nr:], g.c[ic*g.ldc+j:], g.ldc, acc)
				}
			})
		}
	}
}

// block computes the m×n matrix c = (acc ? c : 0) + A·B from packed
// operands: ap holds ⌈m/mr⌉ A panels and bp ⌈n/nr⌉ B panels, both of k
// steps; c is row-major with ldc elements per row. B panels run in the
// outer loop so each stays in L1 while the A panels stream past.
func (mk *microKernel) block(m, n, k int, ap, bp, c []float32, ldc int, acc bool) {
	mr, nr := mk.mr, mk.nr
	var tile [512]float32
	for j := 0; j < n; j += nr {
		nrr := min(nr, n-j)
		b := &bp[(j/nr)*k*nr]
		for i := 0; i < m; i += mr {
			mrr := min(mr, m-i)
			a := &ap[(i/mr)*k*mr]
			if mrr == mr && nrr == nr {
				mk.fn(k, a, b, &c[i*ldc+j], ldc, acc)
				continue
			}
			mk.fn(k, a, b, &tile[0], nr, false)
			for r := 0; r < mrr; r++ {
				dst := c[(i+r)*ldc+j : (i+r)*ldc+j+nrr]
				src := tile[r*nr : r*nr+nrr]
				if acc {
					for q, v := range src {
						dst[q] += v
					}
				} else {
					copy(dst, src)
				}
			}
		}
	}
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
			for c := 0; c < cols; c++ {
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
