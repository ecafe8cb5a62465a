package cpu

import (
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"

	"github.com/unclip-go/unclip/tensor"
)

// Winograd convolution F(4×4, 3×3) for the stride-1, padding-1 3×3
// convolutions of the U-Nets (Lavin & Gray, "Fast Algorithms for
// Convolutional Neural Networks", 2015). Each 4×4 block of output pixels
// (a tile) is computed from the 6×6 input patch around it as
//
//	Y = Aᵀ [ Σ_c U_c ⊙ V_c ] A,   U_c = G g_c Gᵀ,   V_c = Bᵀ d_c B
//
// so the sum over input channels becomes 36 independent matrix products,
// one per element ξ of the 6×6 transformed tile: M[ξ] (O × tiles) =
// U[ξ] (O × C) · V[ξ] (C × tiles). That is 36 multiply-adds per tile of
// 16 outputs against 144 for the direct convolution: 4× fewer.
//
// The three transforms are matrix products too, and run on the same
// micro-kernels: with vec(X) the row-major 36-vector of a 6×6 tile,
// vec(Bᵀ d B) = (Bᵀ⊗Bᵀ) vec(d), a 36×36 matrix times a column per
// (channel, tile); likewise (Aᵀ⊗Aᵀ) (16×36) for the output and (G⊗G)
// (36×9) for the weights. Dense Kronecker products waste the transforms'
// zeros, but cost little beside the main products (under 20 % of their
// multiply-adds at 320 channels) and need no transform code of their own.
// (A separable AVX-512 input transform, a third of the Kronecker
// product's multiply-adds, measured no faster: the transform waits on
// memory, reading the input and writing V.) The output transform's 16 rows
// run on the 8-row kernel where the main one has 12 (forRows). Gathering
// the 6×6 patches and scattering the 4×4 output tiles are stride-4
// shuffles (deinterleave4, interleave4: AVX-512 where the CPU has it).
//
// Work is split in chunks of winoTile tiles (whole panels of nr) of any
// images. The input transform runs by chunk and piece of columns, the 36
// products by ξ (each over every chunk, so that U[ξ]'s blocks stay in
// cache and a map of few tiles still keeps every thread busy), the output
// transform by chunk and piece of output channels. The weights are
// transformed at every call (4× their size: no transformed copy is kept)
// for a block of output channels at a time (36·ob·C values, bounded by
// winoWeightBudget, so that a 2240-channel layer does not need 300 MB),
// straight into the products' packed layout. When V and M of the whole
// map would exceed winoInputBudget, the tiles are taken in groups; the
// weights are then transformed once for all groups where they fit
// winoKeepBudget, else once per group and block.
//
// Accuracy. The transforms multiply rounding errors by their norms. With
// the points chosen (winoPoints), on random data in [−1, 1) against the
// float64 reference, F(4×4, 3×3)'s float32 error is 3–8× the direct
// kernel's in RMS and 2.5–15× in maximum (1×320×32×32: RMS 4.2e-5 against
// 5.4e-6, outputs of RMS 17.5), i.e. about 2.4e-6 of the outputs' scale.
// TestWinograd holds it to a bound derived from the transforms' absolute
// values. F(6×6, 3×3) would save another 1.8× of the products, but its
// error grows by another order of magnitude; F(2×2, 3×3) (2.25×) is
// accurate, but its 4-row output transform fits the 12-row micro-kernel
// badly and its transforms cost more per output.

// Winograd modes (SetWinograd).
const (
	WinogradAuto   = "auto"   // where it is faster (winogradWorthIt)
	WinogradOff    = "off"    // never: direct convolution / implicit GEMM
	WinogradAlways = "always" // every 3×3 stride-1 padding-1 convolution
)

var winogradMode atomic.Value // string

// SetWinograd sets when 3×3 convolutions use the Winograd algorithm:
// WinogradAuto (the default), WinogradOff or WinogradAlways.
func SetWinograd(mode string) error {
	switch mode {
	case WinogradAuto, WinogradOff, WinogradAlways:
		winogradMode.Store(mode)
		return nil
	}
	return fmt.Errorf("winograd mode %q: want auto, off or always", mode)
}

