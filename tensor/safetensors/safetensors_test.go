package safetensors

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/unclip-go/unclip/models/golden/fixtures"
)

var allDTypes = []DType{F32, F16, BF16, F64, I64, I32, I16, I8, U8, U16, U32, U64, BOOL, F8E4M3, F8E5M2}

// rawFile assembles a file from a header and a data buffer without any
// validation, for building malformed inputs.
func rawFile(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

// randomData returns n elements of dtype with random contents (0/1 for BOOL).
func randomData(r *rand.Rand, dtype DType, n int) []byte {
	b := make([]byte, n*dtype.Size())
	for i := range b {
		b[i] = byte(r.UintN(256))
		if dtype == BOOL {
			b[i] &= 1
		}
	}
	return b
}

func encode(t *testing.T, tensors []TensorInfo, metadata map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Encode(&buf, tensors, metadata); err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return buf.Bytes()
}

// roundTripTensors has every dtype in a few shapes: a matrix, a scalar and
// empty tensors.
func roundTripTensors() []TensorInfo {
	r := rand.New(rand.NewPCG(1, 2))
	var ts []TensorInfo
	for _, d := range allDTypes {
		for _, shape := range [][]int{{2, 3}, {}, {0}, {3, 0, 2}, {5}} {
			n, _ := numElements(shape)
			ts = append(ts, TensorInfo{
				Name:  fmt.Sprintf("%s/%v", d, shape),
				DType: d,
				Shape: shape,
				Data:  randomData(r, d, n),
			})
		}
	}
	return ts
}

func checkSame(t *testing.T, f *File, want []TensorInfo, metadata map[string]string) {
	t.Helper()
	if f.Len() != len(want) {
		t.Fatalf("Len = %d, want %d", f.Len(), len(want))
	}
	keys := f.Keys()
	if !slices.IsSorted(keys) {
		t.Errorf("Keys not sorted: %q", keys)
	}
	if metadata == nil {
		metadata = map[string]string{}
	}
	if got := f.Metadata(); !reflect.DeepEqual(got, metadata) {
		t.Errorf("Metadata = %v, want %v", got, metadata)
	}
	for _, w := range want {
		g, ok := f.Get(w.Name)
		if !ok {
			t.Errorf("Get(%q) missing", w.Name)
			continue
		}
		if g.Name != w.Name || g.DType != w.DType || !slices.Equal(g.Shape, w.Shape) || !bytes.Equal(g.Data, w.Data) {
			t.Errorf("Get(%q) = %s %v %d bytes, want %s %v %d bytes", w.Name, g.DType, g.Shape, len(g.Data), w.DType, w.Shape, len(w.Data))
		}
		if g.NumElements()*g.DType.Size() != len(g.Data) {
			t.Errorf("%q: NumElements %d inconsistent with %d bytes", w.Name, g.NumElements(), len(g.Data))
		}
	}
	if _, ok := f.Get("no such tensor"); ok {
		t.Errorf("Get of a missing name reported true")
	}
}

func TestRoundTrip(t *testing.T) {
	tensors := roundTripTensors()
	metadata := map[string]string{"format": "pt", "note": "<&> \"quoted\" ünïcode"}
	b := encode(t, tensors, metadata)
	n := binary.LittleEndian.Uint64(b)
	if n%8 != 0 {
		t.Errorf("header length %d is not a multiple of 8", n)
	}
	if !strings.HasPrefix(string(b[8:]), `{"__metadata__":{"format":"pt","note":"<&>`) {
		t.Errorf("unexpected header start %q", b[8:60])
	}
	f, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	checkSame(t, f, tensors, metadata)
	if f.Path() != "" {
		t.Errorf("Path of a parsed file = %q, want empty", f.Path())
	}
	if err := f.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}

	// Empty file: no tensors, no metadata.
	b = encode(t, nil, nil)
	if string(b[8:]) != "{}      " {
		t.Errorf("empty file header = %q", b[8:])
	}
	f, err = Parse(b)
	if err != nil {
		t.Fatalf("Parse empty: %v", err)
	}
	checkSame(t, f, nil, nil)
}

