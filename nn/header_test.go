package nn

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	_ "github.com/unclip-go/unclip/kernels/cpu"
	"github.com/unclip-go/unclip/tensor"
)

// writeSparse writes a safetensors file with the given JSON header and
// size bytes of (sparse) zero data.
func writeSparse(t *testing.T, header string, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "w.safetensors")
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	if err := os.WriteFile(p, append(b, header...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, int64(8+len(header))+size); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHeaderStateDict binds weights known from a header alone, as inspect
// does: a hostile header declaring a 4 GiB tensor at an unaligned offset
// (which a mapped state dict copies to align) costs no memory, and no
// file stays open.
func TestHeaderStateDict(t *testing.T) {
	const n = 1 << 30 // float32 elements: 4 GiB
	header := `{"w":{"dtype":"F32","shape":[1073741824],"data_offsets":[0,4294967296]},"b":{"dtype":"F16","shape":[3],"data_offsets":[4294967296,4294967302]}}`
	if (8+len(header))%4 == 0 {
		header += " " // make the data unaligned for float32
	}
	path := writeSparse(t, header, 4*n+6)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	sd, err := LoadStateDictFor(Target{HeadersOnly: true}, path)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if a := after.TotalAlloc - before.TotalAlloc; a > 1<<20 {
		t.Errorf("reading the header allocated %d bytes", a)
	}
	if len(sd.files) != 0 {
		t.Errorf("%d files kept open", len(sd.files))
	}
	b := NewBinder(sd, Target{HeadersOnly: true, DType: tensor.BF16})
	w := b.Tensor("w", n)
	bias := b.Tensor("b", 3)
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	if w.DType() != tensor.BF16 || w.Numel() != n || !w.Storage().Freed() || bias.DType() != tensor.BF16 {
		t.Errorf("bound %v and %v, want memory-less BF16 tensors", w, bias)
	}
	if got := sd.NumParams(); got != n+3 {
		t.Errorf("NumParams %d, want %d", got, n+3)
	}
	b.Tensor("w", n, 2)
	b.Tensor("missing", 1<<20, 1<<20)
	if err := b.Err(); err == nil || !strings.Contains(err.Error(), `tensor "w" has shape [1073741824], expected [1073741824 2] (and 1 more`) {
		t.Errorf("misfits: %v", err)
	}
	if err := sd.Release(); err != nil {
		t.Error(err)
	}
}

// TestHeaderStateDictErrors: files that are not safetensors, or hold
// tensors of types the engine has no use for, fail with the file named.
func TestHeaderStateDictErrors(t *testing.T) {
	for _, c := range []struct {
		name, header string
		size         int64
		want         string
	}{
		{"truncated", `{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, 8, "exceed data size"},
		{"unknown dtype", `{"w":{"dtype":"Q4","shape":[4],"data_offsets":[0,16]}}`, 16, "Q4"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeSparse(t, c.header, c.size)
			_, err := HeaderStateDict(path)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %v, want one naming %s and saying %q", err, path, c.want)
			}
		})
	}
	if _, err := HeaderStateDict(filepath.Join(t.TempDir(), "none.safetensors")); err == nil {
		t.Error("a missing file gave no error")
	}
}
