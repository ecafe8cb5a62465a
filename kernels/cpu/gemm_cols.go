package cpu

// The column-partitioned driver for multi-threaded products with many
// columns. gemmJob.run shares one packed B block between the threads and
// splits its rows, which needs two barriers per K block (pack B, then
// compute); on a two-core machine each barrier waits for the slower core,
// and both cores re-pack the same A blocks. runCols instead packs the
// whole of A once, in parallel, and then hands out column chunks: each
// worker packs the B panels of its chunk into a private buffer and runs
// every K and M block of it with no further synchronisation. B is still
// packed exactly once, A once instead of once per worker, and the only
// barrier is the one after packing A.
//
// Several products that share A (a convolution's images, which all use
// the same weights) run as one job, so the batch adds columns rather than
// barriers.

// colsMinPerThread is the number of columns per thread below which
// runCols is not worth its A packing (gemmJob.run is used instead).
const colsMinPerThread = 256

// colsWorthIt reports whether runCols suits products of m×k by k×n
// (n the columns of all of them together) on threads goroutines.
func colsWorthIt(m, n, k, threads int) bool {
	return threads > 1 && n >= colsMinPerThread*threads && 2*m*n*k >= serialFlops
}

// runCols computes every job on up to threads goroutines. The jobs must
// share m, k, packA (or pa) and rowBias; each has its own columns (n,
// packB or pb, c, ldc, colBias).
func runCols(mk *microKernel, threads int, jobs []gemmJob) {
	if len(jobs) == 0 {
		return
	}
	m, k := jobs[0].m, jobs[0].k
	nr := mk.nr
	if m == 0 || k == 0 {
		for i := range jobs {
			jobs[i].run(mk, 1)
		}
		return
	}
	kcB := mk.kBlock(k)
	var ap []float32
	var mcB, mPad int
	if pa := jobs[0].pa; pa != nil {
		ap, mcB, mPad = pa.data, mk.rowBlock(m), pa.span()
	} else {
		ap, mcB, mPad = mk.packAll(jobs[0].packA, m, k, kcB, threads)
		defer putScratch(ap)
	}

	// Column chunks over the panels of all jobs laid end to end: a
	// multiple of threads of them, so the atomic hand-out can even out a
	// core that falls behind.
	maxPanels := chunkPanels(mPad, k)
	first := make([]int, len(jobs)+1) // first panel of each job
	for i, g := range jobs {
		first[i+1] = first[i] + ceilDiv(g.n, nr)
	}
	npan := first[len(jobs)]
	nch := threads * ceilDiv(npan, threads*maxPanels)
	perChunk := ceilDiv(npan, nch)
	bufs := make([][]float32, threads)
	defer func() {
		for _, b := range bufs {
			if b != nil {
				putScratch(b)
			}
		}
	}()
	parallelN(nch, threads, func(t, w int) {
		p0, p1 := npan*t/nch, npan*(t+1)/nch
		for i := range jobs {
			lo, hi := max(p0, first[i]), min(p1, first[i+1])
			if lo >= hi {
				continue
			}
			if bufs[w] == nil && jobs[i].pb == nil { // B packed here, not once
				bufs[w] = getScratch(kcB * perChunk * nr)
			}
			jobs[i].cols(mk, (lo-first[i])*nr, (hi-lo)*nr, kcB, mcB, mPad, ap, bufs[w])
		}
	})
}

// cols computes columns [j0, j0+w) of the job (w clipped to g.n) from the
// fully packed A (see runCols), packing B into bb (unused when B is packed
// once, g.pb).
func (g *gemmJob) cols(mk *microKernel, j0, w, kcB, mcB, mPad int, ap, bb []float32) {
	nc := min(w, g.n-j0)
	for pc := 0; pc < g.k; pc += kcB {
		kc := min(kcB, g.k-pc)
		b := bb
		if g.pb != nil {
			b = g.pb.block(pc, j0)
		} else {
			g.packB(bb, pc, kc, j0, nc, mk.nr)
		}
		var cb []float32
		if pc == 0 && g.colBias != nil {
			cb = g.colBias[j0:]
		}
		for ic := 0; ic < g.m; ic += mcB {
			var rb []float32
			if pc == 0 && g.rowBias != nil {
				rb = g.rowBias[ic:]
			}
			mc := min(mcB, g.m-ic)
			mk.block(mc, nc, kc, ap[pc*mPad+ic*kc:], b, g.c[ic*g.ldc+j0:], g.ldc, pc > 0, rb, cb)
			if pc+kc == g.k {
				g.finish(ic, j0, mc, nc)
			}
		}
	}
}
