package cpu

import (
	"encoding/binary"
	"math"
	"time"
	"unsafe"

	"github.com/unclip-go/unclip/tensor"
)

// Weights packed once. A product packs its operands into micro-kernel
// panels at every call; for a weight that is the same work each time (and,
// for a linear layer with few rows of activations, most of the op). So
// the first fast product that reads a whole weight (a storage marked by
// tensor.Storage.MarkWeight: a linear layer's B or a convolution's A)
// packs all of it, in the layout the driver would have produced block by
// block, and the packed copy replaces the plain one (tensor.Storage.Pack):
// memory holds one copy of the weights. Later products read their blocks
// from it in place. With a bf16 kernel the copy holds bf16 pairs: half the
// memory of float32 weights, and the weight's value is its bf16 rounding
// from then on.
//
// Anything that needs the plain layout (another op, another kernel set,
// Winograd, a read of the tensor) unpacks the storage first, for good.

// packedOp is a whole GEMM operand in a micro-kernel's packed layout: K
// blocks of kcB steps (the last one shorter), each holding the panels of
// all rows (A: mr rows a panel, the layout of microKernel.packAll) or all
// columns (B: nr columns a panel) one after the other. It is the
// tensor.Packing of a packed weight.
type packedOp struct {
	mk *microKernel
	// a: the A operand (rows are panel lanes), else B (columns are).
	a bool
	// conv: a direct convolution's A, whose bf16 pairs join two input
	// channels (convPairs) rather than two consecutive K indices.
	conv bool
	// lanes is the operand's panel dimension (A's rows, B's columns) and
	// k its depth; kcB the K block.
	lanes, k, kcB int
	// Element (i, j) of the plain operand is at i·rs + j·cs of the
	// storage, in dtype.
	rs, cs int
	dtype  tensor.DType
	data   []float32
	mem    []byte // the memory behind data (tensor.MapHost)
}

// width is the panel width: mr or nr.
func (p *packedOp) width() int {
	if p.a {
		return p.mk.mr
	}
	return p.mk.nr
}

// steps is the number of kernel steps of a K block of kc values.
func (p *packedOp) steps(kc int) int {
	switch {
	case !p.mk.pairs:
		return kc
	case p.conv:
		return 9 * ceilDiv(kc/9, 2)
	}
	return ceilDiv(kc, 2)
}

// span is the padded panel dimension: the lanes rounded up to panels.
func (p *packedOp) span() int { w := p.width(); return ceilDiv(p.lanes, w) * w }

// size is the number of float32 slots of the packed operand.
func (p *packedOp) size() int {
	full, last := p.k/p.kcB, p.k%p.kcB
	n := full * p.steps(p.kcB)
	if last > 0 {
		n += p.steps(last)
	}
	return n * p.span()
}

// block returns the packed K block at depth k0 (a multiple of kcB) from
// lane x0 (a multiple of the panel width) on: the operand a driver would
// have packed for that block.
func (p *packedOp) block(k0, x0 int) []float32 {
	b := k0 / p.kcB
	kc := min(p.kcB, p.k-k0)
	return p.data[b*p.span()*p.steps(p.kcB)+(x0/p.width())*p.steps(kc)*p.width():]
}

// at returns lane x at depth kk: its slot and, for a bf16 pairs layout,
// which half holds it (0 low, 1 high; −1 for a float32 slot).
func (p *packedOp) at(x, kk int) (slot, half int) {
	w := p.width()
	b := kk / p.kcB
	s := kk - b*p.kcB
	kc := min(p.kcB, p.k-b*p.kcB)
	base := b*p.span()*p.steps(p.kcB) + (x/w)*p.steps(kc)*w + x%w
	switch {
	case !p.mk.pairs:
		return base + s*w, -1
	case p.conv:
		ci, t := s/9, s%9
		return base + (9*(ci/2)+t)*w, ci % 2
	}
	return base + (s/2)*w, s % 2
}

// Unpack writes the operand back in its plain layout (tensor.Packing). A
// bf16 pairs or rounding kernel's copy gives the bf16 values.
func (p *packedOp) Unpack() ([]byte, error) {
	es := p.dtype.Size()
	out := tensor.HostBytes(p.lanes * p.k * es)
	bits := uint32Bits(p.data)
	for x := 0; x < p.lanes; x++ {
		for kk := 0; kk < p.k; kk++ {
			slot, half := p.at(x, kk)
			var v float32
			if half < 0 {
				v = p.data[slot]
			} else {
				v = math.Float32frombits((bits[slot] >> (16 * half)) << 16)
			}
			i, j := kk, x
			if p.a {
				i, j = x, kk
			}
			o := (i*p.rs + j*p.cs) * es
			switch p.dtype {
			case tensor.F32:
				binary.LittleEndian.PutUint32(out[o:], math.Float32bits(v))
			case tensor.F16:
				binary.LittleEndian.PutUint16(out[o:], tensor.F32ToF16(v))
			case tensor.BF16:
				binary.LittleEndian.PutUint16(out[o:], tensor.F32ToBF16(v))
			}
		}
	}
	return out, nil
}

// Release unmaps the packed copy (tensor.Packing).
func (p *packedOp) Release() {
	if p.mem != nil {
		reserved.Add(-int64(len(p.mem)))
		_ = tensor.UnmapHost(p.mem)
		p.mem, p.data = nil, nil
	}
}

