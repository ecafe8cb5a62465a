package tensor

import (
	"math/rand/v2"
	"testing"
)

// TestPlanNoOverlap: values whose lifetimes overlap never share arena
// bytes, on random lifetimes and sizes, and the arena is at least the
// largest set of values live at one node.
func TestPlanNoOverlap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 200; trial++ {
		g := &Graph{name: "random"}
		nodes := 1 + r.IntN(40)
		g.nodes = make([]*Node, nodes)
		for i := 0; i < 1+r.IntN(60); i++ {
			first := r.IntN(nodes)
			last := first + r.IntN(nodes-first)
			g.values = append(g.values, &value{g: g, id: i, bytes: 1 + r.IntN(5000), first: first, last: last})
		}
		g.assign()
		live := make([]int, nodes)
		for _, v := range g.values {
			if v.off%arenaAlign != 0 || v.off+v.bytes > g.arena {
				t.Fatalf("trial %d: value %d at %d+%d outside the %d-byte arena or misaligned", trial, v.id, v.off, v.bytes, g.arena)
			}
			for i := v.first; i <= v.last; i++ {
				live[i] += alignUp(v.bytes, arenaAlign)
			}
			for _, u := range g.values {
				if u == v || u.first > v.last || v.first > u.last {
					continue
				}
				if u.off < v.off+v.bytes && v.off < u.off+u.bytes {
					t.Fatalf("trial %d: values %d [%d,%d] and %d [%d,%d] overlap in the arena", trial, v.id, v.first, v.last, u.id, u.first, u.last)
				}
			}
		}
		peak := 0
		for i, l := range live {
			if l > g.arena {
				t.Fatalf("trial %d: %d bytes live at node %d, arena %d", trial, l, i, g.arena)
			}
			peak = max(peak, l)
		}
		if g.LiveBytes() != peak {
			t.Fatalf("trial %d: LiveBytes %d, want %d", trial, g.LiveBytes(), peak)
		}
	}
}
