//go:build cgo && !novulkan

package vulkan

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	vk "github.com/vulkan-go/vulkan"

	"github.com/unclip-go/unclip/tensor"
)

// Backend runs tensor ops on one Vulkan device. Open returns it; it
// registers itself with package tensor as "vulkan:N".
type Backend struct {
	name string
	in   *instance
	phys *physDevice

	dev  *device
	qfam uint32

	minAlign uint64 // minStorageBufferOffsetAlignment
	maxRange uint64 // maxStorageBufferRange
	maxGroup [3]uint32
	tiles    tileChoice // kernel tiles: forced, tuned table, built-in rule (tiles.go)
	// storage16: storageBuffer16BitAccess is enabled, so shaders with
	// 16-bit operands use their 16-bit-storage variant (see dispatch).
	storage16 bool

	mu         sync.Mutex // guards everything below
	mem        allocator
	pipelines  map[pipelineKey]*pipeline
	pcache     uint64 // VkPipelineCache
	cacheDirty bool
	cur        *batch   // recording, nil when none
	inflight   []*batch // submitted, oldest first
	idle       []*batch
	doneSeq    uint64 // every batch with seq ≤ doneSeq has finished
	written    map[*alloc]bool
	read       map[*alloc]bool
	lost       error     // sticky device-lost error
	status     *alloc    // 16 mapped bytes: flags set by shaders (bad embedding id)
	staged     bool      // device storage is not mapped: Upload and Download copy through stage
	stage      allocator // staging buffers (staged mode only)
	plan       memPlan   // where memory lives (memplan.go)
	// readback holds host-cached buffers that Download copies into on the
	// device before reading them, when storage (or stage) is mapped
	// uncached: plan.readback is not nil.
	readback allocator
	closed   bool
	prof     profiler

	embedWindow     int  // tests: at most this many table rows per embedding dispatch
	forceReadback   bool // tests: read through readback buffers even from cached memory
	forceInvalidate bool // tests: invalidate readback memory even when it is coherent

	tapsMu sync.Mutex
	taps   map[[2]int]*tensor.Tensor // bicubic taps on the device

	recSeq atomic.Uint64 // seq of the batch being (or next to be) recorded
	hold   bool          // Hold: no submission per batchOps dispatches

	// scratch collects the storage allocated while an op runs (depth > 0):
	// its temporaries, freed when the outermost Run returns. Ops are
	// recorded by one goroutine at a time.
	scratchMu sync.Mutex
	depth     int
	scratch   []*tensor.Storage

	recording   *recording                 // being recorded (Record), nil otherwise
	warm        *warmer                    // Record's warm pass: pipelines created ahead, nothing recorded
	created     struct{ inline, warm int } // pipelines created on first use and by warm passes
	outstanding bool                       // recordings were submitted without a fence since the last wait
	outSeq      uint64                     // recSeq at the first of them
	submits     atomic.Int64               // batches submitted (Counters)
	waits       atomic.Int64               // host waits for the device (Counters)
	dispatches  atomic.Int64               // dispatches submitted, replays included (Counters)
	freeMu      sync.Mutex
	pending     []pendingFree
}

// pendingFree is an allocation whose storage was collected (or a staging
// buffer that was used); it returns to its allocator once batch seq has
// finished.
type pendingFree struct {
	m   *allocator
	a   *alloc
	seq uint64
}

// batch is one command buffer with its fence and descriptor pools.
type batch struct {
	cb    uint64   // VkCommandBuffer
	fence uint64   // VkFence
	pools []uint64 // VkDescriptorPool
	pool  int
	seq   uint64
	ndisp int
	ops   []*tensor.Node

	qpools   []uint64 // timestamp query pools of batchOps dispatches each (profiling), made when needed
	profiled bool     // timestamps are recorded in this batch
	names    []string // shader of each dispatch (profiling)
}

const (
	batchOps      = 128 // dispatches per command buffer before it is submitted
	maxInflight   = 32  // a stage's replayed steps, one batch each, queue without waits
	setsPerPool   = batchOps
	bindsPerSet   = maxBindings
	allocationPad = 16
)

