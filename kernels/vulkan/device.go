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
	api   uint32 // the API version in use: the device's, at most the instance's
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
	initInstance(in.inst)
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
		d.api = min(d.props.ApiVersion, in.api)
		d.caps = queryCaps(pd, d.api, queryChain(d.api, d.exts))
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
		MaxWorkgroupSize: l.MaxComputeWorkGroupSize, MaxWorkgroupCount: l.MaxComputeWorkGroupCount,
		MinSubgroupSize: d.caps.minSubgroupSize, MaxSubgroupSize: d.caps.maxSubgroupSize,
		SubgroupSizeControl: d.caps.subgroupSizeControl, ComputeFullSubgroups: d.caps.fullSubgroups,
		RequireSubgroupSize: d.caps.subgroupSizeControl && d.caps.requiredSubgroupSizeStages&uint32(vk.ShaderStageComputeBit) != 0,
		VulkanMemoryModel:   d.caps.memoryModel,
		CoopMatKHR:          d.caps.coopMatKHR, CoopMatNV: d.caps.coopMatNV,
		CoopMatShapes: d.caps.coopMat,
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

// featureStructs are the optional structures of the device queries and of
// vkCreateDevice: each is core from API version core (0: never) and
// otherwise comes with extension ext.
var featureStructs = []struct {
	q    uint32
	ext  string
	core uint32
}{
	{qDriver, "VK_KHR_driver_properties", vk.MakeVersion(1, 2, 0)},
	{qFloat16Int8, "VK_KHR_shader_float16_int8", vk.MakeVersion(1, 2, 0)},
	{qStorage16, "VK_KHR_16bit_storage", vk.MakeVersion(1, 1, 0)},
	{qStorage8, "VK_KHR_8bit_storage", vk.MakeVersion(1, 2, 0)},
	{qSubgroupSize, "VK_EXT_subgroup_size_control", vk.MakeVersion(1, 3, 0)},
	{qMemoryModel, "VK_KHR_vulkan_memory_model", vk.MakeVersion(1, 2, 0)},
	{qCoopMatKHR, "VK_KHR_cooperative_matrix", 0},
	{qCoopMatNV, "VK_NV_cooperative_matrix", 0},
}

// queryChain is the structures (q*) a device of API version api with the
// extensions exts can be queried with: core ones, and those of the
// extensions it has.
func queryChain(api uint32, exts map[string]bool) uint32 {
	var q uint32
	for _, f := range featureStructs {
		if f.core != 0 && api >= f.core || exts[f.ext] {
			q |= f.q
		}
	}
	return q
}

// structsOf is the feature structures that en needs chained.
func structsOf(en features) uint32 {
	var q uint32
	set := func(on bool, bit uint32) {
		if on {
			q |= bit
		}
	}
	set(en.float16 || en.int8, qFloat16Int8)
	set(en.storage16, qStorage16)
	set(en.storage8, qStorage8)
	set(en.subgroupSizeControl || en.fullSubgroups, qSubgroupSize)
	set(en.memoryModel || en.memoryModelDeviceScope, qMemoryModel)
	set(en.coopMatKHR, qCoopMatKHR)
	set(en.coopMatNV, qCoopMatNV)
	return q
}

// deviceExtensions is the extensions to enable with the features en on a
// device of API version api: those of en's structures that are not core
// at api.
func deviceExtensions(api uint32, en features) []string {
	need := structsOf(en)
	var out []string
	for _, f := range featureStructs {
		if need&f.q != 0 && (f.core == 0 || api < f.core) {
			out = append(out, f.ext)
		}
	}
	return out
}

// enableFeatures is the features to enable on a device that supports
// have: every one the shaders use, except 16-bit storage when noStorage16
// (UNCLIP_VK_NO_STORAGE16=1, to run the 32-bit paths on a device that has
// it).
func enableFeatures(have features, noStorage16 bool) features {
	en := have
	if noStorage16 {
		en.storage16 = false
	}
	en.memoryModelDeviceScope = have.memoryModel && have.memoryModelDeviceScope
	return en
}

// checkWorkgroup reports whether a compute shader with an x×y×z workgroup
// using sharedBytes of shared memory fits the device's limits
// (maxComputeWorkGroupSize, maxComputeWorkGroupInvocations,
// maxComputeSharedMemorySize), with an error naming the limit it exceeds.
func (b *Backend) checkWorkgroup(x, y, z int, sharedBytes int) error {
	return checkWorkgroup(&b.phys.info, b.name, x, y, z, sharedBytes)
}

func checkWorkgroup(info *DeviceInfo, name string, x, y, z, sharedBytes int) error {
	where := fmt.Sprintf("%s (%s)", name, info.Name)
	if x < 1 || y < 1 || z < 1 || sharedBytes < 0 {
		return fmt.Errorf("workgroup %d×%d×%d with %d bytes of shared memory: invalid", x, y, z, sharedBytes)
	}
	size := [3]int{x, y, z}
	for i, n := range size {
		if uint64(n) > uint64(info.MaxWorkgroupSize[i]) {
			return fmt.Errorf("workgroup %d×%d×%d exceeds %s's maxComputeWorkGroupSize[%d] = %d", x, y, z, where, i, info.MaxWorkgroupSize[i])
		}
	}
	if n := uint64(x) * uint64(y) * uint64(z); n > uint64(info.MaxWorkgroup) {
		return fmt.Errorf("workgroup %d×%d×%d (%d invocations) exceeds %s's maxComputeWorkGroupInvocations = %d", x, y, z, n, where, info.MaxWorkgroup)
	}
	if uint64(sharedBytes) > uint64(info.MaxSharedMem) {
		return fmt.Errorf("%d bytes of shared memory exceed %s's maxComputeSharedMemorySize = %d", sharedBytes, where, info.MaxSharedMem)
	}
	return nil
}

// coopMat reports whether a subgroup-scope cooperative-matrix shape (see
// DeviceInfo.CoopMat) is supported in compute shaders
// (cooperativeMatrixSupportedStages) and its extension's feature enabled
// on this backend's device.
func (b *Backend) coopMat(khr bool, m, n, k uint32, ab, acc ComponentType) bool {
	en, c := b.dev.enabled, &b.phys.caps
	compute := uint32(vk.ShaderStageComputeBit)
	if khr && (!en.coopMatKHR || c.coopMatKHRStages&compute == 0) || !khr && (!en.coopMatNV || c.coopMatNVStages&compute == 0) {
		return false
	}
	return b.phys.info.CoopMat(khr, m, n, k, ab, acc)
}

// coopMatGEMM reports whether gemm_coopmat_khr.spv (khr) or
// gemm_coopmat.spv can run: the fp16×fp16→fp32 16×16×16 subgroup shape,
// and every feature those shaders declare (cooperativeMatrix, shaderFloat16,
// storageBuffer16BitAccess, vulkanMemoryModel) enabled.
func (b *Backend) coopMatGEMM(khr bool) bool {
	en := b.dev.enabled
	return en.float16 && en.storage16 && en.memoryModel && b.coopMat(khr, 16, 16, 16, ComponentF16, ComponentF32)
}

// vkErr turns a VkResult into an error naming it.
func vkErr(r vk.Result) error {
	if err := vk.Error(r); err != nil {
		return fmt.Errorf("%w (VkResult %d)", err, int32(r))
	}
	return fmt.Errorf("VkResult %d", int32(r))
}
