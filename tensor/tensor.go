// Package tensor defines the Tensor type (a strided view on a buffer owned by
// one backend), dtype conversions, the op set every model is written against,
// and the Backend interface that kernels implement.
//
// Ops are called eagerly (tensor.MatMul(a, b)) and dispatched to the backend
// that owns the operands. A backend may execute an op at once (the CPU
// reference) or record it and run it later (Vulkan); the host waits only when
// it reads a tensor. Views (Reshape, Permute, Narrow, Expand, ...) never copy.
//
// The same code can be captured instead of run (graph.go): Capture runs a
// function once with placeholder inputs and records every op that depends on
// them as a Graph; the graph's memory is planned from liveness into one
// arena, and Exec replays it — every denoising step, with no allocation.
//
// Memory: eager results come from Backend.Alloc and are released once
// unreachable; arenas and resident weights come from Backend.Reserve and
// live until Storage.Free (on the CPU they are mapped outside the Go heap,
// so releasing them returns memory at once).
//
// Errors: a backend failure (out of device memory, device lost), operands on
// two devices or on released storage are carried by the result tensor and
// every tensor computed from it, and returned when the data is read
// (Float32s, Err). Shape mistakes are programming errors and panic with a
// *ShapeError; Catch turns such a panic into an error at an API boundary.
// This package imports no backend: backends register themselves.
package tensor

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"unsafe"
)

// Storage is a flat buffer of bytes owned by one backend. CPU storage keeps
// its bytes in Host; device storage keeps a backend-private Handle.
type Storage struct {
	backend Backend
	// Host is the memory of a CPU buffer (nil for device buffers).
	Host []byte
	// Handle is the backend's own reference to device memory.
	Handle any
	// Bytes is the size of the buffer.
	Bytes  int
	freed  bool
	serial uint64
	// weight marks storage holding a model weight, never written after
	// loading: a backend may keep it in a layout of its own (Pack).
	weight bool
	// mapped marks Host as a view of a memory mapping that nothing else
	// reads: Pack gives its pages back.
	mapped bool
	// packed, when set, holds the contents in a backend's layout while
	// Host is nil; unpacked says they were brought back once (and are not
	// to be packed again).
	packed   Packing
	unpacked bool
}

// Packing is a backend's private copy of a storage's contents in a layout
// of its own (a weight packed for a CPU micro-kernel), held in place of
// the plain bytes (Storage.Pack).
type Packing interface {
	// Unpack returns the contents in their plain layout, in new memory.
	Unpack() ([]byte, error)
	// Release returns the packing's memory; it is not used afterwards.
	Release()
}

// MarkWeight records that s holds a model weight: it is never written
// again, so a backend may pack it (Pack).
func (s *Storage) MarkWeight() { s.weight = true }

// Packable reports whether a backend may pack s now: a weight in plain
// host memory that has not been unpacked before.
func (s *Storage) Packable() bool {
	return s.weight && !s.unpacked && s.packed == nil && s.Host != nil && !s.freed
}

// Pack replaces the plain contents of s, which must be Packable, by p
// (the same values in a backend's layout). Host becomes nil and its memory
// is given back: the backend frees what it allocated (Backend.Free, such
// as a Reserve mapping), and the pages of a mapping are discarded
// (FromMapping). Reading s in its plain layout (Bytes, HostView, or a
// backend op that needs it) unpacks it first, for good.
func (s *Storage) Pack(p Packing) {
	if !s.Packable() {
		panic("tensor: Pack of storage that is not packable")
	}
	if s.mapped {
		DiscardHost(s.Host)
	}
	s.backend.Free(s)
	s.Host, s.packed = nil, p
}

// Packing returns the packed contents of s, or nil when it is plain.
func (s *Storage) Packing() Packing { return s.packed }

// Unpack brings packed contents back into plain host memory (a no-op for
// plain storage); s is not packed again.
func (s *Storage) Unpack() error {
	if s.packed == nil {
		return nil
	}
	h, err := s.packed.Unpack()
	if err != nil {
		return fmt.Errorf("tensor: unpack %d bytes: %w", s.Bytes, err)
	}
	s.packed.Release()
	s.Host, s.packed, s.unpacked, s.mapped = h, nil, true, false
	return nil
}

