//go:build cgo && !novulkan

package vulkan

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"

	vk "github.com/vulkan-go/vulkan"

	"github.com/unclip-go/unclip/tensor"
	"github.com/unclip-go/unclip/tensor/tensortest"
)

// TestDeviceFeatures: every optional feature the device supports is
// enabled (so that the validation layer, which the tests run under, sees
// each shader's capabilities enabled), and the info reports them.
func TestDeviceFeatures(t *testing.T) {
	b := openTest(t)
	info := b.Info()
	have, en := b.phys.caps.features, b.dev.enabled
	t.Logf("supported %+v\nenabled   %+v\nextensions enabled: %q", have, en, deviceExtensions(b.phys.api, en))
	t.Logf("\n%s", info)
	t.Logf("memory: %s", b.plan.describe())
	if want := enableFeatures(have, en.storage16 != have.storage16); en != want {
		t.Errorf("enabled %+v, want %+v", en, want)
	}
	if b.storage16 != en.storage16 {
		t.Errorf("storage16 %v, enabled %v", b.storage16, en.storage16)
	}
	if info.Float16 != have.float16 || info.Storage16Bit != have.storage16 || info.SubgroupSizeControl != have.subgroupSizeControl ||
		info.CoopMatKHR != have.coopMatKHR || info.CoopMatNV != have.coopMatNV || info.VulkanMemoryModel != have.memoryModel {
		t.Errorf("info %+v does not match the features %+v", info, have)
	}
	if info.MaxWorkgroup == 0 || info.MaxWorkgroupSize[0] == 0 || info.MaxWorkgroupCount[0] == 0 || info.MaxSharedMem == 0 {
		t.Errorf("limits missing: %+v", info)
	}
	if info.SubgroupSizeControl && (info.MinSubgroupSize == 0 || info.MaxSubgroupSize < info.MinSubgroupSize) {
		t.Errorf("subgroup sizes %d–%d", info.MinSubgroupSize, info.MaxSubgroupSize)
	}
	// Cooperative matrices: no CPU driver has them; a GPU that does lists
	// its shapes.
	for _, khr := range []bool{true, false} {
		has := have.coopMatNV
		if khr {
			has = have.coopMatKHR
		}
		gemm := b.coopMatGEMM(khr)
		t.Logf("cooperative matrix (KHR %v): feature %v, gemm_coopmat usable %v", khr, has, gemm)
		if gemm && !has {
			t.Errorf("gemm_coopmat (KHR %v) usable without the feature", khr)
		}
		if has && !strings.Contains(info.String(), "cooperative matrix: KHR") {
			t.Errorf("String does not list the cooperative matrices:\n%s", info)
		}
	}
	if info.Type == "cpu" && (b.coopMatGEMM(true) || b.coopMatGEMM(false)) {
		t.Error("a CPU device with cooperative matrices")
	}
	// The out-of-memory error as this device would report it (with
	// VK_EXT_memory_budget's figures where the device has it).
	b.mu.Lock()
	oom := b.memoryError(64<<20, 40<<20, vkErr(vk.ErrorOutOfDeviceMemory))
	b.mu.Unlock()
	t.Logf("VK_EXT_memory_budget %v; %v", b.phys.exts["VK_EXT_memory_budget"], oom)
	if !errors.Is(oom, ErrOutOfDeviceMemory) || !strings.Contains(oom.Error(), info.Name) || !strings.Contains(oom.Error(), "--offload") {
		t.Errorf("out-of-memory error: %v", oom)
	}
	if err := b.checkWorkgroup(int(info.MaxWorkgroup), 1, 1, int(info.MaxSharedMem)); err != nil {
		t.Error(err)
	}
	if err := b.checkWorkgroup(int(info.MaxWorkgroup), 2, 1, 0); err == nil {
		t.Error("a workgroup beyond maxComputeWorkGroupInvocations passed")
	}
}

