//go:build cgo && !novulkan

// The C side of the Vulkan backend; see cvk.h. vulkan-go's wrappers pass
// Go memory holding Go pointers to C (a cgocheck panic since Go 1.21 for
// vkCreateDevice and any call taking slices), so every device-level call
// goes through here, through the device's dispatch table.

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cvk.h"

#define H(T, v) ((T)(uintptr_t)(v))
#define U(v) ((uint64_t)(uintptr_t)(v))

// ---- loader: libvulkan.so.1 is opened here, so that only the runtime
// loader is needed (no -dev package at run time).

static void *uvk_lib;
static PFN_vkGetInstanceProcAddr uvk_gipa;
static uvk_instance_table uvk_inst; // of the process's one instance

const char *uvk_load(void) {
	if (uvk_gipa) return NULL;
	uvk_lib = dlopen("libvulkan.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!uvk_lib) uvk_lib = dlopen("libvulkan.so", RTLD_NOW | RTLD_LOCAL);
	if (!uvk_lib) return dlerror();
	uvk_gipa = (PFN_vkGetInstanceProcAddr)dlsym(uvk_lib, "vkGetInstanceProcAddr");
	if (!uvk_gipa) return "libvulkan.so.1 has no vkGetInstanceProcAddr";
	return NULL;
}

void *uvk_gipa_ptr(void) { return (void *)uvk_gipa; }

uint32_t uvk_instance_version(void) {
	PFN_vkEnumerateInstanceVersion f = (PFN_vkEnumerateInstanceVersion)uvk_gipa(NULL, "vkEnumerateInstanceVersion");
	uint32_t v = VK_API_VERSION_1_0;
	if (f) f(&v);
	return v;
}

void uvk_instance_init(VkInstance inst) {
#define LOAD(name) uvk_inst.name = (PFN_vk##name)uvk_gipa(inst, "vk" #name);
	UVK_INSTANCE_FUNCS(LOAD)
#undef LOAD
}

// ---- validation messages: counted and kept (the last few) for tests.

static pthread_mutex_t uvk_msg_mu = PTHREAD_MUTEX_INITIALIZER;
static int uvk_msg_count;
static char uvk_msg_last[4096];

static VKAPI_ATTR VkBool32 VKAPI_CALL uvk_debug_cb(VkDebugUtilsMessageSeverityFlagBitsEXT sev,
	VkDebugUtilsMessageTypeFlagsEXT type, const VkDebugUtilsMessengerCallbackDataEXT *data, void *user) {
	(void)type;
	(void)user;
	if (sev < VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT) return VK_FALSE;
	const char *msg = data && data->pMessage ? data->pMessage : "(no message)";
	pthread_mutex_lock(&uvk_msg_mu);
	uvk_msg_count++;
	snprintf(uvk_msg_last, sizeof uvk_msg_last, "%s", msg);
	pthread_mutex_unlock(&uvk_msg_mu);
	fprintf(stderr, "vulkan validation: %s\n", msg);
	return VK_FALSE;
}

int uvk_messages(char *last, int n) {
	pthread_mutex_lock(&uvk_msg_mu);
	int c = uvk_msg_count;
	snprintf(last, n, "%s", uvk_msg_last);
	pthread_mutex_unlock(&uvk_msg_mu);
	return c;
}

VkResult uvk_create_messenger(VkInstance inst, VkDebugUtilsMessengerEXT *out) {
	(void)inst;
	if (!uvk_inst.CreateDebugUtilsMessengerEXT) return VK_ERROR_EXTENSION_NOT_PRESENT;
	VkDebugUtilsMessengerCreateInfoEXT ci = {0};
	ci.sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT;
	ci.messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
	ci.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
		VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT;
	ci.pfnUserCallback = uvk_debug_cb;
	return uvk_inst.CreateDebugUtilsMessengerEXT(inst, &ci, NULL, out);
}

void uvk_destroy_messenger(VkInstance inst, VkDebugUtilsMessengerEXT m) {
	if (uvk_inst.DestroyDebugUtilsMessengerEXT && m) uvk_inst.DestroyDebugUtilsMessengerEXT(inst, m, NULL);
}

// ---- physical-device queries (Vulkan 1.1: Properties2 / Features2).

// Prepends s, a structure with sType and pNext, to the chain at *head.
#define CHAIN(head, s)                                                                                                 \
	do {                                                                                                           \
		(s).pNext = *(head);                                                                                   \
		*(head) = &(s);                                                                                        \
	} while (0)

void uvk_query(VkPhysicalDevice pd, uint32_t api, uint32_t chain, uvk_caps *out) {
	memset(out, 0, sizeof *out);
	if (api < VK_API_VERSION_1_1) return;
	if (uvk_inst.GetPhysicalDeviceProperties2) {
		VkPhysicalDeviceProperties2 p2 = {0};
		p2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2;
		VkPhysicalDeviceSubgroupProperties sg = {0};
		sg.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES;
		VkPhysicalDeviceMaintenance3Properties m3 = {0};
		m3.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES;
		VkPhysicalDeviceDriverProperties dp = {0};
		dp.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES;
		VkPhysicalDeviceSubgroupSizeControlProperties ssc = {0};
		ssc.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_PROPERTIES;
		VkPhysicalDeviceCooperativeMatrixPropertiesKHR ckhr = {0};
		ckhr.sType = UVK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_PROPERTIES_KHR;
		VkPhysicalDeviceCooperativeMatrixPropertiesNV cnv = {0};
		cnv.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_PROPERTIES_NV;
		void *head = NULL;
		CHAIN(&head, sg);
		CHAIN(&head, m3);
		if (chain & UVK_Q_DRIVER) CHAIN(&head, dp);
		if (chain & UVK_Q_SUBGROUP_SIZE) CHAIN(&head, ssc);
		if (chain & UVK_Q_COOPMAT_KHR) CHAIN(&head, ckhr);
		if (chain & UVK_Q_COOPMAT_NV) CHAIN(&head, cnv);
		p2.pNext = head;
		uvk_inst.GetPhysicalDeviceProperties2(pd, &p2);
		out->subgroup_size = sg.subgroupSize;
		out->max_alloc = m3.maxMemoryAllocationSize;
		out->min_subgroup_size = ssc.minSubgroupSize;
		out->max_subgroup_size = ssc.maxSubgroupSize;
		out->max_workgroup_subgroups = ssc.maxComputeWorkgroupSubgroups;
		out->required_subgroup_size_stages = ssc.requiredSubgroupSizeStages;
		out->coopmat_khr_stages = ckhr.cooperativeMatrixSupportedStages;
		out->coopmat_nv_stages = cnv.cooperativeMatrixSupportedStages;
		if (chain & UVK_Q_DRIVER) {
			out->driver_id = dp.driverID;
			memcpy(out->driver_name, dp.driverName, sizeof out->driver_name);
			memcpy(out->driver_info, dp.driverInfo, sizeof out->driver_info);
			out->driver_name[sizeof out->driver_name - 1] = 0;
			out->driver_info[sizeof out->driver_info - 1] = 0;
		}
	}
	if (uvk_inst.GetPhysicalDeviceFeatures2) {
		VkPhysicalDeviceFeatures2 f2 = {0};
		f2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2;
		VkPhysicalDeviceShaderFloat16Int8Features f16 = {0};
		f16.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES;
		VkPhysicalDevice16BitStorageFeatures s16 = {0};
		s16.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES;
		VkPhysicalDevice8BitStorageFeatures s8 = {0};
		s8.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES;
		VkPhysicalDeviceSubgroupSizeControlFeatures ssc = {0};
		ssc.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_FEATURES;
		VkPhysicalDeviceVulkanMemoryModelFeatures mm = {0};
		mm.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_MEMORY_MODEL_FEATURES;
		VkPhysicalDeviceCooperativeMatrixFeaturesKHR ckhr = {0};
		ckhr.sType = UVK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_KHR;
		VkPhysicalDeviceCooperativeMatrixFeaturesNV cnv = {0};
		cnv.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV;
		void *head = NULL;
		if (chain & UVK_Q_FLOAT16_INT8) CHAIN(&head, f16);
		if (chain & UVK_Q_STORAGE16) CHAIN(&head, s16);
		if (chain & UVK_Q_STORAGE8) CHAIN(&head, s8);
		if (chain & UVK_Q_SUBGROUP_SIZE) CHAIN(&head, ssc);
		if (chain & UVK_Q_MEMORY_MODEL) CHAIN(&head, mm);
		if (chain & UVK_Q_COOPMAT_KHR) CHAIN(&head, ckhr);
		if (chain & UVK_Q_COOPMAT_NV) CHAIN(&head, cnv);
		f2.pNext = head;
		uvk_inst.GetPhysicalDeviceFeatures2(pd, &f2);
		uvk_features *f = &out->f;
		f->float16 = f16.shaderFloat16;
		f->int8 = f16.shaderInt8;
		f->storage16 = s16.storageBuffer16BitAccess;
		f->storage8 = s8.storageBuffer8BitAccess;
		f->subgroup_size_control = ssc.subgroupSizeControl;
		f->full_subgroups = ssc.computeFullSubgroups;
		f->memory_model = mm.vulkanMemoryModel;
		f->memory_model_device_scope = mm.vulkanMemoryModelDeviceScope;
		f->coopmat_khr = ckhr.cooperativeMatrix;
		f->coopmat_nv = cnv.cooperativeMatrix;
	}
}

uint32_t uvk_coopmat_shapes(VkPhysicalDevice pd, int khr, uvk_coopmat_shape *out, uint32_t max) {
	uint32_t n = 0;
	if (khr) {
		PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR f = uvk_inst.GetPhysicalDeviceCooperativeMatrixPropertiesKHR;
		if (!f || f(pd, &n, NULL) != VK_SUCCESS || n == 0) return 0;
		VkCooperativeMatrixPropertiesKHR *p = calloc(n, sizeof *p);
		if (!p) return 0;
		for (uint32_t i = 0; i < n; i++) p[i].sType = UVK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_KHR;
		VkResult r = f(pd, &n, p);
		if (r != VK_SUCCESS && r != VK_INCOMPLETE) n = 0;
		for (uint32_t i = 0; i < n && i < max; i++) {
			uvk_coopmat_shape s = {p[i].MSize, p[i].NSize, p[i].KSize, (int32_t)p[i].AType, (int32_t)p[i].BType,
				(int32_t)p[i].CType, (int32_t)p[i].ResultType, p[i].saturatingAccumulation, (int32_t)p[i].scope};
			out[i] = s;
		}
		free(p);
		return n;
	}
	PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesNV f = uvk_inst.GetPhysicalDeviceCooperativeMatrixPropertiesNV;
	if (!f || f(pd, &n, NULL) != VK_SUCCESS || n == 0) return 0;
	VkCooperativeMatrixPropertiesNV *p = calloc(n, sizeof *p);
	if (!p) return 0;
	for (uint32_t i = 0; i < n; i++) p[i].sType = VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_NV;
	VkResult r = f(pd, &n, p);
	if (r != VK_SUCCESS && r != VK_INCOMPLETE) n = 0;
	for (uint32_t i = 0; i < n && i < max; i++) {
		uvk_coopmat_shape s = {p[i].MSize, p[i].NSize, p[i].KSize, (int32_t)p[i].AType, (int32_t)p[i].BType,
			(int32_t)p[i].CType, (int32_t)p[i].DType, 0, (int32_t)p[i].scope};
		out[i] = s;
	}
	free(p);
	return n;
}

int uvk_heap_budget(VkPhysicalDevice pd, uint32_t heap, uint64_t *budget, uint64_t *usage) {
	*budget = *usage = 0;
	if (!uvk_inst.GetPhysicalDeviceMemoryProperties2 || heap >= VK_MAX_MEMORY_HEAPS) return 0;
	VkPhysicalDeviceMemoryBudgetPropertiesEXT b = {0};
	b.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT;
	VkPhysicalDeviceMemoryProperties2 p = {0};
	p.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2;
	p.pNext = &b;
	uvk_inst.GetPhysicalDeviceMemoryProperties2(pd, &p);
	if (heap >= p.memoryProperties.memoryHeapCount || b.heapBudget[heap] == 0) return 0;
	*budget = b.heapBudget[heap];
	*usage = b.heapUsage[heap];
	return 1;
}

// ---- devices.

VkResult uvk_dev_create(VkPhysicalDevice pd, uint32_t qfam, const uvk_features *en, const char *const *exts,
	uint32_t nexts, uvk_dev **out) {
	*out = NULL;
	if (!uvk_inst.CreateDevice || !uvk_inst.GetDeviceProcAddr) return VK_ERROR_INITIALIZATION_FAILED;
	float prio = 1.0f;
	VkDeviceQueueCreateInfo qi = {0};
	qi.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO;
	qi.queueFamilyIndex = qfam;
	qi.queueCount = 1;
	qi.pQueuePriorities = &prio;

	VkPhysicalDeviceShaderFloat16Int8Features f16 = {0};
	f16.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES;
	f16.shaderFloat16 = en->float16 ? VK_TRUE : VK_FALSE;
	f16.shaderInt8 = en->int8 ? VK_TRUE : VK_FALSE;
	VkPhysicalDevice16BitStorageFeatures s16 = {0};
	s16.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES;
	s16.storageBuffer16BitAccess = en->storage16 ? VK_TRUE : VK_FALSE;
	VkPhysicalDevice8BitStorageFeatures s8 = {0};
	s8.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES;
	s8.storageBuffer8BitAccess = en->storage8 ? VK_TRUE : VK_FALSE;
	VkPhysicalDeviceSubgroupSizeControlFeatures ssc = {0};
	ssc.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_FEATURES;
	ssc.subgroupSizeControl = en->subgroup_size_control ? VK_TRUE : VK_FALSE;
	ssc.computeFullSubgroups = en->full_subgroups ? VK_TRUE : VK_FALSE;
	VkPhysicalDeviceVulkanMemoryModelFeatures mm = {0};
	mm.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_MEMORY_MODEL_FEATURES;
	mm.vulkanMemoryModel = en->memory_model ? VK_TRUE : VK_FALSE;
	mm.vulkanMemoryModelDeviceScope = en->memory_model_device_scope ? VK_TRUE : VK_FALSE;
	VkPhysicalDeviceCooperativeMatrixFeaturesKHR ckhr = {0};
	ckhr.sType = UVK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_KHR;
	ckhr.cooperativeMatrix = en->coopmat_khr ? VK_TRUE : VK_FALSE;
	VkPhysicalDeviceCooperativeMatrixFeaturesNV cnv = {0};
	cnv.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV;
	cnv.cooperativeMatrix = en->coopmat_nv ? VK_TRUE : VK_FALSE;
	void *head = NULL;
	if (en->float16 || en->int8) CHAIN(&head, f16);
	if (en->storage16) CHAIN(&head, s16);
	if (en->storage8) CHAIN(&head, s8);
	if (en->subgroup_size_control || en->full_subgroups) CHAIN(&head, ssc);
	if (en->memory_model || en->memory_model_device_scope) CHAIN(&head, mm);
	if (en->coopmat_khr) CHAIN(&head, ckhr);
	if (en->coopmat_nv) CHAIN(&head, cnv);

	VkDeviceCreateInfo ci = {0};
	ci.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO;
	ci.pNext = head;
	ci.queueCreateInfoCount = 1;
	ci.pQueueCreateInfos = &qi;
	ci.enabledExtensionCount = nexts;
	ci.ppEnabledExtensionNames = nexts ? exts : NULL;
	VkDevice dev;
	VkResult r = uvk_inst.CreateDevice(pd, &ci, NULL, &dev);
	if (r != VK_SUCCESS) return r;
	uvk_dev *d = calloc(1, sizeof *d);
	if (!d) {
		PFN_vkDestroyDevice destroy = (PFN_vkDestroyDevice)uvk_inst.GetDeviceProcAddr(dev, "vkDestroyDevice");
		if (destroy) destroy(dev, NULL);
		return VK_ERROR_OUT_OF_HOST_MEMORY;
	}
	d->dev = dev;
	int ok = 1;
#define LOAD(name)                                                                                                     \
	d->vk.name = (PFN_vk##name)uvk_inst.GetDeviceProcAddr(dev, "vk" #name);                                        \
	ok = ok && d->vk.name;
	UVK_DEVICE_FUNCS(LOAD)
#undef LOAD
	if (!ok) {
		PFN_vkDestroyDevice destroy = (PFN_vkDestroyDevice)uvk_inst.GetDeviceProcAddr(dev, "vkDestroyDevice");
		if (destroy) destroy(dev, NULL);
		free(d);
		return VK_ERROR_INITIALIZATION_FAILED;
	}
	d->vk.GetDeviceQueue(dev, qfam, 0, &d->queue);
	VkCommandPoolCreateInfo pi = {0};
	pi.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO;
	pi.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
	pi.queueFamilyIndex = qfam;
	r = d->vk.CreateCommandPool(dev, &pi, NULL, &d->cmd_pool);
	if (r != VK_SUCCESS) {
		d->vk.DestroyDevice(dev, NULL);
		free(d);
		return r;
	}
	*out = d;
	return VK_SUCCESS;
}

void uvk_dev_destroy(uvk_dev *d) {
	d->vk.DeviceWaitIdle(d->dev);
	d->vk.DestroyCommandPool(d->dev, d->cmd_pool, NULL);
	d->vk.DestroyDevice(d->dev, NULL);
	free(d);
}

VkResult uvk_wait_idle(uvk_dev *d) { return d->vk.DeviceWaitIdle(d->dev); }

// Creates a storage buffer of size bytes bound to its own allocation of
// memory type mem_type, persistently mapped (the whole allocation) when
// map is set. A memory type the buffer cannot use is
// VK_ERROR_FEATURE_NOT_PRESENT.
VkResult uvk_buffer_create(uvk_dev *d, uint64_t size, uint32_t mem_type, int map, uint64_t *buf, uint64_t *mem,
	void **mapped) {
	*mapped = NULL;
	VkBufferCreateInfo bi = {0};
	bi.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO;
	bi.size = size;
	bi.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
	bi.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
	VkBuffer b;
	VkResult r = d->vk.CreateBuffer(d->dev, &bi, NULL, &b);
	if (r != VK_SUCCESS) return r;
	VkMemoryRequirements req;
	d->vk.GetBufferMemoryRequirements(d->dev, b, &req);
	if (mem_type >= 32 || !(req.memoryTypeBits & (1u << mem_type))) {
		d->vk.DestroyBuffer(d->dev, b, NULL);
		return VK_ERROR_FEATURE_NOT_PRESENT;
	}
	VkMemoryAllocateInfo ai = {0};
	ai.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO;
	ai.allocationSize = req.size;
	ai.memoryTypeIndex = mem_type;
	VkDeviceMemory m;
	r = d->vk.AllocateMemory(d->dev, &ai, NULL, &m);
	if (r != VK_SUCCESS) {
		d->vk.DestroyBuffer(d->dev, b, NULL);
		return r;
	}
	r = d->vk.BindBufferMemory(d->dev, b, m, 0);
	if (r == VK_SUCCESS && map) r = d->vk.MapMemory(d->dev, m, 0, VK_WHOLE_SIZE, 0, mapped);
	if (r != VK_SUCCESS) {
		*mapped = NULL;
		d->vk.DestroyBuffer(d->dev, b, NULL);
		d->vk.FreeMemory(d->dev, m, NULL);
		return r;
	}
	*buf = U(b);
	*mem = U(m);
	return VK_SUCCESS;
}

void uvk_buffer_destroy(uvk_dev *d, uint64_t buf, uint64_t mem, int mapped) {
	if (mapped) d->vk.UnmapMemory(d->dev, H(VkDeviceMemory, mem));
	d->vk.DestroyBuffer(d->dev, H(VkBuffer, buf), NULL);
	d->vk.FreeMemory(d->dev, H(VkDeviceMemory, mem), NULL);
}

VkResult uvk_invalidate(uvk_dev *d, uint64_t mem) {
	VkMappedMemoryRange r = {0};
	r.sType = VK_STRUCTURE_TYPE_MAPPED_MEMORY_RANGE;
	r.memory = H(VkDeviceMemory, mem);
	r.offset = 0;
	r.size = VK_WHOLE_SIZE;
	return d->vk.InvalidateMappedMemoryRanges(d->dev, 1, &r);
}

// Creates a compute pipeline with nbuf storage-buffer bindings and a
// push-constant range of push_size bytes; h receives the shader module,
// descriptor-set layout, pipeline layout and pipeline. spec[i] (i < nspec)
// sets specialization constant i, where spec[i] != 0.
VkResult uvk_pipeline_create(uvk_dev *d, uint64_t cache, const uint32_t *code, size_t code_size, uint32_t nbuf,
	uint32_t push_size, const uint32_t *spec, uint32_t nspec, uint32_t required_subgroup_size, uint32_t stage_flags,
	uint64_t h[4]) {
	memset(h, 0, 4 * sizeof h[0]);
	VkShaderModuleCreateInfo mi = {0};
	mi.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO;
	mi.codeSize = code_size;
	mi.pCode = code;
	VkShaderModule mod;
	VkResult r = d->vk.CreateShaderModule(d->dev, &mi, NULL, &mod);
	if (r != VK_SUCCESS) return r;
	h[0] = U(mod);
	VkDescriptorSetLayoutBinding binds[UVK_MAX_BUFS];
	memset(binds, 0, sizeof binds);
	if (nbuf > UVK_MAX_BUFS) return VK_ERROR_INITIALIZATION_FAILED;
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
	r = d->vk.CreateDescriptorSetLayout(d->dev, &li, NULL, &dsl);
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
	r = d->vk.CreatePipelineLayout(d->dev, &pli, NULL, &layout);
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
	VkPipelineShaderStageRequiredSubgroupSizeCreateInfo rs = {0};
	rs.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_REQUIRED_SUBGROUP_SIZE_CREATE_INFO;
	rs.requiredSubgroupSize = required_subgroup_size;
	VkComputePipelineCreateInfo ci = {0};
	ci.sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO;
	ci.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
	ci.stage.pNext = required_subgroup_size ? &rs : NULL;
	ci.stage.flags = stage_flags;
	ci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
	ci.stage.module = mod;
	ci.stage.pName = "main";
	ci.stage.pSpecializationInfo = ns ? &si : NULL;
	ci.layout = layout;
	VkPipeline p;
	r = d->vk.CreateComputePipelines(d->dev, H(VkPipelineCache, cache), 1, &ci, NULL, &p);
	if (r != VK_SUCCESS) return r;
	h[3] = U(p);
	return VK_SUCCESS;
}

void uvk_pipeline_destroy(uvk_dev *d, uint64_t h[4]) {
	if (h[3]) d->vk.DestroyPipeline(d->dev, H(VkPipeline, h[3]), NULL);
	if (h[2]) d->vk.DestroyPipelineLayout(d->dev, H(VkPipelineLayout, h[2]), NULL);
	if (h[1]) d->vk.DestroyDescriptorSetLayout(d->dev, H(VkDescriptorSetLayout, h[1]), NULL);
	if (h[0]) d->vk.DestroyShaderModule(d->dev, H(VkShaderModule, h[0]), NULL);
}

VkResult uvk_cache_create(uvk_dev *d, const void *data, size_t n, uint64_t *out) {
	VkPipelineCacheCreateInfo ci = {0};
	ci.sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO;
	ci.initialDataSize = n;
	ci.pInitialData = data;
	VkPipelineCache c;
	VkResult r = d->vk.CreatePipelineCache(d->dev, &ci, NULL, &c);
	*out = r == VK_SUCCESS ? U(c) : 0;
	return r;
}

// Copies at most n bytes of the cache into buf (NULL: returns the size).
size_t uvk_cache_data(uvk_dev *d, uint64_t cache, void *buf, size_t n) {
	size_t sz = n;
	VkResult r = d->vk.GetPipelineCacheData(d->dev, H(VkPipelineCache, cache), &sz, buf);
	if (r != VK_SUCCESS && r != VK_INCOMPLETE) return 0;
	return sz;
}

void uvk_cache_destroy(uvk_dev *d, uint64_t c) { d->vk.DestroyPipelineCache(d->dev, H(VkPipelineCache, c), NULL); }

// A command buffer and an unsignalled fence.
VkResult uvk_batch_create(uvk_dev *d, uint64_t *cb, uint64_t *fence) {
	VkCommandBufferAllocateInfo ai = {0};
	ai.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO;
	ai.commandPool = d->cmd_pool;
	ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
	ai.commandBufferCount = 1;
	VkCommandBuffer c;
	VkResult r = d->vk.AllocateCommandBuffers(d->dev, &ai, &c);
	if (r != VK_SUCCESS) return r;
	VkFenceCreateInfo fi = {0};
	fi.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO;
	VkFence f;
	r = d->vk.CreateFence(d->dev, &fi, NULL, &f);
	*cb = U(c);
	*fence = r == VK_SUCCESS ? U(f) : 0;
	return r;
}

void uvk_fence_destroy(uvk_dev *d, uint64_t f) { d->vk.DestroyFence(d->dev, H(VkFence, f), NULL); }

VkResult uvk_pool_create(uvk_dev *d, uint32_t max_sets, uint32_t ndesc, uint64_t *out) {
	VkDescriptorPoolSize ps = {VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, ndesc};
	VkDescriptorPoolCreateInfo ci = {0};
	ci.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO;
	ci.maxSets = max_sets;
	ci.poolSizeCount = 1;
	ci.pPoolSizes = &ps;
	VkDescriptorPool p;
	VkResult r = d->vk.CreateDescriptorPool(d->dev, &ci, NULL, &p);
	*out = r == VK_SUCCESS ? U(p) : 0;
	return r;
}

void uvk_pool_reset(uvk_dev *d, uint64_t p) { d->vk.ResetDescriptorPool(d->dev, H(VkDescriptorPool, p), 0); }
void uvk_pool_destroy(uvk_dev *d, uint64_t p) { d->vk.DestroyDescriptorPool(d->dev, H(VkDescriptorPool, p), NULL); }

VkResult uvk_begin(uvk_dev *d, uint64_t cb) {
	VkCommandBufferBeginInfo bi = {0};
	bi.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;
	bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
	return d->vk.BeginCommandBuffer(H(VkCommandBuffer, cb), &bi);
}

// A command buffer recorded once and submitted again and again (a
// replayed step graph): begun for simultaneous use, ended after a barrier
// that makes its writes visible to the host, submitted without a fence.
VkResult uvk_begin_reusable(uvk_dev *d, uint64_t cb) {
	VkCommandBufferBeginInfo bi = {0};
	bi.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;
	bi.flags = VK_COMMAND_BUFFER_USAGE_SIMULTANEOUS_USE_BIT;
	return d->vk.BeginCommandBuffer(H(VkCommandBuffer, cb), &bi);
}

static void uvk_barrier(uvk_dev *d, VkCommandBuffer cb, VkPipelineStageFlags src, VkAccessFlags sa,
	VkPipelineStageFlags dst, VkAccessFlags da) {
	VkMemoryBarrier mb = {0};
	mb.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER;
	mb.srcAccessMask = sa;
	mb.dstAccessMask = da;
	d->vk.CmdPipelineBarrier(cb, src, dst, 0, 1, &mb, 0, NULL, 0, NULL);
}

// A compute/transfer → compute/transfer memory barrier.
void uvk_compute_barrier(uvk_dev *d, uint64_t cb) {
	uvk_barrier(d, H(VkCommandBuffer, cb), VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
		VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
		VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
		VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT |
			VK_ACCESS_TRANSFER_WRITE_BIT);
}

// Records a buffer-to-buffer copy, after a compute/transfer barrier when
// barrier is set.
void uvk_copy(uvk_dev *d, uint64_t cb, int barrier, uint64_t src, uint64_t so, uint64_t dst, uint64_t dof, uint64_t n) {
	if (barrier) uvk_compute_barrier(d, cb);
	VkBufferCopy c = {so, dof, n};
	d->vk.CmdCopyBuffer(H(VkCommandBuffer, cb), H(VkBuffer, src), H(VkBuffer, dst), 1, &c);
}

// Ends the command buffer after a barrier that makes its writes visible to
// the host.
VkResult uvk_end(uvk_dev *d, uint64_t cb) {
	VkCommandBuffer c = H(VkCommandBuffer, cb);
	uvk_barrier(d, c, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
		VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT, VK_PIPELINE_STAGE_HOST_BIT, VK_ACCESS_HOST_READ_BIT);
	return d->vk.EndCommandBuffer(c);
}

static VkResult uvk_queue_submit(uvk_dev *d, const VkCommandBuffer *c, uint32_t n, uint64_t fence) {
	VkSubmitInfo si = {0};
	si.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
	si.commandBufferCount = n;
	si.pCommandBuffers = c;
	return d->vk.QueueSubmit(d->queue, 1, &si, H(VkFence, fence));
}

// Ends the command buffer (uvk_end) and submits it with the fence.
VkResult uvk_submit(uvk_dev *d, uint64_t cb, uint64_t fence) {
	VkResult r = uvk_end(d, cb);
	if (r != VK_SUCCESS) return r;
	VkCommandBuffer c = H(VkCommandBuffer, cb);
	return uvk_queue_submit(d, &c, 1, fence);
}

// Ends eager and submits it followed by the recorded command buffer rec,
// with eager's fence (which then covers both).
VkResult uvk_submit_with(uvk_dev *d, uint64_t eager, uint64_t rec, uint64_t fence) {
	VkResult r = uvk_end(d, eager);
	if (r != VK_SUCCESS) return r;
	VkCommandBuffer c[2] = {H(VkCommandBuffer, eager), H(VkCommandBuffer, rec)};
	return uvk_queue_submit(d, c, 2, fence);
}

VkResult uvk_resubmit(uvk_dev *d, uint64_t cb) {
	VkCommandBuffer c = H(VkCommandBuffer, cb);
	return uvk_queue_submit(d, &c, 1, 0);
}

// Waits for the fence and resets it.
VkResult uvk_wait(uvk_dev *d, uint64_t fence) {
	VkFence f = H(VkFence, fence);
	VkResult r = d->vk.WaitForFences(d->dev, 1, &f, VK_TRUE, UINT64_MAX);
	if (r != VK_SUCCESS) return r;
	return d->vk.ResetFences(d->dev, 1, &f);
}

// Allocates and writes a descriptor set, then records an optional barrier,
// the bindings, the push constants and the dispatch.
VkResult uvk_dispatch(uvk_dev *d, uvk_dispatch_args *a) {
	if (a->nbuf > UVK_MAX_BUFS || a->push_size > UVK_MAX_PUSH) return VK_ERROR_INITIALIZATION_FAILED;
	VkDescriptorSet set;
	VkDescriptorSetLayout dsl = H(VkDescriptorSetLayout, a->dsl);
	VkDescriptorSetAllocateInfo ai = {0};
	ai.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO;
	ai.descriptorPool = H(VkDescriptorPool, a->pool);
	ai.descriptorSetCount = 1;
	ai.pSetLayouts = &dsl;
	VkResult r = d->vk.AllocateDescriptorSets(d->dev, &ai, &set);
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
	d->vk.UpdateDescriptorSets(d->dev, a->nbuf, w, 0, NULL);
	VkCommandBuffer cb = H(VkCommandBuffer, a->cb);
	VkPipelineLayout layout = H(VkPipelineLayout, a->layout);
	if (a->barrier_before) uvk_compute_barrier(d, a->cb);
	d->vk.CmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, H(VkPipeline, a->pipeline));
	d->vk.CmdBindDescriptorSets(cb, VK_PIPELINE_BIND_POINT_COMPUTE, layout, 0, 1, &set, 0, NULL);
	if (a->push_size) d->vk.CmdPushConstants(cb, layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, a->push_size, a->push);
	if (a->qpool) d->vk.CmdWriteTimestamp(cb, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, H(VkQueryPool, a->qpool), a->query);
	d->vk.CmdDispatch(cb, a->gx, a->gy, a->gz);
	if (a->qpool)
		d->vk.CmdWriteTimestamp(cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, H(VkQueryPool, a->qpool), a->query + 1);
	return VK_SUCCESS;
}

// A timestamp query pool of n queries.
VkResult uvk_query_pool_create(uvk_dev *d, uint32_t n, uint64_t *out) {
	VkQueryPoolCreateInfo ci = {0};
	ci.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO;
	ci.queryType = VK_QUERY_TYPE_TIMESTAMP;
	ci.queryCount = n;
	VkQueryPool p;
	VkResult r = d->vk.CreateQueryPool(d->dev, &ci, NULL, &p);
	*out = r == VK_SUCCESS ? U(p) : 0;
	return r;
}

void uvk_query_pool_destroy(uvk_dev *d, uint64_t p) { d->vk.DestroyQueryPool(d->dev, H(VkQueryPool, p), NULL); }

void uvk_query_reset(uvk_dev *d, uint64_t cb, uint64_t p, uint32_t n) {
	d->vk.CmdResetQueryPool(H(VkCommandBuffer, cb), H(VkQueryPool, p), 0, n);
}

// Reads n 64-bit timestamps (the batch has finished).
VkResult uvk_query_results(uvk_dev *d, uint64_t p, uint32_t n, uint64_t *out) {
	return d->vk.GetQueryPoolResults(d->dev, H(VkQueryPool, p), 0, n, n * sizeof(uint64_t), out, sizeof(uint64_t),
		VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT);
}
