// Package torchbin reads and writes PyTorch checkpoints in the zip format
// that torch.save has written by default since PyTorch 1.6 (the
// pytorch_model.bin and diffusion_pytorch_model.bin files of Hugging Face
// repositories), without executing anything.
//
// Such a file is a zip archive whose entries all sit in one folder (named
// "archive", or after the file torch.save wrote):
//
//	archive/data.pkl      a pickle of the state dict
//	archive/byteorder     "little" (absent in files from PyTorch before 2.1)
//	archive/data/0 ...    one entry per storage: its raw bytes
//	archive/version       the format version, "3"
//
// The pickle is read by a restricted unpickler that accepts only what a
// state dict needs: dicts (including collections.OrderedDict), lists,
// tuples, strings, numbers, booleans, None, storages (persistent ids
// ('storage', torch.FloatStorage, key, location, numel) and the other
// storage types listed in [Tensor]) and tensors rebuilt by
// torch._utils._rebuild_tensor_v2 or torch._utils._rebuild_parameter.
// Any other global (os.system, builtins.eval, ...), a call of anything but
// those rebuild functions and OrderedDict, object-building opcodes (INST,
// OBJ, NEWOBJ) and unknown opcodes are rejected with an error naming them.
// Truncated data, memo references to nothing, sizes and indexes that do
// not fit, and views that reach past their storage are errors too. Malformed
// input never makes the package panic, nor allocate much more than the
// file's size (a deflated entry may expand as far as deflate allows; a
// copied non-contiguous view is bounded by its storage).
//
// A tensor is a view on a storage: a storage offset, a shape and strides.
// Contiguous views (the usual case) alias their storage's bytes, so
// several tensors viewing one storage share memory. A non-contiguous view
// (a transposed weight, every other element) is materialised as a
// contiguous copy; a view whose elements overlap (a zero stride, as
// torch.expand makes) is rejected. Only little-endian files are read: a
// file whose byteorder record says "big" is rejected. The legacy
// (pre-1.6) format and TorchScript archives are rejected with an error
// saying so.
//
// This package depends on no package of this module but
// tensor/safetensors, for the dtype names.
package torchbin

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/unclip-go/unclip/tensor/safetensors"
)

// Tensor is one tensor of a checkpoint, with the safetensors dtype name of
// its storage type: F32 (torch.FloatStorage), F16 (HalfStorage), BF16
// (BFloat16Storage), F64 (DoubleStorage), I64 (LongStorage), I32
// (IntStorage), I16 (ShortStorage), I8 (CharStorage), U8 (ByteStorage) or
// BOOL (BoolStorage). Data holds the elements contiguously, row-major and
// little-endian; a scalar has an empty Shape.
//
// Data may alias the storage of other tensors (views of one storage):
// it must not be modified. A Tensor converts to a
// [safetensors.TensorInfo] with safetensors.TensorInfo(t).
type Tensor struct {
	Name  string
	DType safetensors.DType
	Shape []int
	Data  []byte
}

// File is a checkpoint read into memory. Its methods are safe for
// concurrent use.
type File struct {
	path    string
	keys    []string
	tensors map[string]Tensor
}

// Path returns the path given to [Open], or "" for a File from [Read].
func (f *File) Path() string { return f.path }

// Keys returns the tensor names, sorted. The slice is a fresh copy.
func (f *File) Keys() []string { return slices.Clone(f.keys) }

// Len returns the number of tensors.
func (f *File) Len() int { return len(f.keys) }

// Get returns the named tensor and reports whether it exists. Shape is a
// fresh copy; Data is shared (see [Tensor]). For a File from
// [OpenHeaders], Data is nil.
func (f *File) Get(name string) (Tensor, bool) {
	t, ok := f.tensors[name]
	if !ok {
		return Tensor{}, false
	}
	t.Shape = slices.Clone(t.Shape)
	if t.Shape == nil {
		t.Shape = []int{}
	}
	return t, true
}

