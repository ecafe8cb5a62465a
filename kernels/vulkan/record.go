//go:build cgo && !novulkan

package vulkan

import (
	"fmt"
	"math"
	"sync"

	vk "github.com/vulkan-go/vulkan"

	"github.com/unclip-go/unclip/shaders"
	"github.com/unclip-go/unclip/tensor"
)

// operand is a tensor bound to a dispatch: the storage buffer range that
// covers the view, and the view's element offset inside that range.
type operand struct {
	t     *tensor.Tensor
	a     *alloc
	bind  binding
	off   uint32 // element offset of the view in the bound range
	write bool
}

// extent returns the number of elements from the view's first element to
// its last one, inclusive (0 for an empty view).
func extent(t *tensor.Tensor) int {
	shape, strides := t.Shape(), t.Strides()
	e := 1
	for i, d := range shape {
		if d == 0 {
			return 0
		}
		e += (d - 1) * strides[i]
	}
	return e
}

// operandOf binds the part of t's storage that the view touches. Ranges
// are computed, never VK_WHOLE_SIZE, and must fit maxStorageBufferRange.
func (b *Backend) operandOf(t *tensor.Tensor, write bool) (operand, error) {
	a, ok := t.Storage().Handle.(*alloc)
	if !ok || t.Backend() != tensor.Backend(b) {
		return operand{}, fmt.Errorf("%v is not on %s", t, b.name)
	}
	es := uint64(t.DType().Size())
	start := uint64(t.Offset()) * es
	end := start + uint64(max(extent(t), 1))*es
	base := start / b.minAlign * b.minAlign
	rng := alignUp(end-base, 4)
	if base+rng > a.size {
		rng = a.size - base
	}
	if rng > b.maxRange {
		return operand{}, fmt.Errorf("%v spans %d bytes, more than the device's maxStorageBufferRange %d", t, rng, b.maxRange)
	}
	off := (start - base) / es
	if off > math.MaxUint32 {
		return operand{}, fmt.Errorf("%v: offset too large", t)
	}
	return operand{t: t, a: a, bind: binding{buf: a.blk.buf, off: a.off + base, rng: rng}, off: uint32(off), write: write}, nil
}

// operands binds a destination (written) and sources (read).
func (b *Backend) operands(dst *tensor.Tensor, srcs ...*tensor.Tensor) ([]operand, error) {
	ops := make([]operand, 0, 1+len(srcs))
	o, err := b.operandOf(dst, true)
	if err != nil {
		return nil, err
	}
	ops = append(ops, o)
	for _, s := range srcs {
		o, err := b.operandOf(s, false)
		if err != nil {
			return nil, err
		}
		ops = append(ops, o)
	}
	return ops, nil
}

// dispatch records one dispatch of shader name over gx×gy×gz workgroups
// (within the device limits: launch checks them) with push-constant bytes
// pb. Ops call it only through launch (launch.go). The caller holds b.mu.
// A barrier is recorded first only when an operand was written, or the
// destination read, since the last barrier.
func (b *Backend) dispatch(n *tensor.Node, name string, ops []operand, pb []byte, gx, gy, gz int, spec ...uint32) error {
	if gx <= 0 || gy <= 0 || gz <= 0 {
		return nil
	}
	if len(ops) > maxBindings {
		return fmt.Errorf("%s: %d buffers", name, len(ops))
	}
	shader := name
	if b.storage16 && len(spec) >= 8 && spec[5]|spec[6]|spec[7] != 0 && hasVariant16(name) {
		// 16-bit operands (dtSpec): the shader's 16-bit-storage variant.
		shader += "16"
	}
	if b.warm != nil { // warm pass: start its pipeline, record nothing
		b.warmPipeline(shader, len(ops), spec)
		return nil
	}
	p, err := b.getPipeline(shader, len(ops), spec...)
	if err != nil {
		return err
	}
	if err := b.begin(); err != nil {
		return err
	}
	var reads, writes []*alloc
	for _, o := range ops {
		if o.write {
			writes = append(writes, o.a)
		} else {
			reads = append(reads, o.a)
		}
	}
	barrier := b.hazard(reads, writes)
	var bs [maxBindings]binding
	for i, o := range ops {
		bs[i] = o.bind
	}
	bt := b.cur
	var qpool uint64
	var query uint32
	if bt.profiled && bt.ndisp > 0 {
		if qpool, query, err = b.queryPool(bt); err != nil {
			return err
		}
	} else if bt.profiled {
		qpool = bt.qpools[0] // reset by beginProfile
	}
	for {
		r := b.dev.dispatch(bt.cb, bt.pools[bt.pool], p, bs[:len(ops)], pb, uint32(gx), uint32(gy), uint32(gz), barrier,
			qpool, query)
		if r == vk.Success {
			break
		}
		if r != vk.ErrorOutOfPoolMemory && r != vk.ErrorFragmentedPool {
			return fmt.Errorf("%s: vkAllocateDescriptorSets: %w", name, vkErr(r))
		}
		bt.pool++
		if bt.pool == len(bt.pools) {
			if err := b.addPool(bt); err != nil {
				return err
			}
		}
	}
	for _, o := range ops {
		if o.write {
			b.written[o.a] = true
		} else {
			b.read[o.a] = true
		}
	}
	if n != nil {
		bt.ops = append(bt.ops, n)
	}
	if bt.profiled {
		bt.names = append(bt.names, name)
	}
	bt.ndisp++
	if bt.ndisp >= batchOps && !b.hold && b.recording == nil {
		return b.submit()
	}
	return nil
}

// groups returns the workgroup count for n items of size per group, folded
// into (x, y) when x would exceed the device limit; shaders reconstruct the
// linear group index as y·gx + x (gl_NumWorkGroups.x).
func (b *Backend) groups(n, per int) (int, int) {
	g := (n + per - 1) / per
	if g <= int(b.maxGroup[0]) {
		return g, 1
	}
	gx := int(b.maxGroup[0])
	if gx > 65535 {
		gx = 65535
	}
	return gx, (g + gx - 1) / gx
}

// hasVariant16 reports whether shader name has a 16-bit-storage variant
// (a "//!variant NAME16 STORAGE16" line; shaders without one read 16-bit
// operands as packed words).
func hasVariant16(name string) bool {
	if v, ok := variant16.Load(name); ok {
		return v.(bool)
	}
	_, err := shaders.SPIRV(name + "16")
	variant16.Store(name, err == nil)
	return err == nil
}

var variant16 sync.Map // shader name → has a 16-bit-storage variant