// Free releases the storage through its backend (Backend.Free) once the
// work recorded on it has finished; ops on its views then fail with
// ErrReleased. Freeing twice does nothing.
func (s *Storage) Free() {
	if s == nil || s.freed {
		return
	}
	if _, traced := s.Handle.(*value); !traced {
		s.backend.Free(s)
	}
	s.freed = true
	s.Host = nil
	s.Handle = nil
	if s.packed != nil {
		s.packed.Release()
		s.packed = nil
	}
}

// Adopt moves the memory of from (storage from Reserve on the same
// backend, of the same size) into s, which must have been freed: views of
// s become usable again, and from is left empty. It is how a released
// weight is brought back in place (stage residency).
func (s *Storage) Adopt(from *Storage) error {
	if !s.freed || from.freed || from.backend != s.backend || from.Bytes != s.Bytes {
		return fmt.Errorf("tensor: cannot adopt %d bytes on %s into %d bytes on %s (freed %v)", from.Bytes, from.backend.Name(), s.Bytes, s.backend.Name(), s.freed)
	}
	s.Host, s.Handle, s.freed = from.Host, from.Handle, false
	from.Host, from.Handle, from.freed = nil, nil, true
	return nil
}

// NewReleased returns a tensor of the given type and shape on b whose
// storage is already released: ops on it fail until its storage adopts
// memory (Storage.Adopt). It stands for a weight not yet on the device.
func NewReleased(b Backend, dt DType, shape ...int) *Tensor {
	st := &Storage{backend: b, Bytes: numel(shape) * dt.Size(), freed: true}
	return &Tensor{st: st, dtype: dt, shape: append([]int(nil), shape...), strides: ContiguousStrides(shape)}
}

// Freed reports whether Free was called.
func (s *Storage) Freed() bool { return s.freed }

// ErrReleased is the error of an op or a read on freed storage.
var ErrReleased = errors.New("tensor: storage was released")

// ErrTraced is the error of reading a graph value while it is captured: it
// has no data until the graph runs.
var ErrTraced = errors.New("tensor: a value being captured has no data yet (read it from the Exec after Run)")

// checkReadable reports why t's data cannot be read, or nil.
func (t *Tensor) checkReadable() error {
	switch {
	case t.err != nil:
		return t.err
	case t.st.freed:
		return fmt.Errorf("%v: %w", t, ErrReleased)
	case valueOf(t) != nil:
		return fmt.Errorf("%v: %w", t, ErrTraced)
	}
	return t.st.Unpack()
}

// OnStorage returns a contiguous tensor over st (which must hold at least
// numel·size bytes), such as storage from Backend.Reserve.
func OnStorage(st *Storage, dt DType, shape ...int) *Tensor {
	if numel(shape)*dt.Size() > st.Bytes {
		shapePanic("tensor.OnStorage: %v%v in %d bytes", dt, shape, st.Bytes)
	}
	return &Tensor{st: st, dtype: dt, shape: append([]int(nil), shape...), strides: ContiguousStrides(shape)}
}

// NewHostStorage wraps host memory as storage of backend b.
func NewHostStorage(b Backend, host []byte) *Storage {
	return &Storage{backend: b, Host: host, Bytes: len(host), serial: storageSerial.Add(1)}
}

// NewDeviceStorage wraps a backend handle of size bytes.
func NewDeviceStorage(b Backend, handle any, bytes int) *Storage {
	return &Storage{backend: b, Handle: handle, Bytes: bytes, serial: storageSerial.Add(1)}
}

// storageSerial numbers storages in creation order (Graph.Release frees
// the constants made while its graph was captured).
var storageSerial atomic.Uint64

// WithHost sets the host memory of storage made by NewDeviceStorage
// (CPU storage with a backend handle) and returns s.
func (s *Storage) WithHost(h []byte) *Storage {
	s.Host = h
	return s
}

// Backend returns the backend that owns the storage.
func (s *Storage) Backend() Backend { return s.backend }

// HostBytes allocates n zeroed bytes aligned for any element type.
func HostBytes(n int) []byte {
	if n == 0 {
		return []byte{}
	}
	w := make([]uint64, (n+7)/8)
	b := unsafe.Slice((*byte)(unsafe.Pointer(&w[0])), n)
	adviseHuge(b)
	return b
}

// Tensor is a strided view on a Storage. Strides and offset count elements.
type Tensor struct {
	st      *Storage
	dtype   DType
	shape   []int
	strides []int
	offset  int
	err     error
}

