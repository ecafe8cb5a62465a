//go:build cgo && !novulkan

package vulkan

import (
	"errors"
	"slices"
	"strings"
	"testing"

	vk "github.com/vulkan-go/vulkan"
)

const (
	gib = uint64(1) << 30
	mib = uint64(1) << 20

	dl  = memDeviceLocal
	hv  = memHostVisible
	hc  = memHostCoherent
	hca = memHostCached
)

// Memory-properties tables of the kinds of device the backend meets, as
// their drivers report them.
var (
	// A discrete GPU without resizable BAR: VRAM, system memory, and a
	// 256 MiB host-visible window into VRAM on a heap of its own.
	discreteBAR = memProps{
		heaps: []memHeap{{24 * gib, true}, {32 * gib, false}, {256 * mib, true}},
		types: []memType{{dl, 0}, {hv | hc, 1}, {hv | hc | hca, 1}, {dl | hv | hc, 2}},
	}
	// A discrete GPU with resizable BAR reported as NVIDIA does: all of
	// VRAM host-visible through a type on a second device-local heap of
	// (nearly) VRAM's size.
	discreteReBAR = memProps{
		heaps: []memHeap{{24 * gib, true}, {32 * gib, false}, {23*gib + 800*mib, true}},
		types: []memType{{dl, 0}, {hv | hc, 1}, {hv | hc | hca, 1}, {dl | hv | hc, 2}},
	}
	// A data-centre GPU (H100, H200) where all of VRAM is also
	// HOST_VISIBLE: one device-local heap, every device-local type mapped.
	discreteH100 = memProps{
		heaps: []memHeap{{80 * gib, true}, {256 * gib, false}},
		types: []memType{{dl | hv | hc, 0}, {hv | hc, 1}, {hv | hc | hca, 1}},
	}
	// An integrated GPU (Intel): one device-local heap of system memory,
	// an uncached (write-combined) and a cached mapped type.
	integratedIntel = memProps{
		heaps: []memHeap{{16 * gib, true}},
		types: []memType{{dl, 0}, {dl | hv | hc, 0}, {dl | hv | hc | hca, 0}},
	}
	// An AMD APU (RADV): a small device-local carve-out and system memory.
	integratedAPU = memProps{
		heaps: []memHeap{{512 * mib, true}, {16 * gib, false}},
		types: []memType{{dl, 0}, {hv | hc, 1}, {dl | hv | hc, 0}, {hv | hc | hca, 1}},
	}
	// Mesa's lavapipe: one device-local heap of host memory, one type that
	// is everything.
	lavapipe = memProps{
		heaps: []memHeap{{2 * gib, true}},
		types: []memType{{dl | hv | hc | hca, 0}},
	}
)