// UNCLIP_WINOGRAD sets the starting mode (auto, off or always).
func init() {
	if env := os.Getenv("UNCLIP_WINOGRAD"); env != "" {
		if err := SetWinograd(env); err != nil {
			fmt.Fprintf(os.Stderr, "unclip: UNCLIP_WINOGRAD: %v; using auto\n", err)
		}
	}
}

// Winograd returns the Winograd mode (see SetWinograd).
func Winograd() string {
	if m, ok := winogradMode.Load().(string); ok {
		return m
	}
	return WinogradAuto
}

const (
	winoM = 4 // output tile side
	winoN = 6 // input tile side (winoM + 3 − 1)
	winoX = winoN * winoN
	winoY = winoM * winoM

	// winoTile is the number of tiles in a chunk (rounded up to a
	// multiple of nr): the main products' columns. 64 re-reads the
	// transformed weights once per 64 tiles.
	winoTile = 64
	// winoMinTiles is the fewest tiles (of all images) for which auto
	// mode takes the Winograd path: below it the weight transform,
	// repeated at every call, costs more than the products save (at
	// 2×1280×16×16, 32 tiles, the two break even on Zen 4; at
	// 1×1280×32×32, 64 tiles, Winograd takes 0.67 of the time).
	winoMinTiles = 64
	// winoMinChannels: with fewer input or output channels the
	// transforms outweigh the products (2×32×32×32 takes 1.7× the
	// direct kernel's time, 1×64×32×32 1.2×).
	winoMinChannels = 128
)

// The memory bounds of a Winograd convolution (variables for the tests).
var (
	// winoWeightBudget bounds the transformed weights of one block of
	// output channels (float32 values).
	winoWeightBudget = 1 << 23
	// winoInputBudget bounds the transformed input of one group of
	// tiles (float32 values).
	winoInputBudget = 1 << 24
	// winoKeepBudget bounds the transformed weights of all output
	// channels when the tiles take several groups: up to it they are
	// transformed once for all the groups rather than once per group and
	// block (1×640×128×128's 14.7 M values, say).
	winoKeepBudget = 1 << 24
)

// winogradWorthIt reports whether a convolution with c input and o output
// channels over bsz images of h×w (3×3, stride 1, padding 1 checked by
// the caller) runs as F(4×4, 3×3) on mk: in auto mode, where it was
// measured faster than the direct kernel.
func winogradWorthIt(mk *microKernel, c, o, bsz, h, w int) bool {
	if mk.pairs || mk.round || c == 0 || o == 0 {
		return false
	}
	switch Winograd() {
	case WinogradOff:
		return false
	case WinogradAlways:
		return true
	}
	tiles := bsz * ceilDiv(h, winoM) * ceilDiv(w, winoM)
	return c >= winoMinChannels && o >= winoMinChannels && tiles >= winoMinTiles
}

// winogradFor reports whether the convolution node n runs as F(4×4, 3×3)
// on mk (see winogradWorthIt).
func winogradFor(n *tensor.Node, mk *microKernel) bool {
	xs, ws := n.Src[0].Shape(), n.Src[1].Shape()
	if ws[2] != 3 || ws[3] != 3 || n.Int[0] != 1 || n.Int[1] != 1 || n.Int[2] != 1 || n.Int[3] != 1 {
		return false
	}
	return winogradWorthIt(mk, xs[1], ws[0], xs[0], xs[2], xs[3])
}

// winoBF16MinTiles is the fewest tiles for which, with bfloat16 compute
// on, the float32 Winograd path replaces the bf16 direct kernel, which is
// itself 1.7× the float32 direct kernel's speed: Winograd is 2.1–2.35×
// faster than the latter on 64×64 and larger maps (256 tiles and more),
// 1.5–1.9× on 32×32 ones.
const winoBF16MinTiles = 256