// Shape returns a copy of the tensor's shape.
func (t *Tensor) Shape() []int { return append([]int(nil), t.shape...) }

// Strides returns a copy of the tensor's strides, in elements.
func (t *Tensor) Strides() []int { return append([]int(nil), t.strides...) }

// Offset is the element offset of the view's first element in its storage.
func (t *Tensor) Offset() int { return t.offset }

// Dim returns the size of dimension d; negative d counts from the end.
func (t *Tensor) Dim(d int) int { return t.shape[t.axis(d)] }

// Rank is the number of dimensions.
func (t *Tensor) Rank() int { return len(t.shape) }

// DType is the element type.
func (t *Tensor) DType() DType { return t.dtype }

// Storage returns the buffer behind the view.
func (t *Tensor) Storage() *Storage { return t.st }

// Backend returns the backend that owns the tensor's storage.
func (t *Tensor) Backend() Backend { return t.st.backend }

// Err returns the first backend error met while computing this tensor.
func (t *Tensor) Err() error { return t.err }

// Numel is the number of elements.
func (t *Tensor) Numel() int { return numel(t.shape) }

// String describes the tensor, e.g. "F32[2 77 768]@cpu".
func (t *Tensor) String() string {
	return fmt.Sprintf("%v%v@%s", t.dtype, t.shape, t.st.backend.Name())
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// ContiguousStrides returns the row-major strides of shape.
func ContiguousStrides(shape []int) []int {
	s := make([]int, len(shape))
	acc := 1
	for i := len(shape) - 1; i >= 0; i-- {
		s[i] = acc
		acc *= shape[i]
	}
	return s
}

// IsContiguous reports whether the view is row-major and dense (size-1
// dimensions may have any stride).
func (t *Tensor) IsContiguous() bool {
	acc := 1
	for i := len(t.shape) - 1; i >= 0; i-- {
		if t.shape[i] != 1 && t.strides[i] != acc {
			return false
		}
		acc *= t.shape[i]
	}
	return true
}

// ShapeError is the panic value of an op called with incompatible shapes.
type ShapeError struct{ Msg string }

func (e *ShapeError) Error() string { return e.Msg }

func shapePanic(format string, args ...any) {
	panic(&ShapeError{Msg: fmt.Sprintf(format, args...)})
}

// Catch runs f and returns a *ShapeError panic as an error; other panics
// propagate. Use it where a model meets user-provided shapes.
func Catch(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if se, ok := r.(*ShapeError); ok {
				err = se
				return
			}
			panic(r)
		}
	}()
	return f()
}

func (t *Tensor) axis(d int) int {
	r := len(t.shape)
	if d < 0 {
		d += r
	}
	if d < 0 || d >= r {
		shapePanic("tensor: axis %d out of range for shape %v", d, t.shape)
	}
	return d
}

func (t *Tensor) view(shape, strides []int, offset int) *Tensor {
	return &Tensor{st: t.st, dtype: t.dtype, shape: shape, strides: strides, offset: offset, err: t.err}
}

// New allocates a contiguous tensor on backend b. CPU memory is zeroed;
// device memory is uninitialised.
func New(b Backend, dt DType, shape ...int) *Tensor {
	for _, d := range shape {
		if d < 0 {
			shapePanic("tensor.New: negative dimension in %v", shape)
		}
	}
	st, err := alloc(b, dt, shape)
	return &Tensor{st: st, dtype: dt, shape: append([]int(nil), shape...), strides: ContiguousStrides(shape), err: err}
}

// alloc returns storage for a dense dt tensor of the given shape on b; on
// failure, an empty placeholder and the error, naming what was asked for.
func alloc(b Backend, dt DType, shape []int) (*Storage, error) {
	st, err := b.Alloc(numel(shape) * dt.Size())
	if err != nil {
		return NewHostStorage(b, nil), fmt.Errorf("alloc %v%v on %s: %w", dt, shape, b.Name(), err)
	}
	return st, nil
}

