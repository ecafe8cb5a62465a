//go:build cgo && !novulkan

package vulkan

import (
	"fmt"
	"os"
	"sort"
	"sync"
	"unsafe"

	vk "github.com/vulkan-go/vulkan"
)

// Available reports whether this binary has the Vulkan backend (it may still
// find no loader or device at run time).
const Available = true

// instance is the process-wide VkInstance, created on first use.
type instance struct {
	inst       vk.Instance
	api        uint32 // instance API version requested
	validation bool
	messenger  unsafe.Pointer
	devices    []physDevice // in selection order
}

// physDevice is one enumerated physical device.
type physDevice struct {
	pd    vk.PhysicalDevice
	props vk.PhysicalDeviceProperties
	mem   vk.PhysicalDeviceMemoryProperties
	caps  caps
	exts  map[string]bool
	info  DeviceInfo
}

var (
	instOnce sync.Once
	theInst  *instance
	instErr  error
)

func cstr(s string) string { return s + "\x00" }

// getInstance loads the loader and creates the instance once.
func getInstance() (*instance, error) {
	instOnce.Do(func() { theInst, instErr = newInstance() })
	return theInst, instErr
}

func newInstance() (*instance, error) {
	if err := loadLibrary(); err != nil {
		return nil, fmt.Errorf("%w: cannot load the Vulkan loader libvulkan.so.1 (install libvulkan1 and a driver, e.g. mesa-vulkan-drivers): %v", ErrUnavailable, err)
	}
	api := instanceVersion()
	want := vk.MakeVersion(1, 3, 0)
	if api < want {
		want = api
	}
	in := &instance{api: want}
	var layers, exts []string
	if os.Getenv("UNCLIP_VK_VALIDATION") == "1" {
		if !hasInstanceLayer("VK_LAYER_KHRONOS_validation") {
			return nil, fmt.Errorf("vulkan: UNCLIP_VK_VALIDATION=1 but VK_LAYER_KHRONOS_validation is not installed (Debian: vulkan-validationlayers)")
		}
		layers = append(layers, cstr("VK_LAYER_KHRONOS_validation"))
		exts = append(exts, cstr("VK_EXT_debug_utils"))
		in.validation = true
	}
	ci := vk.InstanceCreateInfo{
		SType: vk.StructureTypeInstanceCreateInfo,
		PApplicationInfo: &vk.ApplicationInfo{
			SType:            vk.StructureTypeApplicationInfo,
			PApplicationName: cstr("unclip"),
			PEngineName:      cstr("unclip"),
			ApiVersion:       want,
		},
		EnabledLayerCount:       uint32(len(layers)),
		PpEnabledLayerNames:     layers,
		EnabledExtensionCount:   uint32(len(exts)),
		PpEnabledExtensionNames: exts,
	}
	if r := vk.CreateInstance(&ci, nil, &in.inst); r != vk.Success {
		return nil, fmt.Errorf("%w: vkCreateInstance: %v", ErrUnavailable, vkErr(r))
	}
	if err := vk.InitInstance(in.inst); err != nil {
		return nil, fmt.Errorf("vulkan: %w", err)
	}
	if in.validation {
		m, r := createMessenger(in.inst)
		if r != vk.Success {
			return nil, fmt.Errorf("vulkan: vkCreateDebugUtilsMessengerEXT: %v", vkErr(r))
		}
		in.messenger = m
	}
	if err := in.enumerate(); err != nil {
		return nil, err
	}
	return in, nil
}

func hasInstanceLayer(name string) bool {
	var n uint32
	if vk.EnumerateInstanceLayerProperties(&n, nil) != vk.Success || n == 0 {
		return false
	}
	props := make([]vk.LayerProperties, n)
	if vk.EnumerateInstanceLayerProperties(&n, props) != vk.Success {
		return false
	}
	for i := range props[:n] {
		props[i].Deref()
		if vk.ToString(props[i].LayerName[:]) == name {
			return true
		}
	}
	return false
}

var typeRank = map[vk.PhysicalDeviceType]int{
	vk.PhysicalDeviceTypeDiscreteGpu:   0,
	vk.PhysicalDeviceTypeIntegratedGpu: 1,
	vk.PhysicalDeviceTypeVirtualGpu:    2,
	vk.PhysicalDeviceTypeCpu:           3,
}

var typeName = map[vk.PhysicalDeviceType]string{
	vk.PhysicalDeviceTypeDiscreteGpu:   "discrete",
	vk.PhysicalDeviceTypeIntegratedGpu: "integrated",
	vk.PhysicalDeviceTypeVirtualGpu:    "virtual",
	vk.PhysicalDeviceTypeCpu:           "cpu",
}

func rank(t vk.PhysicalDeviceType) int {
	if r, ok := typeRank[t]; ok {
		return r
	}
	return 4
}