// winogradBeatsBF16 reports whether, with bfloat16 compute on, the
// convolution node n runs faster as F(4×4, 3×3) in float32 on mk than
// on the bf16 kernel.
func winogradBeatsBF16(n *tensor.Node, mk *microKernel) bool {
	if !winogradFor(n, mk) {
		return false
	}
	if Winograd() == WinogradAlways {
		return true
	}
	xs := n.Src[0].Shape()
	return xs[0]*ceilDiv(xs[2], winoM)*ceilDiv(xs[3], winoM) >= winoBF16MinTiles
}

// winoMatrices holds F(4×4, 3×3)'s transforms as float32 Kronecker
// products: in = Bᵀ⊗Bᵀ (36×36), out = Aᵀ⊗Aᵀ (16×36), wt = G⊗G (36×9).
type winoMatrices struct {
	in, out, wt []float32
}

// winoPoints are the interpolation points of F(4×4, 3×3) (besides ∞).
// Lavin's 0, ±1, ±2 are the usual choice; 0, ±1, 1/2, −2 (Barabasz et al.,
// "Error analysis and improving the accuracy of Winograd convolution for
// deep neural networks", 2020) measured 1.5× lower RMS and 2.6× lower
// maximum error here (320 and 1280 channels), at the same cost: their
// constants are dyadic, still exact in float32.
var winoPoints = []float64{0, 1, -1, 0.5, -2}

var winoOnce = sync.OnceValue(func() *winoMatrices {
	at, g, bt := toomCook(winoPoints, winoM, 3)
	return &winoMatrices{
		in:  kron(bt, bt),
		out: kron(at, at),
		wt:  kron(g, g),
	}
})

// kron returns the Kronecker product p⊗q of p (r×c) and q (r'×c') as a
// row-major (r·r')×(c·c') float32 matrix: element ((i,k),(j,l)) is
// p[i][j]·q[k][l].
func kron(p, q [][]float64) []float32 {
	r, c, r2, c2 := len(p), len(p[0]), len(q), len(q[0])
	out := make([]float32, r*r2*c*c2)
	for i := 0; i < r; i++ {
		for k := 0; k < r2; k++ {
			for j := 0; j < c; j++ {
				for l := 0; l < c2; l++ {
					out[(i*r2+k)*c*c2+j*c2+l] = float32(p[i][j] * q[k][l])
				}
			}
		}
	}
	return out
}

// toomCook builds the 1-D Winograd transforms of F(m, r) (correlation of
// m outputs with an r-tap filter over n = m+r−1 inputs) from the n−1
// finite interpolation points plus the point at infinity:
//
//	y = Aᵀ [ (G g) ⊙ (Bᵀ d) ]
//
// It is the transpose of Toom-Cook linear convolution: with V_k (n×k) the
// matrix evaluating a polynomial of degree k−1 at the points (the row of
// ∞ picks the leading coefficient), z = V_n⁻¹ [(V_m u) ⊙ (V_r g)] is the
// product of polynomials u and g, and differentiating each z_l by u
// gives Aᵀ = V_mᵀ, G = V_r and Bᵀ = V_n⁻ᵀ. Row j of Bᵀ is then scaled by
// Π_{l≠j}(p_j − p_l) (and row j of G divided by it), which makes Bᵀ's
// entries the coefficients of Π_{l≠j}(x − p_l): integers for integer
// points and dyadic fractions for dyadic ones, so that the float32 input
// transform is exact in its constants.
func toomCook(points []float64, m, r int) (at, g, bt [][]float64) {
	n := len(points) + 1
	vander := func(k int) [][]float64 {
		v := make([][]float64, n)
		for j := range v {
			v[j] = make([]float64, k)
			if j == n-1 {
				v[j][k-1] = 1
				continue
			}
			p := 1.0
			for e := 0; e < k; e++ {
				v[j][e] = p
				p *= points[j]
			}
		}
		return v
	}
	vm, vr := vander(m), vander(r)
	inv := invert(vander(n))
	at = make([][]float64, m)
	for i := range at {
		at[i] = make([]float64, n)
		for j := 0; j < n; j++ {
			at[i][j] = vm[j][i]
		}
	}
	g, bt = vr, make([][]float64, n)
	for j := 0; j < n; j++ {
		bt[j] = make([]float64, n)
		s := 1.0
		for l := 0; l < n-1 && j < n-1; l++ {
			if l != j {
				s *= points[j] - points[l]
			}
		}
		for l := 0; l < n; l++ {
			// Snap to the exact value where the points are dyadic (the
			// elimination leaves ~1e-16 of noise).
			v := inv[l][j] * s
			if q := math.Round(v*(1<<20)) / (1 << 20); math.Abs(q-v) < 1e-9 {
				v = q
			}
			bt[j][l] = v
		}
		for l := range g[j] {
			g[j][l] /= s
		}
	}
	return at, g, bt
}

