//go:build cgo && !novulkan

// The C side of the Vulkan backend (cvk.c): the loader, the instance- and
// device-level function tables, the feature queries and every call that
// takes structures with pointers (which Go cannot pass to C without the
// cgo pointer checks objecting). cvk.go wraps it for Go. Handles of
// non-dispatchable objects cross to Go as uint64_t.

#ifndef UNCLIP_CVK_H
#define UNCLIP_CVK_H

#include <stddef.h>
#include <stdint.h>

#include "vulkan/vulkan_core.h"

// VK_KHR_cooperative_matrix came with Vulkan-Headers 1.3.255; the vendored
// headers (include/README.md) are older. The definitions below are those
// of the registry, used only when the headers lack them.
#ifndef VK_KHR_cooperative_matrix
#define VK_KHR_cooperative_matrix 1
#define VK_KHR_COOPERATIVE_MATRIX_SPEC_VERSION 2
#define VK_KHR_COOPERATIVE_MATRIX_EXTENSION_NAME "VK_KHR_cooperative_matrix"
#define UVK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_KHR ((VkStructureType)1000506000)
#define UVK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_KHR ((VkStructureType)1000506001)
#define UVK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_PROPERTIES_KHR ((VkStructureType)1000506002)
typedef int32_t VkComponentTypeKHR; // an enum: the VK_COMPONENT_TYPE_*_NV values, plus BFLOAT16 = 1000141000
typedef int32_t VkScopeKHR;         // an enum: the VK_SCOPE_*_NV values
typedef struct VkCooperativeMatrixPropertiesKHR {
	VkStructureType sType;
	void *pNext;
	uint32_t MSize;
	uint32_t NSize;
	uint32_t KSize;
	VkComponentTypeKHR AType;
	VkComponentTypeKHR BType;
	VkComponentTypeKHR CType;
	VkComponentTypeKHR ResultType;
	VkBool32 saturatingAccumulation;
	VkScopeKHR scope;
} VkCooperativeMatrixPropertiesKHR;
typedef struct VkPhysicalDeviceCooperativeMatrixFeaturesKHR {
	VkStructureType sType;
	void *pNext;
	VkBool32 cooperativeMatrix;
	VkBool32 cooperativeMatrixRobustBufferAccess;
} VkPhysicalDeviceCooperativeMatrixFeaturesKHR;
typedef struct VkPhysicalDeviceCooperativeMatrixPropertiesKHR {
	VkStructureType sType;
	void *pNext;
	VkShaderStageFlags cooperativeMatrixSupportedStages;
} VkPhysicalDeviceCooperativeMatrixPropertiesKHR;
typedef VkResult(VKAPI_PTR *PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR)(
	VkPhysicalDevice physicalDevice, uint32_t *pPropertyCount, VkCooperativeMatrixPropertiesKHR *pProperties);
#else
#define UVK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_KHR VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_KHR
#define UVK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_KHR VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_KHR
#define UVK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_PROPERTIES_KHR VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_PROPERTIES_KHR
#endif

#define UVK_MAX_BUFS 8
#define UVK_MAX_PUSH 128

// ---- function tables. Each list is the one place an entry point is
// named: the table's fields and its loading come from it.

// Instance-level entry points (vkGetInstanceProcAddr); the optional ones
// (extensions, Vulkan 1.1) may be NULL.
#define UVK_INSTANCE_FUNCS(F)                                                                                          \
	F(CreateDevice)                                                                                                \
	F(GetDeviceProcAddr)                                                                                           \
	F(GetPhysicalDeviceProperties2)                                                                                \
	F(GetPhysicalDeviceFeatures2)                                                                                  \
	F(GetPhysicalDeviceMemoryProperties2)                                                                          \
	F(CreateDebugUtilsMessengerEXT)                                                                                \
	F(DestroyDebugUtilsMessengerEXT)                                                                               \
	F(GetPhysicalDeviceCooperativeMatrixPropertiesKHR)                                                             \
	F(GetPhysicalDeviceCooperativeMatrixPropertiesNV)

