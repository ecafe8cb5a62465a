//go:build cgo && !novulkan

package vulkan

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

// gemmTile is a tiling of gemm.comp: a BM×BN block of the result per
// workgroup, BK-deep slices of the operands in shared memory, and TM×TN
// results per invocation. Tile sizes are specialization constants, so a
// tuned table changes data, not code.
type gemmTile struct{ BM, BN, BK, TM, TN int }

func (t gemmTile) String() string {
	return fmt.Sprintf("%dx%dx%dx%dx%d", t.BM, t.BN, t.BK, t.TM, t.TN)
}

// threads is the workgroup size.
func (t gemmTile) threads() int { return (t.BM / t.TM) * (t.BN / t.TN) }

// sharedBytes is the shared memory of one workgroup.
func (t gemmTile) sharedBytes() int { return t.BK * (t.BM + t.BN) * 4 }

// check reports whether gemm.comp can run the tile: TM and TN 4 or 8 (the
// invocation's rows and columns come in vec4 groups), BM and BN multiples
// of them, BK a multiple of 4 (vec4 loads along k), and a workgroup of 32
// to 1024 invocations.
func (t gemmTile) check() error {
	ok := func(v int) bool { return v == 4 || v == 8 }
	switch {
	case !ok(t.TM) || !ok(t.TN):
		return fmt.Errorf("tile %v: TM and TN must be 4 or 8", t)
	case t.BM <= 0 || t.BN <= 0 || t.BM%t.TM != 0 || t.BN%t.TN != 0:
		return fmt.Errorf("tile %v: BM and BN must be positive multiples of TM and TN", t)
	case t.BK < 4 || t.BK%4 != 0 || t.BK > 64:
		return fmt.Errorf("tile %v: BK must be a multiple of 4 in [4, 64]", t)
	case t.threads() < 16 || t.threads() > 1024:
		return fmt.Errorf("tile %v: %d invocations per workgroup, want 16..1024", t, t.threads())
	}
	return nil
}

// parseGEMMTile reads "BMxBNxBKxTMxTN".
func parseGEMMTile(s string) (gemmTile, error) {
	f := strings.Split(s, "x")
	if len(f) != 5 {
		return gemmTile{}, fmt.Errorf("tile %q: want BMxBNxBKxTMxTN, e.g. 128x128x16x8x8", s)
	}
	var v [5]int
	for i, x := range f {
		n, err := strconv.Atoi(x)
		if err != nil || n <= 0 || n > 4096 {
			return gemmTile{}, fmt.Errorf("tile %q: %q is not a size", s, x)
		}
		v[i] = n
	}
	t := gemmTile{v[0], v[1], v[2], v[3], v[4]}
	return t, t.check()
}

// attnTile is a tiling of the attention kernel: BQ query rows per
// workgroup (one per invocation) and BKV keys staged per step.
type attnTile struct{ BQ, BKV int }

func (t attnTile) String() string { return fmt.Sprintf("%dx%d", t.BQ, t.BKV) }

// threads is flash.comp's workgroup size: 4×4 scores per invocation.
func (t attnTile) threads() int { return (t.BQ / 4) * (t.BKV / 4) }

// sharedBytes is flash.comp's shared memory with head-size bound md: the
// query block, the key and value blocks, the scores and three per-row
// values.
func (t attnTile) sharedBytes(md int) int {
	return 4 * (t.BQ*md + 2*t.BKV*md + t.BQ*t.BKV + 3*t.BQ)
}

func parseAttnTile(s string) (attnTile, error) {
	f := strings.Split(s, "x")
	if len(f) != 2 {
		return attnTile{}, fmt.Errorf("attention tile %q: want BQxBKV, e.g. 64x32", s)
	}
	q, err1 := strconv.Atoi(f[0])
	k, err2 := strconv.Atoi(f[1])
	t := attnTile{q, k}
	if err1 != nil || err2 != nil || q < 16 || q > 256 || q&(q-1) != 0 || k < 8 || k > 128 || k&(k-1) != 0 {
		return attnTile{}, fmt.Errorf("attention tile %q: BQ a power of two in [16, 256], BKV in [8, 128]", s)
	}
	return t, nil
}

// tuneEntry is one row of a tuned tile table: the best tile measured for
// an op at a shape (bench/device/gpu-run.sh writes these).
type tuneEntry struct {
	Op    string  `json:"op"`
	Shape string  `json:"shape"`
	Tile  string  `json:"tile"`
	GFLOP float64 `json:"gflops,omitempty"`
	dims  []float64
}

// tuneTable is a tuned tile table for one device (UNCLIP_VK_TUNING).
type tuneTable struct {
	Device string      `json:"device"`
	Tiles  []tuneEntry `json:"tiles"`
}

