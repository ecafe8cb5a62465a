//go:build cgo && !novulkan

package vulkan

import (
	"testing"

	"github.com/unclip-go/unclip/tensor"
	"github.com/unclip-go/unclip/tensor/tensortest"
)

// liveBytes is the device memory held by allocations (freed ones still
// pending included), summed over the allocator's blocks.
func liveBytes(b *Backend) uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var n uint64
	for _, blk := range b.mem.blocks {
		n += blk.used
	}
	return n
}

// TestAttentionMemory shows that an attention call allocates its result
// and nothing that grows with Lq×Lk: the score matrix is never written.
func TestAttentionMemory(t *testing.T) {
	b := openTest(t)
	for _, l := range []int{64, 256, 1024} {
		q := tensortest.Rand(51, 1, 2, l, 64).To(b)
		k := tensortest.Rand(52, 1, 2, l, 64).To(b)
		if err := b.Sync(); err != nil {
			t.Fatal(err)
		}
		before := liveBytes(b)
		y := tensor.Attention(q, k, k, nil, 0.125, false)
		grown := liveBytes(b) - before
		out := uint64(y.Numel() * 4)
		t.Logf("Lq = Lk = %d: %d bytes allocated by the call (result %d bytes; a score matrix would be %d)", l, grown, out, 2*l*l*4)
		if err := y.Err(); err != nil {
			t.Fatal(err)
		}
		if grown > b.mem.roundSize(out) {
			t.Errorf("Lq = Lk = %d: the call allocated %d bytes, more than its %d-byte result", l, grown, out)
		}
		y.Storage().Free()
	}
}
