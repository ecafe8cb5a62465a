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

// ErrOutOfDeviceMemory is wrapped by the errors of allocations that the
// device's memory (or the budget set on it) cannot hold. On a discrete GPU
// tensors are kept in device-local memory only: running out is this
// error, never a silent move to system RAM.
var ErrOutOfDeviceMemory = errors.New("out of device memory")

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
	// (VK_KHR_cooperative_matrix, VK_NV_cooperative_matrix, ...); whether
	// the feature is there is CoopMatKHR and CoopMatNV.
	CooperativeMatrix []string

	MaxWorkgroupSize  [3]uint32 // maxComputeWorkGroupSize
	MaxWorkgroupCount [3]uint32 // maxComputeWorkGroupCount

	// Subgroup size control (Vulkan 1.3, VK_EXT_subgroup_size_control):
	// the range of subgroup sizes (0 when unknown), the features, and
	// whether a compute shader may require a size
	// (requiredSubgroupSizeStages has COMPUTE).
	MinSubgroupSize, MaxSubgroupSize uint32
	SubgroupSizeControl              bool // subgroupSizeControl
	ComputeFullSubgroups             bool // computeFullSubgroups
	RequireSubgroupSize              bool

	VulkanMemoryModel bool // vulkanMemoryModel (the cooperative-matrix shaders use it)

	// Cooperative matrices: the features (cooperativeMatrix of
	// VK_KHR_cooperative_matrix and of VK_NV_cooperative_matrix) and the
	// configurations the device reports for them.
	CoopMatKHR, CoopMatNV bool
	CoopMatShapes         []CoopMatShape
}

// ComponentType is an element type of a cooperative matrix
// (VkComponentTypeKHR; VkComponentTypeNV has the same values).
type ComponentType int32

// Component types.
const (
	ComponentF16  ComponentType = 0
	ComponentF32  ComponentType = 1
	ComponentF64  ComponentType = 2
	ComponentS8   ComponentType = 3
	ComponentS16  ComponentType = 4
	ComponentS32  ComponentType = 5
	ComponentS64  ComponentType = 6
	ComponentU8   ComponentType = 7
	ComponentU16  ComponentType = 8
	ComponentU32  ComponentType = 9
	ComponentU64  ComponentType = 10
	ComponentBF16 ComponentType = 1000141000
)

func (c ComponentType) String() string {
	names := [...]string{"f16", "f32", "f64", "s8", "s16", "s32", "s64", "u8", "u16", "u32", "u64"}
	if c >= 0 && int(c) < len(names) {
		return names[c]
	}
	if c == ComponentBF16 {
		return "bf16"
	}
	return fmt.Sprintf("type%d", int32(c))
}

// Scope is the scope of a cooperative matrix (VkScopeKHR).
type Scope int32

// Scopes.
const (
	ScopeDevice      Scope = 1
	ScopeWorkgroup   Scope = 2
	ScopeSubgroup    Scope = 3
	ScopeQueueFamily Scope = 5
)

func (s Scope) String() string {
	switch s {
	case ScopeDevice:
		return "device"
	case ScopeWorkgroup:
		return "workgroup"
	case ScopeSubgroup:
		return "subgroup"
	case ScopeQueueFamily:
		return "queue family"
	}
	return fmt.Sprintf("scope%d", int32(s))
}

// CoopMatShape is one cooperative-matrix configuration a device supports:
// Result = A (M×K) × B (K×N) + C (M×N).
type CoopMatShape struct {
	KHR             bool // reported by VK_KHR_cooperative_matrix (else VK_NV_cooperative_matrix)
	M, N, K         uint32
	A, B, C, Result ComponentType // Result is the NV structure's DType
	Saturating      bool          // saturatingAccumulation (KHR)
	Scope           Scope
}

func (s CoopMatShape) String() string {
	ext := "NV"
	if s.KHR {
		ext = "KHR"
	}
	var extra string
	if s.Scope != ScopeSubgroup {
		extra += ", " + s.Scope.String() + " scope"
	}
	if s.Saturating {
		extra += ", saturating"
	}
	return fmt.Sprintf("%d×%d×%d %s×%s+%s→%s (%s%s)", s.M, s.N, s.K, s.A, s.B, s.C, s.Result, ext, extra)
}

// CoopMat reports whether the device has the cooperative-matrix feature
// of VK_KHR_cooperative_matrix (khr) or VK_NV_cooperative_matrix and a
// subgroup-scope configuration of that extension with an M×N×K shape, A
// and B of type ab and C and the result of type acc: CoopMat(true, 16,
// 16, 16, ComponentF16, ComponentF32) is "fp16×fp16→fp32 16×16×16".
func (d DeviceInfo) CoopMat(khr bool, m, n, k uint32, ab, acc ComponentType) bool {
	if khr && !d.CoopMatKHR || !khr && !d.CoopMatNV {
		return false
	}
	for _, s := range d.CoopMatShapes {
		if s.KHR == khr && s.Scope == ScopeSubgroup && s.M == m && s.N == n && s.K == k &&
			s.A == ab && s.B == ab && s.C == acc && s.Result == acc {
			return true
		}
	}
	return false
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
	fmt.Fprintf(&b, "  workgroup size ≤ %d×%d×%d, workgroups ≤ %d×%d×%d\n", d.MaxWorkgroupSize[0], d.MaxWorkgroupSize[1],
		d.MaxWorkgroupSize[2], d.MaxWorkgroupCount[0], d.MaxWorkgroupCount[1], d.MaxWorkgroupCount[2])
	if d.MinSubgroupSize > 0 {
		fmt.Fprintf(&b, "  subgroup size control %s (sizes %d–%d, required size in compute %s), full subgroups %s\n",
			yn(d.SubgroupSizeControl), d.MinSubgroupSize, d.MaxSubgroupSize, yn(d.RequireSubgroupSize), yn(d.ComputeFullSubgroups))
	} else {
		fmt.Fprintf(&b, "  subgroup size control %s, full subgroups %s\n", yn(d.SubgroupSizeControl), yn(d.ComputeFullSubgroups))
	}
	fmt.Fprintf(&b, "  fp16 %s, bf16 %s, int8 %s, 16-bit storage %s, 8-bit storage %s, Vulkan memory model %s\n",
		yn(d.Float16), yn(d.BFloat16), yn(d.Int8), yn(d.Storage16Bit), yn(d.Storage8Bit), yn(d.VulkanMemoryModel))
	switch {
	case d.CoopMatKHR || d.CoopMatNV:
		fmt.Fprintf(&b, "  cooperative matrix: KHR %s, NV %s\n", yn(d.CoopMatKHR), yn(d.CoopMatNV))
		for _, s := range d.CoopMatShapes {
			fmt.Fprintf(&b, "    %s\n", s)
		}
	case len(d.CooperativeMatrix) > 0:
		fmt.Fprintf(&b, "  cooperative matrix: none (%s present without the feature)\n", strings.Join(d.CooperativeMatrix, ", "))
	default:
		fmt.Fprintf(&b, "  cooperative matrix: none\n")
	}
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
