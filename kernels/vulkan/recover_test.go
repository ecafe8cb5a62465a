//go:build cgo && !novulkan

package vulkan

import (
	"math"
	"slices"
	"strings"
	"testing"

	vk "github.com/vulkan-go/vulkan"

	"github.com/unclip-go/unclip/tensor"
	"github.com/unclip-go/unclip/tensor/tensortest"
)

// A vkQueueSubmit or vkWaitForFences failure other than a lost device
// cannot be provoked on demand, so these tests hand fail the batch and a
// made-up VkResult at the point where submit or waitOldest would.

// recordOne records an Affine of x on b (after finishing all earlier work)
// and returns its result and the recording batch, with b.mu held.
func recordOne(t *testing.T, b *Backend, x *tensor.Tensor) (*tensor.Tensor, *batch) {
	t.Helper()
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	y := tensor.Affine(x, 2, 1)
	if err := y.Err(); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	bt := b.cur
	if bt == nil || len(bt.ops) == 0 || len(b.inflight) != 0 {
		b.mu.Unlock()
		t.Fatalf("no batch recording the op (cur %v, %d in flight)", bt, len(b.inflight))
	}
	return y, bt
}

// pendingFreeAfter queues a fresh allocation to be freed after the
// recording batch (b.mu held) and reports whether it is still pending.
func pendingFreeAfter(t *testing.T, b *Backend) func() bool {
	t.Helper()
	a, err := b.mem.get(64)
	if err != nil {
		t.Fatal(err)
	}
	b.freeAfter(&b.mem, a)
	return func() bool {
		b.freeMu.Lock()
		defer b.freeMu.Unlock()
		return slices.ContainsFunc(b.pending, func(p pendingFree) bool { return p.a == a })
	}
}

// checkRecovered checks the error and the state after a non-lost failure
// of bt, then that the backend still computes.
func checkRecovered(t *testing.T, b *Backend, bt *batch, err error, call, op string, x *tensor.Tensor) {
	t.Helper()
	if err == nil {
		t.Fatal("fail returned nil")
	}
	for _, want := range []string{call, op, "in a batch of 1 ops"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	b.mu.Lock()
	lost, idle, nops, pool, ndisp := b.lost, slices.Contains(b.idle, bt), len(bt.ops), bt.pool, bt.ndisp
	b.mu.Unlock()
	if lost != nil {
		t.Fatalf("sticky error after a non-lost failure: %v", lost)
	}
	if !idle || nops != 0 || pool != 0 || ndisp != 0 {
		t.Errorf("batch not recycled: idle %v, %d ops, pool %d, %d dispatches", idle, nops, pool, ndisp)
	}
	// The backend goes on working, with the recycled batch among its own.
	want := x.MustFloat32s()
	for i := 0; i < 3; i++ {
		got, err := tensor.Affine(x.To(b), 3, 0.5).Float32s()
		if err != nil {
			t.Fatalf("op after the failure: %v", err)
		}
		for j := range want {
			if w := 3*want[j] + 0.5; math.Abs(float64(got[j]-w)) > 1e-5 {
				t.Fatalf("op after the failure: at %d: %v, want %v", j, got[j], w)
			}
		}
	}
	if err := b.Sync(); err != nil {
		t.Fatalf("sync after the failure: %v", err)
	}
}

// TestRecoverSubmit: a failed vkQueueSubmit (out of device memory) is
// reported, naming the batch's op, and the batch, which never ran, is
// recycled: its descriptor pools reset, its ops dropped, its pending frees
// reclaimed, and it records again.
func TestRecoverSubmit(t *testing.T) {
	b := openTest(t)
	x := tensortest.Rand(41, 3, 5)
	xd := x.To(b)
	_, bt := recordOne(t, b, xd)
	op := bt.ops[0].Name()
	pending := pendingFreeAfter(t, b)
	seq := bt.seq
	// Where vkQueueSubmit fails, the command buffer has been ended and is
	// not pending, and the fence is unsignalled. Reach that state for real
	// (submit and wait) so that the recycled command buffer is valid.
	b.cur = nil
	if r := b.dev.submit(bt.cb, bt.fence); r != vk.Success {
		b.mu.Unlock()
		t.Fatalf("submit: %v", vkErr(r))
	}
	if r := b.dev.wait(bt.fence); r != vk.Success {
		b.mu.Unlock()
		t.Fatalf("wait: %v", vkErr(r))
	}
	err := b.fail(bt, "vkQueueSubmit", vk.ErrorOutOfDeviceMemory, false)
	next := b.recSeq.Load()
	b.mu.Unlock()
	if pending() {
		t.Error("the failed batch's pending free was not reclaimed")
	}
	if next != seq+1 {
		t.Errorf("recording seq %d after the failed batch %d", next, seq)
	}
	checkRecovered(t, b, bt, err, "vkQueueSubmit", op, x)
}

// TestRecoverWait: a failed fence wait (out of host memory) is reported;
// the backend waits for the device, recycles the batch as finished (its
// result is valid) and goes on.
func TestRecoverWait(t *testing.T) {
	b := openTest(t)
	x := tensortest.Rand(42, 4, 3)
	xd := x.To(b)
	y, bt := recordOne(t, b, xd)
	op := bt.ops[0].Name()
	pending := pendingFreeAfter(t, b)
	if err := b.submit(); err != nil {
		b.mu.Unlock()
		t.Fatal(err)
	}
	if len(b.inflight) != 1 || b.inflight[0] != bt {
		b.mu.Unlock()
		t.Fatalf("%d batches in flight", len(b.inflight))
	}
	// As waitOldest does before the wait fails.
	b.inflight = b.inflight[1:]
	err := b.fail(bt, "vkWaitForFences", vk.ErrorOutOfHostMemory, true)
	done := b.doneSeq
	b.mu.Unlock()
	if done != bt.seq {
		t.Errorf("doneSeq %d, want the recovered batch's %d", done, bt.seq)
	}
	if pending() {
		t.Error("the failed batch's pending free was not reclaimed")
	}
	checkRecovered(t, b, bt, err, "vkWaitForFences", op, x)
	got, gerr := y.Float32s()
	if gerr != nil {
		t.Fatal(gerr)
	}
	for i, v := range x.MustFloat32s() {
		if w := 2*v + 1; math.Abs(float64(got[i]-w)) > 1e-5 {
			t.Fatalf("result of the recovered batch: at %d: %v, want %v", i, got[i], w)
		}
	}
}

// TestRecoverDeviceLost: a lost device stays an error for every later
// call. The batch is a stand-in, which fail leaves alone in that case.
func TestRecoverDeviceLost(t *testing.T) {
	b := openTest(t)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.fail(&batch{}, "vkWaitForFences", vk.ErrorDeviceLost, true)
	lost := b.lost
	b.lost = nil // the backend is shared with the other tests
	if err == nil || lost != err {
		t.Fatalf("fail returned %v, sticky error %v", err, lost)
	}
	b.lost = err
	if got := b.begin(); got != err {
		t.Errorf("begin after device loss: %v", got)
	}
	b.lost = nil
}