var (
	openMu sync.Mutex
	opened = map[int]*Backend{}
)

// Open opens Vulkan device index (in Devices order; −1 picks the best:
// discrete > integrated > virtual > CPU) and registers it with package
// tensor as "vulkan:N". Opening the same index again returns the same
// backend. Errors wrap ErrUnavailable when there is no loader or device.
func Open(index int) (tensor.Backend, error) {
	in, err := getInstance()
	if err != nil {
		return nil, err
	}
	if len(in.devices) == 0 {
		return nil, fmt.Errorf("%w: no Vulkan device found (install a driver, e.g. mesa-vulkan-drivers)", ErrUnavailable)
	}
	if index < 0 {
		index = 0
	}
	if index >= len(in.devices) {
		return nil, fmt.Errorf("no Vulkan device vulkan:%d (%d devices; see 'unclip devices')", index, len(in.devices))
	}
	openMu.Lock()
	defer openMu.Unlock()
	if b, ok := opened[index]; ok {
		return b, nil
	}
	b, err := newBackend(in, index, fmt.Sprintf("vulkan:%d", index), os.Getenv("UNCLIP_VK_STAGING"))
	if err != nil {
		return nil, fmt.Errorf("vulkan:%d (%s): %w", index, in.devices[index].info.Name, err)
	}
	opened[index] = b
	tensor.Register(b)
	return b, nil
}

// newBackend opens device index under name; staging is "1" (copy through
// staging buffers), "0" (map device memory) or "" (decide by the heaps).
func newBackend(in *instance, index int, name, staging string) (*Backend, error) {
	pd := &in.devices[index]
	b := &Backend{
		name: name, in: in, phys: pd,
		pipelines: map[pipelineKey]*pipeline{}, written: map[*alloc]bool{}, read: map[*alloc]bool{},
		taps: map[[2]int]*tensor.Tensor{},
	}
	l := &pd.props.Limits
	b.minAlign = max(uint64(l.MinStorageBufferOffsetAlignment), 4)
	b.maxRange = uint64(l.MaxStorageBufferRange)
	b.maxGroup = l.MaxComputeWorkGroupCount
	if l.MaxPushConstantsSize < pushSize {
		return nil, fmt.Errorf("maxPushConstantsSize %d < %d", l.MaxPushConstantsSize, pushSize)
	}
	// Queue family: prefer a compute-only family, else any with compute.
	var nq uint32
	vk.GetPhysicalDeviceQueueFamilyProperties(pd.pd, &nq, nil)
	qps := make([]vk.QueueFamilyProperties, nq)
	vk.GetPhysicalDeviceQueueFamilyProperties(pd.pd, &nq, qps)
	best := -1
	for i := range qps[:nq] {
		qps[i].Deref()
		f := vk.QueueFlagBits(qps[i].QueueFlags)
		if f&vk.QueueComputeBit == 0 {
			continue
		}
		if best < 0 || (f&vk.QueueGraphicsBit == 0 && vk.QueueFlagBits(qps[best].QueueFlags)&vk.QueueGraphicsBit != 0) {
			best = i
		}
	}
	if best < 0 {
		return nil, errors.New("no compute queue")
	}
	b.qfam = uint32(best)
	if bits := qps[best].TimestampValidBits; bits > 0 {
		b.prof.mask = ^uint64(0)
		if bits < 64 {
			b.prof.mask = 1<<bits - 1
		}
		b.prof.period = float64(l.TimestampPeriod)
	}
	props := memPropsOf(&pd.mem)
	plan, err := planMemory(props, pd.props.DeviceType == vk.PhysicalDeviceTypeDiscreteGpu, staging)
	if err != nil {
		return nil, err
	}
	b.plan = plan
	b.staged = plan.staged
	// Every optional feature the shaders use, where the device has it;
	// 16-bit storage buffers (F16/BF16 activations without atomics) unless
	// UNCLIP_VK_NO_STORAGE16=1.
	en := enableFeatures(pd.caps.features, os.Getenv("UNCLIP_VK_NO_STORAGE16") == "1")
	dev, err := createDevice(pd.pd, b.qfam, en, deviceExtensions(pd.api, en))
	if err != nil {
		return nil, err
	}
	b.dev = dev
	b.storage16 = en.storage16
	dev.minSubgroup, dev.maxSubgroup = pd.caps.minSubgroupSize, pd.caps.maxSubgroupSize
	dev.requireSubgroup = pd.info.RequireSubgroupSize
	maxAlloc := pd.caps.maxAlloc
	if maxAlloc == 0 {
		maxAlloc = 1 << 30
	}
	blockSize := uint64(defaultBlock)
	blockSize = min(blockSize, maxAlloc, max(plan.heapSize/8, 16<<20), alignUp(b.maxRange, 1<<20))
	align := max(b.minAlign, allocationPad)
	flags := props.flags()
	b.mem = allocator{dev: b.dev, memTypes: plan.storage, typeFlags: flags, mapped: !plan.staged, blockSize: blockSize,
		maxAlloc: maxAlloc, align: align}
	b.mem.onFail = func(size, want uint64, err error) error { return b.memoryError(size, want, err) }
	small := min(blockSize, 64<<20)
	if plan.staged {
		b.stage = allocator{dev: b.dev, memTypes: plan.stage, typeFlags: flags, mapped: true, blockSize: small,
			maxAlloc: maxAlloc, align: align}
	}
	if plan.readback != nil {
		b.useReadback(plan.readback)
	}
	if env := os.Getenv("UNCLIP_DEVICE_MEMORY"); env != "" {
		n, err := tensor.ParseBytes(env)
		if err != nil {
			dev.destroy()
			return nil, fmt.Errorf("UNCLIP_DEVICE_MEMORY: %w", err)
		}
		b.setLimit(n)
	}
	if err := b.openPipelineCache(); err != nil {
		dev.destroy()
		return nil, err
	}
	b.recSeq.Store(1)
	// The shaders' status flags are read by the host: mapped memory.
	sa, err := b.hostMem().get(16)
	if err != nil {
		return nil, err
	}
	clear(sa.host())
	b.status = sa
	return b, nil
}