func TestPlanMemory(t *testing.T) {
	cases := []struct {
		name     string
		props    memProps
		discrete bool
		force    string
		want     memPlan
	}{
		{"discrete BAR", discreteBAR, true, "",
			memPlan{storage: []uint32{0}, staged: true, stage: []uint32{1, 2, 3}, readback: []uint32{2}, strict: true, heap: 0, heapSize: 24 * gib}},
		{"discrete BAR forced mapped", discreteBAR, true, "0",
			memPlan{storage: []uint32{3}, readback: []uint32{2}, strict: true, heap: 2, heapSize: 256 * mib}},
		{"discrete ReBAR", discreteReBAR, true, "",
			memPlan{storage: []uint32{3}, readback: []uint32{2}, strict: true, heap: 2, heapSize: 23*gib + 800*mib}},
		{"discrete ReBAR forced staging", discreteReBAR, true, "1",
			memPlan{storage: []uint32{0}, staged: true, stage: []uint32{1, 2, 3}, readback: []uint32{2}, strict: true, heap: 0, heapSize: 24 * gib}},
		{"H100", discreteH100, true, "",
			memPlan{storage: []uint32{0}, readback: []uint32{2}, strict: true, heap: 0, heapSize: 80 * gib}},
		{"H100 forced staging", discreteH100, true, "1",
			memPlan{storage: []uint32{0}, staged: true, stage: []uint32{1, 2, 0}, readback: []uint32{2}, strict: true, heap: 0, heapSize: 80 * gib}},
		{"integrated Intel", integratedIntel, false, "",
			memPlan{storage: []uint32{1, 2}, readback: []uint32{2}, heap: 0, heapSize: 16 * gib}},
		{"integrated APU", integratedAPU, false, "",
			memPlan{storage: []uint32{2, 1, 3}, readback: []uint32{3}, heap: 0, heapSize: 16 * gib}},
		{"lavapipe", lavapipe, false, "",
			memPlan{storage: []uint32{0}, heap: 0, heapSize: 2 * gib}},
		{"lavapipe staged", lavapipe, false, "1",
			memPlan{storage: []uint32{0}, staged: true, stage: []uint32{0}, heap: 0, heapSize: 2 * gib}},
		// A CPU device reported as discrete keeps working (all its memory
		// is device-local and mapped).
		{"lavapipe as discrete", lavapipe, true, "",
			memPlan{storage: []uint32{0}, strict: true, heap: 0, heapSize: 2 * gib}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := planMemory(c.props, c.discrete, c.force)
			if err != nil {
				t.Fatal(err)
			}
			if !plansEqual(got, c.want) {
				t.Errorf("got  %+v\nwant %+v", got, c.want)
			}
			t.Log(got.describe())
			if got.strict {
				// Never host memory for a discrete GPU's storage: every
				// type device-local, all on one heap.
				for _, ty := range got.storage {
					tt := c.props.types[ty]
					if tt.flags&dl == 0 || !c.props.heaps[tt.heap].local || tt.heap != got.heap {
						t.Errorf("storage type %d (%+v) is not on device-local heap %d", ty, tt, got.heap)
					}
				}
			}
			for _, ty := range got.readback {
				if f := c.props.types[ty].flags; f&(hv|hca) != hv|hca {
					t.Errorf("readback type %d is not host-visible and cached: %#x", ty, f)
				}
			}
			for _, ty := range got.stage {
				if f := c.props.types[ty].flags; f&memMappable != memMappable {
					t.Errorf("staging type %d is not host-visible coherent: %#x", ty, f)
				}
			}
		})
	}
}

func plansEqual(a, b memPlan) bool {
	return slices.Equal(a.storage, b.storage) && a.staged == b.staged && slices.Equal(a.stage, b.stage) &&
		slices.Equal(a.readback, b.readback) && a.strict == b.strict && a.heap == b.heap && a.heapSize == b.heapSize
}

func TestPlanMemoryErrors(t *testing.T) {
	// Nothing the host can map: no way to upload.
	noMap := memProps{heaps: []memHeap{{8 * gib, true}}, types: []memType{{dl, 0}}}
	if _, err := planMemory(noMap, true, ""); err == nil {
		t.Error("a device without host-visible memory planned")
	}
	// Mapped mode forced on a discrete GPU whose VRAM is not host-visible
	// at all: an error, not host memory.
	noBAR := memProps{heaps: []memHeap{{8 * gib, true}, {16 * gib, false}}, types: []memType{{dl, 0}, {hv | hc, 1}}}
	if p, err := planMemory(noBAR, true, "0"); err == nil {
		t.Errorf("forced mapped mode without host-visible VRAM planned: %+v", p)
	}
	p, err := planMemory(noBAR, true, "")
	if err != nil || !p.staged || !slices.Equal(p.storage, []uint32{0}) {
		t.Errorf("discrete without BAR: %+v, %v; want staged storage in type 0", p, err)
	}
	// The same table on an integrated device falls back to host memory
	// as before.
	if p, err := planMemory(noBAR, false, "0"); err != nil || !slices.Equal(p.storage, []uint32{1}) {
		t.Errorf("integrated, forced mapped: %+v, %v; want storage in type 1", p, err)
	}
}