// Close does nothing and returns nil: the File holds no open file or
// mapping, and its memory is released once it is no longer referenced.
// It is there so that a File is used like a safetensors.File.
func (f *File) Close() error {
	return nil
}

// Limits on what a checkpoint may declare.
const (
	maxPickle  = 256 << 20 // bytes of data.pkl
	maxRecord  = 64        // bytes of the version and byteorder records
	maxDims    = 64        // dimensions of a tensor (torch's own limit)
	maxDeflate = 1032      // the largest expansion of deflate; more is a bomb
)

// formatError is a malformed or refused checkpoint. Its message starts
// with "torchbin: " and, once Open sets it, the file's path.
type formatError struct {
	path string
	msg  string
}

func (e *formatError) Error() string {
	if e.path != "" {
		return "torchbin: " + e.path + ": " + e.msg
	}
	return "torchbin: " + e.msg
}

func errorf(format string, args ...any) error {
	return &formatError{msg: fmt.Sprintf(format, args...)}
}

// wrap puts context before err's message.
func wrap(err error, context string) error {
	if fe, ok := err.(*formatError); ok {
		return &formatError{msg: context + ": " + fe.msg}
	}
	return &formatError{msg: context + ": " + err.Error()}
}

// withPath adds the file's path to err.
func withPath(err error, path string) error {
	var fe *formatError
	if errors.As(err, &fe) {
		return &formatError{path: path, msg: fe.msg}
	}
	return fmt.Errorf("torchbin: %s: %w", path, err)
}

// Open reads the checkpoint at path into memory (each storage once) and
// closes the file. Errors name the path.
func Open(path string) (*File, error) { return open(path, false) }

// OpenHeaders reads the pickle of the checkpoint at path and checks every
// tensor against the storage sizes the archive declares, without reading
// any storage: the tensors have names, types and shapes, and nil Data.
func OpenHeaders(path string) (*File, error) { return open(path, true) }

func open(path string, headersOnly bool) (*File, error) {
	// Stat before opening: opening a FIFO named like a weight file would
	// block until a writer appears.
	if st, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("torchbin: %w", err)
	} else if !st.Mode().IsRegular() {
		return nil, withPath(errorf("not a regular file"), path)
	}
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("torchbin: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("torchbin: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, withPath(errorf("not a regular file"), path)
	}
	f, err := read(fh, st.Size(), headersOnly)
	if err != nil {
		return nil, withPath(err, path)
	}
	f.path = path
	return f, nil
}

// Read reads a checkpoint of size bytes from r into memory.
func Read(r io.ReaderAt, size int64) (*File, error) { return read(r, size, false) }

// archive is an open checkpoint zip.
type archive struct {
	size     int64
	prefix   string // "archive/"
	entries  map[string]*zip.File
	consumed uint64 // compressed bytes of the entries checked so far
}

func read(r io.ReaderAt, size int64, headersOnly bool) (*File, error) {
	ar, err := openArchive(r, size)
	if err != nil {
		return nil, err
	}
	pkl, err := ar.record("data.pkl", maxPickle)
	if err != nil {
		return nil, err
	}
	obj, err := unpickle(pkl)
	if err != nil {
		return nil, wrap(err, ar.prefix+"data.pkl")
	}
	return ar.build(obj, headersOnly)
}