// hostMem is the mapped allocator: the main one, or the staging one when
// device memory is not host-visible.
func (b *Backend) hostMem() *allocator {
	if b.staged {
		return &b.stage
	}
	return &b.mem
}

// useReadback makes Download copy through host-cached buffers of the
// memory types types (before any allocation).
func (b *Backend) useReadback(types []uint32) {
	b.plan.readback = types
	b.readback = allocator{dev: b.dev, memTypes: types, typeFlags: b.mem.typeFlags, mapped: true,
		blockSize: min(b.mem.blockSize, 64<<20), maxAlloc: b.mem.maxAlloc, align: b.mem.align}
}

// memoryError describes a device-memory block of size bytes, for an
// allocation of want bytes, that could not be allocated (err): the device,
// the heap, what this backend and (VK_EXT_memory_budget) the process hold
// there, and what to do. Out of memory, it wraps ErrOutOfDeviceMemory.
func (b *Backend) memoryError(size, want uint64, err error) error {
	h := b.plan.heap
	kind := "device-local heap"
	if !b.plan.strict {
		kind = "heap"
	}
	msg := fmt.Sprintf("%s (%s): cannot allocate %s", b.name, b.phys.info.Name, human(want))
	if size != want {
		msg += fmt.Sprintf(" (a %s block)", human(size))
	}
	msg += fmt.Sprintf(" in %s %d of %s: this backend holds %s there", kind, h, human(b.plan.heapSize), human(b.mem.total))
	if b.phys.exts["VK_EXT_memory_budget"] && b.phys.api >= vk.MakeVersion(1, 1, 0) {
		if budget, usage, ok := heapBudget(b.phys.pd, h); ok {
			msg += fmt.Sprintf(", the driver reports %s of it in use by this process and a budget of %s", human(usage), human(budget))
		}
	}
	if !isOutOfMemory(err) {
		return fmt.Errorf("%s: %w", msg, err)
	}
	hint := "lower what a run needs with --offload true (only the running stage's weights on the device) or cap the engine's use with --device-memory"
	if b.plan.strict {
		hint = "tensors stay in device memory and are never moved to system RAM: " + hint
	}
	return fmt.Errorf("%w: %s (%v); %s", ErrOutOfDeviceMemory, msg, err, hint)
}

