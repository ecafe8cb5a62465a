//go:build cgo && !novulkan

package vulkan

// The C that talks to Vulkan is in cvk.c and cvk.h; these are its Go
// wrappers. The #cgo flags below apply to every C file of the package.

/*
#cgo LDFLAGS: -ldl
#cgo CFLAGS: -I${SRCDIR}/include
#include <stdlib.h>
#include <string.h>
#include "cvk.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"

	vk "github.com/vulkan-go/vulkan"
)

// loadLibrary opens the Vulkan loader and initialises vulkan-go with its
// vkGetInstanceProcAddr.
func loadLibrary() error {
	if msg := C.uvk_load(); msg != nil {
		return errors.New(C.GoString(msg))
	}
	vk.SetGetInstanceProcAddr(C.uvk_gipa_ptr())
	return vk.Init()
}

// instanceVersion is the loader's instance-level API version.
func instanceVersion() uint32 { return uint32(C.uvk_instance_version()) }

// initInstance loads the instance-level function table of inst, the
// process's one instance, for the C side.
func initInstance(inst vk.Instance) { C.uvk_instance_init(C.VkInstance(unsafe.Pointer(inst))) }

// ValidationMessages returns how many validation-layer warnings and errors
// were reported since the process started, and the last one.
func ValidationMessages() (int, string) {
	var buf [4096]C.char
	n := C.uvk_messages(&buf[0], C.int(len(buf)))
	return int(n), C.GoString(&buf[0])
}

func createMessenger(inst vk.Instance) (unsafe.Pointer, vk.Result) {
	var m C.VkDebugUtilsMessengerEXT
	r := C.uvk_create_messenger(C.VkInstance(unsafe.Pointer(inst)), &m)
	return unsafe.Pointer(m), vk.Result(r)
}

func destroyMessenger(inst vk.Instance, m unsafe.Pointer) {
	C.uvk_destroy_messenger(C.VkInstance(unsafe.Pointer(inst)), C.VkDebugUtilsMessengerEXT(m))
}

// Structures chained in the device queries (cvk.h).
const (
	qDriver       = C.UVK_Q_DRIVER
	qFloat16Int8  = C.UVK_Q_FLOAT16_INT8
	qStorage16    = C.UVK_Q_STORAGE16
	qStorage8     = C.UVK_Q_STORAGE8
	qSubgroupSize = C.UVK_Q_SUBGROUP_SIZE
	qMemoryModel  = C.UVK_Q_MEMORY_MODEL
	qCoopMatKHR   = C.UVK_Q_COOPMAT_KHR
	qCoopMatNV    = C.UVK_Q_COOPMAT_NV
)

// features are the optional device features the shaders use: those a
// device supports (caps) or those enabled on a logical device.
type features struct {
	float16, int8                       bool // shaderFloat16, shaderInt8
	storage16, storage8                 bool // storageBuffer16BitAccess, storageBuffer8BitAccess
	subgroupSizeControl, fullSubgroups  bool // subgroupSizeControl, computeFullSubgroups
	memoryModel, memoryModelDeviceScope bool // vulkanMemoryModel, vulkanMemoryModelDeviceScope
	coopMatKHR, coopMatNV               bool // cooperativeMatrix of VK_KHR_ and VK_NV_cooperative_matrix
}

func (f features) c() C.uvk_features {
	b := func(v bool) C.uint32_t {
		if v {
			return 1
		}
		return 0
	}
	return C.uvk_features{
		float16: b(f.float16), int8: b(f.int8), storage16: b(f.storage16), storage8: b(f.storage8),
		subgroup_size_control: b(f.subgroupSizeControl), full_subgroups: b(f.fullSubgroups),
		memory_model: b(f.memoryModel), memory_model_device_scope: b(f.memoryModelDeviceScope),
		coopmat_khr: b(f.coopMatKHR), coopmat_nv: b(f.coopMatNV),
	}
}

func featuresOf(c *C.uvk_features) features {
	return features{
		float16: c.float16 != 0, int8: c.int8 != 0, storage16: c.storage16 != 0, storage8: c.storage8 != 0,
		subgroupSizeControl: c.subgroup_size_control != 0, fullSubgroups: c.full_subgroups != 0,
		memoryModel: c.memory_model != 0, memoryModelDeviceScope: c.memory_model_device_scope != 0,
		coopMatKHR: c.coopmat_khr != 0, coopMatNV: c.coopmat_nv != 0,
	}
}

// caps are the Vulkan 1.1+ properties and features of a device.
type caps struct {
	features // supported
	bfloat16 bool

	subgroupSize                      uint32
	minSubgroupSize, maxSubgroupSize  uint32 // subgroup size control (0 when unknown)
	maxWorkgroupSubgroups             uint32 // maxComputeWorkgroupSubgroups
	requiredSubgroupSizeStages        uint32 // VkShaderStageFlags
	coopMatKHRStages, coopMatNVStages uint32 // cooperativeMatrixSupportedStages
	coopMat                           []CoopMatShape
	maxAlloc                          uint64
	driverName, driverInfo            string
}

// queryCaps queries a device of API version api, chaining the structures
// in chain (q*); the cooperative-matrix shapes are queried where the
// feature is supported.
func queryCaps(pd vk.PhysicalDevice, api, chain uint32) caps {
	var c C.uvk_caps
	p := C.VkPhysicalDevice(unsafe.Pointer(pd))
	C.uvk_query(p, C.uint32_t(api), C.uint32_t(chain), &c)
	out := caps{
		features:        featuresOf(&c.f),
		subgroupSize:    uint32(c.subgroup_size),
		minSubgroupSize: uint32(c.min_subgroup_size), maxSubgroupSize: uint32(c.max_subgroup_size),
		maxWorkgroupSubgroups:      uint32(c.max_workgroup_subgroups),
		requiredSubgroupSizeStages: uint32(c.required_subgroup_size_stages),
		coopMatKHRStages:           uint32(c.coopmat_khr_stages), coopMatNVStages: uint32(c.coopmat_nv_stages),
		maxAlloc:   uint64(c.max_alloc),
		driverName: C.GoString(&c.driver_name[0]), driverInfo: C.GoString(&c.driver_info[0]),
	}
	if out.coopMatKHR {
		out.coopMat = append(out.coopMat, coopMatShapes(p, true)...)
	}
	if out.coopMatNV {
		out.coopMat = append(out.coopMat, coopMatShapes(p, false)...)
	}
	return out
}

func coopMatShapes(p C.VkPhysicalDevice, khr bool) []CoopMatShape {
	const max = 256
	buf := (*[max]C.uvk_coopmat_shape)(C.calloc(max, C.size_t(unsafe.Sizeof(C.uvk_coopmat_shape{}))))
	defer C.free(unsafe.Pointer(buf))
	n := min(int(C.uvk_coopmat_shapes(p, cbool(khr), &buf[0], max)), max)
	out := make([]CoopMatShape, n)
	for i, s := range buf[:n] {
		out[i] = CoopMatShape{
			KHR: khr, M: uint32(s.m), N: uint32(s.n), K: uint32(s.k),
			A: ComponentType(s.a), B: ComponentType(s.b), C: ComponentType(s.c), Result: ComponentType(s.result),
			Saturating: s.saturating != 0, Scope: Scope(s.scope),
		}
	}
	return out
}

// heapBudget is VK_EXT_memory_budget's budget and usage of a heap (ok
// false when the device cannot tell; the caller checked the extension).
func heapBudget(pd vk.PhysicalDevice, heap int) (budget, usage uint64, ok bool) {
	var b, u C.uint64_t
	if C.uvk_heap_budget(C.VkPhysicalDevice(unsafe.Pointer(pd)), C.uint32_t(heap), &b, &u) == 0 {
		return 0, 0, false
	}
	return uint64(b), uint64(u), true
}

// device is a VkDevice with its queue, command pool and dispatch table.
type device struct {
	d       *C.uvk_dev
	args    *C.uvk_dispatch_args // C memory, reused for every dispatch
	enabled features             // the optional features enabled at vkCreateDevice

	// Subgroup size control limits (set by newBackend): the sizes a
	// pipeline may require, and whether compute shaders may require one.
	minSubgroup, maxSubgroup uint32
	requireSubgroup          bool
}

func handle(p unsafe.Pointer) C.uint64_t { return C.uint64_t(uintptr(p)) }

// createDevice creates a logical device with one queue of family qfam,
// the features en enabled and the device extensions exts (those the
// features need below the API version that made them core).
func createDevice(pd vk.PhysicalDevice, qfam uint32, en features, exts []string) (*device, error) {
	var names **C.char
	if len(exts) > 0 {
		arr := (*[64]*C.char)(C.calloc(64, C.size_t(unsafe.Sizeof((*C.char)(nil)))))
		defer C.free(unsafe.Pointer(arr))
		if len(exts) > len(arr) {
			return nil, fmt.Errorf("vkCreateDevice: %d extensions", len(exts))
		}
		for i, e := range exts {
			arr[i] = C.CString(e)
			defer C.free(unsafe.Pointer(arr[i]))
		}
		names = &arr[0]
	}
	ce := en.c()
	var d *C.uvk_dev
	if r := C.uvk_dev_create(C.VkPhysicalDevice(unsafe.Pointer(pd)), C.uint32_t(qfam), &ce, names, C.uint32_t(len(exts)), &d); r != C.VK_SUCCESS {
		return nil, fmt.Errorf("vkCreateDevice: %w", vkErr(vk.Result(r)))
	}
	a := (*C.uvk_dispatch_args)(C.calloc(1, C.size_t(unsafe.Sizeof(C.uvk_dispatch_args{}))))
	return &device{d: d, args: a, enabled: en}, nil
}

func (d *device) destroy() {
	C.uvk_dev_destroy(d.d)
	C.free(unsafe.Pointer(d.args))
}

func (d *device) waitIdle() vk.Result { return vk.Result(C.uvk_wait_idle(d.d)) }

// createBuffer makes a storage buffer with its own memory of type
// memType, persistently mapped (host) when mapped is set.
func (d *device) createBuffer(size uint64, memType uint32, mapped bool) (buf, mem uint64, host []byte, err error) {
	var b, m C.uint64_t
	var p unsafe.Pointer
	if r := C.uvk_buffer_create(d.d, C.uint64_t(size), C.uint32_t(memType), cbool(mapped), &b, &m, &p); r != C.VK_SUCCESS {
		return 0, 0, nil, vkErr(vk.Result(r))
	}
	if p != nil {
		host = unsafe.Slice((*byte)(p), size)
	}
	return uint64(b), uint64(m), host, nil
}

func (d *device) destroyBuffer(buf, mem uint64, mapped bool) {
	C.uvk_buffer_destroy(d.d, C.uint64_t(buf), C.uint64_t(mem), cbool(mapped))
}

// invalidate makes the device's writes to mapped memory mem visible to
// the host, for memory that is not HOST_COHERENT (after the fence wait).
func (d *device) invalidate(mem uint64) vk.Result {
	return vk.Result(C.uvk_invalidate(d.d, C.uint64_t(mem)))
}

// copy records a buffer-to-buffer copy of n bytes.
func (d *device) copy(cb uint64, barrier bool, src, so, dst, do, n uint64) {
	C.uvk_copy(d.d, C.uint64_t(cb), cbool(barrier), C.uint64_t(src), C.uint64_t(so), C.uint64_t(dst), C.uint64_t(do), C.uint64_t(n))
}

func cbool(v bool) C.int {
	if v {
		return 1
	}
	return 0
}

// createPipeline builds a compute pipeline from SPIR-V words.
func (d *device) createPipeline(cache uint64, code []uint32, nbuf, push int, spec []uint32) ([4]uint64, error) {
	return d.createPipelineWith(cache, code, nbuf, push, spec, pipelineOpts{})
}

// pipelineOpts are the subgroup-size choices of a pipeline; the zero value
// leaves them to the driver.
type pipelineOpts struct {
	// subgroupSize, when not 0, is the required subgroup size
	// (VkPipelineShaderStageRequiredSubgroupSizeCreateInfo): a power of
	// two in [MinSubgroupSize, MaxSubgroupSize]; it needs
	// subgroupSizeControl and COMPUTE in requiredSubgroupSizeStages.
	subgroupSize uint32
	// fullSubgroups sets REQUIRE_FULL_SUBGROUPS (computeFullSubgroups):
	// the workgroup's x size must be a multiple of the subgroup size.
	fullSubgroups bool
	// varyingSize sets ALLOW_VARYING_SUBGROUP_SIZE (subgroupSizeControl).
	varyingSize bool
}

// createPipelineWith is createPipeline with subgroup-size options, which
// must be enabled on the device (checkPipelineOpts).
func (d *device) createPipelineWith(cache uint64, code []uint32, nbuf, push int, spec []uint32, o pipelineOpts) ([4]uint64, error) {
	if len(code) == 0 {
		return [4]uint64{}, errors.New("empty SPIR-V")
	}
	if nbuf > maxBindings {
		return [4]uint64{}, fmt.Errorf("%d storage buffers, more than %d", nbuf, maxBindings)
	}
	if n := o.subgroupSize; n != 0 {
		switch {
		case !d.enabled.subgroupSizeControl || !d.requireSubgroup:
			return [4]uint64{}, errors.New("a required subgroup size, but the device cannot require one in compute shaders")
		case n&(n-1) != 0 || n < d.minSubgroup || n > d.maxSubgroup:
			return [4]uint64{}, fmt.Errorf("required subgroup size %d: not a power of two in [%d, %d]", n, d.minSubgroup, d.maxSubgroup)
		}
	}
	if o.fullSubgroups && !d.enabled.fullSubgroups {
		return [4]uint64{}, errors.New("full subgroups without computeFullSubgroups")
	}
	if o.varyingSize && !d.enabled.subgroupSizeControl {
		return [4]uint64{}, errors.New("a varying subgroup size without subgroupSizeControl")
	}
	var flags C.uint32_t
	if o.fullSubgroups {
		flags |= C.VK_PIPELINE_SHADER_STAGE_CREATE_REQUIRE_FULL_SUBGROUPS_BIT
	}
	if o.varyingSize {
		flags |= C.VK_PIPELINE_SHADER_STAGE_CREATE_ALLOW_VARYING_SUBGROUP_SIZE_BIT
	}
	var h [4]C.uint64_t
	var sp *C.uint32_t
	if len(spec) > 0 {
		sp = (*C.uint32_t)(unsafe.Pointer(&spec[0]))
	}
	r := C.uvk_pipeline_create(d.d, C.uint64_t(cache), (*C.uint32_t)(unsafe.Pointer(&code[0])), C.size_t(4*len(code)),
		C.uint32_t(nbuf), C.uint32_t(push), sp, C.uint32_t(len(spec)), C.uint32_t(o.subgroupSize), flags, &h[0])
	out := [4]uint64{uint64(h[0]), uint64(h[1]), uint64(h[2]), uint64(h[3])}
	if r != C.VK_SUCCESS {
		d.destroyPipeline(out)
		return [4]uint64{}, vkErr(vk.Result(r))
	}
	return out, nil
}

func (d *device) destroyPipeline(h [4]uint64) {
	ch := [4]C.uint64_t{C.uint64_t(h[0]), C.uint64_t(h[1]), C.uint64_t(h[2]), C.uint64_t(h[3])}
	C.uvk_pipeline_destroy(d.d, &ch[0])
}

func (d *device) createCache(data []byte) (uint64, error) {
	var c C.uint64_t
	var p unsafe.Pointer
	if len(data) > 0 {
		p = C.CBytes(data)
		defer C.free(p)
	}
	if r := C.uvk_cache_create(d.d, p, C.size_t(len(data)), &c); r != C.VK_SUCCESS {
		return 0, vkErr(vk.Result(r))
	}
	return uint64(c), nil
}

func (d *device) cacheData(c uint64) []byte {
	n := C.uvk_cache_data(d.d, C.uint64_t(c), nil, 0)
	if n == 0 {
		return nil
	}
	p := C.malloc(n)
	defer C.free(p)
	n = C.uvk_cache_data(d.d, C.uint64_t(c), p, n)
	return C.GoBytes(p, C.int(n))
}

func (d *device) destroyCache(c uint64) { C.uvk_cache_destroy(d.d, C.uint64_t(c)) }

func (d *device) createBatch() (cb, fence uint64, err error) {
	var c, f C.uint64_t
	if r := C.uvk_batch_create(d.d, &c, &f); r != C.VK_SUCCESS {
		return 0, 0, vkErr(vk.Result(r))
	}
	return uint64(c), uint64(f), nil
}

func (d *device) destroyFence(f uint64) { C.uvk_fence_destroy(d.d, C.uint64_t(f)) }

func (d *device) createPool(maxSets, ndesc int) (uint64, error) {
	var p C.uint64_t
	if r := C.uvk_pool_create(d.d, C.uint32_t(maxSets), C.uint32_t(ndesc), &p); r != C.VK_SUCCESS {
		return 0, vkErr(vk.Result(r))
	}
	return uint64(p), nil
}

func (d *device) resetPool(p uint64)   { C.uvk_pool_reset(d.d, C.uint64_t(p)) }
func (d *device) destroyPool(p uint64) { C.uvk_pool_destroy(d.d, C.uint64_t(p)) }

func (d *device) begin(cb uint64) vk.Result { return vk.Result(C.uvk_begin(d.d, C.uint64_t(cb))) }

func (d *device) submit(cb, fence uint64) vk.Result {
	return vk.Result(C.uvk_submit(d.d, C.uint64_t(cb), C.uint64_t(fence)))
}

func (d *device) wait(fence uint64) vk.Result { return vk.Result(C.uvk_wait(d.d, C.uint64_t(fence))) }

func (d *device) beginReusable(cb uint64) vk.Result {
	return vk.Result(C.uvk_begin_reusable(d.d, C.uint64_t(cb)))
}
func (d *device) end(cb uint64) vk.Result      { return vk.Result(C.uvk_end(d.d, C.uint64_t(cb))) }
func (d *device) resubmit(cb uint64) vk.Result { return vk.Result(C.uvk_resubmit(d.d, C.uint64_t(cb))) }
func (d *device) submitWith(eager, rec, fence uint64) vk.Result {
	return vk.Result(C.uvk_submit_with(d.d, C.uint64_t(eager), C.uint64_t(rec), C.uint64_t(fence)))
}

// computeBarrier records a compute/transfer → compute/transfer barrier.
func (d *device) computeBarrier(cb uint64) { C.uvk_compute_barrier(d.d, C.uint64_t(cb)) }

// binding is one storage buffer range bound to a dispatch.
type binding struct {
	buf, off, rng uint64
}

const maxBindings = C.UVK_MAX_BUFS

// dispatch records a descriptor set, the push constants and the dispatch
// with one cgo call.
func (d *device) dispatch(cb, pool uint64, p *pipeline, bs []binding, push []byte, gx, gy, gz uint32, barrier bool,
	qpool uint64, query uint32) vk.Result {
	a := d.args
	if len(bs) > len(a.buf) || len(push) > len(a.push) {
		return vk.ErrorInitializationFailed
	}
	a.cb, a.pool = C.uint64_t(cb), C.uint64_t(pool)
	a.qpool, a.query = C.uint64_t(qpool), C.uint32_t(query)
	a.dsl, a.layout, a.pipeline = C.uint64_t(p.h[1]), C.uint64_t(p.h[2]), C.uint64_t(p.h[3])
	a.nbuf = C.uint32_t(len(bs))
	for i, b := range bs {
		a.buf[i], a.off[i], a.rng[i] = C.uint64_t(b.buf), C.uint64_t(b.off), C.uint64_t(b.rng)
	}
	a.push_size = C.uint32_t(len(push))
	if len(push) > 0 {
		C.memcpy(unsafe.Pointer(&a.push[0]), unsafe.Pointer(&push[0]), C.size_t(len(push)))
	}
	a.gx, a.gy, a.gz = C.uint32_t(gx), C.uint32_t(gy), C.uint32_t(gz)
	a.barrier_before = 0
	if barrier {
		a.barrier_before = 1
	}
	return vk.Result(C.uvk_dispatch(d.d, a))
}

func (d *device) createQueryPool(n int) (uint64, error) {
	var p C.uint64_t
	if r := C.uvk_query_pool_create(d.d, C.uint32_t(n), &p); r != C.VK_SUCCESS {
		return 0, vkErr(vk.Result(r))
	}
	return uint64(p), nil
}

func (d *device) destroyQueryPool(p uint64) { C.uvk_query_pool_destroy(d.d, C.uint64_t(p)) }

func (d *device) resetQueries(cb, p uint64, n int) {
	C.uvk_query_reset(d.d, C.uint64_t(cb), C.uint64_t(p), C.uint32_t(n))
}

// queryResults reads the first len(out) timestamps of a pool.
func (d *device) queryResults(p uint64, out []uint64) vk.Result {
	if len(out) == 0 {
		return vk.Success
	}
	return vk.Result(C.uvk_query_results(d.d, C.uint64_t(p), C.uint32_t(len(out)), (*C.uint64_t)(unsafe.Pointer(&out[0]))))
}