// fakeBuffers is a bufferDevice whose memory types have a capacity each.
type fakeBuffers struct {
	free  map[uint32]uint64 // bytes left per memory type
	tried []uint32
	next  uint64
}

func (f *fakeBuffers) createBuffer(size uint64, memType uint32, mapped bool) (buf, mem uint64, host []byte, err error) {
	f.tried = append(f.tried, memType)
	if f.free[memType] < size {
		return 0, 0, nil, vkErr(vk.ErrorOutOfDeviceMemory)
	}
	f.free[memType] -= size
	f.next++
	if mapped {
		host = make([]byte, size)
	}
	return f.next, f.next, host, nil
}

func (f *fakeBuffers) destroyBuffer(buf, mem uint64, mapped bool) {}

// TestStrictAllocator: on a discrete GPU, storage that does not fit in
// VRAM is an out-of-device-memory error naming the device, the request and
// the heap, and no host memory type is ever tried.
func TestStrictAllocator(t *testing.T) {
	for _, c := range []struct {
		name  string
		props memProps
	}{{"ReBAR", discreteReBAR}, {"BAR", discreteBAR}, {"H100", discreteH100}} {
		t.Run(c.name, func(t *testing.T) {
			plan, err := planMemory(c.props, true, "")
			if err != nil {
				t.Fatal(err)
			}
			// Room for one 64 MiB block in each device-local type; the
			// host types are roomy.
			fake := &fakeBuffers{free: map[uint32]uint64{}}
			for i, ty := range c.props.types {
				fake.free[uint32(i)] = 64 * gib
				if ty.flags&dl != 0 {
					fake.free[uint32(i)] = 64 * mib
				}
			}
			b := &Backend{name: "vulkan:9", phys: &physDevice{info: DeviceInfo{Name: "Fake GPU"}}, plan: plan}
			b.mem = allocator{dev: fake, memTypes: plan.storage, typeFlags: c.props.flags(), mapped: !plan.staged,
				blockSize: 64 * mib, maxAlloc: 4 * gib, align: 16}
			b.mem.onFail = func(size, want uint64, err error) error { return b.memoryError(size, want, err) }
			if _, err := b.mem.get(16 * mib); err != nil {
				t.Fatalf("first allocation: %v", err)
			}
			_, err = b.mem.get(100 * mib)
			if err == nil {
				t.Fatal("an allocation beyond VRAM succeeded")
			}
			t.Log(err)
			if !errors.Is(err, ErrOutOfDeviceMemory) {
				t.Errorf("error does not wrap ErrOutOfDeviceMemory: %v", err)
			}
			for _, want := range []string{"vulkan:9", "Fake GPU", "100.0 MiB", "device-local heap", "64.0 MiB there", "--offload", "--device-memory", "system RAM"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q: %v", want, err)
				}
			}
			for _, ty := range fake.tried {
				if c.props.types[ty].flags&dl == 0 {
					t.Errorf("host memory type %d tried for device storage", ty)
				}
			}
		})
	}
}

