package torchbin

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"sort"
	"unicode/utf8"

	"github.com/unclip-go/unclip/tensor/safetensors"
)

// Encode writes tensors to w as torch.save(OrderedDict(tensors), f) writes
// them when f is a file object: a zip archive with the folder "archive",
// a protocol-2 pickle of an OrderedDict whose values are rebuilt by
// torch._utils._rebuild_tensor_v2, one stored (uncompressed) entry per
// tensor at a 64-byte aligned offset, the byteorder record "little", the
// version record "3" and a serialization id. torch.load reads the result.
//
// Each tensor gets its own contiguous storage; the dtype must be one of
// those listed in [Tensor], the name valid UTF-8 and unique, and len(Data)
// must match the shape.
func Encode(w io.Writer, tensors []Tensor) error {
	var l layout
	seen := map[string]bool{}
	for _, t := range tensors {
		switch {
		case !utf8.ValidString(t.Name):
			return errorf("tensor %q: name is not valid UTF-8", t.Name)
		case seen[t.Name]:
			return errorf("duplicate tensor name %q", t.Name)
		}
		seen[t.Name] = true
		if _, ok := storageType(t.DType); !ok {
			return errorf("tensor %q: dtype %q has no torch storage type", t.Name, t.DType)
		}
		numel := safetensors.TensorInfo{Shape: t.Shape}.NumElements()
		if numel < 0 || len(t.Shape) > maxDims {
			return errorf("tensor %q: invalid shape %v", t.Name, t.Shape)
		}
		if numel > maxInt/t.DType.Size() || len(t.Data) != numel*t.DType.Size() {
			return errorf("tensor %q: data is %d bytes, %s shape %v needs %d", t.Name, len(t.Data), t.DType, t.Shape, numel*t.DType.Size())
		}
		l.storages = append(l.storages, storageData{dtype: t.DType, data: t.Data})
		l.views = append(l.views, viewSpec{
			name: t.Name, storage: len(l.storages) - 1,
			shape: t.Shape, stride: contiguousStrides(t.Shape),
		})
	}
	return l.encode(w)
}

// WriteFile writes tensors to the file at path with [Encode]. It writes a
// temporary file beside path, syncs it and renames it over path, so path
// never holds a half-written file. The file is created with mode 0644.
func WriteFile(path string, tensors []Tensor) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("torchbin: %w", err)
	}
	name := tmp.Name()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	err = Encode(bw, tensors)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(name, 0o644)
	}
	if err == nil {
		err = os.Rename(name, path)
	}
	if err != nil {
		os.Remove(name)
		if _, ok := err.(*formatError); ok {
			return err
		}
		return fmt.Errorf("torchbin: %s: %w", path, err)
	}
	return nil
}

// contiguousStrides returns the row-major strides of shape, in elements.
func contiguousStrides(shape []int) []int {
	st := make([]int, len(shape))
	n := 1
	for i := len(shape) - 1; i >= 0; i-- {
		st[i] = n
		n *= shape[i]
	}
	return st
}

// storageData is one storage to write.
type storageData struct {
	dtype safetensors.DType
	data  []byte
}

// viewSpec is one tensor to write: a view on storage number storage.
type viewSpec struct {
	name          string
	storage       int
	offset        int
	shape, stride []int
}

// layout is everything one checkpoint holds. The fields beyond storages
// and views let tests write what torch writes in other cases.
type layout struct {
	archive  string // the entries' folder; "" means "archive"
	storages []storageData
	views    []viewSpec
	// plainDict pickles a dict instead of an OrderedDict (transformers'
	// shards).
	plainDict bool
	// metadata adds the _metadata attribute that module.state_dict() sets
	// (restored by BUILD).
	metadata bool
	// noByteorder leaves out the byteorder record, as PyTorch before 2.1.
	noByteorder bool
}

// alignment is the offset torch aligns every record's data to.
const alignment = 64