// human is a byte count in MiB or GiB.
func human(n uint64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%.1f MiB", mb(n))
}

// Name returns "vulkan:N".
func (b *Backend) Name() string { return b.name }

// Info describes the device.
func (b *Backend) Info() DeviceInfo { return b.phys.info }

// Alloc returns n bytes of uninitialised device memory.
func (b *Backend) Alloc(n int) (*tensor.Storage, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.allocLocked(n)
}

func (b *Backend) allocLocked(n int) (*tensor.Storage, error) {
	a, err := b.getLocked(n)
	if err != nil {
		return nil, err
	}
	st := tensor.NewDeviceStorage(b, a, n)
	// Eager results are returned once unreachable (the collector runs the
	// cleanup); arenas and weights use Reserve and Free instead, and an
	// op's own temporaries are freed when it is recorded (Run).
	runtime.AddCleanup(st, b.deferFree, a)
	b.scratchMu.Lock()
	if b.depth > 0 {
		b.scratch = append(b.scratch, st)
	}
	b.scratchMu.Unlock()
	return st, nil
}

// getLocked sub-allocates n bytes, reusing memory whose pending frees have
// finished before growing (b.mu held).
func (b *Backend) getLocked(n int) (*alloc, error) {
	if b.closed {
		return nil, errors.New("backend closed")
	}
	b.reclaim()
	if a := b.mem.tryGet(uint64(n)); a != nil {
		return a, nil
	}
	a, err := b.mem.get(uint64(n))
	if err != nil && b.recording != nil {
		// No waiting while a step is recorded: the caller runs it op by op.
		return nil, fmt.Errorf("%w: out of device memory while recording (%v)", tensor.ErrNoRecording, err)
	}
	if err != nil && b.pendingBytes() > 0 {
		// Freed memory waits for the work that used it (the recording
		// batch too): submit, wait, reclaim, and try again. Under a tight
		// budget this trades host waits for memory.
		if derr := b.drain(); derr != nil {
			return nil, derr
		}
		a, err = b.mem.get(uint64(n))
	}
	if err != nil && !errors.Is(err, ErrOutOfDeviceMemory) {
		err = fmt.Errorf("%s (%s, %.0f MiB of device memory): cannot allocate %.1f MiB: %w",
			b.name, b.phys.info.Name, mb(b.phys.info.DeviceMemory()), mb(uint64(n)), err)
	}
	if err != nil {
		return nil, err
	}
	return a, nil
}

// pendingBytes is the memory waiting in pending frees.
func (b *Backend) pendingBytes() uint64 {
	b.freeMu.Lock()
	defer b.freeMu.Unlock()
	var s uint64
	for _, p := range b.pending {
		s += p.a.size
	}
	return s
}

// Reserve returns n bytes of device memory that stay until Free (graph
// arenas, resident weights): no cleanup is attached.
func (b *Backend) Reserve(n int) (*tensor.Storage, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a, err := b.getLocked(n)
	if err != nil {
		return nil, err
	}
	return tensor.NewDeviceStorage(b, a, n), nil
}

// Free returns s's memory to the allocator once the work recorded so far
// has finished.
func (b *Backend) Free(s *tensor.Storage) {
	a, ok := s.Handle.(*alloc)
	if !ok || s.Backend() != tensor.Backend(b) {
		return
	}
	b.deferFree(a) // once: a cleanup that runs later finds it freed
}