// subgroupSPIRV is, compiled by glslc --target-env=vulkan1.1 -O:
//
//	#version 450
//	#extension GL_KHR_shader_subgroup_basic : require
//	layout(local_size_x = 64) in;
//	layout(std430, binding = 0) buffer B { uint d[]; };
//	void main() { d[gl_GlobalInvocationID.x] = gl_SubgroupSize; }
var subgroupSPIRV = []uint32{
	0x07230203, 0x00010300, 0x000d000b, 0x0000001b, 0x00000000, 0x00020011, 0x00000001, 0x00020011,
	0x0000003d, 0x0006000b, 0x00000001, 0x4c534c47, 0x6474732e, 0x3035342e, 0x00000000, 0x0003000e,
	0x00000000, 0x00000001, 0x0007000f, 0x00000005, 0x00000004, 0x6e69616d, 0x00000000, 0x0000000f,
	0x00000014, 0x00060010, 0x00000004, 0x00000011, 0x00000040, 0x00000001, 0x00000001, 0x00040047,
	0x00000007, 0x00000006, 0x00000004, 0x00050048, 0x00000008, 0x00000000, 0x00000023, 0x00000000,
	0x00030047, 0x00000008, 0x00000002, 0x00040047, 0x0000000a, 0x00000022, 0x00000000, 0x00040047,
	0x0000000a, 0x00000021, 0x00000000, 0x00040047, 0x0000000f, 0x0000000b, 0x0000001c, 0x00030047,
	0x00000014, 0x00000000, 0x00040047, 0x00000014, 0x0000000b, 0x00000024, 0x00030047, 0x00000015,
	0x00000000, 0x00040047, 0x0000001a, 0x0000000b, 0x00000019, 0x00020013, 0x00000002, 0x00030021,
	0x00000003, 0x00000002, 0x00040015, 0x00000006, 0x00000020, 0x00000000, 0x0003001d, 0x00000007,
	0x00000006, 0x0003001e, 0x00000008, 0x00000007, 0x00040020, 0x00000009, 0x0000000c, 0x00000008,
	0x0004003b, 0x00000009, 0x0000000a, 0x0000000c, 0x00040015, 0x0000000b, 0x00000020, 0x00000001,
	0x0004002b, 0x0000000b, 0x0000000c, 0x00000000, 0x00040017, 0x0000000d, 0x00000006, 0x00000003,
	0x00040020, 0x0000000e, 0x00000001, 0x0000000d, 0x0004003b, 0x0000000e, 0x0000000f, 0x00000001,
	0x0004002b, 0x00000006, 0x00000010, 0x00000000, 0x00040020, 0x00000011, 0x00000001, 0x00000006,
	0x0004003b, 0x00000011, 0x00000014, 0x00000001, 0x00040020, 0x00000016, 0x0000000c, 0x00000006,
	0x0004002b, 0x00000006, 0x00000018, 0x00000040, 0x0004002b, 0x00000006, 0x00000019, 0x00000001,
	0x0006002c, 0x0000000d, 0x0000001a, 0x00000018, 0x00000019, 0x00000019, 0x00050036, 0x00000002,
	0x00000004, 0x00000000, 0x00000003, 0x000200f8, 0x00000005, 0x00050041, 0x00000011, 0x00000012,
	0x0000000f, 0x00000010, 0x0004003d, 0x00000006, 0x00000013, 0x00000012, 0x0004003d, 0x00000006,
	0x00000015, 0x00000014, 0x00060041, 0x00000016, 0x00000017, 0x0000000a, 0x0000000c, 0x00000013,
	0x0003003e, 0x00000017, 0x00000015, 0x000100fd, 0x00010038,
}