// encode writes the checkpoint: the pickle, then the records in torch's
// order, each aligned with a padding extra field ("FB") as torch's writer
// does.
func (l *layout) encode(w io.Writer) error {
	archive := l.archive
	if archive == "" {
		archive = "archive"
	}
	pkl := l.pickle()
	type record struct {
		name string
		data []byte
	}
	records := []record{{"data.pkl", pkl}}
	if !l.noByteorder {
		records = append(records, record{"byteorder", []byte("little")})
	}
	keys := make([]string, len(l.storages))
	for i := range l.storages {
		keys[i] = fmt.Sprint(i)
	}
	sort.Strings(keys) // torch writes data/0, data/1, data/10, ..., data/2
	for _, k := range keys {
		var i int
		fmt.Sscan(k, &i)
		records = append(records, record{"data/" + k, l.storages[i].data})
	}
	records = append(records, record{"version", []byte("3\n")})
	// The serialization id torch writes last: a hash of the record names
	// and a combined CRC of their data, 20 digits each.
	names := fnv.New64a()
	var crc uint32
	for _, r := range records {
		names.Write([]byte(r.name))
		crc = crc32.Update(crc, crc32.IEEETable, r.data)
	}
	records = append(records, record{".data/serialization_id", fmt.Appendf(nil, "%020d%020d", names.Sum64(), uint64(crc))})

	zw := zip.NewWriter(w)
	var offset int64 // of the next local header; Go writes no data descriptor for these
	for _, r := range records {
		name := archive + "/" + r.name
		start := offset + 30 + int64(len(name)) + 4
		pad := (alignment - start%alignment) % alignment
		extra := make([]byte, 4+pad)
		copy(extra, "FB")
		binary.LittleEndian.PutUint16(extra[2:], uint16(pad))
		for i := 4; i < len(extra); i++ {
			extra[i] = 'Z'
		}
		fh := &zip.FileHeader{
			Name:               name,
			Method:             zip.Store,
			CreatorVersion:     20,
			ReaderVersion:      20,
			ModifiedDate:       0x21, // 1980-01-01
			CRC32:              crc32.ChecksumIEEE(r.data),
			CompressedSize64:   uint64(len(r.data)),
			UncompressedSize64: uint64(len(r.data)),
			Extra:              extra,
		}
		fw, err := zw.CreateRaw(fh)
		if err != nil {
			return fmt.Errorf("torchbin: %w", err)
		}
		if _, err := fw.Write(r.data); err != nil {
			return fmt.Errorf("torchbin: %w", err)
		}
		offset = start + pad + int64(len(r.data))
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("torchbin: %w", err)
	}
	return nil
}

// pickle writes the state dict as Python's pickle module does at protocol
// 2 for torch.save, memo and all.
func (l *layout) pickle() []byte {
	p := &pickler{memo: map[memoKey]uint32{}}
	p.b.Write([]byte{opProto, 2})
	if l.plainDict {
		p.b.WriteByte(opEmptyDict)
		p.put(memoKey{})
	} else {
		p.emptyOrderedDict()
	}
	// Python's _batch_setitems: batches of 1000 items.
	for lo := 0; lo < len(l.views); lo += 1000 {
		hi := min(lo+1000, len(l.views))
		if hi-lo > 1 {
			p.b.WriteByte(opMark)
		}
		for _, v := range l.views[lo:hi] {
			p.str(v.name)
			st := l.storages[v.storage]
			p.tensor(fmt.Sprint(v.storage), st.dtype, int64(len(st.data)/st.dtype.Size()), int64(v.offset), v.shape, v.stride)
		}
		if hi-lo > 1 {
			p.b.WriteByte(opSetItems)
		} else {
			p.b.WriteByte(opSetItem)
		}
	}
	if l.metadata {
		// {'_metadata': OrderedDict({'': {'version': 1}})}, as a module
		// without submodules sets it.
		p.b.WriteByte(opEmptyDict)
		p.put(memoKey{})
		p.str("_metadata")
		p.emptyOrderedDict()
		p.str("")
		p.b.WriteByte(opEmptyDict)
		p.put(memoKey{})
		p.str("version")
		p.int(1)
		p.b.WriteByte(opSetItem)
		p.b.WriteByte(opSetItem)
		p.b.WriteByte(opSetItem)
		p.b.WriteByte(opBuild)
	}
	p.b.WriteByte(opStop)
	return p.b.Bytes()
}

// memoKey identifies a memoized string or global; the zero key is an
// object that is never fetched again (a fresh tuple or dict).
type memoKey struct {
	kind byte // 's' string, 'g' global, 0 other
	s    string
}

// pickler emits pickle opcodes.
type pickler struct {
	b    bytes.Buffer
	memo map[memoKey]uint32
	n    uint32 // memo entries so far
}