// invert returns the inverse of the square matrix a (Gauss-Jordan with
// partial pivoting; a is small and well conditioned here).
func invert(a [][]float64) [][]float64 {
	n := len(a)
	m := make([][]float64, n)
	for i := range m {
		m[i] = make([]float64, 2*n)
		copy(m[i], a[i])
		m[i][n+i] = 1
	}
	for col := 0; col < n; col++ {
		p := col
		for i := col + 1; i < n; i++ {
			if math.Abs(m[i][col]) > math.Abs(m[p][col]) {
				p = i
			}
		}
		m[col], m[p] = m[p], m[col]
		d := m[col][col]
		for j := range m[col] {
			m[col][j] /= d
		}
		for i := 0; i < n; i++ {
			if i != col && m[i][col] != 0 {
				f := m[i][col]
				for j := range m[i] {
					m[i][j] -= f * m[col][j]
				}
			}
		}
	}
	out := make([][]float64, n)
	for i := range out {
		out[i] = m[i][n:]
	}
	return out
}

// winoGeom is the tile geometry of one Winograd convolution.
type winoGeom struct {
	bsz, c, h, w, o int
	th, tw, tiles   int // tiles per column and row of an image; in all
	p               int // panels of nr tiles per chunk
	t               int // tiles per chunk (p·nr)
}

// tileOrigin returns the image and the top-left output pixel of tile i.
func (g *winoGeom) tileOrigin(i int) (b, oy, ox int) {
	per := g.th * g.tw
	b, i = i/per, i%per
	return b, (i / g.tw) * winoM, (i % g.tw) * winoM
}