// openArchive opens the zip and checks the records beside the pickle.
func openArchive(r io.ReaderAt, size int64) (*archive, error) {
	if size < 0 {
		return nil, errorf("negative size %d", size)
	}
	var head [16]byte
	n, _ := r.ReadAt(head[:], 0)
	if err := checkMagic(head[:n], size); err != nil {
		return nil, err
	}
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, errorf("not a valid zip archive (truncated, or not a checkpoint): %v", err)
	}
	if len(zr.File) == 0 {
		return nil, errorf("the zip archive is empty")
	}
	// Like torch, take the folder of the first entry as the archive's.
	first := zr.File[0].Name
	dir, _, ok := strings.Cut(first, "/")
	if !ok || dir == "" {
		return nil, errorf("zip entry %q is not in a folder: not a torch.save checkpoint", first)
	}
	ar := &archive{size: size, prefix: dir + "/", entries: make(map[string]*zip.File, len(zr.File))}
	for _, f := range zr.File {
		if _, dup := ar.entries[f.Name]; dup {
			return nil, errorf("zip entry %q appears twice", f.Name)
		}
		ar.entries[f.Name] = f
	}
	if _, ok := ar.entries[ar.prefix+"data.pkl"]; !ok {
		if _, ts := ar.entries[ar.prefix+"constants.pkl"]; ts {
			return nil, errorf("a TorchScript archive (torch.jit.save), not a torch.save checkpoint")
		}
		return nil, errorf("no %sdata.pkl in the zip archive: not a torch.save checkpoint", ar.prefix)
	}
	if _, ok := ar.entries[ar.prefix+"byteorder"]; ok {
		b, err := ar.record("byteorder", maxRecord)
		if err != nil {
			return nil, err
		}
		switch s := string(b); s {
		case "little":
		case "big":
			return nil, errorf("big-endian checkpoint (byteorder %q) is not supported; re-save it on a little-endian machine", s)
		default:
			return nil, errorf("unknown byteorder %q", s)
		}
	}
	for _, name := range []string{"version", ".data/version"} {
		if _, ok := ar.entries[ar.prefix+name]; !ok {
			continue
		}
		b, err := ar.record(name, maxRecord)
		if err != nil {
			return nil, err
		}
		if _, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err != nil {
			return nil, errorf("%s%s: version %q is not a number", ar.prefix, name, b)
		}
	}
	return ar, nil
}

// checkMagic explains files that are not zip archives.
func checkMagic(head []byte, size int64) error {
	switch {
	case size == 0:
		return errorf("empty file")
	case bytes.HasPrefix(head, []byte("PK\x03\x04")), bytes.HasPrefix(head, []byte("PK\x05\x06")):
		return nil
	case len(head) > 0 && head[0] == 0x80, bytes.HasPrefix(head, []byte("PYTORCH1")):
		return errorf("legacy torch.save format (before PyTorch 1.6) is not supported; re-save it with a newer PyTorch (torch.save(torch.load(path), path)) or convert it to safetensors")
	case len(head) > 8 && head[8] == '{':
		return errorf("this is a safetensors file, not a PyTorch checkpoint: name it .safetensors")
	}
	return errorf("not a PyTorch checkpoint (no zip signature)")
}

// record reads the archive's entry name (relative to its folder), of at
// most limit bytes.
func (ar *archive) record(name string, limit int64) ([]byte, error) {
	f, ok := ar.entries[ar.prefix+name]
	if !ok {
		return nil, errorf("missing %s%s in the zip archive", ar.prefix, name)
	}
	if f.UncompressedSize64 > uint64(limit) {
		return nil, errorf("%s is %d bytes, more than the %d allowed", f.Name, f.UncompressedSize64, limit)
	}
	return ar.readEntry(f, int64(f.UncompressedSize64))
}

// readEntry reads the whole of an entry of size bytes, checking that its
// declared sizes are possible in an archive of ar.size bytes before
// allocating, and its checksum.
func (ar *archive) readEntry(f *zip.File, size int64) ([]byte, error) {
	if err := ar.checkEntry(f, size); err != nil {
		return nil, err
	}
	rc, err := f.Open()
	if err != nil {
		return nil, errorf("%s: %v", f.Name, err)
	}
	defer rc.Close()
	buf := make([]byte, size)
	if _, err := io.ReadFull(rc, buf); err != nil {
		return nil, errorf("%s: %v (truncated file?)", f.Name, noEOF(err))
	}
	// Read past the end: the checksum is checked there.
	var one [1]byte
	if n, err := rc.Read(one[:]); n != 0 || (err != nil && err != io.EOF) {
		if err == nil {
			err = errors.New("more data than its declared size")
		}
		return nil, errorf("%s: %v", f.Name, err)
	}
	return buf, nil
}