// Device-level entry points (vkGetDeviceProcAddr), all required.
#define UVK_DEVICE_FUNCS(F)                                                                                            \
	F(DestroyDevice) F(GetDeviceQueue) F(DeviceWaitIdle)                                                           \
	F(CreateBuffer) F(DestroyBuffer) F(GetBufferMemoryRequirements) F(AllocateMemory) F(FreeMemory)                \
	F(BindBufferMemory) F(MapMemory) F(UnmapMemory) F(InvalidateMappedMemoryRanges)                                \
	F(CreateShaderModule) F(DestroyShaderModule) F(CreateDescriptorSetLayout) F(DestroyDescriptorSetLayout)        \
	F(CreatePipelineLayout) F(DestroyPipelineLayout) F(CreateComputePipelines) F(DestroyPipeline)                  \
	F(CreatePipelineCache) F(DestroyPipelineCache) F(GetPipelineCacheData)                                         \
	F(CreateCommandPool) F(DestroyCommandPool) F(AllocateCommandBuffers) F(BeginCommandBuffer) F(EndCommandBuffer) \
	F(QueueSubmit) F(CreateFence) F(DestroyFence) F(WaitForFences) F(ResetFences)                                  \
	F(CreateDescriptorPool) F(DestroyDescriptorPool) F(ResetDescriptorPool) F(AllocateDescriptorSets)              \
	F(UpdateDescriptorSets)                                                                                        \
	F(CmdBindPipeline) F(CmdBindDescriptorSets) F(CmdPushConstants) F(CmdDispatch) F(CmdPipelineBarrier)           \
	F(CmdCopyBuffer)                                                                                               \
	F(CreateQueryPool) F(DestroyQueryPool) F(CmdResetQueryPool) F(CmdWriteTimestamp) F(GetQueryPoolResults)

#define UVK_TABLE_FIELD(name) PFN_vk##name name;

typedef struct {
	UVK_INSTANCE_FUNCS(UVK_TABLE_FIELD)
} uvk_instance_table;

typedef struct {
	UVK_DEVICE_FUNCS(UVK_TABLE_FIELD)
} uvk_device_table;

// A logical device: its one queue, its command pool and its dispatch
// table.
typedef struct {
	VkDevice dev;
	VkQueue queue;
	VkCommandPool cmd_pool;
	uvk_device_table vk;
} uvk_dev;

// ---- loader and instance.

const char *uvk_load(void);
void *uvk_gipa_ptr(void);
uint32_t uvk_instance_version(void);
// Loads the instance table of the process's one instance.
void uvk_instance_init(VkInstance inst);

int uvk_messages(char *last, int n);
VkResult uvk_create_messenger(VkInstance inst, VkDebugUtilsMessengerEXT *out);
void uvk_destroy_messenger(VkInstance inst, VkDebugUtilsMessengerEXT m);

// ---- physical-device queries.

// Structures to chain in the queries: those whose extension the device
// has, or that are core at the API version in use (the caller decides).
enum {
	UVK_Q_DRIVER = 1 << 0,        // VkPhysicalDeviceDriverProperties
	UVK_Q_FLOAT16_INT8 = 1 << 1,  // VkPhysicalDeviceShaderFloat16Int8Features
	UVK_Q_STORAGE16 = 1 << 2,     // VkPhysicalDevice16BitStorageFeatures
	UVK_Q_STORAGE8 = 1 << 3,      // VkPhysicalDevice8BitStorageFeatures
	UVK_Q_SUBGROUP_SIZE = 1 << 4, // VkPhysicalDeviceSubgroupSizeControlFeatures and Properties
	UVK_Q_MEMORY_MODEL = 1 << 5,  // VkPhysicalDeviceVulkanMemoryModelFeatures
	UVK_Q_COOPMAT_KHR = 1 << 6,   // VkPhysicalDeviceCooperativeMatrixFeaturesKHR and Properties
	UVK_Q_COOPMAT_NV = 1 << 7,    // VkPhysicalDeviceCooperativeMatrixFeaturesNV and Properties
};

// The optional features the backend's shaders use: supported (queried)
// or enabled (at vkCreateDevice).
typedef struct {
	uint32_t float16, int8;                            // shaderFloat16, shaderInt8
	uint32_t storage16, storage8;                      // storageBuffer16BitAccess, storageBuffer8BitAccess
	uint32_t subgroup_size_control, full_subgroups;    // subgroupSizeControl, computeFullSubgroups
	uint32_t memory_model, memory_model_device_scope;  // vulkanMemoryModel, vulkanMemoryModelDeviceScope
	uint32_t coopmat_khr, coopmat_nv;                  // cooperativeMatrix (KHR, NV)
} uvk_features;

typedef struct {
	uint32_t subgroup_size;
	uint32_t min_subgroup_size, max_subgroup_size, max_workgroup_subgroups, required_subgroup_size_stages;
	uint32_t coopmat_khr_stages, coopmat_nv_stages;
	uint32_t driver_id;
	uint64_t max_alloc;
	char driver_name[VK_MAX_DRIVER_NAME_SIZE];
	char driver_info[VK_MAX_DRIVER_INFO_SIZE];
	uvk_features f;
} uvk_caps;

// Fills out for a device of API version api (≥ 1.1 for anything but
// zeros), chaining the structures in chain (UVK_Q_*).
void uvk_query(VkPhysicalDevice pd, uint32_t api, uint32_t chain, uvk_caps *out);

// One cooperative-matrix configuration (KHR or NV: the NV structure has
// no saturatingAccumulation; its DType is result).
typedef struct {
	uint32_t m, n, k;
	int32_t a, b, c, result;
	uint32_t saturating;
	int32_t scope;
} uvk_coopmat_shape;

