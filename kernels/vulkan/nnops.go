//go:build cgo && !novulkan

package vulkan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
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
	return b.launch(n, launch{
		shader: "layernorm", dst: n.Dst, srcs: []*tensor.Tensor{x, w, bias},
		push: func(off []uint32) any {
			return layernormPush{Rows: uint32(rows), C: uint32(c), HasBias: uint32(hasBias), Eps: n.Float[0],
				Doff: off[0], Xoff: off[1], Woff: off[2], Boff: off[3]}
		},
		grid: b.linear(rows, 1),
		spec: dtSpec(wdt, sdt, ddt, reductionWG(c)),
	})
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
	// The scale-shift modulation (bound to x when absent): views in the
	// activations' dtype, with one pair of strides for both.
	scale, shift, mod := x, x, uint32(0)
	var msn, msc int
	if s, t := n.ScaleShift(); s != nil {
		st, err := sameAs(sdt, s, t)
		if err != nil {
			return err
		}
		scale, shift, mod = st[0], st[1], 1
		msn, msc = scale.Strides()[0], scale.Strides()[1]
	}
	return b.launch(n, launch{
		shader: "groupnorm", dst: n.Dst, srcs: []*tensor.Tensor{x, w, bias, scale, shift},
		push: func(off []uint32) any {
			return groupnormPush{Total: uint32(bsz * g), G: uint32(g), CG: uint32(c / g), HW: uint32(hw), Silu: uint32(n.Int[1]),
				Eps: n.Float[0], Doff: off[0], Xoff: off[1], Woff: off[2], Boff: off[3],
				Mod: mod, Soff: off[4], Toff: off[5], Msn: uint32(msn), Msc: uint32(msc)}
		},
		grid: b.linear(bsz*g, 1),
		spec: dtSpec(wdt, sdt, ddt, reductionWG(c/g*hw)),
	})
}