// TestRequiredSubgroupSize creates pipelines that require each subgroup
// size the device allows, with full subgroups, and checks the size the
// shader sees, under the validation layer.
func TestRequiredSubgroupSize(t *testing.T) {
	shared := openTest(t)
	info := shared.Info()
	if !info.RequireSubgroupSize || !info.ComputeFullSubgroups {
		t.Skipf("%s: no required subgroup size in compute shaders", info.Name)
	}
	b, err := newBackend(shared.in, info.Index, "vulkan:subgroups", "")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.dev
	if _, err := d.createPipelineWith(0, subgroupSPIRV, 1, 0, nil, pipelineOpts{subgroupSize: 3}); err == nil {
		t.Error("a subgroup size of 3 passed")
	}
	out, err := b.hostMem().get(64 * 4)
	if err != nil {
		t.Fatal(err)
	}
	defer b.hostMem().put(out)
	cb, fence, err := d.createBatch()
	if err != nil {
		t.Fatal(err)
	}
	defer d.destroyFence(fence)
	pool, err := d.createPool(4, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer d.destroyPool(pool)
	for size := info.MinSubgroupSize; size <= min(info.MaxSubgroupSize, 64); size *= 2 {
		h, err := d.createPipelineWith(0, subgroupSPIRV, 1, 0, nil, pipelineOpts{subgroupSize: size, fullSubgroups: true})
		if err != nil {
			t.Fatalf("subgroup size %d: %v", size, err)
		}
		p := &pipeline{name: "subgroup", nbuf: 1, h: h}
		d.resetPool(pool)
		if r := d.begin(cb); r != vk.Success {
			t.Fatal(vkErr(r))
		}
		if r := d.dispatch(cb, pool, p, []binding{{out.blk.buf, out.off, 64 * 4}}, nil, 1, 1, 1, false, 0, 0); r != vk.Success {
			t.Fatal(vkErr(r))
		}
		if r := d.submit(cb, fence); r != vk.Success {
			t.Fatal(vkErr(r))
		}
		if r := d.wait(fence); r != vk.Success {
			t.Fatal(vkErr(r))
		}
		for i := 0; i < 64; i++ {
			if got := binary.LittleEndian.Uint32(out.host()[4*i:]); got != size {
				t.Fatalf("required subgroup size %d: invocation %d sees %d", size, i, got)
			}
		}
		d.destroyPipeline(h)
		t.Logf("subgroup size %d: ok", size)
	}
}

// TestReadback runs reads through host-cached readback buffers, as on a
// discrete GPU whose mapped VRAM is uncached, on this device (its memory
// is cached already, so readback is forced, with an invalidate after each
// copy, and in small pieces): mapped and staged.
func TestReadback(t *testing.T) {
	shared := openTest(t)
	for _, staging := range []string{"0", "1"} {
		t.Run("staging="+staging, func(t *testing.T) {
			b, err := newBackend(shared.in, shared.phys.info.Index, "vulkan:readback"+staging, staging)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			b.mu.Lock()
			var cached []uint32
			for i, f := range b.mem.typeFlags {
				if f&(memHostVisible|memHostCached) == memHostVisible|memHostCached {
					cached = append(cached, uint32(i))
				}
			}
			if len(cached) == 0 {
				b.mu.Unlock()
				t.Skip("no host-cached memory type")
			}
			b.useReadback(cached)
			b.readback.blockSize = 64 << 10 // reads in pieces of 32 KiB
			b.forceReadback = true
			b.forceInvalidate = true
			b.mu.Unlock()
			tensor.Register(b)
			x := tensortest.Rand(31, 70, 333).To(b) // 91 KiB: three pieces
			for i := 0; i < 5; i++ {
				x = tensor.Affine(x, 1, 0.25)
			}
			v, err := x.Float32s()
			if err != nil {
				t.Fatal(err)
			}
			want := tensortest.Rand(31, 70, 333).MustFloat32s()
			for i := range want {
				if math.Abs(float64(v[i]-want[i]-1.25)) > 1e-5 {
					t.Fatalf("at %d: %v, want %v", i, v[i], want[i]+1.25)
				}
			}
			// A read at an offset, of a few bytes.
			raw := make([]byte, 64)
			for i := range raw {
				raw[i] = byte(i * 7)
			}
			st, err := b.Upload(raw)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 13)
			if err := b.Download(st, got, 17); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, raw[17:30]) {
				t.Fatalf("read %v, want %v", got, raw[17:30])
			}
			b.mu.Lock()
			used := len(b.readback.blocks)
			b.mu.Unlock()
			if used == 0 {
				t.Error("no readback buffer was used")
			}
			tensortest.Conformance(t, b, 1e-4)
		})
	}
}