// FromBytes wraps host bytes (not copied) as a contiguous CPU tensor. The
// bytes must stay valid and unchanged while the tensor is used.
func FromBytes(dt DType, data []byte, shape ...int) *Tensor {
	if numel(shape)*dt.Size() != len(data) {
		shapePanic("tensor.FromBytes: %d bytes for %v%v", len(data), dt, shape)
	}
	if len(data) > 0 && uintptr(unsafe.Pointer(&data[0]))%uintptr(dt.Size()) != 0 {
		c := HostBytes(len(data))
		copy(c, data)
		data = c
	}
	return &Tensor{st: NewHostStorage(CPU(), data), dtype: dt, shape: append([]int(nil), shape...), strides: ContiguousStrides(shape)}
}

// FromMapping is FromBytes for bytes of a memory mapping (outside the Go
// heap) that nothing but the tensor reads: when they are used in place, a
// backend that packs the tensor (Storage.Pack) gives their pages back to
// the system. The tensor itself reads its packed copy from then on.
func FromMapping(dt DType, data []byte, shape ...int) *Tensor {
	t := FromBytes(dt, data, shape...)
	if len(data) > 0 && &t.st.Host[0] == &data[0] {
		t.st.mapped = true
	}
	return t
}

// FromFloat32 wraps a float32 slice (not copied) as a CPU tensor.
func FromFloat32(data []float32, shape ...int) *Tensor {
	if len(data) == 0 {
		return FromBytes(F32, nil, shape...)
	}
	return FromBytes(F32, unsafe.Slice((*byte)(unsafe.Pointer(&data[0])), 4*len(data)), shape...)
}

// FromInt64 wraps an int64 slice (not copied) as a CPU tensor.
func FromInt64(data []int64, shape ...int) *Tensor {
	if len(data) == 0 {
		return FromBytes(I64, nil, shape...)
	}
	return FromBytes(I64, unsafe.Slice((*byte)(unsafe.Pointer(&data[0])), 8*len(data)), shape...)
}

// FromBool copies a bool slice into a CPU tensor.
func FromBool(data []bool, shape ...int) *Tensor {
	b := HostBytes(len(data))
	for i, v := range data {
		if v {
			b[i] = 1
		}
	}
	return FromBytes(Bool, b, shape...)
}

// Scalar returns a 0-d float32 CPU tensor.
func Scalar(v float32) *Tensor { return FromFloat32([]float32{v}) }

// Zeros returns a zero-filled float32 tensor on the CPU.
func Zeros(shape ...int) *Tensor { return New(CPU(), F32, shape...) }

// ZerosOn returns a zero-filled tensor of type dt on backend b (device
// memory from New is uninitialised, so the zeros are uploaded).
func ZerosOn(b Backend, dt DType, shape ...int) *Tensor {
	z := New(CPU(), dt, shape...)
	if b == CPU() {
		return z
	}
	return z.To(b)
}

// Float32View reinterprets host bytes as float32s (no copy).
func Float32View(b []byte) []float32 {
	if len(b) < 4 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4)
}

// Uint16View reinterprets host bytes as uint16s (no copy).
func Uint16View(b []byte) []uint16 {
	if len(b) < 2 {
		return nil
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), len(b)/2)
}

// Int64View reinterprets host bytes as int64s (no copy).
func Int64View(b []byte) []int64 {
	if len(b) < 8 {
		return nil
	}
	return unsafe.Slice((*int64)(unsafe.Pointer(&b[0])), len(b)/8)
}

// Int32View reinterprets host bytes as int32s (no copy).
func Int32View(b []byte) []int32 {
	if len(b) < 4 {
		return nil
	}
	return unsafe.Slice((*int32)(unsafe.Pointer(&b[0])), len(b)/4)
}

// Bytes returns the tensor's elements as dense row-major host bytes in its
// own dtype, waiting for any pending device work.
func (t *Tensor) Bytes() ([]byte, error) {
	if err := t.checkReadable(); err != nil {
		return nil, err
	}
	c := t
	if !t.IsContiguous() {
		c = t.Contiguous()
		if c.err != nil {
			return nil, c.err
		}
	}
	es := c.dtype.Size()
	n := c.Numel() * es
	if c.st.Host != nil || n == 0 {
		if n == 0 {
			return []byte{}, nil
		}
		out := HostBytes(n)
		copy(out, c.st.Host[c.offset*es:c.offset*es+n])
		return out, nil
	}
	out := HostBytes(n)
	if err := c.st.backend.Download(c.st, out, c.offset*es); err != nil {
		return nil, fmt.Errorf("read %v: %w", t, err)
	}
	return out, nil
}