// sameAs returns views of ts in the dtype of shader code dt (a cast where
// they differ), made dense when their strides differ from each other.
func sameAs(dt uint32, ts ...*tensor.Tensor) ([]*tensor.Tensor, error) {
	out := make([]*tensor.Tensor, len(ts))
	for i, t := range ts {
		if c, err := dtCode(t.DType()); err != nil || c != dt {
			t = t.Cast([...]tensor.DType{tensor.F32, tensor.F16, tensor.BF16}[dt])
		}
		out[i] = t
	}
	for _, t := range out[1:] {
		if !slices.Equal(t.Strides(), out[0].Strides()) {
			for i := range out {
				out[i] = out[i].Contiguous()
			}
			break
		}
	}
	for _, t := range out {
		if err := t.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
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
	return b.launch(n, launch{
		shader: "softmax", dst: n.Dst, srcs: []*tensor.Tensor{x},
		push: func(off []uint32) any {
			return softmaxPush{Rows: uint32(rows), C: uint32(c), Doff: off[0], Xoff: off[1]}
		},
		grid: b.linear(rows, 1),
		spec: dtSpec(0, sdt, ddt, reductionWG(c)),
	})
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
	srcs := []*tensor.Tensor{n.Src[0], n.Src[1], n.Src[2]}
	if kp, vp := n.AttentionPrefix(); kp != nil {
		srcs = append(srcs, kp, vp)
	}
	// Views stay views: only a dtype mix or a non-unit stride along d
	// makes a copy.
	qkv, sdt, err := sameFloat(false, srcs...)
	if err != nil {
		return err
	}
	for i, t := range qkv {
		if t.Strides()[3] != 1 && t.Dim(3) > 1 {
			if qkv[i] = t.Contiguous(); qkv[i].Err() != nil {
				return qkv[i].Err()
			}
		}
	}
	if !genericShaders() {
		if ok, err := b.flashAttention(n, qkv, sdt, ddt); ok || err != nil {
			return err
		}
	}
	return b.attentionFallback(n, qkv, sdt, ddt)
}

// flashAttention records flash.comp (see there) when the head size, the
// tile and the operands' strides allow; ok is false when they do not.
func (b *Backend) flashAttention(n *tensor.Node, qkv []*tensor.Tensor, sdt, ddt uint32) (ok bool, err error) {
	q, k, v := qkv[0], qkv[1], qkv[2]
	bsz, h, lq, d := q.Dim(0), q.Dim(1), q.Dim(2), q.Dim(3)
	lk, dv := k.Dim(2), v.Dim(3)
	var kp, vp *tensor.Tensor
	lp := 0
	if len(qkv) > 3 {
		kp, vp = qkv[3], qkv[4]
		lp = kp.Dim(2)
	}
	causal := n.Int[0] == 1
	if causal && lp > 0 {
		return false, errors.New("causal attention with prefix keys")
	}
	// k and v share strides (as kp and vp do): one set of push constants.
	kvs := [3]int{k.Strides()[0], k.Strides()[1], k.Strides()[2]}
	if kvs != [3]int{v.Strides()[0], v.Strides()[1], v.Strides()[2]} {
		return false, nil
	}
	var kvps [3]int
	if kp != nil {
		kvps = [3]int{kp.Strides()[0], kp.Strides()[1], kp.Strides()[2]}
		if kvps != [3]int{vp.Strides()[0], vp.Strides()[1], vp.Strides()[2]} {
			return false, nil
		}
	}
	t, md, ok := b.flashTile(max(d, dv), bsz, h, lq, lp+lk, d)
	if !ok || bsz*h > int(b.maxGroup[1]) {
		return false, nil
	}
	var flags uint32
	if causal {
		flags |= 1
	}
	bias := q
	var bst [4]int
	if n.Src[3] != nil {
		if bias, err = view32(n.Src[3]); err != nil {
			return false, err
		}
		copy(bst[:], bias.Strides())
		flags |= 2
		if n.PrefixOnlyBias() {
			flags |= 4
		}
	}
	// The result: (B, H, Lq, Dv), or (B, Lq, H·Dv) with the heads merged.
	ost := [3]int{h * lq * dv, lq * dv, dv}
	if n.Int[1] == 1 {
		ost = [3]int{lq * h * dv, dv, h * dv}
	}
	if kp == nil {
		kp, vp = k, v
	}
	return true, b.launch(n, launch{
		shader: "flash", dst: n.Dst, srcs: []*tensor.Tensor{q, k, v, bias, kp, vp},
		push: func(off []uint32) any {
			pc := flashPush{H: uint32(h), Lq: uint32(lq), Lk: uint32(lk), Lp: uint32(lp), D: uint32(d), Dv: uint32(dv),
				Flags: flags, Scale: n.Float[0],
				Ooff: off[0], Qoff: off[1], Koff: off[2], Voff: off[3], Kpoff: off[5], Vpoff: off[6], Biasoff: off[4]}
			setInts(pc.Qs[:], q.Strides()[:3])
			setInts(pc.Kvs[:], kvs[:])
			setInts(pc.Kvps[:], kvps[:])
			setInts(pc.Os[:], ost[:])
			setInts(pc.Bs[:], bst[:])
			return pc
		},
		grid: [3]int{ceilDiv(lq, t.BQ), bsz * h, 1},
		spec: dtSpec(0, sdt, ddt, uint32(t.BQ), uint32(t.BKV), uint32(md), uint32(t.threads())),
	})
}

// flashTile picks flash.comp's tile and head-size bound for heads of up
// to hd values: a forced tile, or the tuned table's entry nearest to dims
// (B, H, Lq, Lk, D, as bench kernels shapes), else 32×32; ok is false when
// no tile fits the device (its shared memory) or hd exceeds 128.
func (b *Backend) flashTile(hd int, dims ...int) (attnTile, int, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	md := 16
	for md < hd {
		md *= 2
	}
	if md > 128 {
		return attnTile{}, 0, false
	}
	cands := []attnTile{{32, 32}}
	s := b.tiles.forced["attention"]
	if s == "" {
		if table, err := b.tuned(); err == nil {
			s = table.lookup("attention", dims...)
		}
	}
	if s != "" {
		if t, err := parseAttnTile(s); err == nil {
			cands = append([]attnTile{t}, cands...)
		}
	}
	for _, t := range cands {
		m := max(md, t.BKV)
		if b.fits(t.threads(), t.sharedBytes(m)) {
			return t, m, true
		}
	}
	return attnTile{}, 0, false
}

// attentionFallback runs the attention on attention_tile.comp or
// attention.comp, which read dense (B·H, L, D) operands and write dense
// (B, H, Lq, Dv): prefix keys are concatenated and merged heads copied
// into place.
func (b *Backend) attentionFallback(n *tensor.Node, qkv []*tensor.Tensor, sdt, ddt uint32) error {
	for i := range qkv {
		qkv[i] = qkv[i].Contiguous()
	}
	q, k, v := qkv[0], qkv[1], qkv[2]
	bsz, h, lq, d := q.Dim(0), q.Dim(1), q.Dim(2), q.Dim(3)
	lk, dv := k.Dim(2), v.Dim(3)
	var bias *tensor.Tensor
	if n.Src[3] != nil {
		var err error
		if bias, err = view32(n.Src[3]); err != nil {
			return err
		}
	}
	if len(qkv) > 3 {
		lp := qkv[3].Dim(2)
		k = tensor.Concat(2, qkv[3], k)
		v = tensor.Concat(2, qkv[4], v)
		if n.PrefixOnlyBias() {
			bias = tensor.Concat(3, bias.Contiguous(), tensor.ZerosOn(b, tensor.F32, bias.Dim(0), bias.Dim(1), bias.Dim(2), lk))
		}
		lk += lp
	}
	dst := n.Dst
	if n.Int[1] == 1 {
		dst = tensor.New(b, n.Dst.DType(), bsz, h, lq, dv)
	}
	for _, t := range []*tensor.Tensor{k, v, bias, dst} {
		if t != nil && t.Err() != nil {
			return t.Err()
		}
	}
	if d > maxHeadDim || dv > maxHeadDim {
		return fmt.Errorf("attention head size %d/%d exceeds %d", d, dv, maxHeadDim)
	}
	biasT, hasBias := q, 0
	var bst [4]int
	if bias != nil {
		biasT, hasBias = bias, 1
		copy(bst[:], bias.Strides())
	}
	l := launch{dst: dst, srcs: []*tensor.Tensor{q, k, v, biasT}}
	if md := max(d, dv); md <= 64 && bsz*h <= int(b.maxGroup[1]) && b.phys.info.MaxSharedMem >= tileAttentionShared {
		// Small heads: one invocation per query, key tiles shared by 64
		// queries.
		spec := uint32(16)
		for int(spec) < md {
			spec *= 2
		}
		l.shader = "attention_tile"
		l.push = func(off []uint32) any {
			pc := attentionTilePush{H: uint32(h), Lq: uint32(lq), Lk: uint32(lk), D: uint32(d), Dv: uint32(dv),
				Scale: n.Float[0], Causal: uint32(n.Int[0]), HasBias: uint32(hasBias),
				Ooff: off[0], Qoff: off[1], Koff: off[2], Voff: off[3], Biasoff: off[4]}
			setInts(pc.Bst[:], bst[:])
			return pc
		}
		l.grid = [3]int{(lq + 63) / 64, bsz * h, 1}
		l.spec = dtSpec(0, sdt, ddt, spec)
	} else {
		l.shader = "attention"
		l.push = func(off []uint32) any {
			pc := attentionPush{Rows: uint32(bsz * h * lq), H: uint32(h), Lq: uint32(lq), Lk: uint32(lk), D: uint32(d), Dv: uint32(dv),
				Scale: n.Float[0], Causal: uint32(n.Int[0]), HasBias: uint32(hasBias),
				Ooff: off[0], Qoff: off[1], Koff: off[2], Voff: off[3], Biasoff: off[4]}
			setInts(pc.Bst[:], bst[:])
			return pc
		}
		l.grid = b.linear(bsz*h*lq, 1)
		l.spec = dtSpec(0, sdt, ddt)
	}
	err := b.launch(n, l)
	if err != nil || dst == n.Dst {
		return err
	}
	// Merge the heads: (B, H, Lq, Dv) → (B, Lq, H, Dv).
	return b.copyOp(n, n.Dst.Reshape(bsz, lq, h, dv), dst.Permute(0, 2, 1, 3))
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
	grid := b.linear(count, 256)
	var ls []launch
	for lo := 0; lo < vocab; lo += window {
		hi := min(vocab, lo+window)
		ls = append(ls, launch{
			shader: "embedding", dst: n.Dst, srcs: []*tensor.Tensor{table.Narrow(0, lo, hi-lo), ids}, status: true,
			push: func(off []uint32) any {
				return embeddingPush{N: uint32(count), Dm: uint32(dim), V: uint32(vocab), Is64: uint32(is64), Half: uint32(half),
					Doff: off[0], Toff: off[1], Ioff: off[2], Lo: uint32(lo), Hi: uint32(hi)}
			},
			grid: grid,
		})
	}
	// One hold of b.mu across the windows, as one op.
	return b.launch(n, ls...)
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
	return b.launch(n, launch{
		shader: "pool", dst: n.Dst, srcs: []*tensor.Tensor{x},
		push: func(off []uint32) any {
			return poolPush{N: uint32(count), Mode: uint32(mode), K: uint32(n.Int[0]), H: uint32(xs[2]), W: uint32(xs[3]),
				OH: uint32(ds[2]), OW: uint32(ds[3]), Doff: off[0], Xoff: off[1]}
		},
		grid: b.linear(count, 256),
		spec: dtSpec(0, sdt, ddt),
	})
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
	rows, cols := planes*h*ow, planes*oh*ow
	return b.launch(n, launch{
		shader: "resample", dst: tmp, srcs: []*tensor.Tensor{x, tx},
		push: func(off []uint32) any {
			return resamplePush{N: uint32(rows), Vertical: 0, K: uint32(kx), H: uint32(h), W: uint32(w), OH: uint32(h), OW: uint32(ow),
				Doff: off[0], Xoff: off[1], Toff: off[2]}
		},
		grid: b.linear(rows, 256),
		spec: dtSpec(0, sdt, 0),
	}, launch{
		shader: "resample", dst: n.Dst, srcs: []*tensor.Tensor{tmp, ty},
		push: func(off []uint32) any {
			return resamplePush{N: uint32(cols), Vertical: 1, K: uint32(ky), H: uint32(h), W: uint32(ow), OH: uint32(oh), OW: uint32(ow),
				Doff: off[0], Xoff: off[1], Toff: off[2]}
		},
		grid: b.linear(cols, 256),
		spec: dtSpec(0, 0, ddt),
	})
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
	return b.launch(n, launch{
		shader: "schedstep", dst: n.Dst, srcs: []*tensor.Tensor{mo, x, z, pv},
		push: func(off []uint32) any {
			return schedstepPush{N: uint32(count), Per: uint32(per), Flags: uint32(n.Int[0]),
				ClipRange: p.ClipRange, SqrtAlphaProd: p.SqrtAlphaProd, SqrtOneMinusAlphaProd: p.SqrtOneMinusAlphaProd,
				Cx0: p.CX0, Cxt: p.CXt, Stdev: p.Std, MinLog: p.MinLog, MaxLog: p.MaxLog,
				Doff: off[0], Moff: off[1], Xoff: off[2], Zoff: off[3], Poff: off[4]}
		},
		grid: b.linear(count, 256),
		spec: dtSpec(0, sdt, 0),
	})
}
