//go:build cgo && !novulkan

package vulkan

import (
	"errors"
	"fmt"
	"sort"

	vk "github.com/vulkan-go/vulkan"
)

// block is one VkDeviceMemory with one VkBuffer over all of it, mapped
// into host memory for the whole life of the backend when its allocator
// maps.
type block struct {
	mem    uint64 // VkDeviceMemory
	buf    uint64 // VkBuffer
	size   uint64
	host   []byte // the persistent mapping, nil when unmapped
	free   []span // free ranges, sorted by offset
	used   uint64
	single bool // dedicated to one large allocation

	memType  uint32 // the memory type of mem
	cached   bool   // HOST_CACHED: host reads of the mapping are fast
	coherent bool   // HOST_COHERENT: no invalidate needed before host reads
}

type span struct{ off, size uint64 }

// alloc is a sub-allocation: the Handle of a device tensor.Storage.
type alloc struct {
	blk   *block
	off   uint64
	size  uint64
	freed bool // queued for freeing (explicitly or by its cleanup)
}

// host returns the mapped bytes of the allocation.
func (a *alloc) host() []byte { return a.blk.host[a.off : a.off+a.size] }

// bufferDevice makes and frees the buffers of blocks (*device; a fake in
// tests).
type bufferDevice interface {
	createBuffer(size uint64, memType uint32, mapped bool) (buf, mem uint64, host []byte, err error)
	destroyBuffer(buf, mem uint64, mapped bool)
}

// allocator sub-allocates storage buffers from large blocks. It is not
// safe for concurrent use (the backend's mutex guards it).
type allocator struct {
	dev       bufferDevice
	memTypes  []uint32 // in order of preference (memPlan: never host memory for a discrete GPU's storage)
	typeFlags []uint32 // the property flags of every memory type of the device, by index
	mapped    bool     // blocks are host-visible and mapped
	blockSize uint64
	maxAlloc  uint64
	align     uint64
	blocks    []*block
	total     uint64 // bytes held in blocks
	limit     uint64 // budget for total (0: none)

	// onFail, when set, turns the failure err of a new block of size
	// bytes, for an allocation of want bytes, into the error returned.
	onFail func(size, want uint64, err error) error
}

const defaultBlock = 256 << 20

func alignUp(v, a uint64) uint64 { return (v + a - 1) / a * a }

// roundSize is the size an allocation of n bytes takes.
func (m *allocator) roundSize(n uint64) uint64 { return alignUp(max(n, 4), m.align) }

// tryGet returns size bytes from the existing blocks, or nil.
func (m *allocator) tryGet(size uint64) *alloc {
	size = m.roundSize(size)
	if size > m.blockSize/2 {
		return nil
	}
	for _, b := range m.blocks {
		if b.single {
			continue
		}
		if a := b.take(size); a != nil {
			return a
		}
	}
	return nil
}

// get returns size bytes (rounded up to the alignment), from a new block
// when the existing ones are full.
func (m *allocator) get(size uint64) (*alloc, error) {
	size = m.roundSize(size)
	if size > m.maxAlloc {
		return nil, fmt.Errorf("allocation of %d bytes exceeds the device's maxMemoryAllocationSize %d", size, m.maxAlloc)
	}
	if a := m.tryGet(size); a != nil {
		return a, nil
	}
	if size <= m.blockSize/2 {
		b, err := m.newBlock(m.blockSize, false, size)
		if err != nil {
			return nil, err
		}
		return b.take(size), nil
	}
	b, err := m.newBlock(size, true, size)
	if err != nil {
		return nil, err
	}
	return b.take(size), nil
}

// take carves size bytes from the first free range that holds them.
func (b *block) take(size uint64) *alloc {
	for i, f := range b.free {
		if f.size < size {
			continue
		}
		a := &alloc{blk: b, off: f.off, size: size}
		if f.size == size {
			b.free = append(b.free[:i], b.free[i+1:]...)
		} else {
			b.free[i] = span{f.off + size, f.size - size}
		}
		b.used += size
		return a
	}
	return nil
}

