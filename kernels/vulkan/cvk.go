//go:build cgo && !novulkan

package vulkan

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#cgo CFLAGS: -I${SRCDIR}/include
#include "vulkan/vulkan_core.h"

#define UVK_MAX_BUFS 8
#define UVK_MAX_PUSH 128

// ---- loader: libvulkan.so.1 is opened here, so that only the runtime
// loader is needed (no -dev package at run time).

static void *uvk_lib;
static PFN_vkGetInstanceProcAddr uvk_gipa;

static const char *uvk_load(void) {
	if (uvk_gipa) return NULL;
	uvk_lib = dlopen("libvulkan.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!uvk_lib) uvk_lib = dlopen("libvulkan.so", RTLD_NOW | RTLD_LOCAL);
	if (!uvk_lib) return dlerror();
	uvk_gipa = (PFN_vkGetInstanceProcAddr)dlsym(uvk_lib, "vkGetInstanceProcAddr");
	if (!uvk_gipa) return "libvulkan.so.1 has no vkGetInstanceProcAddr";
	return NULL;
}

static void *uvk_gipa_ptr(void) { return (void *)uvk_gipa; }

static uint32_t uvk_instance_version(void) {
	PFN_vkEnumerateInstanceVersion f = (PFN_vkEnumerateInstanceVersion)uvk_gipa(NULL, "vkEnumerateInstanceVersion");
	uint32_t v = VK_API_VERSION_1_0;
	if (f) f(&v);
	return v;
}

// ---- validation messages: counted and kept (the last few) for tests.

static pthread_mutex_t uvk_msg_mu = PTHREAD_MUTEX_INITIALIZER;
static int uvk_msg_count;
static char uvk_msg_last[4096];

static VKAPI_ATTR VkBool32 VKAPI_CALL uvk_debug_cb(VkDebugUtilsMessageSeverityFlagBitsEXT sev,
	VkDebugUtilsMessageTypeFlagsEXT type, const VkDebugUtilsMessengerCallbackDataEXT *data, void *user) {
	(void)type; (void)user;
	if (sev < VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT) return VK_FALSE;
	pthread_mutex_lock(&uvk_msg_mu);
	uvk_msg_count++;
	snprintf(uvk_msg_last, sizeof uvk_msg_last, "%s", data && data->pMessage ? data->pMessage : "(no message)");
	pthread_mutex_unlock(&uvk_msg_mu);
	fprintf(stderr, "vulkan validation: %s\n", data && data->pMessage ? data->pMessage : "(no message)");
	return VK_FALSE;
}

static int uvk_messages(char *last, int n) {
	pthread_mutex_lock(&uvk_msg_mu);
	int c = uvk_msg_count;
	snprintf(last, n, "%s", uvk_msg_last);
	pthread_mutex_unlock(&uvk_msg_mu);
	return c;
}

static VkResult uvk_create_messenger(VkInstance inst, VkDebugUtilsMessengerEXT *out) {
	PFN_vkCreateDebugUtilsMessengerEXT f = (PFN_vkCreateDebugUtilsMessengerEXT)uvk_gipa(inst, "vkCreateDebugUtilsMessengerEXT");
	if (!f) return VK_ERROR_EXTENSION_NOT_PRESENT;
	VkDebugUtilsMessengerCreateInfoEXT ci = {0};
	ci.sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT;
	ci.messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
	ci.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
		VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT;
	ci.pfnUserCallback = uvk_debug_cb;
	return f(inst, &ci, NULL, out);
}

static void uvk_destroy_messenger(VkInstance inst, VkDebugUtilsMessengerEXT m) {
	PFN_vkDestroyDebugUtilsMessengerEXT f = (PFN_vkDestroyDebugUtilsMessengerEXT)uvk_gipa(inst, "vkDestroyDebugUtilsMessengerEXT");
	if (f && m) f(inst, m, NULL);
}

// ---- Vulkan 1.1+ device queries (Properties2 / Features2).

typedef struct {
	uint32_t subgroup_size;
	uint32_t float16, int8, storage16, storage8, bfloat16;
	uint32_t driver_id;
	uint64_t max_alloc;
	char driver_name[VK_MAX_DRIVER_NAME_SIZE];
	char driver_info[VK_MAX_DRIVER_INFO_SIZE];
} uvk_caps;

static void uvk_query(VkInstance inst, VkPhysicalDevice pd, uint32_t api, int has_driver_props, uvk_caps *out) {
	memset(out, 0, sizeof *out);
	if (api < VK_API_VERSION_1_1) return;
	PFN_vkGetPhysicalDeviceProperties2 gp = (PFN_vkGetPhysicalDeviceProperties2)uvk_gipa(inst, "vkGetPhysicalDeviceProperties2");
	PFN_vkGetPhysicalDeviceFeatures2 gf = (PFN_vkGetPhysicalDeviceFeatures2)uvk_gipa(inst, "vkGetPhysicalDeviceFeatures2");
	if (gp) {
		VkPhysicalDeviceSubgroupProperties sg = {0};
		sg.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES;
		VkPhysicalDeviceDriverProperties dp = {0};
		dp.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES;
		VkPhysicalDeviceMaintenance3Properties m3 = {0};
		m3.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES;
		VkPhysicalDeviceProperties2 p2 = {0};
		p2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2;
		p2.pNext = &sg;
		sg.pNext = &m3;
		if (has_driver_props) m3.pNext = &dp;
		gp(pd, &p2);
		out->subgroup_size = sg.subgroupSize;
		out->max_alloc = m3.maxMemoryAllocationSize;
		if (has_driver_props) {
			out->driver_id = dp.driverID;
			memcpy(out->driver_name, dp.driverName, sizeof out->driver_name);
			memcpy(out->driver_info, dp.driverInfo, sizeof out->driver_info);
		}
	}
	if (gf) {
		VkPhysicalDeviceShaderFloat16Int8Features f16 = {0};
		f16.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES;
		VkPhysicalDevice16BitStorageFeatures s16 = {0};
		s16.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES;
		VkPhysicalDevice8BitStorageFeatures s8 = {0};
		s8.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES;
		f16.pNext = &s16;
		if (api >= VK_API_VERSION_1_2) s16.pNext = &s8;
		VkPhysicalDeviceFeatures2 f2 = {0};
		f2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2;
		f2.pNext = &f16;
		gf(pd, &f2);
		out->float16 = f16.shaderFloat16;
		out->int8 = f16.shaderInt8;
		out->storage16 = s16.storageBuffer16BitAccess;
		out->storage8 = s8.storageBuffer8BitAccess;
	}
}

// ---- device-level calls. vulkan-go's wrappers pass Go memory holding Go
// pointers to C (a cgocheck panic since Go 1.21 for vkCreateDevice and any
// call taking slices), so every device-level call goes through this layer
// with entry points from vkGetDeviceProcAddr. Handles cross to Go as
// uint64_t.

#define H(T, v) ((T)(uintptr_t)(v))
#define U(v) ((uint64_t)(uintptr_t)(v))

typedef struct {
	VkDevice dev;
	VkQueue queue;
	VkCommandPool cmd_pool;
#define F(name) PFN_vk##name name;
	F(DestroyDevice) F(GetDeviceQueue) F(DeviceWaitIdle)
	F(CreateBuffer) F(DestroyBuffer) F(GetBufferMemoryRequirements) F(AllocateMemory) F(FreeMemory)
	F(BindBufferMemory) F(MapMemory) F(UnmapMemory)
	F(CreateShaderModule) F(DestroyShaderModule) F(CreateDescriptorSetLayout) F(DestroyDescriptorSetLayout)
	F(CreatePipelineLayout) F(DestroyPipelineLayout) F(CreateComputePipelines) F(DestroyPipeline)
	F(CreatePipelineCache) F(DestroyPipelineCache) F(GetPipelineCacheData)
	F(CreateCommandPool) F(DestroyCommandPool) F(AllocateCommandBuffers) F(BeginCommandBuffer) F(EndCommandBuffer)
	F(QueueSubmit) F(CreateFence) F(DestroyFence) F(WaitForFences) F(ResetFences)
	F(CreateDescriptorPool) F(DestroyDescriptorPool) F(ResetDescriptorPool) F(AllocateDescriptorSets) F(UpdateDescriptorSets)
	F(CmdBindPipeline) F(CmdBindDescriptorSets) F(CmdPushConstants) F(CmdDispatch) F(CmdPipelineBarrier) F(CmdCopyBuffer)
	F(CreateQueryPool) F(DestroyQueryPool) F(CmdResetQueryPool) F(CmdWriteTimestamp) F(GetQueryPoolResults)
#undef F
} uvk_dev;

// storage16 enables storageBuffer16BitAccess (core in Vulkan 1.1; the
// caller checked that the device has it).
static VkResult uvk_dev_create(uint64_t inst, uint64_t pd, uint32_t qfam, int storage16, uvk_dev **out) {
	*out = NULL;
	VkInstance in = H(VkInstance, inst);
	PFN_vkCreateDevice create = (PFN_vkCreateDevice)uvk_gipa(in, "vkCreateDevice");
	PFN_vkGetDeviceProcAddr gdpa = (PFN_vkGetDeviceProcAddr)uvk_gipa(in, "vkGetDeviceProcAddr");
	if (!create || !gdpa) return VK_ERROR_INITIALIZATION_FAILED;
	float prio = 1.0f;
	VkDeviceQueueCreateInfo qi = {0};
	qi.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO;
	qi.queueFamilyIndex = qfam;
	qi.queueCount = 1;
	qi.pQueuePriorities = &prio;
	VkDeviceCreateInfo ci = {0};
	ci.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO;
	ci.queueCreateInfoCount = 1;
	ci.pQueueCreateInfos = &qi;
	VkPhysicalDevice16BitStorageFeatures s16 = {0};
	s16.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES;
	if (storage16) {
		s16.storageBuffer16BitAccess = VK_TRUE;
		ci.pNext = &s16;
	}
	VkDevice dev;
	VkResult r = create(H(VkPhysicalDevice, pd), &ci, NULL, &dev);
	if (r != VK_SUCCESS) return r;
	uvk_dev *d = calloc(1, sizeof *d);
	d->dev = dev;
	int ok = 1;
#define F(name) d->name = (PFN_vk##name)gdpa(dev, "vk" #name); ok = ok && d->name;
	F(DestroyDevice) F(GetDeviceQueue) F(DeviceWaitIdle)
	F(CreateBuffer) F(DestroyBuffer) F(GetBufferMemoryRequirements) F(AllocateMemory) F(FreeMemory)
	F(BindBufferMemory) F(MapMemory) F(UnmapMemory)
	F(CreateShaderModule) F(DestroyShaderModule) F(CreateDescriptorSetLayout) F(DestroyDescriptorSetLayout)
	F(CreatePipelineLayout) F(DestroyPipelineLayout) F(CreateComputePipelines) F(DestroyPipeline)
	F(CreatePipelineCache) F(DestroyPipelineCache) F(GetPipelineCacheData)
	F(CreateCommandPool) F(DestroyCommandPool) F(AllocateCommandBuffers) F(BeginCommandBuffer) F(EndCommandBuffer)
	F(QueueSubmit) F(CreateFence) F(DestroyFence) F(WaitForFences) F(ResetFences)
	F(CreateDescriptorPool) F(DestroyDescriptorPool) F(ResetDescriptorPool) F(AllocateDescriptorSets) F(UpdateDescriptorSets)
	F(CmdBindPipeline) F(CmdBindDescriptorSets) F(CmdPushConstants) F(CmdDispatch) F(CmdPipelineBarrier) F(CmdCopyBuffer)
	F(CreateQueryPool) F(DestroyQueryPool) F(CmdResetQueryPool) F(CmdWriteTimestamp) F(GetQueryPoolResults)
#undef F
	if (!ok) {
		PFN_vkDestroyDevice destroy = (PFN_vkDestroyDevice)gdpa(dev, "vkDestroyDevice");
		if (destroy) destroy(dev, NULL);
		free(d);
		return VK_ERROR_INITIALIZATION_FAILED;
	}
	d->GetDeviceQueue(dev, qfam, 0, &d->queue);
	VkCommandPoolCreateInfo pi = {0};
	pi.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO;
	pi.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
	pi.queueFamilyIndex = qfam;
	r = d->CreateCommandPool(dev, &pi, NULL, &d->cmd_pool);
	if (r != VK_SUCCESS) {
		d->DestroyDevice(dev, NULL);
		free(d);
		return r;
	}
	*out = d;
	return VK_SUCCESS;
}

static void uvk_dev_destroy(uvk_dev *d) {
	d->DeviceWaitIdle(d->dev);
	d->DestroyCommandPool(d->dev, d->cmd_pool, NULL);
	d->DestroyDevice(d->dev, NULL);
	free(d);
}

static VkResult uvk_wait_idle(uvk_dev *d) { return d->DeviceWaitIdle(d->dev); }

// Creates a storage buffer of size bytes bound to its own allocation of
// memory type mem_type, persistently mapped when map is set.
static VkResult uvk_buffer_create(uvk_dev *d, uint64_t size, uint32_t mem_type, int map, uint64_t *buf, uint64_t *mem, void **mapped) {
	VkBufferCreateInfo bi = {0};
	bi.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO;
	bi.size = size;
	bi.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
	bi.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
	VkBuffer b;
	VkResult r = d->CreateBuffer(d->dev, &bi, NULL, &b);
	if (r != VK_SUCCESS) return r;
	VkMemoryRequirements req;
	d->GetBufferMemoryRequirements(d->dev, b, &req);
	if (!(req.memoryTypeBits & (1u << mem_type))) {
		d->DestroyBuffer(d->dev, b, NULL);
		return VK_ERROR_FEATURE_NOT_PRESENT;
	}
	VkMemoryAllocateInfo ai = {0};
	ai.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO;
	ai.allocationSize = req.size;
	ai.memoryTypeIndex = mem_type;
	VkDeviceMemory m;
	r = d->AllocateMemory(d->dev, &ai, NULL, &m);
	if (r != VK_SUCCESS) {
		d->DestroyBuffer(d->dev, b, NULL);
		return r;
	}
	r = d->BindBufferMemory(d->dev, b, m, 0);
	*mapped = NULL;
	if (r == VK_SUCCESS && map) r = d->MapMemory(d->dev, m, 0, size, 0, mapped);
	if (r != VK_SUCCESS) {
		d->DestroyBuffer(d->dev, b, NULL);
		d->FreeMemory(d->dev, m, NULL);
		return r;
	}
	*buf = U(b);
	*mem = U(m);
	return VK_SUCCESS;
}

static void uvk_buffer_destroy(uvk_dev *d, uint64_t buf, uint64_t mem, int mapped) {
	if (mapped) d->UnmapMemory(d->dev, H(VkDeviceMemory, mem));
	d->DestroyBuffer(d->dev, H(VkBuffer, buf), NULL);
	d->FreeMemory(d->dev, H(VkDeviceMemory, mem), NULL);
}

// Creates a compute pipeline with nbuf storage-buffer bindings and a
// push-constant range of push_size bytes; h receives the shader module,
// descriptor-set layout, pipeline layout and pipeline. spec[i] (i < nspec)
// sets specialization constant i, where spec[i] != 0.
static VkResult uvk_pipeline_create(uvk_dev *d, uint64_t cache, const uint32_t *code, size_t code_size,
	uint32_t nbuf, uint32_t push_size, const uint32_t *spec, uint32_t nspec, uint64_t h[4]) {
	memset(h, 0, 4 * sizeof h[0]);
	VkShaderModuleCreateInfo mi = {0};
	mi.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO;
	mi.codeSize = code_size;
	mi.pCode = code;
	VkShaderModule mod;
	VkResult r = d->CreateShaderModule(d->dev, &mi, NULL, &mod);
	if (r != VK_SUCCESS) return r;
	h[0] = U(mod);
	VkDescriptorSetLayoutBinding binds[UVK_MAX_BUFS];
	memset(binds, 0, sizeof binds);
	for (uint32_t i = 0; i < nbuf; i++) {
		binds[i].binding = i;
		binds[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
		binds[i].descriptorCount = 1;
		binds[i].stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
	}
	VkDescriptorSetLayoutCreateInfo li = {0};
	li.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO;
	li.bindingCount = nbuf;
	li.pBindings = binds;
	VkDescriptorSetLayout dsl;
	r = d->CreateDescriptorSetLayout(d->dev, &li, NULL, &dsl);
	if (r != VK_SUCCESS) return r;
	h[1] = U(dsl);
	VkPushConstantRange pr = {VK_SHADER_STAGE_COMPUTE_BIT, 0, push_size};
	VkPipelineLayoutCreateInfo pli = {0};
	pli.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO;
	pli.setLayoutCount = 1;
	pli.pSetLayouts = &dsl;
	pli.pushConstantRangeCount = push_size ? 1 : 0;
	pli.pPushConstantRanges = &pr;
	VkPipelineLayout layout;
	r = d->CreatePipelineLayout(d->dev, &pli, NULL, &layout);
	if (r != VK_SUCCESS) return r;
	h[2] = U(layout);
	VkSpecializationMapEntry entries[16];
	uint32_t vals[16];
	uint32_t ns = 0;
	for (uint32_t i = 0; i < nspec && i < 16; i++) {
		if (!spec[i]) continue;
		entries[ns].constantID = i;
		entries[ns].offset = 4 * ns;
		entries[ns].size = 4;
		vals[ns] = spec[i];
		ns++;
	}
	VkSpecializationInfo si = {ns, entries, 4 * ns, vals};
	VkComputePipelineCreateInfo ci = {0};
	ci.sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO;
	ci.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
	ci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
	ci.stage.module = mod;
	ci.stage.pName = "main";
	ci.stage.pSpecializationInfo = ns ? &si : NULL;
	ci.layout = layout;
	VkPipeline p;
	r = d->CreateComputePipelines(d->dev, H(VkPipelineCache, cache), 1, &ci, NULL, &p);
	if (r != VK_SUCCESS) return r;
	h[3] = U(p);
	return VK_SUCCESS;
}

static void uvk_pipeline_destroy(uvk_dev *d, uint64_t h[4]) {
	if (h[3]) d->DestroyPipeline(d->dev, H(VkPipeline, h[3]), NULL);
	if (h[2]) d->DestroyPipelineLayout(d->dev, H(VkPipelineLayout, h[2]), NULL);
	if (h[1]) d->DestroyDescriptorSetLayout(d->dev, H(VkDescriptorSetLayout, h[1]), NULL);
	if (h[0]) d->DestroyShaderModule(d->dev, H(VkShaderModule, h[0]), NULL);
}

static VkResult uvk_cache_create(uvk_dev *d, const void *data, size_t n, uint64_t *out) {
	VkPipelineCacheCreateInfo ci = {0};
	ci.sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO;
	ci.initialDataSize = n;
	ci.pInitialData = data;
	VkPipelineCache c;
	VkResult r = d->CreatePipelineCache(d->dev, &ci, NULL, &c);
	*out = U(c);
	return r;
}

// Copies at most n bytes of the cache into buf (NULL: returns the size).
static size_t uvk_cache_data(uvk_dev *d, uint64_t cache, void *buf, size_t n) {
	size_t sz = n;
	VkResult r = d->GetPipelineCacheData(d->dev, H(VkPipelineCache, cache), &sz, buf);
	if (r != VK_SUCCESS && r != VK_INCOMPLETE) return 0;
	return sz;
}

static void uvk_cache_destroy(uvk_dev *d, uint64_t c) { d->DestroyPipelineCache(d->dev, H(VkPipelineCache, c), NULL); }

// A command buffer and an unsignalled fence.
static VkResult uvk_batch_create(uvk_dev *d, uint64_t *cb, uint64_t *fence) {
	VkCommandBufferAllocateInfo ai = {0};
	ai.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO;
	ai.commandPool = d->cmd_pool;
	ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
	ai.commandBufferCount = 1;
	VkCommandBuffer c;
	VkResult r = d->AllocateCommandBuffers(d->dev, &ai, &c);
	if (r != VK_SUCCESS) return r;
	VkFenceCreateInfo fi = {0};
	fi.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO;
	VkFence f;
	r = d->CreateFence(d->dev, &fi, NULL, &f);
	*cb = U(c);
	*fence = U(f);
	return r;
}

static void uvk_fence_destroy(uvk_dev *d, uint64_t f) { d->DestroyFence(d->dev, H(VkFence, f), NULL); }

static VkResult uvk_pool_create(uvk_dev *d, uint32_t max_sets, uint32_t ndesc, uint64_t *out) {
	VkDescriptorPoolSize ps = {VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, ndesc};
	VkDescriptorPoolCreateInfo ci = {0};
	ci.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO;
	ci.maxSets = max_sets;
	ci.poolSizeCount = 1;
	ci.pPoolSizes = &ps;
	VkDescriptorPool p;
	VkResult r = d->CreateDescriptorPool(d->dev, &ci, NULL, &p);
	*out = U(p);
	return r;
}

static void uvk_pool_reset(uvk_dev *d, uint64_t p) { d->ResetDescriptorPool(d->dev, H(VkDescriptorPool, p), 0); }
static void uvk_pool_destroy(uvk_dev *d, uint64_t p) { d->DestroyDescriptorPool(d->dev, H(VkDescriptorPool, p), NULL); }

static VkResult uvk_begin(uvk_dev *d, uint64_t cb) {
	VkCommandBufferBeginInfo bi = {0};
	bi.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;
	bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
	return d->BeginCommandBuffer(H(VkCommandBuffer, cb), &bi);
}

static void uvk_barrier(uvk_dev *d, VkCommandBuffer cb, VkPipelineStageFlags src, VkAccessFlags sa,
	VkPipelineStageFlags dst, VkAccessFlags da) {
	VkMemoryBarrier mb = {0};
	mb.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER;
	mb.srcAccessMask = sa;
	mb.dstAccessMask = da;
	d->CmdPipelineBarrier(cb, src, dst, 0, 1, &mb, 0, NULL, 0, NULL);
}

// A compute/transfer → compute/transfer memory barrier.
static void uvk_compute_barrier(uvk_dev *d, uint64_t cb) {
	uvk_barrier(d, H(VkCommandBuffer, cb), VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
		VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
		VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
		VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT);
}

// Records a buffer-to-buffer copy, after a compute/transfer barrier when
// barrier is set.
static void uvk_copy(uvk_dev *d, uint64_t cb, int barrier, uint64_t src, uint64_t so, uint64_t dst, uint64_t dof, uint64_t n) {
	if (barrier) uvk_compute_barrier(d, cb);
	VkBufferCopy c = {so, dof, n};
	d->CmdCopyBuffer(H(VkCommandBuffer, cb), H(VkBuffer, src), H(VkBuffer, dst), 1, &c);
}

// Ends the command buffer (after a barrier that makes its writes visible
// to the host) and submits it with the fence.
static VkResult uvk_submit(uvk_dev *d, uint64_t cb, uint64_t fence) {
	VkCommandBuffer c = H(VkCommandBuffer, cb);
	uvk_barrier(d, c, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
		VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT, VK_PIPELINE_STAGE_HOST_BIT, VK_ACCESS_HOST_READ_BIT);
	VkResult r = d->EndCommandBuffer(c);
	if (r != VK_SUCCESS) return r;
	VkSubmitInfo si = {0};
	si.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
	si.commandBufferCount = 1;
	si.pCommandBuffers = &c;
	return d->QueueSubmit(d->queue, 1, &si, H(VkFence, fence));
}

// Waits for the fence and resets it.
// A command buffer recorded once and submitted again and again (a
// replayed step graph): begun for simultaneous use, ended after a barrier
// that makes its writes visible to the host, submitted without a fence.
static VkResult uvk_begin_reusable(uvk_dev *d, uint64_t cb) {
	VkCommandBufferBeginInfo bi = {0};
	bi.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;
	bi.flags = VK_COMMAND_BUFFER_USAGE_SIMULTANEOUS_USE_BIT;
	return d->BeginCommandBuffer(H(VkCommandBuffer, cb), &bi);
}

static VkResult uvk_end(uvk_dev *d, uint64_t cb) {
	VkCommandBuffer c = H(VkCommandBuffer, cb);
	uvk_barrier(d, c, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
		VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT, VK_PIPELINE_STAGE_HOST_BIT, VK_ACCESS_HOST_READ_BIT);
	return d->EndCommandBuffer(c);
}

// Ends eager and submits it followed by the recorded command buffer rec,
// with eager's fence (which then covers both).
static VkResult uvk_submit_with(uvk_dev *d, uint64_t eager, uint64_t rec, uint64_t fence) {
	VkResult r = uvk_end(d, eager);
	if (r != VK_SUCCESS) return r;
	VkCommandBuffer c[2] = {H(VkCommandBuffer, eager), H(VkCommandBuffer, rec)};
	VkSubmitInfo si = {0};
	si.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
	si.commandBufferCount = 2;
	si.pCommandBuffers = c;
	return d->QueueSubmit(d->queue, 1, &si, H(VkFence, fence));
}

static VkResult uvk_resubmit(uvk_dev *d, uint64_t cb) {
	VkCommandBuffer c = H(VkCommandBuffer, cb);
	VkSubmitInfo si = {0};
	si.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
	si.commandBufferCount = 1;
	si.pCommandBuffers = &c;
	return d->QueueSubmit(d->queue, 1, &si, VK_NULL_HANDLE);
}

static VkResult uvk_wait(uvk_dev *d, uint64_t fence) {
	VkFence f = H(VkFence, fence);
	VkResult r = d->WaitForFences(d->dev, 1, &f, VK_TRUE, UINT64_MAX);
	if (r != VK_SUCCESS) return r;
	return d->ResetFences(d->dev, 1, &f);
}

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

// Allocates and writes a descriptor set, then records an optional barrier,
// the bindings, the push constants and the dispatch.
static VkResult uvk_dispatch(uvk_dev *d, uvk_dispatch_args *a) {
	VkDescriptorSet set;
	VkDescriptorSetLayout dsl = H(VkDescriptorSetLayout, a->dsl);
	VkDescriptorSetAllocateInfo ai = {0};
	ai.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO;
	ai.descriptorPool = H(VkDescriptorPool, a->pool);
	ai.descriptorSetCount = 1;
	ai.pSetLayouts = &dsl;
	VkResult r = d->AllocateDescriptorSets(d->dev, &ai, &set);
	if (r != VK_SUCCESS) return r;
	VkDescriptorBufferInfo bi[UVK_MAX_BUFS];
	VkWriteDescriptorSet w[UVK_MAX_BUFS];
	memset(w, 0, sizeof w);
	for (uint32_t i = 0; i < a->nbuf; i++) {
		bi[i].buffer = H(VkBuffer, a->buf[i]);
		bi[i].offset = a->off[i];
		bi[i].range = a->rng[i];
		w[i].sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET;
		w[i].dstSet = set;
		w[i].dstBinding = i;
		w[i].descriptorCount = 1;
		w[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
		w[i].pBufferInfo = &bi[i];
	}
	d->UpdateDescriptorSets(d->dev, a->nbuf, w, 0, NULL);
	VkCommandBuffer cb = H(VkCommandBuffer, a->cb);
	VkPipelineLayout layout = H(VkPipelineLayout, a->layout);
	if (a->barrier_before) uvk_compute_barrier(d, a->cb);
	d->CmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, H(VkPipeline, a->pipeline));
	d->CmdBindDescriptorSets(cb, VK_PIPELINE_BIND_POINT_COMPUTE, layout, 0, 1, &set, 0, NULL);
	if (a->push_size) d->CmdPushConstants(cb, layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, a->push_size, a->push);
	if (a->qpool) d->CmdWriteTimestamp(cb, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, H(VkQueryPool, a->qpool), a->query);
	d->CmdDispatch(cb, a->gx, a->gy, a->gz);
	if (a->qpool) d->CmdWriteTimestamp(cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, H(VkQueryPool, a->qpool), a->query + 1);
	return VK_SUCCESS;
}

// A timestamp query pool of n queries.
static VkResult uvk_query_pool_create(uvk_dev *d, uint32_t n, uint64_t *out) {
	VkQueryPoolCreateInfo ci = {0};
	ci.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO;
	ci.queryType = VK_QUERY_TYPE_TIMESTAMP;
	ci.queryCount = n;
	VkQueryPool p;
	VkResult r = d->CreateQueryPool(d->dev, &ci, NULL, &p);
	*out = U(p);
	return r;
}

static void uvk_query_pool_destroy(uvk_dev *d, uint64_t p) { d->DestroyQueryPool(d->dev, H(VkQueryPool, p), NULL); }

static void uvk_query_reset(uvk_dev *d, uint64_t cb, uint64_t p, uint32_t n) {
	d->CmdResetQueryPool(H(VkCommandBuffer, cb), H(VkQueryPool, p), 0, n);
}

// Reads n 64-bit timestamps (the batch has finished).
static VkResult uvk_query_results(uvk_dev *d, uint64_t p, uint32_t n, uint64_t *out) {
	return d->GetQueryPoolResults(d->dev, H(VkQueryPool, p), 0, n, n * sizeof(uint64_t), out, sizeof(uint64_t),
		VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT);
}
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

// caps are the Vulkan 1.1+ properties and features of a device.
type caps struct {
	subgroupSize                                 uint32
	float16, int8, storage16, storage8, bfloat16 bool
	maxAlloc                                     uint64
	driverName, driverInfo                       string
}

func queryCaps(inst vk.Instance, pd vk.PhysicalDevice, api uint32, driverProps bool) caps {
	var c C.uvk_caps
	dp := C.int(0)
	if driverProps {
		dp = 1
	}
	C.uvk_query(C.VkInstance(unsafe.Pointer(inst)), C.VkPhysicalDevice(unsafe.Pointer(pd)), C.uint32_t(api), dp, &c)
	return caps{
		subgroupSize: uint32(c.subgroup_size),
		float16:      c.float16 != 0, int8: c.int8 != 0, storage16: c.storage16 != 0, storage8: c.storage8 != 0,
		maxAlloc:   uint64(c.max_alloc),
		driverName: C.GoString(&c.driver_name[0]), driverInfo: C.GoString(&c.driver_info[0]),
	}
}

// device is a VkDevice with its queue, command pool and entry points.
type device struct {
	d    *C.uvk_dev
	args *C.uvk_dispatch_args // C memory, reused for every dispatch
}

func handle(p unsafe.Pointer) C.uint64_t { return C.uint64_t(uintptr(p)) }

// createDevice creates a logical device with one queue of family qfam,
// with storageBuffer16BitAccess enabled when storage16 is set.
func createDevice(inst vk.Instance, pd vk.PhysicalDevice, qfam uint32, storage16 bool) (*device, error) {
	var d *C.uvk_dev
	if r := C.uvk_dev_create(handle(unsafe.Pointer(inst)), handle(unsafe.Pointer(pd)), C.uint32_t(qfam), cbool(storage16), &d); r != C.VK_SUCCESS {
		return nil, fmt.Errorf("vkCreateDevice: %w", vkErr(vk.Result(r)))
	}
	a := (*C.uvk_dispatch_args)(C.calloc(1, C.size_t(unsafe.Sizeof(C.uvk_dispatch_args{}))))
	return &device{d: d, args: a}, nil
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
	var h [4]C.uint64_t
	var sp *C.uint32_t
	if len(spec) > 0 {
		sp = (*C.uint32_t)(unsafe.Pointer(&spec[0]))
	}
	r := C.uvk_pipeline_create(d.d, C.uint64_t(cache), (*C.uint32_t)(unsafe.Pointer(&code[0])), C.size_t(4*len(code)),
		C.uint32_t(nbuf), C.uint32_t(push), sp, C.uint32_t(len(spec)), &h[0])
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
