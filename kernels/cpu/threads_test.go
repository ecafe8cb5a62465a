package cpu

import (
	"runtime"
	"testing"
)

// TestSetThreadsBounds checks that thread counts outside int32 neither wrap
// nor go negative.
func TestSetThreadsBounds(t *testing.T) {
	defer SetThreads(0)
	procs := runtime.GOMAXPROCS(0)
	for _, c := range []struct{ set, want int }{
		{0, procs},
		{-1, procs},
		{3, 3},
		{MaxThreads, MaxThreads},
		{MaxThreads + 1, MaxThreads},
		{1<<32 + 1, MaxThreads}, // wrapped to 1 when stored as int32
		{-(1 << 32) + 5, procs}, // wrapped to 5
		{-(1 << 40), procs},
	} {
		SetThreads(c.set)
		if got := Threads(); got != c.want {
			t.Errorf("SetThreads(%d): Threads() = %d, want %d", c.set, got, c.want)
		}
	}
}