// put returns an allocation to its block, merging neighbours; empty
// dedicated blocks are released.
func (m *allocator) put(a *alloc) {
	b := a.blk
	b.used -= a.size
	i := sort.Search(len(b.free), func(i int) bool { return b.free[i].off > a.off })
	b.free = append(b.free, span{})
	copy(b.free[i+1:], b.free[i:])
	b.free[i] = span{a.off, a.size}
	if i+1 < len(b.free) && b.free[i].off+b.free[i].size == b.free[i+1].off {
		b.free[i].size += b.free[i+1].size
		b.free = append(b.free[:i+1], b.free[i+2:]...)
	}
	if i > 0 && b.free[i-1].off+b.free[i-1].size == b.free[i].off {
		b.free[i-1].size += b.free[i].size
		b.free = append(b.free[:i], b.free[i+1:]...)
	}
	if b.single && b.used == 0 {
		m.release(b)
	}
}

// newBlock allocates a block of size bytes for an allocation of want
// bytes, in the first of memTypes that has room: all are of the memory
// planned for this allocator, so that a failure is never retried in
// another kind of memory.
func (m *allocator) newBlock(size uint64, single bool, want uint64) (*block, error) {
	if m.limit > 0 && m.total+size > m.limit {
		m.trim()
	}
	if m.limit > 0 && m.total+size > m.limit {
		return nil, fmt.Errorf("%w: the device memory budget of %.1f MiB is reached (%.1f MiB held in %d blocks, %.1f MiB of it in use; a %.1f MiB block more needed): raise --device-memory, or lower what a run needs with --offload true",
			ErrOutOfDeviceMemory, mb(m.limit), mb(m.total), len(m.blocks), mb(m.inUse()), mb(size))
	}
	var (
		buf, mem uint64
		host     []byte
		typ      uint32
		err      error
		failed   error // the most telling failure: an allocation's, else the last
	)
	for _, t := range m.memTypes {
		if buf, mem, host, err = m.dev.createBuffer(size, t, m.mapped); err == nil {
			typ = t
			break
		}
		if failed == nil || !errors.Is(failed, vk.Error(vk.ErrorOutOfDeviceMemory)) {
			failed = err
		}
	}
	if len(m.memTypes) == 0 {
		err = errors.New("no memory type")
		failed = err
	}
	if err != nil {
		if m.onFail != nil {
			return nil, m.onFail(size, want, failed)
		}
		return nil, fmt.Errorf("device buffer of %d bytes (%d MiB already held): %w", size, m.total>>20, failed)
	}
	var flags uint32
	if int(typ) < len(m.typeFlags) {
		flags = m.typeFlags[typ]
	}
	b := &block{size: size, single: single, buf: buf, mem: mem, host: host, free: []span{{0, size}},
		memType: typ, cached: flags&memHostCached != 0, coherent: flags&memHostCoherent != 0}
	m.blocks = append(m.blocks, b)
	m.total += size
	return b, nil
}

// isOutOfMemory reports whether err is a VkResult that means "no memory
// for this allocation".
func isOutOfMemory(err error) bool {
	return errors.Is(err, vk.Error(vk.ErrorOutOfDeviceMemory)) || errors.Is(err, vk.Error(vk.ErrorOutOfHostMemory)) ||
		errors.Is(err, vk.Error(vk.ErrorTooManyObjects))
}

func (m *allocator) release(b *block) {
	for i, x := range m.blocks {
		if x == b {
			m.blocks = append(m.blocks[:i], m.blocks[i+1:]...)
			break
		}
	}
	m.total -= b.size
	m.dev.destroyBuffer(b.buf, b.mem, b.host != nil)
}

// close frees every block.
func (m *allocator) close() {
	for len(m.blocks) > 0 {
		m.release(m.blocks[0])
	}
}

// trim returns the empty shared blocks to the device (under a budget,
// before giving up on a new block).
func (m *allocator) trim() {
	for i := 0; i < len(m.blocks); {
		if b := m.blocks[i]; !b.single && b.used == 0 {
			m.release(b)
			continue
		}
		i++
	}
}

// inUse is the memory handed out, of the memory held in blocks.
func (m *allocator) inUse() uint64 {
	var n uint64
	for _, b := range m.blocks {
		n += b.used
	}
	return n
}

func mb(n uint64) float64 { return float64(n) / (1 << 20) }
