package torchbin

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/unclip-go/unclip/tensor/safetensors"
)

// pattern returns n bytes that differ from one element to the next.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

// encode runs Encode into memory.
func encode(t testing.TB, tensors []Tensor) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Encode(&buf, tensors); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// mustRead runs Read over data.
func mustRead(t testing.TB, data []byte) *File {
	t.Helper()
	f, err := Read(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// allDTypes is one tensor of every dtype, with a scalar and an empty one.
func allDTypes() []Tensor {
	var ts []Tensor
	for i, dt := range []safetensors.DType{safetensors.F32, safetensors.F16, safetensors.BF16, safetensors.F64,
		safetensors.I64, safetensors.I32, safetensors.I16, safetensors.I8, safetensors.U8} {
		ts = append(ts, Tensor{Name: "t." + string(dt), DType: dt, Shape: []int{2, 3}, Data: pattern(6*dt.Size(), byte(i))})
	}
	return append(ts,
		Tensor{Name: "mask", DType: safetensors.BOOL, Shape: []int{4}, Data: []byte{0, 1, 1, 0}},
		Tensor{Name: "scalar", DType: safetensors.I64, Shape: []int{}, Data: pattern(8, 9)},
		Tensor{Name: "empty", DType: safetensors.F32, Shape: []int{0, 3}, Data: nil},
		Tensor{Name: "four.dims", DType: safetensors.F32, Shape: []int{2, 1, 3, 2}, Data: pattern(48, 3)},
	)
}

func sameTensor(t *testing.T, got Tensor, want Tensor) {
	t.Helper()
	if got.Name != want.Name || got.DType != want.DType || !slices.Equal(got.Shape, want.Shape) || !bytes.Equal(got.Data, want.Data) {
		t.Errorf("tensor %q: got %s %v (%d bytes), want %s %v (%d bytes)", want.Name, got.DType, got.Shape, len(got.Data), want.DType, want.Shape, len(want.Data))
	}
}

func TestTorchbinRoundTrip(t *testing.T) {
	tensors := allDTypes()
	f := mustRead(t, encode(t, tensors))
	if f.Len() != len(tensors) {
		t.Fatalf("%d tensors, want %d", f.Len(), len(tensors))
	}
	if !slices.IsSorted(f.Keys()) {
		t.Errorf("keys not sorted: %v", f.Keys())
	}
	for _, want := range tensors {
		got, ok := f.Get(want.Name)
		if !ok {
			t.Fatalf("tensor %q missing", want.Name)
		}
		sameTensor(t, got, want)
		if got.Shape == nil || (len(want.Data) == 0 && got.Data == nil) {
			t.Errorf("tensor %q: nil shape or data", want.Name)
		}
	}
	if _, ok := f.Get("nope"); ok {
		t.Error("Get of a missing name reported true")
	}

	// Through a file, and headers only.
	p := filepath.Join(t.TempDir(), "pytorch_model.bin")
	if err := WriteFile(p, tensors); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("stat: %v, %v", st, err)
	}
	for _, headers := range []bool{false, true} {
		open := Open
		if headers {
			open = OpenHeaders
		}
		f, err := open(p)
		if err != nil {
			t.Fatal(err)
		}
		if f.Path() != p {
			t.Errorf("Path %q", f.Path())
		}
		for _, want := range tensors {
			got, _ := f.Get(want.Name)
			if headers {
				if got.Data != nil || got.DType != want.DType || !slices.Equal(got.Shape, want.Shape) {
					t.Errorf("headers of %q: %s %v data %v", want.Name, got.DType, got.Shape, got.Data != nil)
				}
				continue
			}
			sameTensor(t, got, want)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Errorf("WriteFile left %d files", len(entries))
	}
}

// TestTorchbinLayout checks the archive against torch's own: the folder,
// the records and their order, 64-byte aligned stored data, and a pickle
// identical to the one Python's pickle module writes for torch.save
// (testdata/gen_pickles.py).
func TestTorchbinLayout(t *testing.T) {
	l := pythonLayout()
	var buf bytes.Buffer
	if err := l.encode(&buf); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
		if f.Method != zip.Store {
			t.Errorf("%s: method %d, want stored", f.Name, f.Method)
		}
		off, err := f.DataOffset()
		if err != nil || off%64 != 0 {
			t.Errorf("%s: data at offset %d (%v), want a multiple of 64", f.Name, off, err)
		}
		if f.Name == "archive/version" {
			rc, _ := f.Open()
			var b [8]byte
			n, _ := rc.Read(b[:])
			if string(b[:n]) != "3\n" {
				t.Errorf("version %q", b[:n])
			}
		}
	}
	want := []string{"archive/data.pkl", "archive/byteorder", "archive/data/0", "archive/data/1", "archive/data/2",
		"archive/version", "archive/.data/serialization_id"}
	if !slices.Equal(names, want) {
		t.Errorf("entries %v, want %v", names, want)
	}
	py, err := os.ReadFile("testdata/state_dict_p2.pkl")
	if err != nil {
		t.Fatal(err)
	}
	if got := l.pickle(); !bytes.Equal(got, py) {
		t.Errorf("pickle differs from Python's:\n got %q\nwant %q", got, py)
	}
}

// pythonLayout is the state dict of testdata/gen_pickles.py: views that
// share a storage, an offset, a transposed (non-contiguous) view, a
// scalar and an OrderedDict with _metadata.
func pythonLayout() *layout {
	return &layout{
		storages: []storageData{
			{safetensors.F32, pattern(4*600, 1)},
			{safetensors.I64, pattern(8*3, 2)},
			{safetensors.BF16, pattern(2*70000, 3)},
		},
		views: []viewSpec{
			{name: "a.weight", storage: 0, shape: []int{300, 2}, stride: []int{2, 1}},
			{name: "a.t", storage: 0, offset: 1, shape: []int{2, 299}, stride: []int{1, 2}},
			{name: "ids", storage: 1, shape: []int{1, 3}, stride: []int{3, 1}},
			{name: "big", storage: 2, shape: []int{70000}, stride: []int{1}},
			{name: "scalar", storage: 1, offset: 2, shape: []int{}, stride: []int{}},
			{name: "four", storage: 0, shape: []int{2, 1, 3, 100}, stride: []int{300, 300, 100, 1}},
		},
		metadata: true,
	}
}

// gather is the reference for a view: element by element.
func gather(data []byte, es, offset int, shape, stride []int) []byte {
	n := 1
	for _, d := range shape {
		n *= d
	}
	out := make([]byte, 0, n*es)
	for i := 0; i < n; i++ {
		src, rem := offset, i
		for d := len(shape) - 1; d >= 0; d-- {
			src += (rem % shape[d]) * stride[d]
			rem /= shape[d]
		}
		out = append(out, data[src*es:(src+1)*es]...)
	}
	return out
}

// TestTorchbinViews reads views on shared storages: offsets, a transposed
// view (copied), every other element, and contiguous views that alias
// their storage.
func TestTorchbinViews(t *testing.T) {
	for _, proto := range []int{2, 4} {
		l := pythonLayout()
		var buf bytes.Buffer
		if err := l.encode(&buf); err != nil {
			t.Fatal(err)
		}
		data := buf.Bytes()
		if proto == 4 {
			// The same state dict pickled at protocol 4 (FRAME, MEMOIZE,
			// STACK_GLOBAL, SHORT_BINUNICODE).
			py, err := os.ReadFile("testdata/state_dict_p4.pkl")
			if err != nil {
				t.Fatal(err)
			}
			data = rezip(t, data, map[string][]byte{"archive/data.pkl": py})
		}
		f := mustRead(t, data)
		for _, v := range l.views {
			st := l.storages[v.storage]
			want := Tensor{Name: v.name, DType: st.dtype, Shape: v.shape,
				Data: gather(st.data, st.dtype.Size(), v.offset, v.shape, v.stride)}
			got, _ := f.Get(v.name)
			sameTensor(t, got, want)
		}
		w, _ := f.Get("a.weight")
		four, _ := f.Get("four")
		if &w.Data[0] != &four.Data[0] {
			t.Error("contiguous views of one storage do not share memory")
		}
	}

	// Every other element, and a view that skips a leading block.
	l := &layout{
		storages: []storageData{{safetensors.F16, pattern(2*24, 5)}},
		views: []viewSpec{
			{name: "even", storage: 0, shape: []int{12}, stride: []int{2}},
			{name: "odd.rows", storage: 0, offset: 4, shape: []int{2, 4}, stride: []int{8, 1}},
			{name: "tail", storage: 0, offset: 20, shape: []int{2, 2}, stride: []int{2, 1}},
		},
		plainDict:   true,
		noByteorder: true,
		archive:     "pytorch_model",
	}
	var buf bytes.Buffer
	if err := l.encode(&buf); err != nil {
		t.Fatal(err)
	}
	f := mustRead(t, buf.Bytes())
	for _, v := range l.views {
		st := l.storages[0]
		got, _ := f.Get(v.name)
		sameTensor(t, got, Tensor{Name: v.name, DType: st.dtype, Shape: v.shape, Data: gather(st.data, 2, v.offset, v.shape, v.stride)})
	}
}

// rezip copies a zip archive, replacing the named entries' contents.
func rezip(t testing.TB, data []byte, replace map[string][]byte) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	var files []zipFile
	for _, f := range zr.File {
		b, ok := replace[f.Name]
		if !ok {
			rc, err := f.Open()
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			out.ReadFrom(rc)
			rc.Close()
			b = out.Bytes()
		}
		files = append(files, zipFile{f.Name, b})
	}
	return makeZip(t, files...)
}

