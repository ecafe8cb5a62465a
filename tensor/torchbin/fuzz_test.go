package torchbin

import (
	"bytes"
	"os"
	"testing"

	"github.com/unclip-go/unclip/tensor/safetensors"
)

// FuzzRead feeds arbitrary bytes to Read: it must return a File or an
// error, never panic, and every tensor it returns must have as many bytes
// as its shape and dtype say.
func FuzzRead(f *testing.F) {
	// Valid files, small: the fuzzer minimises large inputs slowly.
	f.Add(encode(f, allDTypes()))
	f.Add(encode(f, nil))
	var buf bytes.Buffer
	if err := views().encode(&buf); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	if py, err := os.ReadFile("testdata/small_p4.pkl"); err == nil { // protocol 4, from Python
		f.Add(checkpoint(f, py))
	}
	// Mutated ones.
	good := encode(f, []Tensor{{Name: "w", DType: safetensors.F32, Shape: []int{2, 2}, Data: pattern(16, 1)}})
	f.Add(good[:len(good)/2])
	f.Add(rezip(f, good, map[string][]byte{"archive/byteorder": []byte("big")}))
	f.Add(checkpoint(f, []byte("\x80\x02cposix\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.")))
	f.Add(checkpoint(f, []byte("\x80\x02}h\x05.")))
	f.Add(onePickleZip(f, "FloatStorage", 4, 1, []int{2, 2}, []int{2, 1}))
	f.Add(onePickleZip(f, "FloatStorage", 4, 0, []int{2, 2}, []int{1, 2}))
	f.Add(onePickleZip(f, "HalfStorage", 8, 0, []int{4, 4}, []int{0, 1}))
	f.Add(onePickleZip(f, "FloatStorage", 1<<30, 0, []int{2}, []int{1}))
	f.Add(deflated(f))
	f.Add([]byte("\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9\x03."))

	f.Fuzz(func(t *testing.T, data []byte) {
		for _, headers := range []bool{false, true} {
			file, err := read(bytes.NewReader(data), int64(len(data)), headers)
			if err != nil {
				if file != nil {
					t.Fatalf("a File and error %v", err)
				}
				continue
			}
			for _, k := range file.Keys() {
				tt, ok := file.Get(k)
				if !ok {
					t.Fatalf("key %q has no tensor", k)
				}
				n := safetensors.TensorInfo{Shape: tt.Shape}.NumElements()
				if n < 0 || tt.DType.Size() == 0 {
					t.Fatalf("tensor %q: shape %v dtype %q", k, tt.Shape, tt.DType)
				}
				if headers {
					if tt.Data != nil {
						t.Fatalf("headers-only tensor %q has data", k)
					}
				} else if len(tt.Data) != n*tt.DType.Size() {
					t.Fatalf("tensor %q: %d bytes for %s %v", k, len(tt.Data), tt.DType, tt.Shape)
				}
			}
		}
	})
}

// FuzzPickle runs arbitrary data.pkl contents through Read, in an archive
// with storages data/0 (16 bytes), data/1 (24 bytes) and data/2 (64
// bytes): mutations of a pickle inside a zip mostly fail its checksum, so
// FuzzRead alone reaches the unpickler rarely.
func FuzzPickle(f *testing.F) {
	for _, name := range []string{"small_p4.pkl", "state_dict_p2.pkl", "state_dict_p4.pkl"} {
		if py, err := os.ReadFile("testdata/" + name); err == nil {
			f.Add(py)
		}
	}
	f.Add(onePickle("FloatStorage", 4, 0, []int{2, 2}, []int{2, 1}))
	f.Add(onePickle("FloatStorage", 4, 0, []int{2, 2}, []int{1, 2}))
	f.Add(onePickle("LongStorage", 3, 1, []int{2}, []int{1}))
	f.Add(onePickle("HalfStorage", 32, 3, []int{2, 3, 2}, []int{12, 1, 3}))
	f.Add(twoStorages())
	f.Add(views().pickle())
	f.Add([]byte("\x80\x02cposix\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03."))
	f.Add([]byte("\x80\x02}(K\x01]e."))
	f.Fuzz(func(t *testing.T, pkl []byte) {
		data := makeZip(t, zipFile{"archive/data.pkl", pkl}, zipFile{"archive/data/0", pattern(16, 0)},
			zipFile{"archive/data/1", pattern(24, 1)}, zipFile{"archive/data/2", pattern(64, 2)})
		file, err := Read(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			if file != nil {
				t.Fatalf("a File and error %v", err)
			}
			return
		}
		for _, k := range file.Keys() {
			tt, _ := file.Get(k)
			n := safetensors.TensorInfo{Shape: tt.Shape}.NumElements()
			if n < 0 || len(tt.Data) != n*tt.DType.Size() {
				t.Fatalf("tensor %q: %d bytes for %s %v", k, len(tt.Data), tt.DType, tt.Shape)
			}
		}
	})
}

// views is a small state dict of views on shared storages, with
// _metadata: storage 0 is 4 floats, storage 1 one int64.
func views() *layout {
	return &layout{
		storages: []storageData{{safetensors.F32, pattern(4*4, 1)}, {safetensors.I64, pattern(8, 2)}},
		views: []viewSpec{
			{name: "w", storage: 0, shape: []int{2, 2}, stride: []int{2, 1}},
			{name: "w.t", storage: 0, shape: []int{2, 2}, stride: []int{1, 2}},
			{name: "tail", storage: 0, offset: 2, shape: []int{2}, stride: []int{1}},
			{name: "n", storage: 1, shape: []int{}, stride: []int{}},
		},
		metadata: true,
	}
}