// same reports whether q describes the same packing as p.
func (p *packedOp) same(q *packedOp) bool {
	return p.mk == q.mk && p.a == q.a && p.conv == q.conv && p.lanes == q.lanes && p.k == q.k &&
		p.kcB == q.kcB && p.rs == q.rs && p.cs == q.cs
}

// fits reports whether the packed copy of a weight of the given size
// keeps memory at about one copy: no larger than the weight bar panel
// padding (at most an eighth more). So float32 kernels do not widen
// 16-bit weights, and thin weights stay as they are.
func (p *packedOp) fits(bytes int) bool { return 4*p.size() <= bytes+bytes/8 }

// packedWeight returns the packed copy of the operand that t (all of a
// weight's storage, read through o as want describes) is, packing it with
// fill on first use; nil when t is not a packable weight (then o reads it
// as it is). A storage packed in another layout is unpacked, in which case
// the caller's operand must be built after this call.
func packedWeight(t *tensor.Tensor, want packedOp, fill func(dst []float32)) (*packedOp, error) {
	st := t.Storage()
	if p, ok := st.Packing().(*packedOp); ok {
		if p.same(&want) {
			return p, nil
		}
		return nil, st.Unpack()
	}
	rows, cols := want.k, want.lanes
	if want.a {
		rows, cols = want.lanes, want.k
	}
	whole := t.Offset() == 0 && rows*cols*want.dtype.Size() == st.Bytes && rows*cols > 0 &&
		((want.cs == 1 && want.rs == cols) || (want.rs == 1 && want.cs == rows))
	if !st.Packable() || !whole || t.DType() != want.dtype {
		return nil, nil
	}
	p := want
	if !p.fits(st.Bytes) {
		return nil, nil
	}
	mem, err := tensor.MapHost(4 * p.size())
	if err != nil {
		return nil, nil // no memory for a packed copy: pack per call
	}
	reserved.Add(int64(len(mem)))
	p.mem, p.data = mem, tensor.Float32View(mem)
	var t0 time.Time
	if prof.on.Load() {
		t0 = time.Now()
	}
	fill(p.data)
	st.Pack(&p) // gives the plain copy back (Backend.Free unmaps a Reserve mapping)
	if !t0.IsZero() {
		prof.packing.Add(int64(time.Since(t0)))
	}
	return &p, nil
}

// bLayout is the layout of a k×n B operand whose element (i, j) is at
// i·rs + j·cs of a dt weight, packed whole for mk.
func bLayout(mk *microKernel, k, n, rs, cs int, dt tensor.DType) packedOp {
	return packedOp{mk: mk, lanes: n, k: k, kcB: mk.kBlock(k), rs: rs, cs: cs, dtype: dt}
}

// aLayout is the layout of a dense m×k A operand of a dt weight, packed
// whole for mk with K blocks of kcB, for the direct convolution or not.
func aLayout(mk *microKernel, m, k, kcB int, direct bool, dt tensor.DType) packedOp {
	return packedOp{mk: mk, a: true, conv: direct, lanes: m, k: k, kcB: kcB, rs: k, cs: 1, dtype: dt}
}

// packedGemmB is the packed copy of B for mk, when b is a whole weight;
// see packedWeight.
func packedGemmB(b *tensor.Tensor, mk *microKernel, k, n int) (*packedOp, error) {
	if k == 0 || n == 0 || !batchBroadcast(b) {
		return nil, b.Storage().Unpack()
	}
	o := matOperand(b)
	want := bLayout(mk, k, n, o.rs, o.cs, b.DType())
	return packedWeight(b, want, func(dst []float32) {
		p := want
		p.data = dst
		g := gemmJob{packB: o.packB}
		parallelN(ceilDiv(k, p.kcB), Threads(), func(t, _ int) {
			k0 := t * p.kcB
			g.packBFor(mk, p.block(k0, 0), k0, min(p.kcB, k-k0), 0, n)
		})
	})
}

// packedGemmA is the packed copy of a convolution's contiguous weight w,
// read as an m×k A operand by the GEMM drivers (direct false, K blocks of
// mk.kBlock(k)) or by the direct convolution (direct true, K blocks of
// kcB = 9·cb); see packedWeight.
func packedGemmA(w *tensor.Tensor, mk *microKernel, m, k, kcB int, direct bool) (*packedOp, error) {
	want := aLayout(mk, m, k, kcB, direct, w.DType())
	return packedWeight(w, want, func(dst []float32) {
		p := want
		p.data = dst
		o := matOperand(w.Reshape(m, k))
		if direct {
			ap, _, _ := mk.packDirect(o.packA, m, k/9, kcB/9, Threads())
			copy(dst, ap)
			putScratch(ap)
			return
		}
		g := gemmJob{packA: o.packA}
		parallelN(ceilDiv(k, kcB), Threads(), func(t, _ int) {
			k0 := t * kcB
			g.packAFor(mk, p.block(k0, 0), 0, m, k0, min(kcB, k-k0))
		})
	})
}

// batchBroadcast reports whether every batch dimension of t has stride 0
// (one matrix for the whole batch, as a weight is).
func batchBroadcast(t *tensor.Tensor) bool {
	st := t.Strides()
	for _, s := range st[:len(st)-2] {
		if s != 0 {
			return false
		}
	}
	return true
}

// uint32Bits views float32 slots as their bits.
func uint32Bits(f []float32) []uint32 {
	if len(f) == 0 {
		return nil
	}
	return unsafe.Slice((*uint32)(unsafe.Pointer(&f[0])), len(f))
}
