//go:build cgo && !novulkan

package vulkan

import (
	"fmt"
	"os"

	vk "github.com/vulkan-go/vulkan"

	"github.com/unclip-go/unclip/tensor"
)

// Recorded step graphs (UNCLIP_VK_RECORD=0 turns them off; each replayed
// step is then recorded again, still as one submission with no wait).
// Record runs a graph's nodes once into a command
// buffer of its own (begun for simultaneous use, with descriptor pools of
// its own) instead of the batch being recorded; Submit queues that command
// buffer again, without a fence, so a denoising stage records each step's
// commands once and the host neither records nor waits between steps.
// Temporaries the ops made while recording belong to the recording (its
// commands read them on every run) and are freed with it. Completion is
// observed by the next wait (drain waits for the device to go idle while
// recordings are outstanding).

// recording is a recorded node sequence (tensor.Recording).
type recording struct {
	b       *Backend
	bt      *batch
	scratch []*tensor.Storage
	nodes   []tensor.Node // kept alive while the commands may run
}

// errProfiling: kernel timing needs per-batch timestamp queries.
var errProfiling = fmt.Errorf("%w: kernels are being timed (--profile)", tensor.ErrNoRecording)

// errOptIn: UNCLIP_VK_RECORD=0 turns recordings off (each replayed step is
// then recorded again, still as one submission).
var errOptIn = fmt.Errorf("%w: turned off (UNCLIP_VK_RECORD=0)", tensor.ErrNoRecording)

var errBudget = fmt.Errorf("%w: a device memory budget is set", tensor.ErrNoRecording)

// Record records nodes into a command buffer of their own.
func (b *Backend) Record(nodes []tensor.Node) (tensor.Recording, error) {
	b.mu.Lock()
	if os.Getenv("UNCLIP_VK_RECORD") == "0" {
		b.mu.Unlock()
		return nil, errOptIn
	}
	if b.prof.on {
		b.mu.Unlock()
		return nil, errProfiling
	}
	if b.mem.limit > 0 {
		// Under a budget, ops may have to wait for freed memory while they
		// are recorded, and a recording pins its temporaries.
		b.mu.Unlock()
		return nil, errBudget
	}
	// Work recorded so far stays aside (it is submitted with the first
	// run), with its hazard state.
	eager, written, read := b.cur, b.written, b.read
	b.written, b.read = map[*alloc]bool{}, map[*alloc]bool{}
	restore := func() { b.cur, b.written, b.read = eager, written, read }
	bt, err := b.newBatch()
	if err != nil {
		restore()
		b.mu.Unlock()
		return nil, err
	}
	if r := b.dev.beginReusable(bt.cb); r != vk.Success {
		restore()
		b.mu.Unlock()
		return nil, fmt.Errorf("vkBeginCommandBuffer: %w", vkErr(r))
	}
	b.dev.computeBarrier(bt.cb) // earlier work (and the previous run) is visible
	bt.seq = b.recSeq.Load()
	b.cur = bt
	rec := &recording{b: b, bt: bt, nodes: nodes}
	b.recording = rec
	b.mu.Unlock()

	// Warm pass: the pipelines the graph needs are created concurrently
	// (warmer); its errors are met again, and reported, below.
	if os.Getenv("UNCLIP_VK_WARM") != "0" {
		w := newWarmer()
		b.mu.Lock()
		b.warm = w
		b.mu.Unlock()
		for i := range nodes {
			if b.Run(&nodes[i]) != nil {
				break
			}
		}
		b.mu.Lock()
		b.warm = nil
		b.mu.Unlock()
		b.finishWarm(w)
	}
	var runErr error
	for i := range nodes {
		if runErr = b.Run(&nodes[i]); runErr != nil {
			runErr = fmt.Errorf("node %d (%s): %w", i, nodes[i].Name(), runErr)
			break
		}
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	b.recording = nil
	restore()
	if r := b.dev.end(bt.cb); r != vk.Success && runErr == nil {
		runErr = fmt.Errorf("vkEndCommandBuffer: %w", vkErr(r))
	}
	if runErr != nil {
		b.retire(bt)
		b.freeScratch(rec.scratch)
		return nil, runErr
	}
	return rec, nil
}

// Submit queues one run of the recording.
func (r *recording) Submit() error {
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.lost != nil {
		return b.lost
	}
	if b.cur != nil {
		// One submission: the eager work recorded before this run, then
		// the run, under the eager batch's fence.
		if err := b.submitThen(r.bt.cb); err != nil {
			return err
		}
		b.dispatches.Add(int64(r.bt.ndisp))
		return nil
	}
	if res := b.dev.resubmit(r.bt.cb); res != vk.Success {
		err := fmt.Errorf("%s: vkQueueSubmit of a recorded step: %w", b.name, vkErr(res))
		if res == vk.ErrorDeviceLost {
			b.lost = err
		}
		return err
	}
	if !b.outstanding {
		b.outSeq = b.recSeq.Load()
	}
	b.outstanding = true
	b.submits.Add(1)
	b.dispatches.Add(int64(r.bt.ndisp))
	// Later batches (and frees) are ordered after this run.
	b.recSeq.Add(1)
	return nil
}

// Free releases the recording after its runs have finished.
func (r *recording) Free() {
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if r.bt == nil {
		return
	}
	if b.outstanding {
		_ = b.drain()
	}
	b.retire(r.bt)
	r.bt = nil
	b.freeScratch(r.scratch)
	r.scratch, r.nodes = nil, nil
}

// retire returns a recording's batch to the idle ones (its next
// vkBeginCommandBuffer resets it), leaving the sequence numbers alone: it
// never ran as a batch of its own.
func (b *Backend) retire(bt *batch) {
	b.reset(bt)
	b.idle = append(b.idle, bt)
}

// freeScratch queues temporaries for freeing once the work recorded so
// far has finished.
func (b *Backend) freeScratch(ss []*tensor.Storage) {
	for _, s := range ss {
		s.Free()
	}
}
