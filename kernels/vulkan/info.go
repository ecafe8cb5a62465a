package vulkan

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrUnavailable is wrapped by every error that means "no usable Vulkan
// here": no loader, no device, or a binary built without the backend.
var ErrUnavailable = errors.New("vulkan unavailable")

// Heap is one memory heap of a device.
type Heap struct {
	Size        uint64 // bytes
	DeviceLocal bool
}

// DeviceInfo describes one Vulkan physical device.
type DeviceInfo struct {
	Index         int    // N in "vulkan:N": devices are ordered discrete, integrated, virtual, CPU
	Name          string // e.g. "NVIDIA H100 80GB HBM3"
	Type          string // "discrete", "integrated", "virtual", "cpu" or "other"
	Driver        string // driver name and info (VK_KHR_driver_properties), or the driver version
	APIVersion    string // e.g. "1.3.230"
	VendorID      uint32
	DeviceID      uint32
	Heaps         []Heap
	SubgroupSize  uint32 // 0 when unknown (Vulkan 1.0)
	MaxSharedMem  uint32 // maxComputeSharedMemorySize, bytes
	MaxWorkgroup  uint32 // maxComputeWorkGroupInvocations
	MaxPushConsts uint32 // maxPushConstantsSize, bytes
	MaxBufRange   uint64 // maxStorageBufferRange, bytes
	MaxAlloc      uint64 // maxMemoryAllocationSize (0 when unknown)
	Float16       bool   // shaderFloat16
	BFloat16      bool   // VK_KHR_shader_bfloat16
	Int8          bool   // shaderInt8
	Storage16Bit  bool   // storageBuffer16BitAccess
	Storage8Bit   bool   // storageBuffer8BitAccess
	// CooperativeMatrix lists the cooperative-matrix extensions present
	// (VK_KHR_cooperative_matrix, VK_NV_cooperative_matrix, ...).
	CooperativeMatrix []string
}

// DeviceMemory is the size of the largest device-local heap (of any heap
// when none is device-local).
func (d DeviceInfo) DeviceMemory() uint64 {
	var local, any uint64
	for _, h := range d.Heaps {
		any = max(any, h.Size)
		if h.DeviceLocal {
			local = max(local, h.Size)
		}
	}
	if local > 0 {
		return local
	}
	return any
}

// String is a multi-line human-readable description.
func (d DeviceInfo) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "vulkan:%d  %s (%s)\n", d.Index, d.Name, d.Type)
	fmt.Fprintf(&b, "  api %s, driver %s, vendor 0x%04x device 0x%04x\n", d.APIVersion, d.Driver, d.VendorID, d.DeviceID)
	for i, h := range d.Heaps {
		loc := ""
		if h.DeviceLocal {
			loc = " device-local"
		}
		fmt.Fprintf(&b, "  heap %d: %.1f GiB%s\n", i, float64(h.Size)/(1<<30), loc)
	}
	fmt.Fprintf(&b, "  subgroup %d, shared memory %d KiB, workgroup ≤ %d, push constants %d B, storage buffer range %d MiB\n",
		d.SubgroupSize, d.MaxSharedMem/1024, d.MaxWorkgroup, d.MaxPushConsts, d.MaxBufRange>>20)
	yn := func(v bool) string {
		if v {
			return "yes"
		}
		return "no"
	}
	coop := "none"
	if len(d.CooperativeMatrix) > 0 {
		coop = strings.Join(d.CooperativeMatrix, ", ")
	}
	fmt.Fprintf(&b, "  fp16 %s, bf16 %s, int8 %s, 16-bit storage %s, 8-bit storage %s\n",
		yn(d.Float16), yn(d.BFloat16), yn(d.Int8), yn(d.Storage16Bit), yn(d.Storage8Bit))
	fmt.Fprintf(&b, "  cooperative matrix: %s\n", coop)
	return b.String()
}

// KernelStat is the device time spent in one shader.
type KernelStat struct {
	Name  string
	Calls int
	Time  time.Duration
}

// Profiler is implemented by backends that time their kernels with
// timestamp queries (the Vulkan backend): turn it on, run, then read the
// per-kernel totals, e.g. for "--profile".
type Profiler interface {
	SetProfile(on bool) error
	Profile() ([]KernelStat, error)
}

// FormatProfile renders kernel totals as a table, the slowest first.
func FormatProfile(stats []KernelStat) string {
	var b strings.Builder
	var total time.Duration
	for _, s := range stats {
		total += s.Time
	}
	fmt.Fprintf(&b, "%-18s %8s %12s %6s\n", "kernel", "calls", "time", "share")
	for _, s := range stats {
		share := 0.0
		if total > 0 {
			share = 100 * float64(s.Time) / float64(total)
		}
		fmt.Fprintf(&b, "%-18s %8d %12v %5.1f%%\n", s.Name, s.Calls, s.Time.Round(time.Microsecond), share)
	}
	fmt.Fprintf(&b, "%-18s %8s %12v\n", "total", "", total.Round(time.Microsecond))
	return b.String()
}