// conv2dWinograd computes y = conv(x, W) + bias, then the epilogue ep (or
// nil), for x (bsz, c, h, w) dense and y (bsz, o, h, w), as F(4×4, 3×3);
// wo is the weight as an O × C·9 GEMM operand.
//
// The buffers are laid out so that each product's B operand is already
// in the micro-kernel's panel layout (nr columns per panel) and needs no
// packing: a chunk's transformed input V holds, per ξ, its p panels of
// tiles for each channel as V[ξ][panel][channel][nr], so a K block of
// channels of one panel is contiguous; the products write M[ξ] as
// M[o][panel][ξ][nr], which is the B panel layout of the output
// transform (k = 36).
func conv2dWinograd(mk *microKernel, threads int, x []float32, wo operand, bias []float32, ep *epilogue, y []float32, bsz, c, h, w, o int) {
	mats := winoOnce()
	nr, mr := mk.nr, mk.mr
	g := winoGeom{bsz: bsz, c: c, h: h, w: w, o: o, th: ceilDiv(h, winoM), tw: ceilDiv(w, winoM)}
	g.tiles = bsz * g.th * g.tw
	g.p = ceilDiv(min(winoTile, g.tiles), nr)
	g.t = g.p * nr
	nChunks := ceilDiv(g.tiles, g.t)
	// Output-channel blocks: transformed weights within the budget.
	ob := o
	if winoX*o*c > winoWeightBudget {
		nb := ceilDiv(winoX*o*c, winoWeightBudget)
		ob = max(mr, ceilDiv(ceilDiv(o, nb), mr)*mr)
	}
	// Groups of chunks whose V and M fit the input budget.
	group := func() int { return max(1, min(nChunks, winoInputBudget/(winoX*g.t*(c+ob)))) }
	chunksPerGroup := group()
	if chunksPerGroup < nChunks && ob < o && winoX*o*c <= winoKeepBudget {
		// Several groups would transform the weights again each: with
		// all of them transformed at once (a larger map, so a larger
		// budget), they are transformed once.
		ob = o
		chunksPerGroup = group()
	}
	once := ob == o // the weights transformed once, before the groups

	// The constant transforms, packed as A operands.
	packConst := func(k *microKernel, m []float32, rows int) []float32 {
		op := operand{f: m, rs: winoX, cs: 1}
		ap, _, _ := k.packAll(op.packA, rows, winoX, winoX, 1)
		return ap
	}
	apIn := packConst(mk, mats.in, winoX)
	defer putScratch(apIn)
	// The output transform's 16 rows: on a kernel with the 12-row tile,
	// its 8-row alt (two whole panels instead of a third of one idle).
	outK := mk.forRows(winoY)
	apOut := packConst(outK, mats.out, winoY)
	defer putScratch(apOut)

	vlen, mlen := winoX*c*g.t, winoX*ob*g.t // one chunk's V and M
	vbuf := getScratch(chunksPerGroup * vlen)
	defer putScratch(vbuf)
	mbuf := getScratch(chunksPerGroup * mlen)
	defer putScratch(mbuf)
	kcB := mk.kBlock(c)
	uPad := ceilDiv(ob, mr) * mr
	upk := getScratch(winoX * uPad * c)
	defer putScratch(upk)

	work := make([]winoScratch, threads)
	defer func() {
		for i := range work {
			work[i].free()
		}
	}()
	const piece = 16 // panels of patches gathered at a time
	pieces := ceilDiv(c*g.p, piece)
	const oPiece = 32       // output channels per output-transform task
	ldm := g.p * winoX * nr // M's row stride (one output channel)
	for c0 := 0; c0 < nChunks; c0 += chunksPerGroup {
		nch := min(chunksPerGroup, nChunks-c0)
		// Input transform of the group's chunks: V (36 × C·T) =
		// (Bᵀ⊗Bᵀ) · patches, column (panel, channel, tile in panel).
		parallelN(nch*pieces, threads, func(t, wk int) {
			s := &work[wk]
			ch, j := t/pieces, (t%pieces)*piece*nr
			v := vbuf[ch*vlen : (ch+1)*vlen]
			p := winoPatches{x: x, g: &g, t0: (c0 + ch) * g.t}
			bb := s.get(&s.b, winoX*piece*nr)
			nc := min(piece*nr, c*g.t-j)
			p.packB(bb, 0, winoX, j, nc, nr)
			mk.block(winoX, nc, winoX, apIn, bb, v[j:], c*g.t, false, nil, nil)
		})
		for o0 := 0; o0 < o; o0 += ob {
			obs := min(ob, o-o0)
			if !once || c0 == 0 {
				winoWeights(mk, threads, mats, wo, o0, obs, c, upk, kcB, uPad)
			}
			mcB := mk.rowBlock(obs)
			// The 36 products, one task per ξ over every chunk of the
			// group (U[ξ]'s blocks stay in cache across the chunks):
			// M[ξ] = U[ξ] · V[ξ], written as M[o][panel][ξ][nr]. With
			// more than 9 threads 36 tasks balance badly, and each ξ is
			// split in its row blocks too (V's K blocks are then read
			// once per row block instead of once).
			nIC := ceilDiv(obs, mcB)
			parts := 1
			if 4*threads > winoX {
				parts = nIC
			}
			parallelN(winoX*parts, threads, func(t, _ int) {
				xi, part := t/parts, t%parts
				ic0, ic1 := part*nIC/parts*mcB, min(obs, (part+1)*nIC/parts*mcB)
				ux := upk[xi*uPad*c:]
				for pc := 0; pc < c; pc += kcB {
					kc := min(kcB, c-pc)
					for ic := ic0; ic < ic1; ic += mcB {
						a := ux[pc*uPad+ic*kc:]
						for ch := 0; ch < nch; ch++ {
							vx := vbuf[ch*vlen+xi*c*g.t:]
							mb := mbuf[ch*mlen:]
							for pn := 0; pn < g.p; pn++ {
								mk.block(min(mcB, obs-ic), nr, kc, a, vx[(pn*c+pc)*nr:], mb[ic*ldm+(pn*winoX+xi)*nr:], ldm, pc > 0, nil, nil)
							}
						}
					}
				}
			})
			// Output transform: Y (16 × o·T) = (Aᵀ⊗Aᵀ) · M, column
			// (o, tile), by chunk and piece of output channels.
			oPieces := ceilDiv(obs, oPiece)
			parallelN(nch*oPieces, threads, func(t, wk int) {
				s := &work[wk]
				ch, q0 := t/oPieces, (t%oPieces)*oPiece
				nq := min(oPiece, obs-q0)
				yb := s.get(&s.y, winoY*nq*g.t)
				outK.block(winoY, nq*g.t, winoX, apOut, mbuf[ch*mlen+q0*ldm:], yb, nq*g.t, false, nil, nil)
				g.scatter(y, yb, bias, (c0+ch)*g.t, o0+q0, nq)
			})
		}
	}
	if ep != nil {
		ep.all(y)
	}
}

