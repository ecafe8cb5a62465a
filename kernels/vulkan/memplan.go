//go:build cgo && !novulkan

package vulkan

import (
	"errors"
	"fmt"
	"slices"

	vk "github.com/vulkan-go/vulkan"
)

// Memory property flags (VkMemoryPropertyFlagBits).
const (
	memDeviceLocal  = uint32(vk.MemoryPropertyDeviceLocalBit)
	memHostVisible  = uint32(vk.MemoryPropertyHostVisibleBit)
	memHostCoherent = uint32(vk.MemoryPropertyHostCoherentBit)
	memHostCached   = uint32(vk.MemoryPropertyHostCachedBit)
	memMappable     = memHostVisible | memHostCoherent
)

// memProps is a device's memory-properties table in plain Go
// (VkPhysicalDeviceMemoryProperties), the input of planMemory.
type memProps struct {
	types []memType
	heaps []memHeap
}

type memType struct {
	flags uint32 // VkMemoryPropertyFlags
	heap  int
}

type memHeap struct {
	size  uint64
	local bool // VK_MEMORY_HEAP_DEVICE_LOCAL_BIT
}

// memPropsOf converts vulkan-go's table.
func memPropsOf(mem *vk.PhysicalDeviceMemoryProperties) memProps {
	var p memProps
	for i := uint32(0); i < mem.MemoryHeapCount && i < uint32(len(mem.MemoryHeaps)); i++ {
		h := mem.MemoryHeaps[i]
		h.Deref()
		p.heaps = append(p.heaps, memHeap{size: uint64(h.Size), local: vk.MemoryHeapFlagBits(h.Flags)&vk.MemoryHeapDeviceLocalBit != 0})
	}
	for i := uint32(0); i < mem.MemoryTypeCount && i < uint32(len(mem.MemoryTypes)); i++ {
		t := mem.MemoryTypes[i]
		t.Deref()
		p.types = append(p.types, memType{flags: uint32(t.PropertyFlags), heap: int(t.HeapIndex)})
	}
	return p
}

// flags is the property flags of every memory type, by index.
func (p memProps) flags() []uint32 {
	out := make([]uint32, len(p.types))
	for i, t := range p.types {
		out[i] = t.flags
	}
	return out
}

// memPlan says where the backend's memory lives.
type memPlan struct {
	// storage is the memory types of device storage (tensors), in order
	// of preference; with strict set all are device-local, on one heap.
	storage []uint32
	// staged: storage is not mapped; uploads copy through stage and
	// reads through readback (or stage when readback is nil).
	staged bool
	// stage is the host-visible coherent types of upload staging buffers
	// (staged mode only), system memory first.
	stage []uint32
	// readback, when not nil, is the host-visible HOST_CACHED types (of
	// system memory first, coherent first) that reads copy into on the
	// device before the host reads them: storage (or stage) memory is
	// mapped uncached, a BAR or write-combined mapping, where host reads
	// crawl. Reads of storage that is itself cached skip it.
	readback []uint32
	// strict: a discrete GPU's device-local memory; running out of it is
	// an error, never a move to host memory.
	strict bool
	// heap is the heap of storage's first type, of heapSize bytes.
	heap     int
	heapSize uint64
}

