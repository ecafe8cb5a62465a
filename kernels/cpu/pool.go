package cpu

import (
	"sync"
	"sync/atomic"
)

// The worker pool: persistent goroutines that kernels hand parallel regions
// to, so that no goroutine is started per op or per tile. A region is a
// count of tasks that the caller and up to Threads()−1 workers pull from an
// atomic counter (ggml-style chunking), so uneven tasks balance themselves.
//
// One region runs at a time. A region started while another is running
// (a nested call from inside a task, or a second goroutine using the
// backend concurrently) runs serially in its caller instead of waiting, so
// the pool can never deadlock.

// job is one parallel region.
type job struct {
	n    int64
	next atomic.Int64
	fn   func(task, worker int)
	wg   sync.WaitGroup
}

// work runs tasks of j until none are left.
func (j *job) work(worker int) {
	for {
		t := j.next.Add(1) - 1
		if t >= j.n {
			return
		}
		j.fn(int(t), worker)
	}
}

type poolMsg struct {
	j      *job
	worker int
}

var pool struct {
	mu      sync.Mutex // held while a region runs
	workers []chan poolMsg
}

// parallel runs fn(task, worker) for every task in [0, n), on at most
// Threads() goroutines including the caller. worker is in [0, Threads())
// and identifies the goroutine, so a task can use per-worker scratch. Call
// it only for work worth ~50 µs or more; smaller work should run serially.
func parallel(n int, fn func(task, worker int)) { parallelN(n, Threads(), fn) }

// parallelN is parallel on at most w goroutines.
func parallelN(n, w int, fn func(task, worker int)) {
	w = min(w, n)
	if w <= 1 || !pool.mu.TryLock() {
		for t := 0; t < n; t++ {
			fn(t, 0)
		}
		return
	}
	defer pool.mu.Unlock()
	for len(pool.workers) < w-1 {
		ch := make(chan poolMsg)
		pool.workers = append(pool.workers, ch)
		go func() {
			for m := range ch {
				m.j.work(m.worker)
				m.j.wg.Done()
			}
		}()
	}
	j := &job{n: int64(n), fn: fn}
	j.wg.Add(w - 1)
	for i := 0; i < w-1; i++ {
		pool.workers[i] <- poolMsg{j, i + 1}
	}
	j.work(0)
	j.wg.Wait()
}

// parallelFor runs fn over [0, n) split into contiguous chunks, one per
// worker, when cost (a rough count of inner-loop operations) is large
// enough to pay for the hand-off.
func parallelFor(n int, cost int, fn func(lo, hi int)) {
	w := min(Threads(), n)
	if w <= 1 || cost < 1<<16 {
		fn(0, n)
		return
	}
	parallel(w, func(i, _ int) { fn(n*i/w, n*(i+1)/w) })
}