func TestQueryChain(t *testing.T) {
	v11, v12, v13 := vk.MakeVersion(1, 1, 0), vk.MakeVersion(1, 2, 0), vk.MakeVersion(1, 3, 0)
	exts := map[string]bool{"VK_KHR_shader_float16_int8": true, "VK_EXT_subgroup_size_control": true, "VK_NV_cooperative_matrix": true}
	if got, want := queryChain(v11, exts), uint32(qStorage16|qFloat16Int8|qSubgroupSize|qCoopMatNV); got != want {
		t.Errorf("1.1: chain %#x, want %#x", got, want)
	}
	if got, want := queryChain(v13, nil), uint32(qDriver|qFloat16Int8|qStorage16|qStorage8|qSubgroupSize|qMemoryModel); got != want {
		t.Errorf("1.3: chain %#x, want %#x", got, want)
	}
	en := features{float16: true, storage16: true, subgroupSizeControl: true, memoryModel: true, coopMatKHR: true, coopMatNV: true}
	if got, want := deviceExtensions(v11, en), []string{"VK_KHR_shader_float16_int8", "VK_EXT_subgroup_size_control",
		"VK_KHR_vulkan_memory_model", "VK_KHR_cooperative_matrix", "VK_NV_cooperative_matrix"}; !slices.Equal(got, want) {
		t.Errorf("1.1: extensions %q, want %q", got, want)
	}
	if got, want := deviceExtensions(v12, en), []string{"VK_EXT_subgroup_size_control", "VK_KHR_cooperative_matrix",
		"VK_NV_cooperative_matrix"}; !slices.Equal(got, want) {
		t.Errorf("1.2: extensions %q, want %q", got, want)
	}
	if got := deviceExtensions(v13, features{float16: true, storage16: true, subgroupSizeControl: true}); len(got) != 0 {
		t.Errorf("1.3: extensions %q, want none", got)
	}
	if en := enableFeatures(features{float16: true, storage16: true}, true); en.storage16 || !en.float16 {
		t.Errorf("UNCLIP_VK_NO_STORAGE16: %+v", en)
	}
}

func TestCheckWorkgroup(t *testing.T) {
	info := DeviceInfo{Name: "Fake GPU", MaxWorkgroup: 1024, MaxWorkgroupSize: [3]uint32{1024, 1024, 64}, MaxSharedMem: 48 << 10}
	for _, c := range []struct {
		x, y, z, shared int
		bad             string
	}{
		{256, 1, 1, 0, ""},
		{32, 32, 1, 48 << 10, ""},
		{16, 16, 64, 0, "maxComputeWorkGroupInvocations"},
		{1, 1, 65, 0, "maxComputeWorkGroupSize[2]"},
		{2048, 1, 1, 0, "maxComputeWorkGroupSize[0]"},
		{64, 1, 1, 48<<10 + 4, "maxComputeSharedMemorySize"},
		{0, 1, 1, 0, "invalid"},
	} {
		err := checkWorkgroup(&info, "vulkan:9", c.x, c.y, c.z, c.shared)
		if c.bad == "" && err != nil || c.bad != "" && (err == nil || !strings.Contains(err.Error(), c.bad)) {
			t.Errorf("%d×%d×%d, %d bytes: %v, want %q", c.x, c.y, c.z, c.shared, err, c.bad)
		}
	}
}

func TestCoopMatShapes(t *testing.T) {
	d := DeviceInfo{CoopMatKHR: true, CoopMatShapes: []CoopMatShape{
		{KHR: true, M: 16, N: 16, K: 16, A: ComponentF16, B: ComponentF16, C: ComponentF32, Result: ComponentF32, Scope: ScopeSubgroup},
		{KHR: true, M: 16, N: 8, K: 8, A: ComponentF16, B: ComponentF16, C: ComponentF16, Result: ComponentF16, Scope: ScopeSubgroup},
		{KHR: false, M: 16, N: 16, K: 16, A: ComponentF16, B: ComponentF16, C: ComponentF32, Result: ComponentF32, Scope: ScopeSubgroup},
	}}
	if !d.CoopMat(true, 16, 16, 16, ComponentF16, ComponentF32) {
		t.Error("KHR fp16×fp16→fp32 16×16×16 not found")
	}
	if d.CoopMat(false, 16, 16, 16, ComponentF16, ComponentF32) {
		t.Error("NV shape reported without the NV feature")
	}
	if d.CoopMat(true, 16, 8, 8, ComponentF16, ComponentF32) {
		t.Error("wrong accumulator type matched")
	}
	if s := d.CoopMatShapes[0].String(); s != "16×16×16 f16×f16+f32→f32 (KHR)" {
		t.Errorf("String: %q", s)
	}
}