// deferFree queues an allocation whose storage is unreachable. It runs on
// the cleanup goroutine, so it only appends under freeMu.
func (b *Backend) deferFree(a *alloc) {
	b.freeMu.Lock()
	if !a.freed {
		a.freed = true
		b.pending = append(b.pending, pendingFree{m: &b.mem, a: a, seq: b.recSeq.Load()})
	}
	b.freeMu.Unlock()
}

// reclaim returns finished pending frees to the allocator (b.mu held).
func (b *Backend) reclaim() {
	b.freeMu.Lock()
	defer b.freeMu.Unlock()
	done := b.doneSeq
	if len(b.inflight) == 0 && b.cur == nil && !b.outstanding {
		done = b.recSeq.Load()
	}
	if b.outstanding {
		// Fence-less runs are known finished only after a device wait.
		done = min(done, b.outSeq-1)
	}
	keep := b.pending[:0]
	for _, p := range b.pending {
		if p.seq <= done {
			delete(b.written, p.a)
			delete(b.read, p.a)
			p.m.put(p.a)
		} else {
			keep = append(keep, p)
		}
	}
	clear(b.pending[len(keep):])
	b.pending = keep
}

// Upload copies host bytes into new device memory: through the mapping,
// or in staged mode through a staging buffer and a recorded copy.
func (b *Backend) Upload(src []byte) (*tensor.Storage, error) {
	st, err := b.Alloc(len(src))
	if err != nil {
		return nil, err
	}
	a := st.Handle.(*alloc)
	if !b.staged {
		copy(a.host(), src)
		return st, nil
	}
	if len(src) == 0 {
		return st, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s, err := b.stage.get(uint64(len(src)))
	if err != nil {
		return nil, fmt.Errorf("%s: staging buffer of %d bytes: %w", b.name, len(src), err)
	}
	copy(s.host(), src)
	if err := b.recordCopy(s, 0, a, 0, uint64(len(src))); err != nil {
		b.stage.put(s)
		return nil, err
	}
	b.freeAfter(&b.stage, s)
	return st, nil
}

// Write copies host bytes into s at byte offset off: through the mapping,
// or in staged mode through a staging buffer and a recorded copy (ordered
// after the work recorded so far). In mapped mode s must not be in use by
// unfinished work.
func (b *Backend) Write(s *tensor.Storage, off int, src []byte) error {
	a, ok := s.Handle.(*alloc)
	if !ok || s.Backend() != tensor.Backend(b) {
		return fmt.Errorf("%s: write to foreign storage", b.name)
	}
	if off < 0 || off+len(src) > s.Bytes {
		return fmt.Errorf("%s: write [%d, %d) of a %d-byte buffer", b.name, off, off+len(src), s.Bytes)
	}
	if len(src) == 0 {
		return nil
	}
	if !b.staged {
		copy(a.host()[off:], src)
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	st, err := b.stage.get(uint64(len(src)))
	if err != nil {
		return fmt.Errorf("%s: staging buffer of %d bytes: %w", b.name, len(src), err)
	}
	copy(st.host(), src)
	if err := b.recordCopy(st, 0, a, uint64(off), uint64(len(src))); err != nil {
		b.stage.put(st)
		return err
	}
	b.freeAfter(&b.stage, st)
	return nil
}

// Download waits for the work that writes s and copies bytes out: from
// the mapping when it is host-cached, else (an uncached BAR or
// write-combined mapping, or unmapped storage) through a host-cached
// readback buffer the device copies into, invalidated when not coherent.
func (b *Backend) Download(s *tensor.Storage, dst []byte, off int) error {
	a, ok := s.Handle.(*alloc)
	if !ok || s.Backend() != b {
		return fmt.Errorf("%s: download of foreign storage", b.name)
	}
	if off < 0 || off+len(dst) > s.Bytes {
		return fmt.Errorf("%s: read [%d, %d) of a %d-byte buffer", b.name, off, off+len(dst), s.Bytes)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(dst) == 0 || !b.staged && (b.plan.readback == nil || a.blk.cached && !b.forceReadback) {
		if err := b.syncLocked(); err != nil {
			return err
		}
		copy(dst, a.host()[off:])
		return nil
	}
	m := &b.stage
	if b.plan.readback != nil {
		m = &b.readback
	}
	// In pieces of at most half a staging block, so that a large read
	// takes no dedicated host buffer of its size.
	chunk := int(max(m.blockSize/2, 4096))
	for done := 0; done < len(dst); {
		n := min(len(dst)-done, chunk)
		st, err := m.get(uint64(n))
		if err != nil && m != &b.stage && b.staged {
			m = &b.stage
			st, err = m.get(uint64(n))
		}
		if err != nil && !b.staged {
			// No host-cached buffer to spare: read the mapping itself.
			if err := b.syncLocked(); err != nil {
				return err
			}
			copy(dst[done:], a.host()[off+done:])
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: staging buffer of %d bytes: %w", b.name, n, err)
		}
		err = b.readThrough(st, a, off+done, dst[done:done+n])
		m.put(st)
		if err != nil {
			return err
		}
		done += n
	}
	return nil
}

// readThrough copies len(dst) bytes of a at byte offset off into the
// mapped staging allocation st on the device, waits, and reads st (b.mu
// held).
func (b *Backend) readThrough(st, a *alloc, off int, dst []byte) error {
	if err := b.recordCopy(a, uint64(off), st, 0, uint64(len(dst))); err != nil {
		return err
	}
	if err := b.syncLocked(); err != nil {
		return err
	}
	if !st.blk.coherent || b.forceInvalidate {
		if r := b.dev.invalidate(st.blk.mem); r != vk.Success {
			return fmt.Errorf("%s: vkInvalidateMappedMemoryRanges: %w", b.name, vkErr(r))
		}
	}
	copy(dst, st.host())
	return nil
}

// recordCopy records a copy of n bytes between allocations (b.mu held).
func (b *Backend) recordCopy(src *alloc, so uint64, dst *alloc, do, n uint64) error {
	if b.warm != nil {
		return nil
	}
	if err := b.begin(); err != nil {
		return err
	}
	barrier := b.hazard([]*alloc{src}, []*alloc{dst})
	b.dev.copy(b.cur.cb, barrier, src.blk.buf, src.off+so, dst.blk.buf, dst.off+do, n)
	b.read[src] = true
	b.written[dst] = true
	return nil
}

// hazard reports whether an access to reads and writes must wait for
// earlier work of the batch (a read or write after a write, a write after
// a read) and, if so, starts a new barrier epoch (b.mu held).
func (b *Backend) hazard(reads, writes []*alloc) bool {
	h := false
	for _, a := range reads {
		h = h || b.written[a]
	}
	for _, a := range writes {
		h = h || b.written[a] || b.read[a]
	}
	if h {
		clear(b.written)
		clear(b.read)
	}
	return h
}

// freeAfter returns a to m once the recording batch has finished.
func (b *Backend) freeAfter(m *allocator, a *alloc) {
	b.freeMu.Lock()
	b.pending = append(b.pending, pendingFree{m: m, a: a, seq: b.recSeq.Load()})
	b.freeMu.Unlock()
}

// Sync submits recorded work and waits for all of it.
func (b *Backend) Sync() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.syncLocked()
}

func (b *Backend) syncLocked() error {
	if err := b.drain(); err != nil {
		return err
	}
	b.savePipelineCache()
	return b.checkStatus()
}

// drain submits recorded work, waits for everything and reclaims memory.
func (b *Backend) drain() error {
	if err := b.submit(); err != nil {
		return err
	}
	if len(b.inflight) > 0 || b.outstanding {
		b.waits.Add(1)
	}
	for len(b.inflight) > 0 {
		if err := b.waitOldest(); err != nil {
			return err
		}
	}
	if b.outstanding {
		// Recorded steps run without fences: wait for the queue.
		if r := b.dev.waitIdle(); r != vk.Success {
			err := fmt.Errorf("%s: vkDeviceWaitIdle after recorded steps: %w", b.name, vkErr(r))
			if r == vk.ErrorDeviceLost {
				b.lost = err
			}
			return err
		}
		b.outstanding = false
		b.doneSeq = b.recSeq.Load() - 1 // every submitted batch; the next one has recSeq
	}
	b.reclaim()
	return b.lost
}

// begin makes b.cur a batch ready for recording.
func (b *Backend) begin() error {
	if b.lost != nil {
		return b.lost
	}
	if b.cur != nil {
		return nil
	}
	var bt *batch
	if n := len(b.idle); n > 0 {
		bt, b.idle = b.idle[n-1], b.idle[:n-1]
	} else {
		if len(b.inflight) >= maxInflight {
			b.waits.Add(1)
			if err := b.waitOldest(); err != nil {
				return err
			}
			return b.begin()
		}
		var err error
		if bt, err = b.newBatch(); err != nil {
			return err
		}
	}
	if r := b.dev.begin(bt.cb); r != vk.Success {
		return fmt.Errorf("vkBeginCommandBuffer: %w", vkErr(r))
	}
	if err := b.beginProfile(bt); err != nil {
		return err
	}
	// Earlier batches' writes become visible to this one.
	b.dev.computeBarrier(bt.cb)
	clear(b.written)
	clear(b.read)
	bt.seq = b.recSeq.Load()
	b.cur = bt
	return nil
}

func (b *Backend) newBatch() (*batch, error) {
	cb, fence, err := b.dev.createBatch()
	if err != nil {
		return nil, fmt.Errorf("command buffer: %w", err)
	}
	bt := &batch{cb: cb, fence: fence}
	if err := b.addPool(bt); err != nil {
		return nil, err
	}
	return bt, nil
}

func (b *Backend) addPool(bt *batch) error {
	p, err := b.dev.createPool(setsPerPool, setsPerPool*bindsPerSet)
	if err != nil {
		return fmt.Errorf("vkCreateDescriptorPool: %w", err)
	}
	bt.pools = append(bt.pools, p)
	return nil
}

// submit ends and submits the recording batch, if any.
func (b *Backend) submit() error { return b.submitThen(0) }

// submitThen submits the recording batch followed, in the same submission
// and under its fence, by the recorded command buffer then (0: none).
func (b *Backend) submitThen(then uint64) error {
	bt := b.cur
	if bt == nil {
		return b.lost
	}
	if b.recording != nil && bt == b.recording.bt {
		return errors.New("an op waited for the device while being recorded (Record)")
	}
	b.cur = nil
	r := vk.Success
	if then == 0 {
		r = b.dev.submit(bt.cb, bt.fence)
	} else {
		r = b.dev.submitWith(bt.cb, then, bt.fence)
	}
	if r != vk.Success {
		return b.fail(bt, "vkQueueSubmit", r, false)
	}
	b.inflight = append(b.inflight, bt)
	b.recSeq.Add(1)
	b.submits.Add(1)
	b.dispatches.Add(int64(bt.ndisp))
	return nil
}

// SetMemoryLimit caps the device memory the backend may hold (0: no cap
// but the device's own); allocations beyond it fail with an error naming
// the budget. UNCLIP_DEVICE_MEMORY sets it when the device is opened.
func (b *Backend) SetMemoryLimit(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.setLimit(n)
}

func (b *Backend) setLimit(n int64) {
	b.mem.limit = uint64(max(n, 0))
	if n > 0 {
		// Blocks small enough that the budget is not spent on slack: only
		// allocations under half a block share one; larger ones get a
		// block of their own, returned to the device when freed.
		b.mem.blockSize = min(b.mem.blockSize, max(alignUp(uint64(n)/256, 64<<10), 64<<10))
	}
}

// Memory reports the budget (or the device-local heap when none is set)
// and the device memory held now.
func (b *Backend) Memory() (limit, inUse int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	limit = int64(b.mem.limit)
	if limit == 0 {
		limit = int64(b.phys.info.DeviceMemory())
	}
	return limit, int64(b.mem.total)
}

// Counters reports how many batches were submitted and how many times the
// host waited for the device, since the backend was opened.
func (b *Backend) Counters() (submits, waits, dispatches int64) {
	return b.submits.Load(), b.waits.Load(), b.dispatches.Load()
}

// Hold stops recorded work from being submitted every batchOps dispatches
// until Flush: a replayed step is submitted as one batch.
func (b *Backend) Hold() {
	b.mu.Lock()
	b.hold = true
	b.mu.Unlock()
}

// Flush submits the recorded work without waiting for it and ends Hold.
func (b *Backend) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.hold = false
	return b.submit()
}

// waitOldest waits for the oldest submitted batch and recycles it.
func (b *Backend) waitOldest() error {
	bt := b.inflight[0]
	b.inflight = b.inflight[1:]
	if r := b.dev.wait(bt.fence); r != vk.Success {
		return b.fail(bt, "vkWaitForFences", r, true)
	}
	b.collectProfile(bt)
	b.recycle(bt, true)
	return nil
}

// recycle readies bt, which is not pending on the device, for recording
// again (its command buffer is reset by the next vkBeginCommandBuffer: the
// command pool has RESET_COMMAND_BUFFER) and reclaims finished pending
// frees. ran tells that bt was submitted and has finished; otherwise it
// never ran and its seq is given up, so that its pending frees wait only
// for the batches before it.
func (b *Backend) recycle(bt *batch, ran bool) {
	b.reset(bt)
	if ran {
		b.doneSeq = bt.seq
	} else {
		b.recSeq.Add(1)
	}
	b.idle = append(b.idle, bt)
	b.reclaim()
}

// reset clears bt's descriptor pools and recorded ops (it must not be
// pending on the device).
func (b *Backend) reset(bt *batch) {
	for _, p := range bt.pools {
		b.dev.resetPool(p)
	}
	bt.pool = 0
	bt.ndisp = 0
	clear(bt.ops)
	bt.ops = bt.ops[:0]
}

// fail returns an error naming the ops of bt, whose vkQueueSubmit
// (submitted false) or fence wait (submitted true) returned r. A lost
// device is sticky: every later call fails with this error. After any
// other failure bt is recycled and the backend stays usable; a submitted
// batch first waits for the device to go idle (and its fence is waited
// for and reset again), and only when that fails too, so that bt's state
// is unknown, does the error become sticky.
func (b *Backend) fail(bt *batch, call string, r vk.Result, submitted bool) error {
	var names []string
	for i, n := range bt.ops {
		switch {
		case i < 3 || i >= len(bt.ops)-3:
			names = append(names, n.Name())
		case i == 3:
			names = append(names, fmt.Sprintf("… %d more …", len(bt.ops)-6))
		}
	}
	err := fmt.Errorf("%s: %s: %w, in a batch of %d ops (%s)", b.name, call, vkErr(r), len(bt.ops), strings.Join(names, "; "))
	if r != vk.ErrorDeviceLost {
		rr := vk.Success
		if submitted {
			if rr = b.dev.waitIdle(); rr == vk.Success {
				rr = b.dev.wait(bt.fence)
			}
		}
		if rr == vk.Success {
			b.recycle(bt, submitted)
			return err
		}
		err = fmt.Errorf("%w; then, waiting for the device: %w", err, vkErr(rr))
	}
	if b.lost == nil {
		b.lost = err
	}
	return err
}

// Close waits for all work and releases the device. Tensors on it become
// unusable.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	err := b.syncLocked()
	b.dev.waitIdle()
	b.closed = true
	b.savePipelineCache()
	for _, bt := range append(b.idle, b.inflight...) {
		b.dev.destroyFence(bt.fence)
		for _, q := range bt.qpools {
			b.dev.destroyQueryPool(q)
		}
		for _, p := range bt.pools {
			b.dev.destroyPool(p)
		}
	}
	b.idle, b.inflight = nil, nil
	b.destroyPipelines()
	b.dev.destroyCache(b.pcache)
	b.mem.close()
	b.stage.close()
	b.readback.close()
	b.dev.destroy()
	openMu.Lock()
	for i, x := range opened {
		if x == b {
			delete(opened, i)
		}
	}
	openMu.Unlock()
	return err
}
