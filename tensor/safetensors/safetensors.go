// Package safetensors reads and writes the safetensors tensor file format.
//
// A safetensors file is an 8-byte little-endian unsigned header length N,
// followed by N bytes of a UTF-8 JSON object, followed by the data buffer:
//
//	{"__metadata__": {"format": "pt"},
//	 "x.weight": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}
//
// Each tensor entry names its element type, its shape and the byte range
// [begin, end) of its little-endian, row-major data relative to the start of
// the data buffer (byte 8+N of the file). The optional "__metadata__" entry
// maps strings to strings.
//
// [Parse] and [Open] validate the whole header before returning: every dtype
// is known, every shape is well formed, every byte range lies inside the data
// buffer and matches its tensor's size, and the tensors tile the data buffer
// exactly, with no gaps and no overlaps. Malformed input yields an error,
// never a panic.
//
// On Unix systems [Open] maps the file read-only into memory, so the Data of
// every [TensorInfo] it returns aliases that read-only mapping: writing to it
// crashes the program, and it must not be used after [File.Close].
//
// This package does not depend on any other package of this module.
package safetensors

import (
	"fmt"
	"maps"
	"slices"
	"sync"
)

// DType is a safetensors dtype name: "F32", "F16", "BF16", "F64", "I64",
// "I32", "I16", "I8", "U8", "U16", "U32", "U64", "BOOL", "F8_E4M3",
// "F8_E5M2".
type DType string

// The dtypes this package knows.
const (
	F32    DType = "F32"     // IEEE 754 binary32
	F16    DType = "F16"     // IEEE 754 binary16
	BF16   DType = "BF16"    // bfloat16
	F64    DType = "F64"     // IEEE 754 binary64
	I64    DType = "I64"     // signed 64-bit integer
	I32    DType = "I32"     // signed 32-bit integer
	I16    DType = "I16"     // signed 16-bit integer
	I8     DType = "I8"      // signed 8-bit integer
	U8     DType = "U8"      // unsigned 8-bit integer
	U16    DType = "U16"     // unsigned 16-bit integer
	U32    DType = "U32"     // unsigned 32-bit integer
	U64    DType = "U64"     // unsigned 64-bit integer
	BOOL   DType = "BOOL"    // boolean stored as one byte, 0 or 1
	F8E4M3 DType = "F8_E4M3" // 8-bit float, 4 exponent and 3 mantissa bits
	F8E5M2 DType = "F8_E5M2" // 8-bit float, 5 exponent and 2 mantissa bits
)

// Size returns the number of bytes per element of d, or 0 if d is not a
// known dtype.
func (d DType) Size() int {
	switch d {
	case F64, I64, U64:
		return 8
	case F32, I32, U32:
		return 4
	case F16, BF16, I16, U16:
		return 2
	case I8, U8, BOOL, F8E4M3, F8E5M2:
		return 1
	}
	return 0
}

// TensorInfo describes one tensor: its name, element type, shape and raw
// little-endian, row-major bytes. A scalar has an empty Shape.
//
// For a TensorInfo obtained from a [File] returned by [Open], Data aliases
// the read-only file mapping: it must not be modified, and it must not be
// used after the File is closed. For a File returned by [Parse], Data
// aliases the buffer given to Parse.
type TensorInfo struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// NumElements returns the number of elements of t's shape: the product of
// its dimensions, 1 for a scalar. It returns -1 if a dimension is negative
// or the product overflows an int.
func (t TensorInfo) NumElements() int {
	n, ok := numElements(t.Shape)
	if !ok {
		return -1
	}
	return n
}

// numElements returns the product of shape, reporting false for a negative
// dimension or an overflow. A zero dimension makes the product 0 even when
// the other dimensions would overflow.
func numElements(shape []int) (int, bool) {
	for _, d := range shape {
		if d < 0 {
			return 0, false
		}
		if d == 0 {
			return 0, true
		}
	}
	n := 1
	for _, d := range shape {
		if n > maxInt/d {
			return 0, false
		}
		n *= d
	}
	return n, true
}

// byteSize returns numel(shape)·dtype.Size(), reporting false on overflow or
// an invalid shape.
func byteSize(dtype DType, shape []int) (int, bool) {
	n, ok := numElements(shape)
	if !ok {
		return 0, false
	}
	size := dtype.Size()
	if size != 0 && n > maxInt/size {
		return 0, false
	}
	return n * size, true
}

const maxInt = int(^uint(0) >> 1)

// A File is a parsed safetensors file. Its methods are safe for concurrent
// use.
type File struct {
	path     string
	keys     []string // sorted tensor names
	metadata map[string]string

	mu      sync.RWMutex
	closed  bool
	data    []byte                // the whole file; nil once closed
	unmap   func([]byte) error    // releases data; nil if nothing to release
	tensors map[string]TensorInfo // nil once closed
}

// Path returns the path given to [Open], or "" for a File from [Parse].
func (f *File) Path() string { return f.path }

// Keys returns the names of the tensors in f in sorted order. The slice is a
// fresh copy.
func (f *File) Keys() []string { return slices.Clone(f.keys) }

// Len returns the number of tensors in f.
func (f *File) Len() int { return len(f.keys) }

// Get returns the tensor with the given name and reports whether it exists.
// The returned Shape is a fresh copy; Data aliases the file contents (see
// [TensorInfo]). After [File.Close], Get reports false for every name.
func (f *File) Get(name string) (TensorInfo, bool) {
	f.mu.RLock()
	t, ok := f.tensors[name]
	f.mu.RUnlock()
	if !ok {
		return TensorInfo{}, false
	}
	t.Shape = slices.Clone(t.Shape)
	if t.Shape == nil {
		t.Shape = []int{}
	}
	return t, true
}

// Metadata returns a copy of the header's "__metadata__" map. It returns an
// empty, non-nil map if the header has none.
func (f *File) Metadata() map[string]string {
	m := maps.Clone(f.metadata)
	if m == nil {
		m = map[string]string{}
	}
	return m
}

// Close releases the file mapping of a File from [Open]. The Data of every
// TensorInfo obtained from f becomes invalid, and later calls to Get report
// false; Path, Keys, Len and Metadata keep working. Close is idempotent:
// calls after the first return nil.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	data, unmap := f.data, f.unmap
	f.data, f.unmap, f.tensors = nil, nil, nil
	if unmap != nil && data != nil {
		if err := unmap(data); err != nil {
			return fmt.Errorf("safetensors: unmap %s: %w", f.path, err)
		}
	}
	return nil
}