// winoScratch is one worker's buffers.
type winoScratch struct{ b, y []float32 }

// get returns *buf with at least n values, (re)taking it from the scratch
// list.
func (s *winoScratch) get(buf *[]float32, n int) []float32 {
	if len(*buf) < n {
		if *buf != nil {
			putScratch(*buf)
		}
		*buf = getScratch(n)
	}
	return (*buf)[:n]
}

func (s *winoScratch) free() {
	for _, b := range []*[]float32{&s.b, &s.y} {
		if *b != nil {
			putScratch(*b)
			*b = nil
		}
	}
}

// winoWeights transforms output channels [o0, o0+ob) of the weights into
// U[ξ] = (G g Gᵀ)[ξ] (36 matrices of ob × C), written straight into
// upk in packAll's layout (36 blocks of uPad·C, K blocks of kcB, panels
// of mr rows): one product (G⊗G) (36×9) · taps (9 × uPad·C) whose column
// order is that layout (see winoWeightsB).
func winoWeights(mk *microKernel, threads int, mats *winoMatrices, wo operand, o0, ob, c int, upk []float32, kcB, uPad int) {
	wp := winoWeightsB{wo: wo, o0: o0, ob: ob, c: c, kcB: kcB, uPad: uPad, mr: mk.mr}
	wop := operand{f: mats.wt, rs: 9, cs: 1}
	job := gemmJob{m: winoX, n: uPad * c, k: 9, packA: wop.packA, packB: wp.packB, c: upk, ldc: uPad * c}
	job.run(mk, threads)
}

// winoWeightsB is the B operand of the weight transform: row k (a tap
// 3ky+kx) and, for the output channel oc = o0+o and input channel ci, the
// column where packAll puts A element (o, ci) of U[ξ] (see winoWeights):
//
//	pc·uPad + (o − r)·kc + (ci − pc)·mr + r,   r = o mod mr,
//
// pc the start of ci's K block and kc its width. It holds W[oc, ci, ky, kx]
// (zero for the padding rows o ≥ ob).
type winoWeightsB struct {
	wo                       operand
	o0, ob, c, kcB, uPad, mr int
}