// Writes up to max configurations (khr: VK_KHR_cooperative_matrix, else
// NV) and returns how many the device has (0 when the query fails).
uint32_t uvk_coopmat_shapes(VkPhysicalDevice pd, int khr, uvk_coopmat_shape *out, uint32_t max);

// VK_EXT_memory_budget: the budget and usage of heap (the caller checked
// that the device has the extension). Returns 0 when it cannot tell.
int uvk_heap_budget(VkPhysicalDevice pd, uint32_t heap, uint64_t *budget, uint64_t *usage);

// ---- devices.

// Creates a device with one queue of family qfam, the features en
// enabled (each structure chained only when one of its features is on)
// and the extensions exts.
VkResult uvk_dev_create(VkPhysicalDevice pd, uint32_t qfam, const uvk_features *en, const char *const *exts,
	uint32_t nexts, uvk_dev **out);
void uvk_dev_destroy(uvk_dev *d);
VkResult uvk_wait_idle(uvk_dev *d);

VkResult uvk_buffer_create(uvk_dev *d, uint64_t size, uint32_t mem_type, int map, uint64_t *buf, uint64_t *mem,
	void **mapped);
void uvk_buffer_destroy(uvk_dev *d, uint64_t buf, uint64_t mem, int mapped);
// Makes device writes to mapped, non-coherent memory visible to the host
// (the whole allocation, which is mapped whole).
VkResult uvk_invalidate(uvk_dev *d, uint64_t mem);

// Pipeline options: required_subgroup_size (0: none) through
// VkPipelineShaderStageRequiredSubgroupSizeCreateInfo, stage_flags
// (VkPipelineShaderStageCreateFlags: full subgroups, varying size).
VkResult uvk_pipeline_create(uvk_dev *d, uint64_t cache, const uint32_t *code, size_t code_size, uint32_t nbuf,
	uint32_t push_size, const uint32_t *spec, uint32_t nspec, uint32_t required_subgroup_size, uint32_t stage_flags,
	uint64_t h[4]);
void uvk_pipeline_destroy(uvk_dev *d, uint64_t h[4]);

VkResult uvk_cache_create(uvk_dev *d, const void *data, size_t n, uint64_t *out);
size_t uvk_cache_data(uvk_dev *d, uint64_t cache, void *buf, size_t n);
void uvk_cache_destroy(uvk_dev *d, uint64_t c);

VkResult uvk_batch_create(uvk_dev *d, uint64_t *cb, uint64_t *fence);
void uvk_fence_destroy(uvk_dev *d, uint64_t f);
VkResult uvk_pool_create(uvk_dev *d, uint32_t max_sets, uint32_t ndesc, uint64_t *out);
void uvk_pool_reset(uvk_dev *d, uint64_t p);
void uvk_pool_destroy(uvk_dev *d, uint64_t p);

VkResult uvk_begin(uvk_dev *d, uint64_t cb);
VkResult uvk_begin_reusable(uvk_dev *d, uint64_t cb);
void uvk_compute_barrier(uvk_dev *d, uint64_t cb);
void uvk_copy(uvk_dev *d, uint64_t cb, int barrier, uint64_t src, uint64_t so, uint64_t dst, uint64_t dof, uint64_t n);
VkResult uvk_submit(uvk_dev *d, uint64_t cb, uint64_t fence);
VkResult uvk_end(uvk_dev *d, uint64_t cb);
VkResult uvk_submit_with(uvk_dev *d, uint64_t eager, uint64_t rec, uint64_t fence);
VkResult uvk_resubmit(uvk_dev *d, uint64_t cb);
VkResult uvk_wait(uvk_dev *d, uint64_t fence);

typedef struct {
	uint64_t cb, pool, dsl, layout, pipeline;
	uint64_t qpool; // timestamp query pool, 0 when not profiling
	uint32_t query; // first of the two queries of this dispatch
	uint32_t nbuf;
	uint64_t buf[UVK_MAX_BUFS];
	uint64_t off[UVK_MAX_BUFS];
	uint64_t rng[UVK_MAX_BUFS];
	uint32_t push_size;
	uint8_t push[UVK_MAX_PUSH];
	uint32_t gx, gy, gz;
	uint32_t barrier_before;
} uvk_dispatch_args;

VkResult uvk_dispatch(uvk_dev *d, uvk_dispatch_args *a);

VkResult uvk_query_pool_create(uvk_dev *d, uint32_t n, uint64_t *out);
void uvk_query_pool_destroy(uvk_dev *d, uint64_t p);
void uvk_query_reset(uvk_dev *d, uint64_t cb, uint64_t p, uint32_t n);
VkResult uvk_query_results(uvk_dev *d, uint64_t p, uint32_t n, uint64_t *out);

#endif
