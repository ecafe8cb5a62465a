// Package vulkan is the Vulkan compute backend: every op of package tensor
// runs as a SPIR-V compute shader (package shaders) on a Vulkan device.
//
// Loading: the backend opens libvulkan.so.1 itself at run time (dlopen)
// and hands its vkGetInstanceProcAddr to github.com/vulkan-go/vulkan, which
// creates the instance and enumerates devices. Every device-level call
// (memory, pipelines, command buffers, submission) goes through this
// package's own small C layer (cvk.c, cvk.h; Go wrappers in cvk.go) and
// the device's one dispatch table, filled from vkGetDeviceProcAddr:
// vulkan-go passes Go memory holding Go pointers to C for vkCreateDevice
// and for any call taking slices, which Go's cgo checks reject, and it
// copies every struct per call, which has no place in the per-dispatch
// path. A user needs only the Vulkan loader and a driver; building needs
// cgo and a C compiler, never a Vulkan SDK or shader compiler: the Khronos
// API headers are in include/ and the SPIR-V is committed.
//
// Memory: storage is sub-allocated from large blocks (at most
// maxMemoryAllocationSize, bound ranges at most maxStorageBufferRange and
// always computed). Where device memory is host-visible (integrated and
// CPU devices, resizable-BAR GPUs) it is mapped once and uploads are plain
// copies; otherwise (or with UNCLIP_VK_STAGING=1) storage stays
// device-local and transfers go through staging buffers. Reads of memory
// mapped uncached (VRAM through a BAR) are copied on the device into
// host-cached buffers first. A discrete GPU's storage lives in its
// device-local memory only: when that runs out, allocation fails with
// ErrOutOfDeviceMemory (naming the device, the request and the heap),
// never silently moving tensors to system RAM (memplan.go).
//
// Features: every optional feature the shaders use (shaderFloat16,
// 16-bit and 8-bit storage, subgroup size control, the Vulkan memory model,
// KHR and NV cooperative matrices) is queried through
// VkPhysicalDeviceFeatures2 and enabled at device creation where the
// device has it; DeviceInfo reports them, with the cooperative-matrix
// shapes, and shaders are chosen by these feature bits, not by extension
// names.
// Unreachable tensors return their memory through runtime cleanups once
// the work that used them has finished; before growing, the allocator runs
// the garbage collector, since device memory is invisible to it.
//
// Execution: ops are recorded into command buffers (one descriptor set and
// one push-constant block per dispatch) and submitted in batches, with a
// barrier only before a dispatch that depends on an earlier one of the
// batch; the host waits only to read a tensor (Download), in Sync, and when
// several batches are already in flight. Pipelines are created on first
// use, specialised per shape class (workgroup size, kernel size, head
// size) through specialization constants, and kept in a VkPipelineCache
// saved under the user cache directory (os.UserCacheDir()/unclip).
// SetProfile and Profile time every dispatch with timestamp queries.
//
// Precision: every op accepts F16 and BF16 operands and results besides
// F32 (the scheduler step's result stays F32). Shaders compute in float32
// (accumulation, softmax, norm statistics) and round once on store, as the
// CPU reference; the dtypes of the destination, main source and weights
// are specialization constants (common.glsl). Where the device has
// storageBuffer16BitAccess (enabled at device creation) a shader with
// 16-bit operands runs its STORAGE16 variant (uint16_t loads and stores);
// elsewhere halves are packed two to a 32-bit word and stored with atomics
// (UNCLIP_VK_NO_STORAGE16=1 forces that path). SupportsF16 tells a caller
// whether F16 activations suit the device.
//
// Errors: out-of-memory, device loss and limits surface as errors naming
// the op, the sizes and, for a failed batch, its ops; an embedding id out
// of range fails the next read.
//
// Set UNCLIP_VK_VALIDATION=1 to enable VK_LAYER_KHRONOS_validation; its
// warnings and errors are printed and counted (ValidationMessages). The
// tests turn it on whenever the layer is installed.
//
// The backend is built with cgo and without the novulkan tag; otherwise a
// stub reports ErrUnavailable. This package must not import nn or models.
package vulkan
