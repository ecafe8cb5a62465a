package safetensors

import (
	"encoding/binary"
	"math"
	"strings"
	"unsafe"
)

// littleEndianHost reports whether the host stores integers little-endian,
// as safetensors data is. Only then can typed views alias Data.
var littleEndianHost = func() bool {
	v := uint16(1)
	return *(*byte)(unsafe.Pointer(&v)) == 1
}()

// view checks that t has one of the dtypes in want and that len(t.Data)
// matches its shape, and reports whether Data can be reinterpreted in place
// as elements of the given size: the host is little-endian and Data is
// suitably aligned.
func (t TensorInfo) view(method string, size int, want ...DType) (n int, inPlace bool, err error) {
	ok := false
	for _, d := range want {
		ok = ok || t.DType == d
	}
	if !ok {
		names := make([]string, len(want))
		for i, d := range want {
			names[i] = string(d)
		}
		list := strings.Join(names, ", ")
		if len(names) > 1 {
			list = strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
		}
		return 0, false, errorf("tensor %q has dtype %s; %s needs %s", t.Name, string(t.DType), method, list)
	}
	nbytes, ok := byteSize(t.DType, t.Shape)
	if !ok {
		return 0, false, errorf("tensor %q: invalid shape %v", t.Name, t.Shape)
	}
	if len(t.Data) != nbytes {
		return 0, false, errorf("tensor %q: data is %d bytes, but %s shape %v needs %d",
			t.Name, len(t.Data), t.DType, t.Shape, nbytes)
	}
	n = nbytes / size
	if n == 0 {
		return 0, false, nil
	}
	aligned := uintptr(unsafe.Pointer(unsafe.SliceData(t.Data)))%uintptr(size) == 0
	return n, littleEndianHost && aligned, nil
}

// Float32s returns the elements of an F32 tensor. When the host is
// little-endian (as all platforms this module targets are) and Data is
// 4-byte aligned, the result aliases Data without copying, and so shares
// its restrictions: for a File from [Open] it is read-only and invalid after
// Close. Otherwise the elements are decoded into a new slice. It returns an
// error if the dtype is not F32 or Data does not match the shape.
func (t TensorInfo) Float32s() ([]float32, error) {
	n, inPlace, err := t.view("Float32s", 4, F32)
	switch {
	case err != nil:
		return nil, err
	case n == 0:
		return []float32{}, nil
	case inPlace:
		return unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(t.Data))), n), nil
	}
	out := make([]float32, n)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return out, nil
}

// Uint16s returns the raw 16-bit elements of an F16, BF16 or U16 tensor,
// aliasing Data when the host is little-endian and Data is 2-byte aligned
// (see [TensorInfo.Float32s]), else as a decoded copy. It returns an error
// for other dtypes or if Data does not match the shape.
func (t TensorInfo) Uint16s() ([]uint16, error) {
	n, inPlace, err := t.view("Uint16s", 2, F16, BF16, U16)
	switch {
	case err != nil:
		return nil, err
	case n == 0:
		return []uint16{}, nil
	case inPlace:
		return unsafe.Slice((*uint16)(unsafe.Pointer(unsafe.SliceData(t.Data))), n), nil
	}
	out := make([]uint16, n)
	for i := range out {
		out[i] = binary.LittleEndian.Uint16(t.Data[2*i:])
	}
	return out, nil
}

// Int64s returns the elements of an I64 tensor, aliasing Data when the host
// is little-endian and Data is 8-byte aligned (see [TensorInfo.Float32s]),
// else as a decoded copy. It returns an error for other dtypes or if Data
// does not match the shape.
func (t TensorInfo) Int64s() ([]int64, error) {
	n, inPlace, err := t.view("Int64s", 8, I64)
	switch {
	case err != nil:
		return nil, err
	case n == 0:
		return []int64{}, nil
	case inPlace:
		return unsafe.Slice((*int64)(unsafe.Pointer(unsafe.SliceData(t.Data))), n), nil
	}
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(binary.LittleEndian.Uint64(t.Data[8*i:]))
	}
	return out, nil
}

// Bools returns the elements of a BOOL tensor, aliasing Data without
// copying (see [TensorInfo.Float32s]). Every byte must be 0 or 1; any other
// value is an error, as is another dtype or Data not matching the shape.
func (t TensorInfo) Bools() ([]bool, error) {
	n, _, err := t.view("Bools", 1, BOOL)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return []bool{}, nil
	}
	for i, b := range t.Data {
		if b > 1 {
			return nil, errorf("tensor %q: BOOL element %d has byte value %d, want 0 or 1", t.Name, i, b)
		}
	}
	// Go represents false and true as the bytes 0 and 1, so the validated
	// data can be reinterpreted in place.
	return unsafe.Slice((*bool)(unsafe.Pointer(unsafe.SliceData(t.Data))), n), nil
}