func TestWriteFileOpen(t *testing.T) {
	tensors := roundTripTensors()
	metadata := map[string]string{"k": "v"}
	path := filepath.Join(t.TempDir(), "rt.safetensors")
	if err := WriteFile(path, tensors, metadata); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	// Overwriting an existing file works too.
	if err := WriteFile(path, tensors, metadata); err != nil {
		t.Fatalf("WriteFile over existing: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want 1", len(entries))
	}
	f, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if f.Path() != path {
		t.Errorf("Path = %q, want %q", f.Path(), path)
	}
	checkSame(t, f, tensors, metadata)
	if err := f.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, ok := f.Get(tensors[0].Name); ok {
		t.Errorf("Get after Close reported true")
	}
	if f.Len() != len(tensors) || len(f.Keys()) != len(tensors) {
		t.Errorf("Len/Keys changed after Close")
	}
}

func TestViews(t *testing.T) {
	f32 := []float32{1.5, -2, float32(math.Inf(1)), 0}
	var f32b []byte
	for _, v := range f32 {
		f32b = binary.LittleEndian.AppendUint32(f32b, math.Float32bits(v))
	}
	i64 := []int64{-1, 1 << 40, 0}
	var i64b []byte
	for _, v := range i64 {
		i64b = binary.LittleEndian.AppendUint64(i64b, uint64(v))
	}
	u16 := []uint16{0x3c00, 0xffff, 1}
	var u16b []byte
	for _, v := range u16 {
		u16b = binary.LittleEndian.AppendUint16(u16b, v)
	}

	// unaligned returns a copy of b that starts at an odd address.
	unaligned := func(b []byte) []byte {
		buf := make([]byte, len(b)+1)
		copy(buf[1:], b)
		return buf[1:]
	}
	for _, align := range []string{"aligned", "unaligned"} {
		conv := func(b []byte) []byte {
			if align == "unaligned" {
				return unaligned(b)
			}
			return slices.Clone(b)
		}
		t.Run(align, func(t *testing.T) {
			got, err := TensorInfo{Name: "f", DType: F32, Shape: []int{2, 2}, Data: conv(f32b)}.Float32s()
			if err != nil || !slices.Equal(got, f32) {
				t.Errorf("Float32s = %v, %v; want %v", got, err, f32)
			}
			gi, err := TensorInfo{Name: "i", DType: I64, Shape: []int{3}, Data: conv(i64b)}.Int64s()
			if err != nil || !slices.Equal(gi, i64) {
				t.Errorf("Int64s = %v, %v; want %v", gi, err, i64)
			}
			for _, d := range []DType{F16, BF16, U16} {
				gu, err := TensorInfo{Name: "u", DType: d, Shape: []int{3}, Data: conv(u16b)}.Uint16s()
				if err != nil || !slices.Equal(gu, u16) {
					t.Errorf("Uint16s(%s) = %v, %v; want %v", d, gu, err, u16)
				}
			}
		})
	}

	// Aligned F32 data is viewed in place on a little-endian host.
	data := slices.Clone(f32b)
	v, _ := TensorInfo{Name: "f", DType: F32, Shape: []int{4}, Data: data}.Float32s()
	data[0], data[1], data[2], data[3] = 0, 0, 0x80, 0x3f // 1.0
	if littleEndianHost && v[0] != 1 {
		t.Errorf("aligned Float32s did not alias Data: v[0] = %v", v[0])
	}

	bools, err := TensorInfo{Name: "b", DType: BOOL, Shape: []int{3}, Data: []byte{1, 0, 1}}.Bools()
	if err != nil || !slices.Equal(bools, []bool{true, false, true}) {
		t.Errorf("Bools = %v, %v", bools, err)
	}
	// viewErr calls the named typed view of ti and returns its error.
	viewErr := func(method string, ti TensorInfo) error {
		var err error
		switch method {
		case "Float32s":
			_, err = ti.Float32s()
		case "Uint16s":
			_, err = ti.Uint16s()
		case "Int64s":
			_, err = ti.Int64s()
		case "Bools":
			_, err = ti.Bools()
		}
		return err
	}
	for _, tc := range []struct {
		method string
		ti     TensorInfo
		want   string
	}{
		{"Float32s", TensorInfo{Name: "x", DType: I64, Shape: []int{1}, Data: make([]byte, 8)}, `safetensors: tensor "x" has dtype I64; Float32s needs F32`},
		{"Uint16s", TensorInfo{Name: "x", DType: F32, Shape: []int{1}, Data: make([]byte, 4)}, `safetensors: tensor "x" has dtype F32; Uint16s needs F16, BF16 or U16`},
		{"Int64s", TensorInfo{Name: "x", DType: U64, Shape: []int{1}, Data: make([]byte, 8)}, `safetensors: tensor "x" has dtype U64; Int64s needs I64`},
		{"Bools", TensorInfo{Name: "x", DType: U8, Shape: []int{1}, Data: make([]byte, 1)}, `safetensors: tensor "x" has dtype U8; Bools needs BOOL`},
		{"Bools", TensorInfo{Name: "x", DType: BOOL, Shape: []int{3}, Data: []byte{0, 1, 2}}, `safetensors: tensor "x": BOOL element 2 has byte value 2, want 0 or 1`},
		{"Float32s", TensorInfo{Name: "x", DType: F32, Shape: []int{2}, Data: make([]byte, 4)}, `safetensors: tensor "x": data is 4 bytes, but F32 shape [2] needs 8`},
		{"Int64s", TensorInfo{Name: "x", DType: I64, Shape: []int{-2}}, `safetensors: tensor "x": invalid shape [-2]`},
	} {
		if err := viewErr(tc.method, tc.ti); err == nil || err.Error() != tc.want {
			t.Errorf("%s of %s %v: error %v, want %q", tc.method, tc.ti.DType, tc.ti.Shape, err, tc.want)
		}
	}
	for _, d := range []DType{F32, BOOL} {
		ti := TensorInfo{DType: d, Shape: []int{0, 4}}
		if d == F32 {
			if v, err := ti.Float32s(); err != nil || v == nil || len(v) != 0 {
				t.Errorf("empty Float32s = %v, %v", v, err)
			}
		} else if v, err := ti.Bools(); err != nil || v == nil || len(v) != 0 {
			t.Errorf("empty Bools = %v, %v", v, err)
		}
	}

	for _, tc := range []struct {
		shape []int
		want  int
	}{
		{nil, 1}, {[]int{}, 1}, {[]int{0}, 0}, {[]int{2, 3, 4}, 24}, {[]int{-1}, -1},
		{[]int{math.MaxInt, 2}, -1}, {[]int{math.MaxInt, math.MaxInt, 0}, 0},
	} {
		if got := (TensorInfo{Shape: tc.shape}).NumElements(); got != tc.want {
			t.Errorf("NumElements(%v) = %d, want %d", tc.shape, got, tc.want)
		}
	}
	for _, d := range allDTypes {
		if d.Size() == 0 {
			t.Errorf("%s.Size() = 0", d)
		}
	}
	if DType("F4").Size() != 0 || DType("f32").Size() != 0 {
		t.Errorf("unknown dtype has nonzero Size")
	}
}

