//go:build cgo && !novulkan

package vulkan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unsafe"

	"github.com/unclip-go/unclip/tensor"
)

// reductionWG is the workgroup size of a row reduction over c values: a
// power of two in [32, 256], about c/8, so that short rows do not leave
// most invocations idle.
func reductionWG(c int) uint32 {
	wg := uint32(32)
	for wg < 256 && int(wg)*8 < c {
		wg *= 2
	}
	return wg
}

// rowsOf is the number of rows of the last dimension.
func rowsOf(t *tensor.Tensor) (rows, c int) {
	c = 1
	if t.Rank() > 0 {
		c = t.Dim(-1)
	}
	if c == 0 {
		return 0, 0
	}
	return t.Numel() / c, c
}

func (b *Backend) layerNormOp(n *tensor.Node) error {
	ddt, err := dstCode("layernorm", n.Dst)
	if err != nil {
		return err
	}
	x, sdt, err := act(n.Src[0])
	if err != nil {
		return err
	}
	params := []*tensor.Tensor{n.Src[1]}
	hasBias := 0
	if len(n.Src) > 2 && n.Src[2] != nil {
		params = append(params, n.Src[2])
		hasBias = 1
	}
	params, wdt, err := sameFloat(true, params...)
	if err != nil {
		return err
	}
	w, bias := params[0], params[0]
	if hasBias != 0 {
		bias = params[1]
	}
	rows, c := rowsOf(x)
	b.mu.Lock()
	defer b.mu.Unlock()
	ops, err := b.operands(n.Dst, x, w, bias)
	if err != nil {
		return err
	}
	var pc push
	pc.i(rows, c, hasBias).f(n.Float[0]).u(ops[0].off, ops[1].off, ops[2].off, ops[3].off)
	gx, gy := b.groups(rows, 1)
	return b.dispatch(n, "layernorm", ops, &pc, gx, gy, 1, dtSpec(wdt, sdt, ddt, reductionWG(c))...)
}

