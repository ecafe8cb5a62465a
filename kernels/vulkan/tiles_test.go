//go:build cgo && !novulkan

package vulkan

import (
	"os"
	"path/filepath"
	"testing"
)

// TestTuneTable reads a table as gpu-run.sh writes it and looks tiles up
// by nearest shape; a table with a bad tile or shape is an error.
func TestTuneTable(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	os.WriteFile(good, []byte(`{"device": "dev", "tiles": [
		{"op": "matmul", "shape": "162x2048x2048/linear", "tile": "32x64x16x4x4"},
		{"op": "matmul", "shape": "4096x4096x4096", "tile": "128x128x32x8x8"},
		{"op": "conv2d", "shape": "2x320x64x64:320:3", "tile": "64x64x16x8x8"},
		{"op": "attention", "shape": "2x10x1024x1105x64", "tile": "32x16"}]}`), 0o644)
	tab, err := loadTuneTable(good)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		op   string
		dims []int
		want string
	}{
		{"matmul", []int{160, 2048, 2048}, "32x64x16x4x4"},
		{"matmul", []int{3000, 3000, 3000}, "128x128x32x8x8"},
		{"conv2d", []int{2, 300, 60, 60}, "64x64x16x8x8"},
		{"attention", []int{2, 10, 900, 1000, 64}, "32x16"},
		{"attention", []int{64}, ""}, // wrong arity: no entry
		{"gemm", []int{1, 2, 3}, ""},
	} {
		if got := tab.lookup(c.op, c.dims...); got != c.want {
			t.Errorf("lookup(%s, %v) = %q, want %q", c.op, c.dims, got, c.want)
		}
	}
	for name, body := range map[string]string{
		"tile":  `{"device": "d", "tiles": [{"op": "matmul", "shape": "8x8x8", "tile": "64x64x16x3x4"}]}`,
		"shape": `{"device": "d", "tiles": [{"op": "matmul", "shape": "8xax8", "tile": "64x64x16x4x4"}]}`,
		"json":  `{"device": `,
	} {
		p := filepath.Join(dir, name+".json")
		os.WriteFile(p, []byte(body), 0o644)
		if _, err := loadTuneTable(p); err == nil {
			t.Errorf("bad %s accepted", name)
		}
	}
}
