//go:build cgo && !novulkan

package vulkan

import (
	"fmt"
	"os"
	"testing"

	"github.com/unclip-go/unclip/tensor"
	"github.com/unclip-go/unclip/tensor/tensortest"
)

// gemmTestTiles are the tiles the specialised-GEMM cases run with: the
// built-in choices, and with UNCLIP_TEST_TILES=all every tuning candidate
// of bench/device/tiles.txt too. Only the first runs every case by
// default: lavapipe compiles each pipeline (tile × layout × dtype) in
// about two seconds.
var gemmTestTiles = []string{"64x64x16x4x4", "128x128x16x8x8", "32x64x16x4x4"}

var gemmTestTilesAll = []string{
	"128x128x16x8x8", "64x64x16x8x8", "64x64x16x4x4", "32x64x16x4x4", "64x32x16x4x4",
	"128x64x16x8x4", "64x128x32x4x8", "64x64x32x8x8", "32x32x8x4x4",
}

// TestGEMMTiles runs gemm.comp at every test tile over each operand
// layout (a along k or m, b along k or n), vec4 and scalar loads, tails in
// every dimension, batches, 16-bit operands and results, and the epilogue,
// against the CPU.
func TestGEMMTiles(t *testing.T) {
	b := openTest(t)
	type mmCase struct {
		name    string
		m, k, n int
		aT, bT  bool // a stored (k, m), b stored (n, k)
		batch   int
		dt      tensor.DType // of a, b and the result
		bias    bool
	}
	var cases []mmCase
	for _, sz := range [][3]int{{132, 40, 136}, {33, 17, 45}, {4, 8, 260}, {200, 4, 12}} {
		for _, l := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
			cases = append(cases, mmCase{name: fmt.Sprintf("%dx%dx%d/aT=%v/bT=%v", sz[0], sz[1], sz[2], l[0], l[1]),
				m: sz[0], k: sz[1], n: sz[2], aT: l[0], bT: l[1], batch: 1, dt: tensor.F32})
		}
	}
	cases = append(cases,
		mmCase{name: "batched-bias", m: 36, k: 24, n: 20, bT: true, batch: 3, dt: tensor.F32, bias: true},
		mmCase{name: "f16-bT", m: 68, k: 36, n: 72, bT: true, batch: 1, dt: tensor.F16, bias: true},
		mmCase{name: "f16-odd", m: 9, k: 13, n: 11, batch: 2, dt: tensor.F16},
		mmCase{name: "bf16", m: 40, k: 32, n: 24, aT: true, batch: 1, dt: tensor.BF16, bias: true},
	)
	forTestTiles(t, b, "matmul", len(cases), func(tile string, ci int) {
		c := cases[ci]
		t.Run(tile+"/"+c.name, func(t *testing.T) {
			as, bs := []int{c.batch, c.m, c.k}, []int{c.batch, c.k, c.n}
			if c.aT {
				as = []int{c.batch, c.k, c.m}
			}
			if c.bT {
				bs = []int{c.batch, c.n, c.k}
			}
			in := []*tensor.Tensor{tensortest.Rand(31, as...), tensortest.Rand(32, bs...), tensortest.Rand(33, c.n), tensortest.Rand(34, c.batch, c.m, c.n)}
			tol := castAll(in, c.dt)
			compareOn(t, b, tol, in, func(x []*tensor.Tensor) *tensor.Tensor {
				a, w := x[0], x[1]
				if c.aT {
					a = a.Transpose(1, 2)
				}
				if c.bT {
					w = w.Transpose(1, 2)
				}
				y := tensor.MatMul(a, w)
				if c.bias {
					y = tensor.Add(tensor.GELU(tensor.Add(y, x[2])), x[3])
				}
				return y
			})
		})
	})
	// Tiles the device cannot run, or gemm.comp cannot, are refused.
	for _, bad := range []string{"128x128x16x2x2", "64x64x6x4x4", "64x64x16x4", "1024x1024x16x4x4"} {
		if err := b.ForceTile("matmul", bad); err == nil {
			t.Errorf("ForceTile(%q) accepted", bad)
		}
	}
}

// TestGEMMConvTiles runs gemmconv (the implicit-GEMM convolution) at the
// test tiles: 3×3 with padding, stride 2, 1×1, channel counts with and
// without vec4 weight loads, 16-bit, bias, activation and residual.
func TestGEMMConvTiles(t *testing.T) {
	b := openTest(t)
	type convCase struct {
		name                string
		n, c, h, w, o, k, s int
		dt                  tensor.DType
		epi                 bool
	}
	cases := []convCase{
		{"3x3", 2, 8, 9, 11, 12, 3, 1, tensor.F32, true},
		{"3x3-odd-c", 1, 5, 7, 6, 9, 3, 1, tensor.F32, false},
		{"3x3-stride2", 1, 4, 12, 9, 8, 3, 2, tensor.F32, true},
		{"1x1", 2, 16, 6, 7, 20, 1, 1, tensor.F32, true},
		{"3x3-f16", 1, 8, 10, 10, 16, 3, 1, tensor.F16, true},
		{"3x3-bf16-odd", 1, 3, 5, 9, 7, 3, 1, tensor.BF16, false},
	}
	forTestTiles(t, b, "conv2d", len(cases), func(tile string, ci int) {
		c := cases[ci]
		t.Run(tile+"/"+c.name, func(t *testing.T) {
			oh := (c.h+2*(c.k/2)-c.k)/c.s + 1
			ow := (c.w+2*(c.k/2)-c.k)/c.s + 1
			in := []*tensor.Tensor{tensortest.Rand(41, c.n, c.c, c.h, c.w), tensortest.Rand(42, c.o, c.c, c.k, c.k),
				tensortest.Rand(43, c.o), tensortest.Rand(44, c.n, c.o, oh, ow)}
			tol := castAll(in, c.dt)
			compareOn(t, b, tol, in, func(x []*tensor.Tensor) *tensor.Tensor {
				if !c.epi {
					return tensor.Conv2d(x[0], x[1], nil, c.s, c.k/2)
				}
				return tensor.Add(tensor.SiLU(tensor.Conv2d(x[0], x[1], x[2], c.s, c.k/2)), x[3])
			})
		})
	})
}

// forTestTiles forces each test tile of op in turn and calls run for the
// case indices it covers: every case on the first tile, and past it, by
// default, one case in three (every layout and dtype still covered across
// the tiles); with UNCLIP_TEST_TILES=all every tuning candidate and case.
func forTestTiles(t *testing.T, b *Backend, op string, ncases int, run func(tile string, ci int)) {
	tiles, all := gemmTestTiles, os.Getenv("UNCLIP_TEST_TILES") == "all"
	if all {
		tiles = gemmTestTilesAll
	}
	defer func() {
		if err := b.ForceTile(op, ""); err != nil {
			t.Error(err)
		}
	}()
	for ti, tile := range tiles {
		if err := b.ForceTile(op, tile); err != nil {
			t.Logf("tile %s: %v", tile, err)
			continue
		}
		for ci := 0; ci < ncases; ci++ {
			if ti == 0 || all || (ci+ti)%3 == 0 {
				run(tile, ci)
			}
		}
	}
}

// castAll casts the inputs to dt and returns the comparison tolerance for
// results computed from it.
func castAll(in []*tensor.Tensor, dt tensor.DType) float64 {
	if dt == tensor.F32 {
		return 2e-5
	}
	for i := range in {
		in[i] = in[i].Cast(dt)
	}
	return 1e-2
}