func (b *Backend) groupNormOp(n *tensor.Node) error {
	ddt, err := dstCode("groupnorm", n.Dst)
	if err != nil {
		return err
	}
	x, sdt, err := act(n.Src[0])
	if err != nil {
		return err
	}
	params, wdt, err := sameFloat(true, n.Src[1], n.Src[2])
	if err != nil {
		return err
	}
	w, bias := params[0], params[1]
	shape := x.Shape()
	bsz, c := shape[0], shape[1]
	hw := 1
	for _, d := range shape[2:] {
		hw *= d
	}
	g := n.Int[0]
	if g <= 0 || c%g != 0 {
		return fmt.Errorf("groupnorm: %d channels in %d groups", c, g)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	ops, err := b.operands(n.Dst, x, w, bias)
	if err != nil {
		return err
	}
	var pc push
	pc.i(bsz*g, g, c/g, hw, n.Int[1]).f(n.Float[0]).u(ops[0].off, ops[1].off, ops[2].off, ops[3].off)
	gx, gy := b.groups(bsz*g, 1)
	return b.dispatch(n, "groupnorm", ops, &pc, gx, gy, 1, dtSpec(wdt, sdt, ddt, reductionWG(c/g*hw))...)
}

func (b *Backend) softmaxOp(n *tensor.Node) error {
	ddt, err := dstCode("softmax", n.Dst)
	if err != nil {
		return err
	}
	x, sdt, err := act(n.Src[0])
	if err != nil {
		return err
	}
	rows, c := rowsOf(x)
	if rows == 0 {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	ops, err := b.operands(n.Dst, x)
	if err != nil {
		return err
	}
	var pc push
	pc.i(rows, c).u(ops[0].off, ops[1].off)
	gx, gy := b.groups(rows, 1)
	return b.dispatch(n, "softmax", ops, &pc, gx, gy, 1, dtSpec(0, sdt, ddt, reductionWG(c))...)
}

// tileAttentionShared is the shared memory attention_tile.comp needs at
// its largest head size (key, value and score tiles).
const tileAttentionShared = 3 * 32 * 64 * 4

// maxHeadDim is the largest D and Dv attention.comp handles.
const maxHeadDim = 256

func (b *Backend) attentionOp(n *tensor.Node) error {
	ddt, err := dstCode("attention", n.Dst)
	if err != nil {
		return err
	}
	qkv, sdt, err := sameFloat(true, n.Src[0], n.Src[1], n.Src[2])
	if err != nil {
		return err
	}
	q, k, v := qkv[0], qkv[1], qkv[2]
	bsz, h, lq, d := q.Dim(0), q.Dim(1), q.Dim(2), q.Dim(3)
	lk, dv := k.Dim(2), v.Dim(3)
	if d > maxHeadDim || dv > maxHeadDim {
		return fmt.Errorf("attention head size %d/%d exceeds %d", d, dv, maxHeadDim)
	}
	bias, hasBias := q, 0
	var bst [4]int
	if n.Src[3] != nil {
		t, err := view32(n.Src[3])
		if err != nil {
			return err
		}
		bias, hasBias = t, 1
		copy(bst[:], t.Strides())
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	ops, err := b.operands(n.Dst, q, k, v, bias)
	if err != nil {
		return err
	}
	var pc push
	if md := max(d, dv); md <= 64 && bsz*h <= int(b.maxGroup[1]) && b.phys.info.MaxSharedMem >= tileAttentionShared {
		// Small heads: one invocation per query, key tiles shared by 64
		// queries.
		spec := uint32(16)
		for int(spec) < md {
			spec *= 2
		}
		pc.i(h, lq, lk, d, dv).f(n.Float[0]).i(n.Int[0], hasBias)
		pc.u(ops[0].off, ops[1].off, ops[2].off, ops[3].off, ops[4].off).i(bst[:]...)
		return b.dispatch(n, "attention_tile", ops, &pc, (lq+63)/64, bsz*h, 1, dtSpec(0, sdt, ddt, spec)...)
	}
	pc.i(bsz*h*lq, h, lq, lk, d, dv).f(n.Float[0]).i(n.Int[0], hasBias)
	pc.u(ops[0].off, ops[1].off, ops[2].off, ops[3].off, ops[4].off).i(bst[:]...)
	gx, gy := b.groups(bsz*h*lq, 1)
	return b.dispatch(n, "attention", ops, &pc, gx, gy, 1, dtSpec(0, sdt, ddt)...)
}

// errBadID is reported when an embedding id was out of range.
var errBadID = errors.New("embedding id out of range")

func (b *Backend) embeddingOp(n *tensor.Node) error {
	table := n.Src[0].Contiguous()
	ids := n.Src[1].Contiguous()
	if err := errors.Join(table.Err(), ids.Err()); err != nil {
		return err
	}
	half := 0
	switch table.DType().Size() {
	case 2:
		half = 1
	case 4:
	default:
		return fmt.Errorf("embedding table of %v", table.DType())
	}
	if n.Dst.DType() != table.DType() {
		return fmt.Errorf("embedding of a %v table into %v", table.DType(), n.Dst.DType())
	}
	is64 := 0
	switch ids.DType() {
	case tensor.I64:
		is64 = 1
	case tensor.I32:
	default:
		return fmt.Errorf("embedding ids of %v", ids.DType())
	}
	vocab, dim := table.Dim(0), table.Dim(1)
	count := n.Dst.Numel()
	// Tables larger than maxStorageBufferRange are bound in windows of
	// rows, one dispatch each.
	window := vocab
	if rowBytes := uint64(dim * table.DType().Size()); rowBytes > 0 {
		window = int(min(uint64(vocab), (b.maxRange-b.minAlign)/rowBytes))
	}
	if b.embedWindow > 0 {
		window = min(window, b.embedWindow)
	}
	if window < 1 {
		return fmt.Errorf("embedding rows of %d %v values exceed the device's maxStorageBufferRange", dim, table.DType())
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	gx, gy := b.groups(count, 256)
	for lo := 0; lo < vocab; lo += window {
		hi := min(vocab, lo+window)
		ops, err := b.operands(n.Dst, table.Narrow(0, lo, hi-lo), ids)
		if err != nil {
			return err
		}
		ops = append(ops, b.statusOperand())
		var pc push
		pc.i(count, dim, vocab, is64, half).u(ops[0].off, ops[1].off, ops[2].off).i(lo, hi)
		if err := b.dispatch(n, "embedding", ops, &pc, gx, gy, 1); err != nil {
			return err
		}
	}
	return nil
}

// statusOperand binds the status flags (written by the shader).
func (b *Backend) statusOperand() operand {
	a := b.status
	return operand{a: a, bind: binding{buf: a.blk.buf, off: a.off, rng: 16}, write: true}
}

// checkStatus reports (once) an error flagged by a shader; all work has
// finished (b.mu held).
func (b *Backend) checkStatus() error {
	if b.status == nil {
		return nil
	}
	h := b.status.host()
	if v := binary.LittleEndian.Uint32(h); v != 0 {
		clear(h[:4])
		return errBadID
	}
	return nil
}

// pool2d runs pool.comp: mode 0 average pooling, 1 nearest upsampling.
func (b *Backend) pool2d(n *tensor.Node, mode int) error {
	ddt, err := dstCode(n.Op.String(), n.Dst)
	if err != nil {
		return err
	}
	x, sdt, err := act(n.Src[0])
	if err != nil {
		return err
	}
	xs, ds := x.Shape(), n.Dst.Shape()
	count := n.Dst.Numel()
	b.mu.Lock()
	defer b.mu.Unlock()
	ops, err := b.operands(n.Dst, x)
	if err != nil {
		return err
	}
	var pc push
	pc.i(count, mode, n.Int[0], xs[2], xs[3], ds[2], ds[3]).u(ops[0].off, ops[1].off)
	gx, gy := b.groups(count, 256)
	return b.dispatch(n, "pool", ops, &pc, gx, gy, 1, dtSpec(0, sdt, ddt)...)
}

func (b *Backend) avgPoolOp(n *tensor.Node) error { return b.pool2d(n, 0) }
func (b *Backend) nearestOp(n *tensor.Node) error { return b.pool2d(n, 1) }

// tapsFor returns the device table of antialiased bicubic taps for nIn →
// nOut (cached) and the largest tap count K: per output, the first index
// and the count as float bits, then K weights.
func (b *Backend) tapsFor(nIn, nOut int) (*tensor.Tensor, int, error) {
	key := [2]int{nIn, nOut}
	b.tapsMu.Lock()
	t, ok := b.taps[key]
	b.tapsMu.Unlock()
	first, ws := tensor.AntialiasTaps(nIn, nOut)
	k := 1
	for _, w := range ws {
		k = max(k, len(w))
	}
	if ok {
		return t, k, nil
	}
	host := make([]float32, nOut*(k+2))
	for o := range nOut {
		row := host[o*(k+2):]
		row[0] = math.Float32frombits(uint32(first[o]))
		row[1] = math.Float32frombits(uint32(len(ws[o])))
		copy(row[2:], ws[o])
	}
	// Cached for the backend's life: Reserve, not an op's scratch.
	st, err := b.Reserve(4 * len(host))
	if err != nil {
		return nil, 0, err
	}
	if err := b.Write(st, 0, unsafe.Slice((*byte)(unsafe.Pointer(&host[0])), 4*len(host))); err != nil {
		return nil, 0, err
	}
	t = tensor.OnStorage(st, tensor.F32, len(host))
	b.tapsMu.Lock()
	b.taps[key] = t
	b.tapsMu.Unlock()
	return t, k, nil
}

// bicubicOp resizes rows first, then columns, like the CPU reference.
func (b *Backend) bicubicOp(n *tensor.Node) error {
	ddt, err := dstCode("upsample_bicubic", n.Dst)
	if err != nil {
		return err
	}
	// The rows pass reads x as it is into a float32 temporary; the
	// columns pass rounds once into the destination.
	x, sdt, err := act(n.Src[0])
	if err != nil {
		return err
	}
	xs, ds := x.Shape(), n.Dst.Shape()
	planes, h, w, oh, ow := xs[0]*xs[1], xs[2], xs[3], ds[2], ds[3]
	tx, kx, err := b.tapsFor(w, ow)
	if err != nil {
		return err
	}
	ty, ky, err := b.tapsFor(h, oh)
	if err != nil {
		return err
	}
	tmp := tensor.New(b, tensor.F32, planes, h, ow)
	if err := tmp.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	ops, err := b.operands(tmp, x, tx)
	if err != nil {
		return err
	}
	count := planes * h * ow
	var pc push
	pc.i(count, 0, kx, h, w, h, ow).u(ops[0].off, ops[1].off, ops[2].off)
	gx, gy := b.groups(count, 256)
	if err := b.dispatch(n, "resample", ops, &pc, gx, gy, 1, dtSpec(0, sdt, 0)...); err != nil {
		return err
	}
	if ops, err = b.operands(n.Dst, tmp, ty); err != nil {
		return err
	}
	count = planes * oh * ow
	pc = push{}
	pc.i(count, 1, ky, h, ow, oh, ow).u(ops[0].off, ops[1].off, ops[2].off)
	gx, gy = b.groups(count, 256)
	return b.dispatch(n, "resample", ops, &pc, gx, gy, 1, dtSpec(0, 0, ddt)...)
}

// schedulerStepOp records one UnCLIP scheduler step on the device.
func (b *Backend) schedulerStepOp(n *tensor.Node) error {
	if err := needF32("scheduler_step", n.Dst); err != nil {
		return err
	}
	mo, sdt, err := act(n.Src[0]) // a 16-bit model output is widened on load
	if err != nil {
		return err
	}
	x, err := dense32(n.Src[1])
	if err != nil {
		return err
	}
	z := x
	if len(n.Src) > 2 && n.Src[2] != nil {
		if z, err = dense32(n.Src[2]); err != nil {
			return err
		}
	}
	p := tensor.StepParamsOf(n)
	if p.AddNoise && (len(n.Src) < 3 || n.Src[2] == nil) {
		return errors.New("scheduler_step: noise missing")
	}
	pv := x // the per-step scalars (dynamic steps); else any buffer
	if tensor.StepDynamic(n) {
		if pv, err = dense32(n.Src[3]); err != nil {
			return err
		}
	}
	count := n.Dst.Numel()
	per := count / max(n.Dst.Dim(0), 1)
	b.mu.Lock()
	defer b.mu.Unlock()
	ops, err := b.operands(n.Dst, mo, x, z, pv)
	if err != nil {
		return err
	}
	var pc push
	pc.i(count, per, n.Int[0]).f(p.ClipRange, p.SqrtAlphaProd, p.SqrtOneMinusAlphaProd, p.CX0, p.CXt, p.Std, p.MinLog, p.MaxLog)
	pc.u(ops[0].off, ops[1].off, ops[2].off, ops[3].off, ops[4].off)
	gx, gy := b.groups(count, 256)
	return b.dispatch(n, "schedstep", ops, &pc, gx, gy, 1, dtSpec(0, sdt, 0)...)
}
