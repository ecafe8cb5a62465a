package safetensors

import (
	"os"
	"path/filepath"
	"testing"
)

// TestLoadIsolatedFromFile loads a file, then truncates and overwrites it
// on disk: the loaded tensors must not change (with a mapping, reading a
// truncated page kills the process with SIGBUS).
func TestLoadIsolatedFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.safetensors")
	data := make([]byte, 3*4096)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := WriteFile(path, []TensorInfo{{Name: "w", DType: U8, Shape: []int{len(data)}, Data: data}}, nil); err != nil {
		t.Fatal(err)
	}
	f, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, make([]byte, 100), 0o644); err != nil {
		t.Fatal(err)
	}
	info, ok := f.Get("w")
	if !ok {
		t.Fatal("tensor w missing")
	}
	for i, b := range info.Data {
		if b != data[i] {
			t.Fatalf("byte %d changed with the file: %d, want %d", i, b, data[i])
		}
	}
}

func TestLoadRefusesSpecialFiles(t *testing.T) {
	if _, err := Load(t.TempDir()); err == nil {
		t.Error("a directory loaded")
	}
	if _, err := os.Stat("/dev/zero"); err == nil {
		if _, err := Load("/dev/zero"); err == nil {
			t.Error("/dev/zero loaded")
		}
	}
}