// loadTuneTable reads a table; entries whose tile does not parse are an
// error (a table is data the user pointed us at).
func loadTuneTable(path string) (*tuneTable, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("UNCLIP_VK_TUNING: %w", err)
	}
	var t tuneTable
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("UNCLIP_VK_TUNING %s: %w", path, err)
	}
	for i := range t.Tiles {
		e := &t.Tiles[i]
		var err error
		if e.Op == "attention" {
			_, err = parseAttnTile(e.Tile)
		} else {
			_, err = parseGEMMTile(e.Tile)
		}
		if err != nil {
			return nil, fmt.Errorf("UNCLIP_VK_TUNING %s: entry %d: %w", path, i, err)
		}
		shape, _, _ := strings.Cut(e.Shape, ":") // options (conv2d O:K) and
		shape, _, _ = strings.Cut(shape, "/")    // layouts (matmul /linear) aside
		for _, f := range strings.Split(shape, "x") {
			n, err := strconv.Atoi(f)
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("UNCLIP_VK_TUNING %s: entry %d: shape %q", path, i, e.Shape)
			}
			e.dims = append(e.dims, math.Log(float64(n)))
		}
	}
	return &t, nil
}

// lookup returns the tile of the entry for op nearest to dims (by
// distance of the logarithms of the sizes), or "".
func (t *tuneTable) lookup(op string, dims ...int) string {
	if t == nil {
		return ""
	}
	best, bestD := "", math.Inf(1)
	for _, e := range t.Tiles {
		if e.Op != op || len(e.dims) != len(dims) {
			continue
		}
		d := 0.0
		for i, x := range dims {
			v := math.Log(float64(max(x, 1))) - e.dims[i]
			d += v * v
		}
		if d < bestD {
			best, bestD = e.Tile, d
		}
	}
	return best
}

// defaultGEMMTile is the built-in choice for an m×n result over batch
// matrices, when no tuned table covers the device: large
// tiles with 8×8 per invocation where there is enough work to fill the
// device, smaller ones for skinny results (the prior's 2·81-row linears,
// CLIP's 77 tokens) so that more workgroups run.
func defaultGEMMTile(m, n, batch int) gemmTile {
	switch work := m * n * batch; {
	case m >= 128 && n >= 128 && work >= 1<<19:
		return gemmTile{128, 128, 16, 8, 8}
	case m >= 64 && n >= 64:
		return gemmTile{64, 64, 16, 8, 8}
	case m < 64 && n >= 64:
		return gemmTile{32, 64, 16, 4, 4}
	case n < 64 && m >= 64:
		return gemmTile{64, 32, 16, 4, 4}
	default:
		return gemmTile{32, 32, 8, 4, 4}
	}
}

// tileChoice is a backend's source of kernel tiles.
type tileChoice struct {
	forced map[string]string // op → tile (ForceTile)
	loaded bool
	table  *tuneTable // UNCLIP_VK_TUNING, nil when unset or for another device
	err    error      // reading UNCLIP_VK_TUNING failed
}

// tuned returns the tuned table for this device, read on first use.
func (b *Backend) tuned() (*tuneTable, error) {
	c := &b.tiles
	if !c.loaded {
		c.loaded = true
		if path := os.Getenv("UNCLIP_VK_TUNING"); path != "" {
			t, err := loadTuneTable(path)
			switch {
			case err != nil:
				c.err = err
			case t.Device == b.phys.info.Name:
				c.table = t
			}
		}
	}
	return c.table, c.err
}

// gemmTileFor picks the tile of a GEMM (op "matmul" or "conv2d", dims the
// bench shape's sizes): a forced tile (ForceTile), else the tuned table's
// nearest entry for this device, else the built-in rule; a tile the
// device cannot run falls back to the rule.
func (b *Backend) gemmTileFor(op string, m, n, batch int, dims ...int) (gemmTile, error) {
	s := b.tiles.forced[op]
	if s == "" {
		table, err := b.tuned()
		if err != nil {
			return gemmTile{}, err
		}
		s = table.lookup(op, dims...)
	}
	if s != "" {
		if t, err := parseGEMMTile(s); err == nil && b.fits(t.threads(), t.sharedBytes()) {
			return t, nil
		}
	}
	t := defaultGEMMTile(m, n, batch)
	for !b.fits(t.threads(), t.sharedBytes()) && t.BM > 16 {
		t = gemmTile{t.BM / 2, t.BN / 2, t.BK, 4, 4}
	}
	return t, nil
}

// fits reports whether a workgroup of n invocations using shared bytes of
// shared memory is within the device's limits.
func (b *Backend) fits(n, shared int) bool {
	return b.checkWorkgroup(n, 1, 1, shared) == nil
}

// ForceTile makes every later op of kind op ("matmul", "conv2d" or
// "attention") use tile (the syntax of bench kernels --tile), for tuning
// sweeps; "" returns to the table and the built-in rule.
func (b *Backend) ForceTile(op, tile string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if tile == "" {
		delete(b.tiles.forced, op)
		return nil
	}
	switch op {
	case "matmul", "conv2d":
		t, err := parseGEMMTile(tile)
		if err != nil {
			return err
		}
		if err := b.checkWorkgroup(t.threads(), 1, 1, t.sharedBytes()); err != nil {
			return fmt.Errorf("tile %v: %w", t, err)
		}
	case "attention":
		t, err := parseAttnTile(tile)
		if err != nil {
			return err
		}
		if err := b.checkWorkgroup(t.threads(), 1, 1, t.sharedBytes(max(64, t.BKV))); err != nil {
			return fmt.Errorf("attention tile %v (64-wide heads): %w", t, err)
		}
	default:
		return fmt.Errorf("no tiles for op %q (matmul, conv2d, attention)", op)
	}
	if b.tiles.forced == nil {
		b.tiles.forced = map[string]string{}
	}
	b.tiles.forced[op] = tile
	return nil
}