// planMemory chooses the memory types of a device (discrete: a discrete
// GPU) for device storage, staging and readback. force is
// UNCLIP_VK_STAGING: "1" (staged), "0" (mapped) or "" (decide by the
// heaps).
//
// A discrete GPU keeps storage in its device-local memory, never in host
// memory: mapped where device-local memory is host-visible on a heap at
// least half the size of the largest device-local heap (resizable BAR:
// all of VRAM mapped), staged otherwise (a 256 MiB BAR window). Reads of
// mapped VRAM (uncached) copy through host-cached staging.
//
// Other devices (integrated, CPU, virtual) share system memory: storage is
// host-visible coherent memory, device-local types first, then host ones
// (all system RAM), mapped unless the device-local host-visible heap is
// small or staging is forced.
func planMemory(p memProps, discrete bool, force string) (memPlan, error) {
	has := func(i uint32, f uint32) bool { return p.types[i].flags&f == f }
	heapOf := func(i uint32) int { return p.types[i].heap }
	sizeOf := func(i uint32) uint64 { return p.heaps[heapOf(i)].size }
	var local, mappedLocal, mappedHost, cached []uint32
	var localSize, mappedLocalSize, mappedSize uint64
	localHeap, mappedLocalHeap := -1, -1
	for i := range p.types {
		t := uint32(i)
		if h := heapOf(t); h < 0 || h >= len(p.heaps) {
			continue
		}
		isLocal := has(t, memDeviceLocal)
		if isLocal {
			local = append(local, t)
			if localHeap < 0 || sizeOf(t) > localSize {
				localHeap, localSize = heapOf(t), sizeOf(t)
			}
		}
		if has(t, memHostVisible|memHostCached) {
			cached = append(cached, t)
		}
		if !has(t, memMappable) {
			continue
		}
		mappedSize = max(mappedSize, sizeOf(t))
		if isLocal {
			mappedLocal = append(mappedLocal, t)
			if mappedLocalHeap < 0 || sizeOf(t) > mappedLocalSize {
				mappedLocalHeap, mappedLocalSize = heapOf(t), sizeOf(t)
			}
		} else {
			mappedHost = append(mappedHost, t)
		}
	}
	if len(mappedLocal)+len(mappedHost) == 0 {
		return memPlan{}, errors.New("no host-visible coherent memory type")
	}
	// Readback staging: system memory first, coherent first.
	slices.SortStableFunc(cached, func(a, b uint32) int {
		ka, kb := 0, 0
		if has(a, memDeviceLocal) {
			ka += 2
		}
		if !has(a, memHostCoherent) {
			ka++
		}
		if has(b, memDeviceLocal) {
			kb += 2
		}
		if !has(b, memHostCoherent) {
			kb++
		}
		return ka - kb
	})
	var plan memPlan
	switch force {
	case "1":
		plan.staged = true
	case "0":
	default:
		plan.staged = len(local) > 0 && mappedLocalSize < localSize/2
	}
	onHeap := func(ts []uint32, h int) []uint32 {
		var out []uint32
		for _, t := range ts {
			if heapOf(t) == h {
				out = append(out, t)
			}
		}
		return out
	}
	switch {
	case discrete && len(local) > 0:
		plan.strict = true
		if plan.staged {
			// The largest device-local heap, types that are not
			// host-visible first (keeping any BAR window free).
			plan.storage = onHeap(local, localHeap)
			slices.SortStableFunc(plan.storage, func(a, b uint32) int {
				return boolInt(has(a, memHostVisible)) - boolInt(has(b, memHostVisible))
			})
			plan.heap, plan.heapSize = localHeap, localSize
			plan.stage = append(slices.Clone(mappedHost), mappedLocal...)
		} else {
			if len(mappedLocal) == 0 {
				return memPlan{}, errors.New("UNCLIP_VK_STAGING=0, but no device-local memory is host-visible (use staging)")
			}
			plan.storage = onHeap(mappedLocal, mappedLocalHeap)
			plan.heap, plan.heapSize = mappedLocalHeap, mappedLocalSize
		}
	case plan.staged:
		plan.storage = append(slices.Clone(local), mappedHost...)
		plan.stage = append(slices.Clone(mappedLocal), mappedHost...)
		if len(local) == 0 {
			plan.storage = plan.stage
			plan.heapSize = mappedSize
		} else {
			plan.heapSize = localSize
		}
		plan.heap = heapOf(plan.storage[0])
	default:
		plan.storage = append(slices.Clone(mappedLocal), mappedHost...)
		plan.heap, plan.heapSize = heapOf(plan.storage[0]), mappedSize
	}
	read := plan.storage[0] // the memory reads come from without readback staging
	if plan.staged {
		read = plan.stage[0]
	}
	if len(cached) > 0 && !has(read, memHostCached) {
		plan.readback = cached
	}
	return plan, nil
}

func boolInt(v bool) int {
	if v {
		return 1
	}
	return 0
}

// describe is a one-line account of the plan, for logs and errors.
func (p memPlan) describe() string {
	mode := "mapped"
	if p.staged {
		mode = "staged"
	}
	s := fmt.Sprintf("%s storage in memory types %v (heap %d, %.1f GiB", mode, p.storage, p.heap, float64(p.heapSize)/(1<<30))
	if p.strict {
		s += ", device-local only"
	}
	s += ")"
	if p.staged {
		s += fmt.Sprintf(", staging in %v", p.stage)
	}
	if p.readback != nil {
		s += fmt.Sprintf(", reads through host-cached %v", p.readback)
	}
	return s
}