func (p *winoWeightsB) packB(dst []float32, k0, kc, j0, nc, nr int) {
	var taps [9]float32
	mr := p.mr
	// Decode column j0 once, then step through the layout: r, then ci
	// within the K block, then the row panel, then the K block.
	pc := (j0 / (p.kcB * p.uPad)) * p.kcB
	bw := min(p.kcB, p.c-pc) // the K block's width
	idx := j0 - pc*p.uPad
	o0, ci, r := (idx/(bw*mr))*mr, pc+(idx%(bw*mr))/mr, idx%mr
	w := &p.wo
	for jp := 0; jp*nr < nc; jp++ {
		d := dst[jp*kc*nr : (jp+1)*kc*nr]
		cols := min(nr, nc-jp*nr)
		if cols < nr {
			clear(d)
		}
		for q := 0; q < cols; q++ {
			if o := o0 + r; o >= p.ob {
				for k := 0; k < kc; k++ {
					d[k*nr+q] = 0
				}
			} else {
				t := taps[:]
				if w.f != nil && w.cs == 1 {
					s := w.off + (p.o0+o)*w.rs + 9*ci
					t = w.f[s : s+9]
				} else {
					for i := range taps {
						taps[i] = w.at(p.o0+o, 9*ci+i)
					}
				}
				for k := 0; k < kc; k++ {
					d[k*nr+q] = t[k0+k]
				}
			}
			if r++; r == mr {
				r = 0
				if ci++; ci == pc+bw {
					ci = pc
					if o0 += mr; o0 == p.uPad {
						o0, pc = 0, pc+bw
						ci, bw = pc, min(p.kcB, p.c-pc)
					}
				}
			}
		}
	}
}

// winoPatches is the B operand of the input transform for the chunk of
// tiles starting at t0: row (py, px) of the 6×6 patch, column (panel,
// ci, q) for tile panel·nr+q holds x[b, ci, oy−1+py, ox−1+px] of the tile's image b and origin
// (oy, ox), zero outside the image and for tiles past the last.
type winoPatches struct {
	x  []float32
	g  *winoGeom
	t0 int
}

func (p *winoPatches) packB(dst []float32, k0, kc, j0, nc, nr int) {
	g := p.g
	if k0 != 0 || kc != winoX {
		panic("winoPatches: a partial patch") // the transform's k is 36
	}
	for jp := 0; jp*nr < nc; jp++ {
		d := dst[jp*kc*nr : (jp+1)*kc*nr]
		cols := min(nr, nc-jp*nr)
		if cols < nr {
			clear(d)
		}
		// Panel jp is channel jp mod C of the chunk's panel of tiles
		// jp div C: runs of tiles along a row of tiles.
		pj := j0/nr + jp
		ci, tl := pj%g.c, p.t0+(pj/g.c)*nr
		for q0 := 0; q0 < cols; {
			if tl >= g.tiles {
				for r := 0; r < kc; r++ {
					clear(d[r*nr+q0 : r*nr+cols])
				}
				break
			}
			b, oy, ox := g.tileOrigin(tl)
			run := min(cols-q0, g.tw-ox/winoM)
			plane := p.x[(b*g.c+ci)*g.h*g.w : (b*g.c+ci+1)*g.h*g.w]
			for py := 0; py < winoN; py++ {
				iy := oy - 1 + py
				if iy < 0 || iy >= g.h {
					for px := 0; px < winoN; px++ {
						r := py*winoN + px
						clear(d[r*nr+q0 : r*nr+q0+run])
					}
					continue
				}
				src := plane[iy*g.w : (iy+1)*g.w]
				row := func(px int) []float32 {
					r := py*winoN + px
					return d[r*nr+q0 : r*nr+q0+run]
				}
				// Columns ox−1+px+4q, px < 4: the tiles [qa, qb) whose four
				// columns all fall inside the row are one deinterleave of
				// src[ox−1+4qa : ox−1+4qb]; the tiles at the edges are
				// gathered one by one.
				qa, qb := 0, 0
				if ox == 0 {
					qa = 1
				}
				if g.w-3-ox >= 0 {
					qb = min(run, (g.w-3-ox)/winoM+1)
				}
				if qb > qa {
					deinterleave4(src[ox-1+winoM*qa:ox-1+winoM*qb], row(0)[qa:qb], row(1)[qa:qb], row(2)[qa:qb], row(3)[qa:qb])
				} else {
					qa, qb = 0, 0
				}
				for px := 0; px < winoM; px++ {
					gatherColumn(row(px), src, ox-1+px, 0, qa)
					gatherColumn(row(px), src, ox-1+px, qb, run)
				}
				// Column ox−1+px+4q, px ≥ 4, is row px−4's at tile q+1: a
				// copy, and one value for the last tile.
				for px := winoM; px < winoN; px++ {
					drow, prev := row(px), row(px-winoM)
					copy(drow, prev[1:])
					drow[run-1] = 0
					if ix := ox - 1 + px + winoM*(run-1); ix < g.w {
						drow[run-1] = src[ix]
					}
				}
			}
			q0 += run
			tl += run
		}
	}
}