// checkEntry checks that an entry of the given uncompressed size can be in
// the archive: stored entries lie inside it, deflated ones expand at most
// as far as deflate can.
func (ar *archive) checkEntry(f *zip.File, size int64) error {
	if f.UncompressedSize64 != uint64(size) {
		return errorf("%s is %d bytes, expected %d", f.Name, f.UncompressedSize64, size)
	}
	// The entries of a well-formed archive do not overlap: together they
	// are no larger than it. A forged directory that points many entries
	// at the same bytes would otherwise multiply the memory read.
	ar.consumed += f.CompressedSize64
	if f.CompressedSize64 > uint64(ar.size) || ar.consumed > uint64(ar.size) {
		return errorf("%s: the entries declare more data than the archive's %d bytes (truncated or forged archive)", f.Name, ar.size)
	}
	switch f.Method {
	case zip.Store:
		if f.CompressedSize64 != f.UncompressedSize64 {
			return errorf("%s: stored entry declares %d bytes but %d compressed bytes", f.Name, f.UncompressedSize64, f.CompressedSize64)
		}
	case zip.Deflate:
		if f.UncompressedSize64/maxDeflate > f.CompressedSize64 {
			return errorf("%s declares %d bytes from %d compressed bytes: impossible (truncated or forged archive)", f.Name, f.UncompressedSize64, f.CompressedSize64)
		}
	default:
		return errorf("%s: unsupported zip compression method %d", f.Name, f.Method)
	}
	return nil
}

// noEOF turns an early end of data into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// build turns the unpickled state dict into tensors, reading each storage
// once.
func (ar *archive) build(obj any, headersOnly bool) (*File, error) {
	d, ok := obj.(*pyDict)
	if !ok {
		return nil, errorf("%sdata.pkl holds %s, not a state dict (a dict of tensors)", ar.prefix, typeName(obj))
	}
	f := &File{tensors: make(map[string]Tensor, len(d.items))}
	storages := map[*storage][]byte{}
	var total, copied int64
	for _, it := range d.items {
		name, ok := it.key.(string)
		if !ok {
			return nil, errorf("state dict key %v is %s, not a string", it.key, typeName(it.key))
		}
		tr, ok := it.value.(*tensorRef)
		if !ok {
			return nil, errorf("state dict entry %q is %s, not a tensor", name, typeName(it.value))
		}
		st := tr.storage
		nbytes := st.numel * int64(st.dtype.Size()) // no overflow: checked when the storage was declared
		data, seen := storages[st]
		if !seen {
			e, ok := ar.entries[ar.prefix+"data/"+st.key]
			if !ok {
				return nil, errorf("tensor %q: missing data file %sdata/%s in the zip archive", name, ar.prefix, st.key)
			}
			if e.UncompressedSize64 != uint64(nbytes) {
				return nil, errorf("tensor %q: storage %q declares %d elements of %s (%d bytes) but %s holds %d bytes",
					name, st.key, st.numel, st.dtype, nbytes, e.Name, e.UncompressedSize64)
			}
			var err error
			if headersOnly {
				err = ar.checkEntry(e, nbytes)
			} else {
				data, err = ar.readEntry(e, nbytes)
			}
			if err != nil {
				return nil, wrap(err, fmt.Sprintf("tensor %q", name))
			}
			storages[st] = data
			total += nbytes
		}
		t := Tensor{Name: name, DType: st.dtype, Shape: tr.shape}
		if !headersOnly {
			var n int64
			t.Data, n = tr.view(data)
			copied += n
			if copied > 2*total+1<<20 {
				return nil, errorf("tensor %q: non-contiguous views would take %d bytes of copies, more than twice the checkpoint's %d bytes of storage", name, copied, total)
			}
		}
		f.tensors[name] = t
		f.keys = append(f.keys, name)
	}
	slices.Sort(f.keys)
	return f, nil
}
