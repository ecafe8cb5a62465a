package cpu

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/unclip-go/unclip/tensor"
)

// TestProfile checks the op profile: classes named by op, route and map
// size, calls counted, the products' FLOPs, nothing counted while off, and
// fresh totals when turned on again.
func TestProfile(t *testing.T) {
	b := Backend{}
	defer b.SetProfile(false)
	rng := rand.New(rand.NewPCG(21, 22))
	a := tensor.FromFloat32(randSlice(rng, 5*7), 5, 7)
	w := tensor.FromFloat32(randSlice(rng, 7*3), 7, 3)
	x := tensor.FromFloat32(randSlice(rng, 2*4*6*6), 2, 4, 6, 6)
	k := tensor.FromFloat32(randSlice(rng, 8*4*9), 8, 4, 3, 3)
	run := func() {
		for _, n := range []*tensor.Node{matmulNode(a, w, nil), matmulNode(a, w, nil), convNode(x, k, nil, 1, 1)} {
			if err := b.Run(n); err != nil {
				t.Fatal(err)
			}
		}
	}
	run() // profiling off: not counted
	if err := b.SetProfile(true); err != nil {
		t.Fatal(err)
	}
	run()
	stats, err := b.Profile()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]OpStat{}
	for _, s := range stats {
		got[s.Name] = s
	}
	suffix := ""
	if active.Load() == nil {
		suffix = " (ref)"
	}
	mm := got["matmul"+suffix]
	if mm.Calls != 2 || mm.Flops != 2*2*5*7*3 || mm.Time <= 0 {
		t.Errorf("matmul: %+v (all: %+v)", mm, stats)
	}
	var conv OpStat
	for name, s := range got {
		if strings.HasPrefix(name, "conv2d 3x3") && strings.HasSuffix(name, "6x6"+suffix) {
			conv = s
		}
	}
	if conv.Calls != 1 || conv.Flops != 2*2*8*6*6*4*9 {
		t.Errorf("conv2d: %+v (all: %+v)", conv, stats)
	}
	table := FormatProfile(stats)
	if !strings.Contains(table, "matmul") || !strings.Contains(table, "total") {
		t.Errorf("table:\n%s", table)
	}
	if got[packingClass].Calls != 0 {
		t.Errorf("packing counted without a weight: %+v", got[packingClass])
	}
	// Off, then on again: the totals start afresh.
	b.SetProfile(false)
	run()
	b.SetProfile(true)
	if stats, _ := b.Profile(); len(stats) != 0 {
		t.Errorf("after turning profiling on again: %+v", stats)
	}
}

// TestProfileWeightPacking checks that the first product on a model weight
// books its packing apart from the op, and the next one books none.
func TestProfileWeightPacking(t *testing.T) {
	if active.Load() == nil {
		t.Skip("the reference kernels do not pack weights")
	}
	b := Backend{}
	defer b.SetProfile(false)
	rng := rand.New(rand.NewPCG(23, 24))
	a := tensor.FromFloat32(randSlice(rng, 40*64), 40, 64)
	w := tensor.FromFloat32(randSlice(rng, 96*64), 96, 64) // 96 columns: whole panels, so it is packed
	w.Storage().MarkWeight()
	b.SetProfile(true)
	for i := 0; i < 2; i++ {
		if err := b.Run(matmulNode(a, w.T(), nil)); err != nil {
			t.Fatal(err)
		}
	}
	if w.Storage().Packing() == nil {
		t.Fatal("the weight was not packed")
	}
	stats, _ := b.Profile()
	got := map[string]OpStat{}
	for _, s := range stats {
		got[s.Name] = s
	}
	if p := got[packingClass]; p.Calls != 1 || p.Time <= 0 || p.Flops != 0 {
		t.Errorf("packing: %+v (all: %+v)", p, stats)
	}
	if mm := got["matmul"]; mm.Calls != 2 || mm.Time <= 0 {
		t.Errorf("matmul: %+v (all: %+v)", mm, stats)
	}
}