// gatherColumn sets drow[q] = src[ix0 + 4q] for q in [q0, q1), zero
// where that column falls outside the row src (ix0 ≥ −1).
func gatherColumn(drow, src []float32, ix0, q0, q1 int) {
	if q1 <= q0 {
		return
	}
	lo := q0
	if ix0+winoM*lo < 0 {
		lo++
	}
	hi := max(lo, min(q1, ceilDiv(len(src)-ix0, winoM)))
	clear(drow[q0:lo])
	if hi > lo {
		seg := src[ix0+winoM*lo : ix0+winoM*(hi-1)+1]
		out := drow[lo:hi]
		for q := range out {
			out[q] = seg[winoM*q]
		}
	}
	clear(drow[hi:q1])
}

// deinterleave4Go is the pure-Go twin of deinterleave4: d_k[q] =
// src[4q+k] for k < 4 and q < len(d0).
func deinterleave4Go(src, d0, d1, d2, d3 []float32) {
	d1, d2, d3 = d1[:len(d0)], d2[:len(d0)], d3[:len(d0)]
	for q := range d0 {
		s := src[4*q : 4*q+4 : 4*q+4]
		d0[q], d1[q], d2[q], d3[q] = s[0], s[1], s[2], s[3]
	}
}

// interleave4Go is the pure-Go twin of interleave4: dst[4q+j] = s_j[q] +
// bias for j < 4 and q < len(s0).
func interleave4Go(dst, s0, s1, s2, s3 []float32, bias float32) {
	s1, s2, s3 = s1[:len(s0)], s2[:len(s0)], s3[:len(s0)]
	for q := range s0 {
		d := dst[4*q : 4*q+4 : 4*q+4]
		d[0], d[1], d[2], d[3] = s0[q]+bias, s1[q]+bias, s2[q]+bias, s3[q]+bias
	}
}

// scatter writes the output tiles yb (16 × ob·T: row (i, j) of the tile,
// column (o, tile)) of the chunk starting at tile t0 to y, output channels
// o0…, plus the bias.
func (g *winoGeom) scatter(y, yb, bias []float32, t0, o0, ob int) {
	ld := ob * g.t
	for tl := 0; tl < g.t && t0+tl < g.tiles; {
		b, oy, ox := g.tileOrigin(t0 + tl)
		run := min(g.t-tl, g.tiles-t0-tl, g.tw-ox/winoM) // tiles along this row of tiles
		rows := min(winoM, g.h-oy)
		full := min(run, (g.w-ox)/winoM) // tiles with all 4 columns inside
		for oc := 0; oc < ob; oc++ {
			bv := float32(0)
			if bias != nil {
				bv = bias[o0+oc]
			}
			plane := y[(b*g.o+o0+oc)*g.h*g.w : (b*g.o+o0+oc+1)*g.h*g.w]
			for i := 0; i < rows; i++ {
				dst := plane[(oy+i)*g.w+ox : (oy+i+1)*g.w]
				s0 := yb[(i*winoM)*ld+oc*g.t+tl:]
				s1 := yb[(i*winoM+1)*ld+oc*g.t+tl:]
				s2 := yb[(i*winoM+2)*ld+oc*g.t+tl:]
				s3 := yb[(i*winoM+3)*ld+oc*g.t+tl:]
				interleave4(dst[:winoM*full], s0[:full], s1[:full], s2[:full], s3[:full], bv)
				for q := full; q < run; q++ { // the partial tile at the row's end
					for j := 0; j < g.w-ox-winoM*q; j++ {
						dst[winoM*q+j] = yb[(i*winoM+j)*ld+oc*g.t+tl+q] + bv
					}
				}
			}
		}
		tl += run
	}
}
