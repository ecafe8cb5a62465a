package safetensors

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func FuzzParse(f *testing.F) {
	// Valid files.
	for _, tensors := range [][]TensorInfo{
		nil,
		{{Name: "x", DType: F32, Shape: []int{2, 3}, Data: make([]byte, 24)}},
		{
			{Name: "s", DType: I64, Shape: []int{}, Data: make([]byte, 8)},
			{Name: "e", DType: F16, Shape: []int{0, 2}},
			{Name: "b", DType: BOOL, Shape: []int{3}, Data: []byte{0, 1, 1}},
		},
	} {
		var buf bytes.Buffer
		if err := Encode(&buf, tensors, map[string]string{"format": "pt"}); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	// Invalid ones.
	for _, seed := range []struct {
		header string
		data   int
	}{
		{`{"x":{"dtype":"F32","shape":[10,10],"data_offsets":[0,400]}}`, 396},
		{`{"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}`, 4},
		{`{"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"x":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, 2},
		{`{"__metadata__":{"a":1}}`, 0},
		{`{"x":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,4]}}`, 4},
		{`{"x":{"dtype":"BF16","shape":[-1],"data_offsets":[0,2]}}`, 2},
		{`[]`, 0},
		{`{"x":`, 0},
	} {
		f.Add(rawFile(seed.header, make([]byte, seed.data)))
	}
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'})

	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(data)
		if err != nil {
			if file != nil {
				t.Fatalf("Parse returned a File and error %v", err)
			}
			return
		}
		var total int
		var tensors []TensorInfo
		for _, name := range file.Keys() {
			ti, ok := file.Get(name)
			if !ok {
				t.Fatalf("Get(%q) missing", name)
			}
			want, ok := byteSize(ti.DType, ti.Shape)
			if !ok || len(ti.Data) != want || ti.NumElements() < 0 {
				t.Fatalf("%q: %d bytes for %s %v", name, len(ti.Data), ti.DType, ti.Shape)
			}
			total += len(ti.Data)
			tensors = append(tensors, ti)
		}
		// The tensors tile the data buffer exactly.
		n := int(binary.LittleEndian.Uint64(data))
		if total != len(data)-8-n {
			t.Fatalf("tensors hold %d bytes, data buffer is %d", total, len(data)-8-n)
		}
		// What was parsed can be written and read back.
		var buf bytes.Buffer
		if err := Encode(&buf, tensors, file.Metadata()); err != nil {
			t.Fatalf("re-Encode: %v", err)
		}
		again, err := Parse(buf.Bytes())
		if err != nil {
			t.Fatalf("Parse of re-encoded file: %v", err)
		}
		if again.Len() != file.Len() {
			t.Fatalf("re-parsed %d tensors, want %d", again.Len(), file.Len())
		}
		file.Close()
	})
}