// HostView returns the elements of a dense tensor in host memory as its
// own bytes, without a copy (they must not be modified), or nil when t is
// strided, on a device, released or being captured (use Bytes).
func (t *Tensor) HostView() []byte {
	if t.checkReadable() != nil || t.st.Host == nil || !t.IsContiguous() {
		return nil
	}
	es := t.dtype.Size()
	n := t.Numel() * es
	return t.st.Host[t.offset*es : t.offset*es+n]
}

// Float32s returns the elements as a new []float32 in row-major order,
// converting F16/BF16 and waiting for pending device work.
func (t *Tensor) Float32s() ([]float32, error) {
	if t.dtype != F32 {
		if !t.dtype.IsFloat() {
			return nil, fmt.Errorf("tensor: Float32s of %v tensor", t.dtype)
		}
		t = t.Cast(F32)
	}
	b, err := t.Bytes()
	if err != nil {
		return nil, err
	}
	return Float32View(b), nil
}

// Int64s returns the elements of an I64 tensor in row-major order.
func (t *Tensor) Int64s() ([]int64, error) {
	if t.dtype != I64 {
		return nil, fmt.Errorf("tensor: Int64s of %v tensor", t.dtype)
	}
	b, err := t.Bytes()
	if err != nil {
		return nil, err
	}
	return Int64View(b), nil
}

// Bools returns the elements of a Bool tensor in row-major order.
func (t *Tensor) Bools() ([]bool, error) {
	if t.dtype != Bool {
		return nil, fmt.Errorf("tensor: Bools of %v tensor", t.dtype)
	}
	b, err := t.Bytes()
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(b))
	for i, v := range b {
		out[i] = v != 0
	}
	return out, nil
}

// MustFloat32s is Float32s for tests and examples: it panics on error.
func (t *Tensor) MustFloat32s() []float32 {
	v, err := t.Float32s()
	if err != nil {
		panic(err)
	}
	return v
}

// To returns the tensor on backend b, copying when it lives elsewhere. The
// result is contiguous.
func (t *Tensor) To(b Backend) *Tensor {
	if t.st.backend == b {
		return t
	}
	if t.err != nil {
		return t
	}
	if valueOf(t) != nil {
		return &Tensor{st: NewHostStorage(b, nil), dtype: t.dtype, shape: t.Shape(), strides: ContiguousStrides(t.shape),
			err: fmt.Errorf("copy %v to %s: %w", t, b.Name(), ErrTraced)}
	}
	src, err := t.Bytes()
	out := &Tensor{dtype: t.dtype, shape: t.Shape(), strides: ContiguousStrides(t.shape), err: err}
	if err == nil {
		out.st, out.err = b.Upload(src)
		if out.err != nil {
			out.err = fmt.Errorf("upload %v to %s: %w", t, b.Name(), out.err)
		}
	}
	if out.st == nil {
		out.st = NewHostStorage(b, nil)
	}
	return out
}

// ---- views ----

// Reshape returns a view with a new shape; one dimension may be -1. A view
// that is not contiguous is copied first.
func (t *Tensor) Reshape(shape ...int) *Tensor {
	shape = append([]int(nil), shape...)
	infer := -1
	known := 1
	for i, d := range shape {
		if d == -1 {
			if infer >= 0 {
				shapePanic("tensor.Reshape: two -1 in %v", shape)
			}
			infer = i
			continue
		}
		if d < 0 {
			shapePanic("tensor.Reshape: bad dimension in %v", shape)
		}
		known *= d
	}
	n := t.Numel()
	if infer >= 0 {
		if known == 0 || n%known != 0 {
			shapePanic("tensor.Reshape: cannot reshape %v to %v", t.shape, shape)
		}
		shape[infer] = n / known
	} else if known != n {
		shapePanic("tensor.Reshape: cannot reshape %v (%d elements) to %v", t.shape, n, shape)
	}
	c := t
	if !t.IsContiguous() {
		c = t.Contiguous()
	}
	return c.view(shape, ContiguousStrides(shape), c.offset)
}