func TestParseErrors(t *testing.T) {
	tensor := func(name, dtype, shape, offsets string) string {
		return `"` + name + `":{"dtype":"` + dtype + `","shape":` + shape + `,"data_offsets":` + offsets + `}`
	}
	x := func(dtype, shape, offsets string) string { return "{" + tensor("x", dtype, shape, offsets) + "}" }
	d := func(n int) []byte { return make([]byte, n) }
	hugeLen := binary.LittleEndian.AppendUint64(nil, 100<<20+1)
	truncLen := binary.LittleEndian.AppendUint64(nil, 50)
	half := strconv.Itoa(math.MaxInt / 2) // numel fits an int, but not ×3 or ×4 bytes

	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"nil", nil, "safetensors: data is 0 bytes, shorter than the 8-byte header length prefix"},
		{"short", []byte{1, 2, 3, 4, 5}, "safetensors: data is 5 bytes, shorter than the 8-byte header length prefix"},
		{"zero header length", rawFile("", d(16)), "safetensors: header length is 0"},
		{"huge header length", append(hugeLen, `{}`...), "safetensors: header length 104857601 exceeds the limit of 104857600 bytes"},
		{"truncated header", append(truncLen, `{"x":1}`...), "safetensors: truncated header: header length 50 exceeds the 7 bytes after the length prefix"},
		{"invalid json", rawFile(`{"x":`, nil), "safetensors: header is not valid JSON: unexpected EOF"},
		{"garbage json", rawFile(`{"x" 1}`, nil), "safetensors: header is not valid JSON: invalid character"},
		{"not object", rawFile(`[1,2]`, nil), "safetensors: header is not a JSON object"},
		{"string header", rawFile(`"abc"`, nil), "safetensors: header is not a JSON object"},
		{"whitespace header", rawFile(`        `, nil), "safetensors: header is not valid JSON: unexpected EOF"},
		{"invalid utf8", rawFile("{\"\xff\":{}}", nil), "safetensors: header is not valid UTF-8"},
		{"trailing data", rawFile(`{} {}`, nil), "safetensors: header has data after the JSON object"},
		{"metadata not object", rawFile(`{"__metadata__":[1]}`, nil), "safetensors: __metadata__ is not a JSON object"},
		{"metadata value number", rawFile(`{"__metadata__":{"a":1}}`, nil), `safetensors: __metadata__ value of "a" is a number, not a string`},
		{"metadata value object", rawFile(`{"__metadata__":{"a":{}}}`, nil), `safetensors: __metadata__ value of "a" is an object, not a string`},
		{"duplicate metadata key", rawFile(`{"__metadata__":{"a":"1","a":"2"}}`, nil), `safetensors: duplicate key "a" in __metadata__`},
		{"duplicate metadata", rawFile(`{"__metadata__":{},"__metadata__":{}}`, nil), `safetensors: duplicate key "__metadata__" in header`},
		{"duplicate tensor", rawFile("{"+tensor("x", "U8", "[1]", "[0,1]")+","+tensor("x", "U8", "[1]", "[1,2]")+"}", d(2)), `safetensors: duplicate key "x" in header`},
		{"duplicate field", rawFile(`{"x":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, d(1)), `safetensors: tensor "x": duplicate field "dtype"`},
		{"entry not object", rawFile(`{"x":[1]}`, nil), `safetensors: tensor "x": entry is a list, not an object`},
		{"missing dtype", rawFile(`{"x":{"shape":[1],"data_offsets":[0,1]}}`, d(1)), `safetensors: tensor "x": missing dtype`},
		{"missing shape", rawFile(`{"x":{"dtype":"U8","data_offsets":[0,1]}}`, d(1)), `safetensors: tensor "x": missing shape`},
		{"missing offsets", rawFile(`{"x":{"dtype":"U8","shape":[1]}}`, d(1)), `safetensors: tensor "x": missing data_offsets`},
		{"dtype not string", rawFile(`{"x":{"dtype":4,"shape":[1],"data_offsets":[0,1]}}`, d(1)), `safetensors: tensor "x": dtype is a number, not a string`},
		{"unknown dtype", rawFile(x("F4", "[1]", "[0,1]"), d(1)), `safetensors: tensor "x": unknown dtype "F4"`},
		{"lowercase dtype", rawFile(x("f32", "[1]", "[0,4]"), d(4)), `safetensors: tensor "x": unknown dtype "f32"`},
		{"shape not list", rawFile(x("U8", "3", "[0,3]"), d(3)), `safetensors: tensor "x": shape is a number, not a list`},
		{"shape nested", rawFile(x("U8", "[[3]]", "[0,3]"), d(3)), `safetensors: tensor "x": shape has an element that is a list, not an integer`},
		{"shape string", rawFile(x("U8", `["3"]`, "[0,3]"), d(3)), `safetensors: tensor "x": shape has an element that is a string, not an integer`},
		{"negative dim", rawFile(x("U8", "[-3]", "[0,3]"), d(3)), `safetensors: tensor "x": shape has negative value -3`},
		{"fractional dim", rawFile(x("U8", "[1.5]", "[0,3]"), d(3)), `safetensors: tensor "x": shape has non-integer value 1.5`},
		{"exponent dim", rawFile(x("U8", "[3e0]", "[0,3]"), d(3)), `safetensors: tensor "x": shape has non-integer value 3e0`},
		{"dim out of range", rawFile(x("U8", "[99999999999999999999]", "[0,3]"), d(3)), `safetensors: tensor "x": shape value 99999999999999999999 is out of range`},
		{"numel overflow", rawFile(x("F32", "["+half+",3]", "[0,4]"), d(4)), `safetensors: tensor "x": shape [` + half + ` 3] has too many elements`},
		{"bytes overflow", rawFile(x("F32", "["+half+"]", "[0,4]"), d(4)), `safetensors: tensor "x": shape [` + half + `] has too many elements`},
		{"dim over int", rawFile(x("U8", "[18446744073709551615]", "[0,4]"), d(4)), `safetensors: tensor "x": shape dimension 18446744073709551615 is too large`},
		{"offsets one value", rawFile(x("U8", "[1]", "[1]"), d(1)), `safetensors: tensor "x": data_offsets has 1 values, want 2`},
		{"offsets three values", rawFile(x("U8", "[1]", "[0,1,1]"), d(1)), `safetensors: tensor "x": data_offsets has 3 values, want 2`},
		{"offsets negative", rawFile(x("U8", "[1]", "[-1,0]"), d(1)), `safetensors: tensor "x": data_offsets has negative value -1`},
		{"offsets float", rawFile(x("U8", "[1]", "[0,1.0]"), d(1)), `safetensors: tensor "x": data_offsets has non-integer value 1.0`},
		{"offsets not list", rawFile(x("U8", "[1]", `{}`), d(1)), `safetensors: tensor "x": data_offsets is an object, not a list`},
		{"offsets reversed", rawFile(x("U8", "[1]", "[1,0]"), d(1)), `safetensors: tensor "x": data_offsets [1 0] have begin after end`},
		{"offsets exceed", rawFile("{"+tensor("x.weight", "F32", "[10,10]", "[0,400]")+"}", d(396)), `safetensors: tensor "x.weight": data_offsets [0 400] exceed data size 396`},
		{"offsets huge", rawFile(x("U8", "[1]", "[18446744073709551615,18446744073709551615]"), d(1)), `safetensors: tensor "x": data_offsets [18446744073709551615 18446744073709551615] exceed data size 1`},
		{"size mismatch", rawFile(x("F32", "[2,3]", "[0,20]"), d(20)), `safetensors: tensor "x": data_offsets [0 20] span 20 bytes, but F32 shape [2 3] needs 24`},
		{"gap at start", rawFile(x("U8", "[2]", "[2,4]"), d(4)), `safetensors: data bytes [0 2) are not covered by any tensor (gap before tensor "x")`},
		{"gap between", rawFile("{"+tensor("a", "U8", "[2]", "[0,2]")+","+tensor("b", "U8", "[2]", "[3,5]")+"}", d(5)), `safetensors: data bytes [2 3) are not covered by any tensor (gap before tensor "b")`},
		{"overlap", rawFile("{"+tensor("a", "U8", "[3]", "[0,3]")+","+tensor("b", "U8", "[2]", "[2,4]")+"}", d(4)), `safetensors: tensor "b": data_offsets [2 4] overlap tensor "a" at [0 3]`},
		{"same range", rawFile("{"+tensor("a", "U8", "[2]", "[0,2]")+","+tensor("b", "U8", "[2]", "[0,2]")+"}", d(2)), `safetensors: tensor "b": data_offsets [0 2] overlap tensor "a" at [0 2]`},
		{"empty inside other", rawFile("{"+tensor("a", "U8", "[4]", "[0,4]")+","+tensor("b", "U8", "[0]", "[2,2]")+"}", d(4)), `safetensors: tensor "b": data_offsets [2 2] overlap tensor "a" at [0 4]`},
		{"trailing bytes", rawFile(x("U8", "[2]", "[0,2]"), d(5)), `safetensors: data bytes [2 5) after the last tensor are not covered by any tensor`},
		{"no tensors but data", rawFile(`{}`, d(3)), `safetensors: data bytes [0 3) after the last tensor are not covered by any tensor`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse(tc.data)
			if err == nil {
				t.Fatalf("Parse succeeded with %d tensors, want error %q", f.Len(), tc.want)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error\n  %v\nwant prefix\n  %s", err, tc.want)
			}
		})
	}
}

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name   string
		header string
		data   int
		keys   []string
		meta   map[string]string
	}{
		{"null metadata", `{"__metadata__":null}`, 0, []string{}, map[string]string{}},
		{"unknown field ignored", `{"x":{"dtype":"U8","shape":[2],"data_offsets":[0,2],"extra":{"a":[1,{"b":2}]}}}`, 2, []string{"x"}, map[string]string{}},
		{"out of order", `{"b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]},"a":{"dtype":"I16","shape":[],"data_offsets":[0,2]}}`, 3, []string{"a", "b"}, map[string]string{}},
		{"empty tensors anywhere", `{"e":{"dtype":"F32","shape":[0],"data_offsets":[1,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"z":{"dtype":"F64","shape":[2,0],"data_offsets":[0,0]}}`, 1, []string{"a", "e", "z"}, map[string]string{}},
		{"whitespace and padding", " { \"__metadata__\" : { \"a\" : \"b\" } }\n\t   ", 0, []string{}, map[string]string{"a": "b"}},
		{"unicode names", `{"é\u00e9":{"dtype":"BOOL","shape":[1],"data_offsets":[0,1]}}`, 1, []string{"éé"}, map[string]string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse(rawFile(tc.header, make([]byte, tc.data)))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := f.Keys(); !slices.Equal(got, tc.keys) {
				t.Errorf("Keys = %q, want %q", got, tc.keys)
			}
			if got := f.Metadata(); !reflect.DeepEqual(got, tc.meta) {
				t.Errorf("Metadata = %v, want %v", got, tc.meta)
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	tests := []struct {
		name     string
		tensors  []TensorInfo
		metadata map[string]string
		want     string
	}{
		{"unknown dtype", []TensorInfo{{Name: "x", DType: "F4", Shape: []int{1}, Data: []byte{0}}}, nil, `safetensors: tensor "x": unknown dtype "F4"`},
		{"data too short", []TensorInfo{{Name: "x", DType: F32, Shape: []int{2, 2}, Data: make([]byte, 15)}}, nil, `safetensors: tensor "x": data is 15 bytes, but F32 shape [2 2] needs 16`},
		{"data too long", []TensorInfo{{Name: "x", DType: U8, Shape: []int{}, Data: make([]byte, 2)}}, nil, `safetensors: tensor "x": data is 2 bytes, but U8 shape [] needs 1`},
		{"negative dim", []TensorInfo{{Name: "x", DType: U8, Shape: []int{-1}}}, nil, `safetensors: tensor "x": invalid shape [-1]`},
		{"overflow", []TensorInfo{{Name: "x", DType: F64, Shape: []int{math.MaxInt / 4}}}, nil, `safetensors: tensor "x": invalid shape`},
		{"duplicate", []TensorInfo{{Name: "x", DType: U8, Shape: []int{0}}, {Name: "x", DType: U8, Shape: []int{0}}}, nil, `safetensors: duplicate tensor name "x"`},
		{"reserved", []TensorInfo{{Name: "__metadata__", DType: U8, Shape: []int{0}}}, nil, `safetensors: tensor name "__metadata__" is reserved`},
		{"bad utf8 name", []TensorInfo{{Name: "\xff", DType: U8, Shape: []int{0}}}, nil, `safetensors: tensor "\xff": name is not valid UTF-8`},
		{"bad utf8 metadata", nil, map[string]string{"k": "\xfe"}, `safetensors: metadata key "k" or its value is not valid UTF-8`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := Encode(&buf, tc.tensors, tc.metadata)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("Encode error %v, want prefix %q", err, tc.want)
			}
			if buf.Len() != 0 {
				t.Errorf("Encode wrote %d bytes before failing", buf.Len())
			}
		})
	}
}

func TestWriteFileNoTempOnError(t *testing.T) {
	dir := t.TempDir()
	bad := []TensorInfo{{Name: "x", DType: F32, Shape: []int{2}, Data: make([]byte, 4)}}
	if err := WriteFile(filepath.Join(dir, "bad.safetensors"), bad, nil); err == nil {
		t.Errorf("WriteFile of invalid tensors succeeded")
	}
	// Renaming onto a non-empty directory fails after the data is written.
	target := filepath.Join(dir, "isdir.safetensors")
	if err := os.MkdirAll(filepath.Join(target, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	good := []TensorInfo{{Name: "x", DType: F32, Shape: []int{1}, Data: make([]byte, 4)}}
	if err := WriteFile(target, good, nil); err == nil {
		t.Errorf("WriteFile onto a directory succeeded")
	}
	if err := WriteFile(filepath.Join(dir, "missing", "x.safetensors"), good, nil); err == nil {
		t.Errorf("WriteFile into a missing directory succeeded")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"isdir.safetensors"}) {
		t.Errorf("directory holds %q after failed writes, want only the pre-existing directory", names)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	empty := write("empty.safetensors", nil)
	short := write("short.safetensors", []byte{1, 2, 3})
	badData := write("bad.safetensors", rawFile(`{"x":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}}`, []byte{1, 2}))
	tests := []struct {
		path, want string
	}{
		{filepath.Join(dir, "nope.safetensors"), "safetensors: open " + filepath.Join(dir, "nope.safetensors")},
		{dir, "safetensors: " + dir + ": not a regular file"},
		{empty, "safetensors: " + empty + ": empty file"},
		{short, "safetensors: " + short + ": file is 3 bytes, shorter than the 8-byte header length prefix"},
		{badData, "safetensors: " + badData + `: tensor "x": data_offsets [0 3] exceed data size 2`},
	}
	for _, tc := range tests {
		f, err := Open(tc.path)
		if err == nil {
			f.Close()
			t.Errorf("Open(%s) succeeded", tc.path)
			continue
		}
		if !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("Open error\n  %v\nwant prefix\n  %s", err, tc.want)
		}
	}
}

// fixturesDir returns the shared fixture folder (see fixtures.Require:
// the test skips without one, or fails when UNCLIP_FIXTURES names none).
func fixturesDir(t *testing.T) string {
	t.Helper()
	return fixtures.Require(t)
}

func fixtureFiles(t *testing.T) []string {
	t.Helper()
	dir := fixturesDir(t)
	files, err := filepath.Glob(filepath.Join(dir, "unclip-tiny", "model", "*", "*.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no unclip-tiny/model/*/*.safetensors files under %s", dir)
	}
	golden := filepath.Join(dir, "unclip-tiny", "golden.safetensors")
	if _, err := os.Stat(golden); err != nil {
		t.Fatalf("golden file: %v", err)
	}
	return append(files, golden)
}

func TestFixtures(t *testing.T) {
	for _, path := range fixtureFiles(t) {
		t.Run(filepath.Base(filepath.Dir(path))+"/"+filepath.Base(path), func(t *testing.T) {
			f, err := Open(path)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer f.Close()
			if f.Len() == 0 {
				t.Fatalf("no tensors")
			}
			for _, name := range f.Keys() {
				ti, ok := f.Get(name)
				if !ok {
					t.Fatalf("Get(%q) missing", name)
				}
				if ti.NumElements()*ti.DType.Size() != len(ti.Data) {
					t.Fatalf("%q: %d bytes for %s %v", name, len(ti.Data), ti.DType, ti.Shape)
				}
				switch ti.DType {
				case F32:
					v, err := ti.Float32s()
					if err != nil {
						t.Fatalf("%q: %v", name, err)
					}
					for i, x := range v {
						if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
							t.Fatalf("%q[%d] = %v is not finite", name, i, x)
						}
					}
				case I64:
					if _, err := ti.Int64s(); err != nil {
						t.Fatalf("%q: %v", name, err)
					}
				case BOOL:
					if _, err := ti.Bools(); err != nil {
						t.Fatalf("%q: %v", name, err)
					}
				case F16, BF16, U16:
					if _, err := ti.Uint16s(); err != nil {
						t.Fatalf("%q: %v", name, err)
					}
				default:
					var sum byte
					for _, b := range ti.Data {
						sum += b
					}
					_ = sum
				}
			}
			// Re-encoding the parsed tensors reproduces them.
			var tensors []TensorInfo
			for _, name := range f.Keys() {
				ti, _ := f.Get(name)
				tensors = append(tensors, ti)
			}
			var buf bytes.Buffer
			if err := Encode(&buf, tensors, f.Metadata()); err != nil {
				t.Fatalf("re-Encode: %v", err)
			}
			g, err := Parse(buf.Bytes())
			if err != nil {
				t.Fatalf("Parse of re-encoded file: %v", err)
			}
			checkSame(t, g, tensors, f.Metadata())
		})
	}
}

func TestOpenTruncated(t *testing.T) {
	files := fixtureFiles(t)
	src := files[len(files)-1] // golden.safetensors
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	n := int(binary.LittleEndian.Uint64(b))
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		size int
		want string
	}{
		{"last byte", len(b) - 1, "exceed data size"},
		{"half data", 8 + n + (len(b)-8-n)/2, "exceed data size"},
		{"header only", 8 + n, "exceed data size"},
		{"mid header", 8 + n/2, "truncated header"},
		{"prefix only", 8, "truncated header"},
		{"partial prefix", 5, "shorter than the 8-byte header length prefix"},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".safetensors")
		if err := os.WriteFile(path, b[:tc.size], 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := Open(path)
		if err == nil {
			f.Close()
			t.Errorf("%s: Open of a %d-byte truncated copy succeeded", tc.name, tc.size)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %v, want it to mention %q and the path", tc.name, err, tc.want)
		}
	}
}