type zipFile struct {
	name string
	data []byte
}

// makeZip writes files into a zip archive, stored.
func makeZip(t testing.TB, files ...zipFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: f.name, Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(f.data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// checkpoint is a zip with the given pickle and a 16-byte storage
// archive/data/0 (four float32s).
func checkpoint(t testing.TB, pkl []byte) []byte {
	return makeZip(t, zipFile{"archive/data.pkl", pkl}, zipFile{"archive/data/0", pattern(16, 0)}, zipFile{"archive/version", []byte("3\n")})
}

// onePickle is a state dict {"w": tensor} whose tensor and persistent id
// are given.
func onePickle(typ string, numel, offset int64, shape, stride []int) []byte {
	p := &pickler{memo: map[memoKey]uint32{}}
	p.b.Write([]byte{opProto, 2})
	p.emptyOrderedDict()
	p.str("w")
	p.global(modUtils, rebuildTensor)
	p.b.WriteString("((")
	p.str("storage")
	p.b.WriteString("ctorch\n" + typ + "\n")
	p.str("0")
	p.str("cpu")
	p.int(numel)
	p.b.WriteString("tQ")
	p.int(offset)
	p.tuple(shape)
	p.tuple(stride)
	p.b.WriteByte(opNewFalse)
	p.emptyOrderedDict()
	p.b.WriteString("tRs.")
	return p.b.Bytes()
}

// TestTorchbinHostile feeds refused and malformed checkpoints: each must
// fail with an error saying why.
func TestTorchbinHostile(t *testing.T) {
	good := encode(t, []Tensor{{Name: "w", DType: safetensors.F32, Shape: []int{2, 2}, Data: pattern(16, 1)}})
	le32 := func(n uint32) string { return string(binary.LittleEndian.AppendUint32(nil, n)) }
	pk := func(s string) []byte { return checkpoint(t, []byte(s)) }
	bigEndian := rezip(t, good, map[string][]byte{"archive/byteorder": []byte("big")})
	noData := func() []byte {
		zr, _ := zip.NewReader(bytes.NewReader(good), int64(len(good)))
		var files []zipFile
		for _, f := range zr.File {
			if f.Name == "archive/data/0" {
				continue
			}
			rc, _ := f.Open()
			var b bytes.Buffer
			b.ReadFrom(rc)
			files = append(files, zipFile{f.Name, b.Bytes()})
		}
		return makeZip(t, files...)
	}()
	cases := []struct {
		name string
		data []byte
		want []string
	}{
		{"global posix.system", pk("\x80\x02cposix\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03."), []string{"posix.system", "not allowed"}},
		{"global builtins.eval", pk("\x80\x02cbuiltins\neval\nX\x01\x00\x00\x001\x85R."), []string{"builtins.eval", "not allowed"}},
		{"global os.system via STACK_GLOBAL", pk("\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x02ls\x85R."), []string{"os.system", "not allowed"}},
		{"global torch.load", pk("\x80\x02ctorch\nload\n."), []string{"torch.load", "not allowed"}},
		{"complex storage", onePickleZip(t, "ComplexFloatStorage", 2, 0, []int{2}, []int{1}), []string{"unsupported storage type", "ComplexFloatStorage"}},
		{"REDUCE of a storage type", pk("\x80\x02ctorch\nFloatStorage\n)R."), []string{"REDUCE of torch.FloatStorage", "not allowed"}},
		{"REDUCE of a string", pk("\x80\x02X\x01\x00\x00\x00x)R."), []string{"REDUCE of a str", "not allowed"}},
		{"REDUCE of rebuild_parameter with junk", pk("\x80\x02ctorch._utils\n_rebuild_parameter\nK\x01\x85R."), []string{"_rebuild_parameter"}},
		{"OrderedDict with arguments", pk("\x80\x02ccollections\nOrderedDict\n]\x85R."), []string{"OrderedDict", "arguments"}},
		{"INST", pk("\x80\x02(ios\nsystem\n."), []string{"INST", "not allowed"}},
		{"OBJ", pk("\x80\x02(o."), []string{"OBJ", "not allowed"}},
		{"NEWOBJ", pk("\x80\x02)\x81."), []string{"NEWOBJ", "not allowed"}},
		{"text INT", pk("I1\n."), []string{"INT", "not allowed"}},
		{"unknown opcode", pk("\x80\x02\xff."), []string{"unknown pickle opcode 0xff"}},
		{"protocol 9", pk("\x80\x09}."), []string{"protocol 9"}},
		{"no STOP", pk("\x80\x02}"), []string{"truncated pickle", "STOP"}},
		{"string past the end", pk("\x80\x02X\xff\xff\xff\x7fabc."), []string{"truncated pickle"}},
		{"LONG1 of 9 bytes", pk("\x80\x02\x8a\x09123456789."), []string{"too large"}},
		{"memo out of range", pk("\x80\x02}h\x05."), []string{"memo index 5", "out of range"}},
		{"long memo out of range", pk("\x80\x02}j" + le32(1<<31) + "."), []string{"memo index 2147483648"}},
		{"stack underflow", pk("\x80\x02s."), []string{"too few objects"}},
		{"pop below mark", pk("\x80\x02}(s."), []string{"too few objects"}},
		{"SETITEMS without MARK", pk("\x80\x02}u."), []string{"without a MARK"}},
		{"odd SETITEMS", pk("\x80\x02}(K\x01u."), []string{"odd number"}},
		{"list key", pk("\x80\x02}]K\x01s."), []string{"dict key"}},
		{"two objects at STOP", pk("\x80\x02}}."), []string{"2 objects"}},
		{"open MARK at STOP", pk("\x80\x02}(."), []string{"MARK"}},
		{"not a dict", pk("\x80\x02]."), []string{"not a state dict"}},
		{"value not a tensor", pk("\x80\x02}X\x01\x00\x00\x00wK\x01s."), []string{`"w"`, "not a tensor"}},
		{"int key", pk("\x80\x02}K\x01K\x01s."), []string{"not a string"}},
		{"BUILD on a list", pk("\x80\x02]}b."), []string{"BUILD of a list"}},
		{"BUILD with a list state", pk("\x80\x02}]b."), []string{"BUILD with a list"}},
		{"bad persistent id", pk("\x80\x02X\x01\x00\x00\x00xQ."), []string{"persistent id"}},
		{"huge storage", onePickleZip(t, "FloatStorage", 1<<61, 0, []int{2}, []int{1}), []string{"invalid element count"}},
		{"storage larger than its file", onePickleZip(t, "FloatStorage", 1<<30, 0, []int{2}, []int{1}), []string{"declares 1073741824 elements", "holds 16 bytes"}},
		{"negative storage size", onePickleZip(t, "FloatStorage", -4, 0, []int{2}, []int{1}), []string{"invalid element count -4"}},
		{"negative size", onePickleZip(t, "FloatStorage", 4, 0, []int{-1}, []int{1}), []string{"size", "non-negative"}},
		{"negative offset", onePickleZip(t, "FloatStorage", 4, -1, []int{1}, []int{1}), []string{"offset -1"}},
		{"overflowing size", onePickleZip(t, "FloatStorage", 4, 0, []int{1 << 31, 1 << 31, 1 << 31}, []int{1, 1, 1}), []string{"too large"}},
		{"size and stride lengths", onePickleZip(t, "FloatStorage", 4, 0, []int{2, 2}, []int{1}), []string{"differ in length"}},
		{"read past the storage", onePickleZip(t, "FloatStorage", 4, 1, []int{2, 2}, []int{2, 1}), []string{"reads element 4", "4 elements"}},
		{"overflowing stride", onePickleZip(t, "FloatStorage", 4, 0, []int{4}, []int{math.MaxInt64 / 2}), []string{"overflows"}},
		{"zero stride", onePickleZip(t, "FloatStorage", 4, 0, []int{4, 4}, []int{0, 1}), []string{"overlapping"}},
		{"storage declared twice", pk(string(twoStorages())), []string{"declared twice"}},
		{"missing data file", noData, []string{"missing data file archive/data/0"}},
		{"truncated zip", good[:len(good)/2], []string{"zip"}},
		{"truncated data", good[:200], []string{"zip"}},
		{"big-endian", bigEndian, []string{"big-endian"}},
		{"bad version", rezip(t, good, map[string][]byte{"archive/version": []byte("three")}), []string{"version"}},
		{"legacy format", []byte("\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9\x03."), []string{"legacy torch.save format", "re-save"}},
		{"safetensors", []byte("\x02\x00\x00\x00\x00\x00\x00\x00{}"), []string{"safetensors file"}},
		{"empty", nil, []string{"empty file"}},
		{"text", []byte("hello, world"), []string{"not a PyTorch checkpoint"}},
		{"no folder", makeZip(t, zipFile{"data.pkl", []byte("}.")}), []string{"not in a folder"}},
		{"no data.pkl", makeZip(t, zipFile{"archive/version", []byte("3\n")}), []string{"no archive/data.pkl"}},
		{"TorchScript", makeZip(t, zipFile{"m/constants.pkl", nil}, zipFile{"m/code/m.py", nil}), []string{"TorchScript"}},
		{"deflate bomb", deflated(t), []string{"impossible"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := Read(bytes.NewReader(c.data), int64(len(c.data)))
			if err == nil {
				t.Fatalf("no error; read %v", f.Keys())
			}
			if f != nil {
				t.Error("a File came with the error")
			}
			msg := err.Error()
			t.Log(msg)
			if !strings.HasPrefix(msg, "torchbin: ") || strings.Count(msg, "torchbin:") != 1 {
				t.Errorf("error %q: want one torchbin: prefix", msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
		})
	}
}

func onePickleZip(t testing.TB, typ string, numel, offset int64, shape, stride []int) []byte {
	return checkpoint(t, onePickle(typ, numel, offset, shape, stride))
}

// twoStorages declares storage "0" as 4 floats and then as 2 longs.
func twoStorages() []byte {
	p := &pickler{memo: map[memoKey]uint32{}}
	p.b.Write([]byte{opProto, 2})
	p.b.WriteByte(opEmptyDict)
	for i, typ := range []string{"FloatStorage", "LongStorage"} {
		p.str(string(rune('a' + i)))
		p.b.WriteString("(")
		p.str("storage")
		p.b.WriteString("ctorch\n" + typ + "\n")
		p.str("0")
		p.str("cpu")
		p.int(int64(4 / (i + 1)))
		p.b.WriteString("tQs")
	}
	p.b.WriteByte(opStop)
	return p.b.Bytes()
}

// deflated is a checkpoint whose storage entry claims far more data than
// its compressed bytes could hold.
func deflated(t testing.TB) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range []zipFile{{"archive/data.pkl", onePickle("FloatStorage", 1<<28, 0, []int{2}, []int{1})}, {"archive/data/0", make([]byte, 1<<16)}} {
		w, _ := zw.CreateHeader(&zip.FileHeader{Name: f.name, Method: zip.Deflate})
		w.Write(f.data)
	}
	zw.Close()
	// Patch the storage's declared size in the central directory to 1 GiB.
	data := buf.Bytes()
	cd := bytes.LastIndex(data, []byte("PK\x01\x02"))
	binary.LittleEndian.PutUint32(data[cd+24:], 1<<30)
	return data
}

func TestTorchbinEncodeErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		ts   []Tensor
		want string
	}{
		{"duplicate", []Tensor{{Name: "a", DType: safetensors.U8, Shape: []int{1}, Data: []byte{1}}, {Name: "a", DType: safetensors.U8, Shape: []int{1}, Data: []byte{1}}}, "duplicate"},
		{"bad dtype", []Tensor{{Name: "a", DType: safetensors.U16, Shape: []int{1}, Data: []byte{1, 2}}}, "no torch storage type"},
		{"short data", []Tensor{{Name: "a", DType: safetensors.F32, Shape: []int{2}, Data: []byte{1}}}, "needs 8"},
		{"negative shape", []Tensor{{Name: "a", DType: safetensors.F32, Shape: []int{-2}}}, "invalid shape"},
		{"bad name", []Tensor{{Name: "\xff", DType: safetensors.U8, Shape: []int{}, Data: []byte{1}}}, "UTF-8"},
	} {
		err := Encode(&bytes.Buffer{}, c.ts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
	if err := WriteFile(filepath.Join(t.TempDir(), "nodir", "x.bin"), nil); err == nil {
		t.Error("WriteFile into a missing folder succeeded")
	}
}

func TestTorchbinOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "missing.bin")); err == nil || !os.IsNotExist(unwrapAll(err)) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("folder: %v", err)
	}
	p := filepath.Join(dir, "bad.bin")
	os.WriteFile(p, []byte("PK\x03\x04junk"), 0o644)
	if _, err := Open(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("junk: error %v does not name the file", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

// TestTorchbinPythonSmall reads testdata/small_p4.pkl, a protocol-4 pickle
// from Python, with a transposed view of the same storage.
func TestTorchbinPythonSmall(t *testing.T) {
	py, err := os.ReadFile("testdata/small_p4.pkl")
	if err != nil {
		t.Fatal(err)
	}
	f := mustRead(t, checkpoint(t, py))
	st := pattern(16, 0)
	sameTensor(t, must(f.Get("w")), Tensor{Name: "w", DType: safetensors.F32, Shape: []int{2, 2}, Data: st})
	sameTensor(t, must(f.Get("w.t")), Tensor{Name: "w.t", DType: safetensors.F32, Shape: []int{2, 2}, Data: gather(st, 4, 0, []int{2, 2}, []int{1, 2})})
}

func must(t Tensor, ok bool) Tensor {
	if !ok {
		panic("missing tensor")
	}
	return t
}