// Permute reorders the dimensions: result dim i is input dim dims[i].
func (t *Tensor) Permute(dims ...int) *Tensor {
	if len(dims) != len(t.shape) {
		shapePanic("tensor.Permute: %v for shape %v", dims, t.shape)
	}
	seen := make([]bool, len(dims))
	shape := make([]int, len(dims))
	strides := make([]int, len(dims))
	for i, d := range dims {
		d = t.axis(d)
		if seen[d] {
			shapePanic("tensor.Permute: repeated axis in %v", dims)
		}
		seen[d] = true
		shape[i] = t.shape[d]
		strides[i] = t.strides[d]
	}
	return t.view(shape, strides, t.offset)
}

// Transpose swaps two dimensions.
func (t *Tensor) Transpose(a, b int) *Tensor {
	dims := make([]int, len(t.shape))
	for i := range dims {
		dims[i] = i
	}
	a, b = t.axis(a), t.axis(b)
	dims[a], dims[b] = dims[b], dims[a]
	return t.Permute(dims...)
}

// T swaps the last two dimensions.
func (t *Tensor) T() *Tensor { return t.Transpose(-2, -1) }

// Narrow returns the slice [start, start+length) of dimension d.
func (t *Tensor) Narrow(d, start, length int) *Tensor {
	d = t.axis(d)
	if start < 0 || length < 0 || start+length > t.shape[d] {
		shapePanic("tensor.Narrow: [%d, %d) of dimension %d in %v", start, start+length, d, t.shape)
	}
	shape := t.Shape()
	shape[d] = length
	return t.view(shape, t.Strides(), t.offset+start*t.strides[d])
}

// Index selects element i of dimension d and removes that dimension.
func (t *Tensor) Index(d, i int) *Tensor {
	d = t.axis(d)
	return t.Narrow(d, i, 1).Squeeze(d)
}

// Squeeze removes dimension d, which must have size 1.
func (t *Tensor) Squeeze(d int) *Tensor {
	d = t.axis(d)
	if t.shape[d] != 1 {
		shapePanic("tensor.Squeeze: dimension %d of %v is not 1", d, t.shape)
	}
	shape := append(t.Shape()[:d], t.shape[d+1:]...)
	strides := append(t.Strides()[:d], t.strides[d+1:]...)
	return t.view(shape, strides, t.offset)
}

// Unsqueeze inserts a dimension of size 1 at position d (0..Rank()).
func (t *Tensor) Unsqueeze(d int) *Tensor {
	r := len(t.shape)
	if d < 0 {
		d += r + 1
	}
	if d < 0 || d > r {
		shapePanic("tensor.Unsqueeze: axis %d for shape %v", d, t.shape)
	}
	shape := append(append(t.Shape()[:d:d], 1), t.shape[d:]...)
	st := 1
	if d < r {
		st = t.strides[d] * t.shape[d]
	}
	strides := append(append(t.Strides()[:d:d], st), t.strides[d:]...)
	return t.view(shape, strides, t.offset)
}

// Expand broadcasts the tensor to shape (numpy rules: leading dimensions are
// added, size-1 dimensions repeat with stride 0). No data is copied.
func (t *Tensor) Expand(shape ...int) *Tensor {
	if len(shape) < len(t.shape) {
		shapePanic("tensor.Expand: %v to %v", t.shape, shape)
	}
	lead := len(shape) - len(t.shape)
	strides := make([]int, len(shape))
	for i := range shape {
		if i < lead {
			continue
		}
		d := t.shape[i-lead]
		switch {
		case d == shape[i]:
			strides[i] = t.strides[i-lead]
		case d == 1:
			strides[i] = 0
		default:
			shapePanic("tensor.Expand: %v to %v", t.shape, shape)
		}
	}
	return t.view(append([]int(nil), shape...), strides, t.offset)
}

// BroadcastShape returns the numpy broadcast of the shapes.
func BroadcastShape(shapes ...[]int) []int {
	r := 0
	for _, s := range shapes {
		r = max(r, len(s))
	}
	out := make([]int, r)
	for i := range out {
		out[i] = 1
	}
	for _, s := range shapes {
		lead := r - len(s)
		for i, d := range s {
			switch {
			case out[lead+i] == 1:
				out[lead+i] = d
			case d == 1 || d == out[lead+i]:
			default:
				strs := make([]string, len(shapes))
				for j, sh := range shapes {
					strs[j] = fmt.Sprint(sh)
				}
				shapePanic("tensor: shapes %s do not broadcast", strings.Join(strs, ", "))
			}
		}
	}
	return out
}

// SameShape reports whether two shapes are equal.
func SameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