func versionString(v uint32) string {
	return fmt.Sprintf("%d.%d.%d", v>>22, (v>>12)&0x3ff, v&0xfff)
}

// enumerate lists the physical devices in selection order.
func (in *instance) enumerate() error {
	var n uint32
	if r := vk.EnumeratePhysicalDevices(in.inst, &n, nil); r != vk.Success {
		return fmt.Errorf("%w: vkEnumeratePhysicalDevices: %v", ErrUnavailable, vkErr(r))
	}
	pds := make([]vk.PhysicalDevice, n)
	if n > 0 {
		if r := vk.EnumeratePhysicalDevices(in.inst, &n, pds); r != vk.Success {
			return fmt.Errorf("%w: vkEnumeratePhysicalDevices: %v", ErrUnavailable, vkErr(r))
		}
	}
	for _, pd := range pds[:n] {
		d := physDevice{pd: pd, exts: map[string]bool{}}
		vk.GetPhysicalDeviceProperties(pd, &d.props)
		d.props.Deref()
		d.props.Limits.Deref()
		vk.GetPhysicalDeviceMemoryProperties(pd, &d.mem)
		d.mem.Deref()
		var ne uint32
		if vk.EnumerateDeviceExtensionProperties(pd, "", &ne, nil) == vk.Success && ne > 0 {
			eps := make([]vk.ExtensionProperties, ne)
			if vk.EnumerateDeviceExtensionProperties(pd, "", &ne, eps) == vk.Success {
				for i := range eps[:ne] {
					eps[i].Deref()
					d.exts[vk.ToString(eps[i].ExtensionName[:])] = true
				}
			}
		}
		api := min(d.props.ApiVersion, in.api)
		d.caps = queryCaps(in.inst, pd, api, api >= vk.MakeVersion(1, 2, 0) || d.exts["VK_KHR_driver_properties"])
		d.caps.bfloat16 = d.exts["VK_KHR_shader_bfloat16"]
		in.devices = append(in.devices, d)
	}
	sort.SliceStable(in.devices, func(i, j int) bool {
		return rank(in.devices[i].props.DeviceType) < rank(in.devices[j].props.DeviceType)
	})
	for i := range in.devices {
		in.devices[i].info = in.devices[i].describe(i)
	}
	return nil
}

func (d *physDevice) describe(index int) DeviceInfo {
	p := &d.props
	l := &p.Limits
	t, ok := typeName[p.DeviceType]
	if !ok {
		t = "other"
	}
	info := DeviceInfo{
		Index: index, Name: vk.ToString(p.DeviceName[:]), Type: t,
		APIVersion: versionString(p.ApiVersion), VendorID: p.VendorID, DeviceID: p.DeviceID,
		SubgroupSize: d.caps.subgroupSize, MaxSharedMem: l.MaxComputeSharedMemorySize,
		MaxWorkgroup: l.MaxComputeWorkGroupInvocations, MaxPushConsts: l.MaxPushConstantsSize,
		MaxBufRange: uint64(l.MaxStorageBufferRange), MaxAlloc: d.caps.maxAlloc,
		Float16: d.caps.float16, BFloat16: d.caps.bfloat16, Int8: d.caps.int8,
		Storage16Bit: d.caps.storage16, Storage8Bit: d.caps.storage8,
	}
	info.Driver = d.caps.driverName
	if d.caps.driverInfo != "" {
		info.Driver += " " + d.caps.driverInfo
	}
	if info.Driver == "" {
		info.Driver = fmt.Sprintf("version 0x%x", p.DriverVersion)
	}
	for i := uint32(0); i < d.mem.MemoryHeapCount; i++ {
		h := d.mem.MemoryHeaps[i]
		h.Deref()
		info.Heaps = append(info.Heaps, Heap{Size: uint64(h.Size), DeviceLocal: vk.MemoryHeapFlagBits(h.Flags)&vk.MemoryHeapDeviceLocalBit != 0})
	}
	for _, e := range []string{"VK_KHR_cooperative_matrix", "VK_NV_cooperative_matrix", "VK_NV_cooperative_matrix2"} {
		if d.exts[e] {
			info.CooperativeMatrix = append(info.CooperativeMatrix, e)
		}
	}
	return info
}

// Devices lists every Vulkan device in selection order (the index of
// "vulkan:N"). It fails, wrapping ErrUnavailable, when there is no loader.
func Devices() ([]DeviceInfo, error) {
	in, err := getInstance()
	if err != nil {
		return nil, err
	}
	out := make([]DeviceInfo, len(in.devices))
	for i, d := range in.devices {
		out[i] = d.info
	}
	return out, nil
}

// vkErr turns a VkResult into an error naming it.
func vkErr(r vk.Result) error {
	if err := vk.Error(r); err != nil {
		return fmt.Errorf("%w (VkResult %d)", err, int32(r))
	}
	return fmt.Errorf("VkResult %d", int32(r))
}
