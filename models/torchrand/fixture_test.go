package torchrand

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// fixtureDir returns the unclip-tiny fixture folder: $UNCLIP_FIXTURES/unclip-tiny if the
// variable is set, else ../../../shared/fixtures/unclip-tiny relative to this package.
// A missing fixture fails the test: the fixture is part of the acceptance bar.
func fixtureDir(t *testing.T) string {
	t.Helper()
	root := os.Getenv("UNCLIP_FIXTURES")
	if root == "" {
		root = filepath.Join("..", "..", "..", "shared", "fixtures")
	}
	dir := filepath.Join(root, "unclip-tiny")
	if _, err := os.Stat(filepath.Join(dir, "golden.safetensors")); err != nil {
		t.Fatalf("fixture missing (set UNCLIP_FIXTURES): %v", err)
	}
	return dir
}

// stTensor is one tensor of a safetensors file, decoded to float32 or int64.
type stTensor struct {
	dtype string
	shape []int
	f32   []float32
	i64   []int64
}

// readSafetensors is a minimal test-only safetensors reader (F32 and I64 tensors only;
// others are skipped): 8-byte little-endian header length, JSON header, data.
func readSafetensors(path string) (map[string]stTensor, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(raw) < 8 {
		return nil, fmt.Errorf("%s: too short", path)
	}
	n := binary.LittleEndian.Uint64(raw)
	if n > uint64(len(raw)-8) {
		return nil, fmt.Errorf("%s: header length %d too large", path, n)
	}
	var header map[string]json.RawMessage
	if err := json.Unmarshal(raw[8:8+n], &header); err != nil {
		return nil, fmt.Errorf("%s: header: %w", path, err)
	}
	data := raw[8+n:]
	out := map[string]stTensor{}
	for name, msg := range header {
		if name == "__metadata__" {
			continue
		}
		var h struct {
			Dtype       string   `json:"dtype"`
			Shape       []int    `json:"shape"`
			DataOffsets [2]int64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(msg, &h); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, name, err)
		}
		b, e := h.DataOffsets[0], h.DataOffsets[1]
		if b < 0 || e < b || e > int64(len(data)) {
			return nil, fmt.Errorf("%s: %s: bad offsets %v", path, name, h.DataOffsets)
		}
		buf := data[b:e]
		t := stTensor{dtype: h.Dtype, shape: h.Shape}
		switch h.Dtype {
		case "F32":
			t.f32 = make([]float32, len(buf)/4)
			for i := range t.f32 {
				t.f32[i] = math.Float32frombits(binary.LittleEndian.Uint32(buf[4*i:]))
			}
		case "I64":
			t.i64 = make([]int64, len(buf)/8)
			for i := range t.i64 {
				t.i64[i] = int64(binary.LittleEndian.Uint64(buf[8*i:]))
			}
		default:
			continue
		}
		out[name] = t
	}
	return out, nil
}

// loadGolden reads golden.safetensors of the tiny fixture once per test.
func loadGolden(t *testing.T) map[string]stTensor {
	t.Helper()
	g, err := readSafetensors(filepath.Join(fixtureDir(t), "golden.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	return g
}
