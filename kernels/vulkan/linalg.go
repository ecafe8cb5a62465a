//go:build cgo && !novulkan

package vulkan

import (
	"errors"
	"fmt"
	"os"

	"github.com/unclip-go/unclip/tensor"
)

// matmulOp records Dst[z] = A[z]·B[z] (+ bias), then the epilogue, with A
// and B strided views broadcast to Dst's batch shape.
func (b *Backend) matmulOp(n *tensor.Node) error {
	ddt, err := dstCode("matmul", n.Dst)
	if err != nil {
		return err
	}
	// a and b stay in their float type: matmul.comp converts 16-bit
	// values as it loads them.
	x, y := n.Src[0], n.Src[1]
	adt, err := floatCode(x)
	if err != nil {
		return err
	}
	bdt, err := floatCode(y)
	if err != nil {
		return err
	}
	var bias *tensor.Tensor
	var wdt uint32
	if len(n.Src) > 2 && n.Src[2] != nil {
		if bias, wdt, err = act(n.Src[2]); err != nil {
			return err
		}
	}
	r := x.Rank()
	m, k, nn := x.Dim(-2), x.Dim(-1), y.Dim(-1)
	batch := n.Dst.Shape()[:r-2]
	xs, ys := x.Strides(), y.Strides()
	bshape, bst := collapse(batch, xs[:r-2], ys[:r-2])
	if len(bshape) > 3 {
		x, y = x.Contiguous(), y.Contiguous()
		if err := errors.Join(x.Err(), y.Err()); err != nil {
			return err
		}
		xs, ys = x.Strides(), y.Strides()
		bshape, bst = collapse(batch, xs[:r-2], ys[:r-2])
	}
	nb := 1
	for _, d := range batch {
		nb *= d
	}
	if nb > int(b.maxGroup[2]) {
		return fmt.Errorf("batch of %d matrices exceeds the device's %d workgroups in z", nb, b.maxGroup[2])
	}
	var bdim, abs, bbs [3]int
	bdim = [3]int{1, 1, 1}
	lead := 3 - len(bshape)
	for i, d := range bshape {
		bdim[lead+i], abs[lead+i], bbs[lead+i] = d, bst[0][i], bst[1][i]
	}
	srcs, flags, err := epilogue(n, []*tensor.Tensor{x, y}, bias)
	if err != nil {
		return err
	}
	if g, ok := gemmLayout(m, k, nn, xs[r-2], xs[r-1], ys[r-2], ys[r-1]); ok && !genericShaders() {
		// The specialised GEMM.
		return b.launch(n, launch{
			shader: "gemm", dst: n.Dst, srcs: srcs,
			setup: func(l *launch, off []uint32) error {
				// vec4 loads need aligned offsets; the tile reads the
				// tuned table and forced tiles (b.mu).
				if shader, nt := b.coopMatShader(adt, bdt); shader != "" {
					// fp16 operands on a device with cooperative matrices:
					// 64×64 tiles of 16×16×16 fragments, 4 subgroups.
					l.shader = shader
					l.grid = [3]int{ceilDiv(nn, 64), ceilDiv(m, 64), nb}
					l.spec = g.spec(gemmTile{64, 64, 32, 4, 4}, wdt, 0, ddt, adt, bdt) // the shader reads 5, 7, 10, 11, 13
					l.spec[13] = uint32(nt)
					return nil
				}
				g.loads(m, k, nn, off[1], off[2], abs[:], bbs[:])
				t, err := b.gemmTileFor("matmul", m, nn, nb, m, k, nn)
				if err != nil {
					return err
				}
				l.grid = [3]int{ceilDiv(nn, t.BN), ceilDiv(m, t.BM), nb}
				l.spec = g.spec(t, wdt, 0, ddt, adt, bdt)
				return nil
			},
			push: func(off []uint32) any {
				pc := gemmPush{M: uint32(m), N: uint32(nn), K: uint32(k), Flags: flags,
					Doff: off[0], Aoff: off[1], Boff: off[2], Biasoff: off[3], Resoff: off[4], Lda: uint32(g.lda), Ldb: uint32(g.ldb)}
				setInts(pc.Bdim[:], bdim[:])
				setInts(pc.Abs[:], abs[:])
				setInts(pc.Bbs[:], bbs[:])
				return pc
			},
		})
	}
	return b.launch(n, launch{
		shader: "matmul", dst: n.Dst, srcs: srcs,
		push: func(off []uint32) any {
			pc := matmulPush{M: uint32(m), N: uint32(nn), K: uint32(k), Flags: flags,
				Doff: off[0], Aoff: off[1], Boff: off[2], Biasoff: off[3],
				Asm: uint32(xs[r-2]), Ask: uint32(xs[r-1]), Bsk: uint32(ys[r-2]), Bsn: uint32(ys[r-1]),
				Adt: adt, Bdt: bdt, Resoff: off[4]}
			setInts(pc.Bdim[:], bdim[:])
			setInts(pc.Abs[:], abs[:])
			setInts(pc.Bbs[:], bbs[:])
			return pc
		},
		grid: [3]int{(nn + 63) / 64, (m + 63) / 64, nb},
		spec: dtSpec(wdt, 0, ddt),
	})
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// coopMatShader returns the cooperative-matrix GEMM for fp16 a and b
// (dtype code 1) and its workgroup size (four subgroups), or "" where the
// device lacks the feature, the fp16 16×16×16 subgroup shape, or a fixed
// subgroup size (the shader counts on exactly four subgroups), or where
// UNCLIP_VK_COOPMAT=0. The KHR build is preferred to the NV one.
func (b *Backend) coopMatShader(adt, bdt uint32) (string, int) {
	// gemm_coopmat.comp's shared memory: fp16 slices of a (64×32) and b
	// (32×64), and the float32 64×64 accumulators.
	const coopMatShared = 2*64*32*2 + 64*64*4
	info := b.phys.info
	sg := int(info.SubgroupSize)
	if adt != 1 || bdt != 1 || os.Getenv("UNCLIP_VK_COOPMAT") == "0" || sg == 0 ||
		(info.MinSubgroupSize != 0 && info.MinSubgroupSize != info.MaxSubgroupSize) || !b.fits(4*sg, coopMatShared) {
		return "", 0
	}
	switch {
	case b.coopMatGEMM(true):
		return "gemm_coopmat_khr", 4 * sg
	case b.coopMatGEMM(false):
		return "gemm_coopmat", 4 * sg
	}
	return "", 0
}

// gemmOperands is how gemm.comp reads a and b: which dimension of each is
// contiguous, their leading strides, and which may be read as vec4s.
type gemmOperands struct {
	akc, bkc bool // a contiguous along k (else m), b along k (else n)
	lda, ldb int
	vec      uint32 // bit 0: a as vec4s, bit 1: b
}

// gemmLayout reports whether gemm.comp can read an m×k a and a k×n b with
// these strides (each needs a unit stride), and how; loads then decides
// the vec4 loads, which depend on the operands' element offsets too.
func gemmLayout(m, k, n, asm, ask, bsk, bsn int) (gemmOperands, bool) {
	var g gemmOperands
	// A dimension of size 1 can take any stride.
	if k == 1 {
		ask = 1
		bsk = 1
	}
	if m == 1 {
		asm = max(k, 1)
	}
	if n == 1 {
		bsn = max(k, 1)
	}
	switch {
	case ask == 1:
		g.akc, g.lda = true, asm
	case asm == 1:
		g.lda = ask
	default:
		return g, false
	}
	switch {
	case bsk == 1:
		g.bkc, g.ldb = true, bsn
	case bsn == 1:
		g.ldb = bsk
	default:
		return g, false
	}
	if g.lda < 0 || g.ldb < 0 {
		return g, false
	}
	return g, true
}

// loads sets g.vec for a and b at element offsets aoff and boff with batch
// strides abs and bbs.
func (g *gemmOperands) loads(m, k, n int, aoff, boff uint32, abs, bbs []int) {
	g.vec = 0
	asize, bsize := m, n // the unit-stride dimension of each
	if g.akc {
		asize = k
	}
	if g.bkc {
		bsize = k
	}
	if vec4Aligned(asize, g.lda, aoff, abs) {
		g.vec |= 1
	}
	if vec4Aligned(bsize, g.ldb, boff, bbs) {
		g.vec |= 2
	}
}

// vec4Aligned reports whether an operand can be read as vec4s along its
// unit-stride dimension: that dimension's size, the leading stride, the
// element offset and the batch strides all multiples of 4.
func vec4Aligned(size, ld int, off uint32, batchStrides []int) bool {
	if size%4 != 0 || ld%4 != 0 || off%4 != 0 {
		return false
	}
	for _, s := range batchStrides {
		if s%4 != 0 {
			return false
		}
	}
	return true
}

// genericShaders reports whether UNCLIP_VK_GENERIC=1 asks for the generic
// strided shaders (matmul.comp, conv2d.comp, the old attention kernels)
// instead of the specialised ones, for comparisons.
func genericShaders() bool { return os.Getenv("UNCLIP_VK_GENERIC") == "1" }

// spec is gemm.comp's specialization constants for tile t and the
// operands' dtype codes (w: bias, s: the convolution's input, d: result).
func (g gemmOperands) spec(t gemmTile, wdt, sdt, ddt, adt, bdt uint32) []uint32 {
	s := make([]uint32, 16)
	s[0], s[1], s[2], s[3], s[4] = uint32(t.BM), uint32(t.BN), uint32(t.BK), uint32(t.TM), uint32(t.TN)
	s[5], s[6], s[7], s[8], s[9] = wdt, sdt, ddt, adt, bdt
	if g.akc {
		s[10] = 1
	}
	if g.bkc {
		s[11] = 1
	}
	s[12], s[13] = g.vec, uint32(t.threads())
	return s
}

// epilogue returns the sources of a matmul or conv2d dispatch — srcs, then
// the bias and the residual, each bound to the first source when absent —
// and the shaders' epilogue flags word (common.glsl).
func epilogue(n *tensor.Node, srcs []*tensor.Tensor, bias *tensor.Tensor) ([]*tensor.Tensor, uint32, error) {
	var flags uint32
	if kind := n.Activation(); kind != 0 {
		if !tensor.EpilogueActivation(kind) {
			return nil, 0, fmt.Errorf("unary kind %d in an epilogue", kind)
		}
		flags |= uint32(kind) << 8
	}
	bias0, res0 := srcs[0], srcs[0]
	if bias != nil {
		bias0 = bias
		flags |= epBias
	}
	if res := n.Residual(); res != nil {
		if !tensor.SameShape(res.Shape(), n.Dst.Shape()) {
			return nil, 0, fmt.Errorf("residual %v for a %v result", res.Shape(), n.Dst.Shape())
		}
		if res.DType() != n.Dst.DType() {
			res = res.Cast(n.Dst.DType())
		} else {
			res = res.Contiguous()
		}
		if err := res.Err(); err != nil {
			return nil, 0, err
		}
		res0 = res
		flags |= epResidual
	}
	return append(srcs, bias0, res0), flags, nil
}

// conv2dOp records the convolution as an implicit GEMM per image.
func (b *Backend) conv2dOp(n *tensor.Node) error {
	ddt, err := dstCode("conv2d", n.Dst)
	if err != nil {
		return err
	}
	x, sdt, err := act(n.Src[0])
	if err != nil {
		return err
	}
	w := n.Src[1].Contiguous() // converted in the shader when 16-bit
	if err := w.Err(); err != nil {
		return err
	}
	wdt, err := floatCode(w)
	if err != nil {
		return err
	}
	var bias *tensor.Tensor
	var bdt uint32
	if len(n.Src) > 2 && n.Src[2] != nil {
		if bias, bdt, err = act(n.Src[2]); err != nil {
			return err
		}
	}
	xs, ws, ds := x.Shape(), w.Shape(), n.Dst.Shape()
	bsz, c, h, wd := xs[0], xs[1], xs[2], xs[3]
	o, kh, kw := ws[0], ws[2], ws[3]
	oh, ow := ds[2], ds[3]
	if bsz > int(b.maxGroup[2]) {
		return fmt.Errorf("batch of %d images exceeds the device's %d workgroups in z", bsz, b.maxGroup[2])
	}
	if genericShaders() {
		return b.conv2dGeneric(n, x, w, bias, sdt, wdt, bdt, ddt)
	}
	// The specialised GEMM over the implicit im2col matrix: a = w (O×R),
	// b = x̂ (R×OH·OW), bias per row.
	srcs, flags, err := epilogue(n, []*tensor.Tensor{w, x}, bias)
	if err != nil {
		return err
	}
	if flags&epBias != 0 {
		flags = flags&^epBias | epBiasRow
	}
	r := c * kh * kw
	return b.launch(n, launch{
		shader: "gemmconv", dst: n.Dst, srcs: srcs,
		setup: func(l *launch, off []uint32) error {
			// The tile reads the tuned table and forced tiles (b.mu); vec4
			// loads of w need an aligned offset.
			t, err := b.gemmTileFor("conv2d", o, oh*ow, bsz, bsz, c, h, wd)
			if err != nil {
				return err
			}
			g := gemmOperands{akc: true, lda: r}
			if vec4Aligned(r, r, off[1], nil) {
				g.vec = 1
			}
			l.grid = [3]int{ceilDiv(oh*ow, t.BN), ceilDiv(o, t.BM), bsz}
			l.spec = g.spec(t, bdt, 0, ddt, wdt, sdt)
			l.spec[14], l.spec[15] = uint32(kh), uint32(kw)
			return nil
		},
		push: func(off []uint32) any {
			return gemmConvPush{M: uint32(o), N: uint32(oh * ow), K: uint32(r), Flags: flags,
				Doff: off[0], Aoff: off[1], Boff: off[2], Biasoff: off[3], Resoff: off[4],
				Lda: uint32(r), C: uint32(c), H: uint32(h), W: uint32(wd), OW: uint32(ow),
				Sy: uint32(n.Int[0]), Sx: uint32(n.Int[1]), Py: uint32(n.Int[2]), Px: uint32(n.Int[3])}
		},
	})
}

// The shaders' epilogue flags (common.glsl, gemm.comp).
const (
	epBias     = 1 // bias per column
	epResidual = 2
	epBiasRow  = 4 // bias per row (gemm.comp)
)

// conv2dGeneric records the convolution on conv2d.comp, the strided
// shader gemm.comp replaced (UNCLIP_VK_GENERIC=1 selects it, for
// comparisons).
func (b *Backend) conv2dGeneric(n *tensor.Node, x, w, bias *tensor.Tensor, sdt, wdt, bdt, ddt uint32) error {
	xs, ws, ds := x.Shape(), w.Shape(), n.Dst.Shape()
	bsz, c, h, wd := xs[0], xs[1], xs[2], xs[3]
	o, kh, kw := ws[0], ws[2], ws[3]
	oh, ow := ds[2], ds[3]
	srcs, flags, err := epilogue(n, []*tensor.Tensor{x, w}, bias)
	if err != nil {
		return err
	}
	return b.launch(n, launch{
		shader: "conv2d", dst: n.Dst, srcs: srcs,
		push: func(off []uint32) any {
			return conv2dPush{O: uint32(o), R: uint32(c * kh * kw), Q: uint32(oh * ow), Flags: flags,
				C: uint32(c), H: uint32(h), W: uint32(wd), OW: uint32(ow),
				Sy: uint32(n.Int[0]), Sx: uint32(n.Int[1]), Py: uint32(n.Int[2]), Px: uint32(n.Int[3]),
				Doff: off[0], Xoff: off[1], Woff: off[2], Biasoff: off[3], Wdt: wdt, Resoff: off[4]}
		},
		grid: [3]int{(oh*ow + 63) / 64, (o + 63) / 64, bsz},
		spec: dtSpec(bdt, sdt, ddt, uint32(kh), uint32(kw)),
	})
}

// floatCode is the shader dtype code of a float operand.
func floatCode(t *tensor.Tensor) (uint32, error) {
	if !t.DType().IsFloat() {
		return 0, fmt.Errorf("%v operand, want a float type", t.DType())
	}
	return dtCode(t.DType())
}
