//go:build cgo && !novulkan

package vulkan

import (
	"errors"
	"sort"
	"time"
)

// profiler accumulates timestamp-query results per shader (b.mu held).
type profiler struct {
	on     bool
	period float64 // nanoseconds per timestamp tick
	mask   uint64  // valid timestamp bits
	stats  map[string]*KernelStat
}

// SetProfile turns per-dispatch timestamp queries on or off (off by
// default); it takes effect from the next command buffer. It fails when
// the device's compute queue has no timestamps.
func (b *Backend) SetProfile(on bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if on && b.prof.mask == 0 {
		return errors.New(b.name + ": the compute queue does not support timestamps")
	}
	b.prof.on = on
	if on && b.prof.stats == nil {
		b.prof.stats = map[string]*KernelStat{}
	}
	return nil
}

// Profile waits for recorded work and returns the device time per shader
// since profiling was turned on, the most expensive first.
func (b *Backend) Profile() ([]KernelStat, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.drain(); err != nil {
		return nil, err
	}
	var out []KernelStat
	for _, s := range b.prof.stats {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Time != out[j].Time {
			return out[i].Time > out[j].Time
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// beginProfile prepares a recording batch for timestamps (b.mu held).
func (b *Backend) beginProfile(bt *batch) error {
	bt.names = bt.names[:0]
	bt.profiled = b.prof.on
	if !bt.profiled {
		return nil
	}
	_, _, err := b.queryPool(bt)
	return err
}

// queryPool returns the timestamp query pool and first query of the
// batch's next dispatch. A batch that holds more than batchOps dispatches
// (a recorded step graph) uses one pool per batchOps dispatches, each
// reset in the command buffer before its first use.
func (b *Backend) queryPool(bt *batch) (uint64, uint32, error) {
	i := bt.ndisp / batchOps
	if bt.ndisp%batchOps == 0 {
		if i == len(bt.qpools) {
			p, err := b.dev.createQueryPool(2 * batchOps)
			if err != nil {
				return 0, 0, err
			}
			bt.qpools = append(bt.qpools, p)
		}
		b.dev.resetQueries(bt.cb, bt.qpools[i], 2*batchOps)
	}
	return bt.qpools[i], uint32(2 * (bt.ndisp % batchOps)), nil
}

// collectProfile adds a finished batch's timestamps to the totals.
func (b *Backend) collectProfile(bt *batch) {
	if !bt.profiled || len(bt.names) == 0 {
		return
	}
	ts := make([]uint64, 0, 2*len(bt.names))
	for i, q := range bt.qpools {
		n := min(batchOps, len(bt.names)-i*batchOps)
		if n <= 0 {
			break
		}
		part := make([]uint64, 2*n)
		if b.dev.queryResults(q, part) != 0 {
			return
		}
		ts = append(ts, part...)
	}
	for i, name := range bt.names {
		d := (ts[2*i+1] - ts[2*i]) & b.prof.mask
		s := b.prof.stats[name]
		if s == nil {
			s = &KernelStat{Name: name}
			b.prof.stats[name] = s
		}
		s.Calls++
		s.Time += time.Duration(float64(d) * b.prof.period)
	}
	bt.names = bt.names[:0]
}