// put memoizes the object just written, as Python's memoize does.
func (p *pickler) put(k memoKey) {
	if p.n < 256 {
		p.b.Write([]byte{opBinPut, byte(p.n)})
	} else {
		p.b.WriteByte(opLongBinPut)
		p.b.Write(binary.LittleEndian.AppendUint32(nil, p.n))
	}
	if k.kind != 0 {
		p.memo[k] = p.n
	}
	p.n++
}

// get writes a memo fetch of k and reports whether k was memoized.
func (p *pickler) get(k memoKey) bool {
	i, ok := p.memo[k]
	if !ok {
		return false
	}
	if i < 256 {
		p.b.Write([]byte{opBinGet, byte(i)})
	} else {
		p.b.WriteByte(opLongBinGet)
		p.b.Write(binary.LittleEndian.AppendUint32(nil, i))
	}
	return true
}

func (p *pickler) str(s string) {
	k := memoKey{'s', s}
	if p.get(k) {
		return
	}
	p.b.WriteByte(opBinUnicode)
	p.b.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(s))))
	p.b.WriteString(s)
	p.put(k)
}

func (p *pickler) global(module, name string) {
	k := memoKey{'g', module + "\n" + name}
	if p.get(k) {
		return
	}
	p.b.WriteByte(opGlobal)
	p.b.WriteString(module + "\n" + name + "\n")
	p.put(k)
}

// int writes v as Python's pickler does at protocol 2.
func (p *pickler) int(v int64) {
	switch {
	case v >= 0 && v < 1<<8:
		p.b.Write([]byte{opBinInt1, byte(v)})
	case v >= 0 && v < 1<<16:
		p.b.WriteByte(opBinInt2)
		p.b.Write(binary.LittleEndian.AppendUint16(nil, uint16(v)))
	case v >= -1<<31 && v < 1<<31:
		p.b.WriteByte(opBinInt)
		p.b.Write(binary.LittleEndian.AppendUint32(nil, uint32(v)))
	default:
		// LONG1: the shortest little-endian two's complement.
		var le []byte
		for x := v; ; x >>= 8 {
			le = append(le, byte(x))
			if (x >= -128 && x < 128) && (x < 0) == (byte(x)&0x80 != 0) {
				break
			}
		}
		p.b.Write([]byte{opLong1, byte(len(le))})
		p.b.Write(le)
	}
}

// tuple writes a tuple of ints (a size or a stride).
func (p *pickler) tuple(vs []int) {
	if len(vs) == 0 {
		p.b.WriteByte(opEmptyTuple)
		return
	}
	if len(vs) > 3 {
		p.b.WriteByte(opMark)
	}
	for _, v := range vs {
		p.int(int64(v))
	}
	if len(vs) > 3 {
		p.b.WriteByte(opTuple)
	} else {
		p.b.WriteByte(opTuple1 + byte(len(vs)-1))
	}
	p.put(memoKey{})
}

// emptyOrderedDict writes collections.OrderedDict().
func (p *pickler) emptyOrderedDict() {
	p.global(modCollections, orderedDict)
	p.b.WriteByte(opEmptyTuple)
	p.b.WriteByte(opReduce)
	p.put(memoKey{})
}

// tensor writes _rebuild_tensor_v2(storage, offset, size, stride, False,
// OrderedDict()), the storage as its persistent id ('storage',
// torch.FloatStorage, key, 'cpu', numel).
func (p *pickler) tensor(key string, dt safetensors.DType, numel, offset int64, shape, stride []int) {
	typ, _ := storageType(dt)
	p.global(modUtils, rebuildTensor)
	p.b.WriteByte(opMark)
	p.b.WriteByte(opMark)
	p.str("storage")
	p.global("torch", typ)
	p.str(key)
	p.str("cpu")
	p.int(numel)
	p.b.WriteByte(opTuple)
	p.put(memoKey{})
	p.b.WriteByte(opBinPersID)
	p.int(offset)
	p.tuple(shape)
	p.tuple(stride)
	p.b.WriteByte(opNewFalse)
	p.emptyOrderedDict()
	p.b.WriteByte(opTuple)
	p.put(memoKey{})
	p.b.WriteByte(opReduce)
	p.put(memoKey{})
}
