package torchbin

import (
	"encoding/binary"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/unclip-go/unclip/tensor/safetensors"
)

// Pickle opcodes, by pickletools' names.
const (
	opMark            = '('
	opStop            = '.'
	opPop             = '0'
	opPopMark         = '1'
	opDup             = '2'
	opBinFloat        = 'G'
	opBinInt          = 'J'
	opBinInt1         = 'K'
	opBinInt2         = 'M'
	opNone            = 'N'
	opBinPersID       = 'Q'
	opReduce          = 'R'
	opBinUnicode      = 'X'
	opBinBytes        = 'B'
	opShortBinBytes   = 'C'
	opAppend          = 'a'
	opBuild           = 'b'
	opGlobal          = 'c'
	opDict            = 'd'
	opEmptyDict       = '}'
	opAppends         = 'e'
	opBinGet          = 'h'
	opLongBinGet      = 'j'
	opList            = 'l'
	opEmptyList       = ']'
	opBinPut          = 'q'
	opLongBinPut      = 'r'
	opSetItem         = 's'
	opTuple           = 't'
	opEmptyTuple      = ')'
	opSetItems        = 'u'
	opProto           = 0x80
	opTuple1          = 0x85
	opTuple2          = 0x86
	opTuple3          = 0x87
	opNewTrue         = 0x88
	opNewFalse        = 0x89
	opLong1           = 0x8a
	opLong4           = 0x8b
	opShortBinUnicode = 0x8c
	opBinUnicode8     = 0x8d
	opBinBytes8       = 0x8e
	opStackGlobal     = 0x93
	opMemoize         = 0x94
	opFrame           = 0x95
)

// opNames names every pickle opcode, for the errors about the ones this
// unpickler refuses.
var opNames = map[byte]string{
	'(': "MARK", '.': "STOP", '0': "POP", '1': "POP_MARK", '2': "DUP", 'F': "FLOAT", 'I': "INT",
	'J': "BININT", 'K': "BININT1", 'L': "LONG", 'M': "BININT2", 'N': "NONE", 'P': "PERSID",
	'Q': "BINPERSID", 'R': "REDUCE", 'S': "STRING", 'T': "BINSTRING", 'U': "SHORT_BINSTRING",
	'V': "UNICODE", 'X': "BINUNICODE", 'a': "APPEND", 'b': "BUILD", 'c': "GLOBAL", 'd': "DICT",
	'}': "EMPTY_DICT", 'e': "APPENDS", 'g': "GET", 'h': "BINGET", 'i': "INST", 'j': "LONG_BINGET",
	'l': "LIST", ']': "EMPTY_LIST", 'o': "OBJ", 'p': "PUT", 'q': "BINPUT", 'r': "LONG_BINPUT",
	's': "SETITEM", 't': "TUPLE", ')': "EMPTY_TUPLE", 'u': "SETITEMS", 'G': "BINFLOAT",
	0x80: "PROTO", 0x81: "NEWOBJ", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4", 0x85: "TUPLE1",
	0x86: "TUPLE2", 0x87: "TUPLE3", 0x88: "NEWTRUE", 0x89: "NEWFALSE", 0x8a: "LONG1", 0x8b: "LONG4",
	'B': "BINBYTES", 'C': "SHORT_BINBYTES", 0x8c: "SHORT_BINUNICODE", 0x8d: "BINUNICODE8",
	0x8e: "BINBYTES8", 0x8f: "EMPTY_SET", 0x90: "ADDITEMS", 0x91: "FROZENSET", 0x92: "NEWOBJ_EX",
	0x93: "STACK_GLOBAL", 0x94: "MEMOIZE", 0x95: "FRAME", 0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER",
	0x98: "READONLY_BUFFER",
}

// The Python values the unpickler builds. Python ints are int64, floats
// float64, str string, bytes pyBytes, bool bool and None nil.
type (
	pyBytes string
	pyTuple []any
	pyList  struct{ items []any }
	pyDict  struct {
		items []dictItem
		index map[any]int
	}
	dictItem struct{ key, value any }
	// pyGlobal is an allowed global: a rebuild function, OrderedDict or a
	// storage type.
	pyGlobal struct{ module, name string }
)

// set stores d[k] = v, keeping the first insertion's position as Python
// does.
func (d *pyDict) set(k, v any) error {
	switch k.(type) {
	case string, int64, bool, float64, nil, pyBytes:
	default:
		return errorf("dict key of type %s is not supported", typeName(k))
	}
	if d.index == nil {
		d.index = map[any]int{}
	}
	if i, ok := d.index[k]; ok {
		d.items[i].value = v
		return nil
	}
	d.index[k] = len(d.items)
	d.items = append(d.items, dictItem{k, v})
	return nil
}

// storage is a storage a persistent id declared.
type storage struct {
	key   string
	dtype safetensors.DType
	numel int64
}

// tensorRef is a tensor rebuilt by _rebuild_tensor_v2: a checked view.
type tensorRef struct {
	storage    *storage
	offset     int64
	shape      []int
	stride     []int
	numel      int64
	contiguous bool
}

// The globals a state dict needs.
const (
	modUtils       = "torch._utils"
	rebuildTensor  = "_rebuild_tensor_v2"
	rebuildParam   = "_rebuild_parameter"
	modCollections = "collections"
	orderedDict    = "OrderedDict"
)

// storageTypes maps torch's storage classes to safetensors dtypes.
var storageTypes = map[string]safetensors.DType{
	"FloatStorage":    safetensors.F32,
	"HalfStorage":     safetensors.F16,
	"BFloat16Storage": safetensors.BF16,
	"DoubleStorage":   safetensors.F64,
	"LongStorage":     safetensors.I64,
	"IntStorage":      safetensors.I32,
	"ShortStorage":    safetensors.I16,
	"CharStorage":     safetensors.I8,
	"ByteStorage":     safetensors.U8,
	"BoolStorage":     safetensors.BOOL,
}

// storageType is the storage class name of a dtype, the inverse of
// storageTypes.
func storageType(dt safetensors.DType) (string, bool) {
	for k, v := range storageTypes {
		if v == dt {
			return k, true
		}
	}
	return "", false
}

// allowGlobal checks module.name against the allowlist.
func allowGlobal(module, name string) (pyGlobal, error) {
	g := pyGlobal{module, name}
	switch {
	case module == modUtils && (name == rebuildTensor || name == rebuildParam),
		module == modCollections && name == orderedDict:
		return g, nil
	case module == "torch":
		if _, ok := storageTypes[name]; ok {
			return g, nil
		}
		if len(name) > len("Storage") && name[len(name)-len("Storage"):] == "Storage" {
			return g, errorf("unsupported storage type torch.%s (float, integer and bool storages are read)", name)
		}
	}
	return g, errorf("global %s.%s is not allowed: a state dict needs only torch._utils.%s, torch._utils.%s, collections.OrderedDict and torch storage types; refusing to run anything else",
		printable(module), printable(name), rebuildTensor, rebuildParam)
}

// printable quotes s when it holds anything but printable ASCII, and
// shortens it.
func printable(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return fmt.Sprintf("%q", s)
		}
	}
	return s
}

// unpickler is the state of one restricted unpickling.
type unpickler struct {
	data     []byte
	pos      int
	op       int // offset of the opcode being run
	stack    []any
	marks    []int // stack heights at each open MARK
	memo     map[uint32]any
	storages map[string]*storage
}

// unpickle runs the restricted unpickler over a pickle and returns the
// object STOP returns.
func unpickle(data []byte) (any, error) {
	u := &unpickler{data: data, memo: map[uint32]any{}, storages: map[string]*storage{}}
	for u.pos < len(u.data) {
		u.op = u.pos
		op := u.data[u.pos]
		u.pos++
		done, err := u.step(op)
		if err != nil {
			return nil, wrap(err, fmt.Sprintf("offset %d", u.op))
		}
		if done {
			return u.stack[0], nil
		}
	}
	return nil, errorf("truncated pickle: no STOP opcode in its %d bytes", len(data))
}

// step runs one opcode; done reports STOP.
func (u *unpickler) step(op byte) (done bool, err error) {
	switch op {
	case opProto:
		v, err := u.u8()
		if err != nil {
			return false, err
		}
		if v > 5 {
			return false, errorf("unsupported pickle protocol %d", v)
		}
	case opFrame:
		if _, err := u.bytes(8); err != nil {
			return false, err
		}
	case opStop:
		if len(u.marks) > 0 {
			return false, errorf("STOP with a MARK still open")
		}
		if len(u.stack) != 1 {
			return false, errorf("STOP with %d objects on the stack, want 1", len(u.stack))
		}
		return true, nil
	case opMark:
		u.marks = append(u.marks, len(u.stack))
	case opPop:
		if len(u.stack) > u.fence() {
			u.stack = u.stack[:len(u.stack)-1]
		} else if len(u.marks) > 0 {
			u.marks = u.marks[:len(u.marks)-1]
		} else {
			return false, errorf("POP from an empty stack")
		}
	case opPopMark:
		if _, err := u.popMark(); err != nil {
			return false, err
		}
	case opDup:
		v, err := u.top()
		if err != nil {
			return false, err
		}
		u.push(v)
	case opNone:
		u.push(nil)
	case opNewTrue:
		u.push(true)
	case opNewFalse:
		u.push(false)
	case opBinInt:
		b, err := u.bytes(4)
		if err != nil {
			return false, err
		}
		u.push(int64(int32(binary.LittleEndian.Uint32(b))))
	case opBinInt1:
		v, err := u.u8()
		if err != nil {
			return false, err
		}
		u.push(int64(v))
	case opBinInt2:
		b, err := u.bytes(2)
		if err != nil {
			return false, err
		}
		u.push(int64(binary.LittleEndian.Uint16(b)))
	case opLong1, opLong4:
		var n uint64
		if op == opLong1 {
			v, err := u.u8()
			if err != nil {
				return false, err
			}
			n = uint64(v)
		} else {
			b, err := u.bytes(4)
			if err != nil {
				return false, err
			}
			n = uint64(binary.LittleEndian.Uint32(b))
		}
		if n > 8 {
			return false, errorf("integer of %d bytes is too large (at most 8)", n)
		}
		b, err := u.bytes(n)
		if err != nil {
			return false, err
		}
		var v uint64
		for i := len(b) - 1; i >= 0; i-- {
			v = v<<8 | uint64(b[i])
		}
		if n > 0 && n < 8 && b[n-1]&0x80 != 0 { // sign-extend
			v |= ^uint64(0) << (8 * n)
		}
		u.push(int64(v))
	case opBinFloat:
		b, err := u.bytes(8)
		if err != nil {
			return false, err
		}
		u.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
	case opBinUnicode, opShortBinUnicode, opBinUnicode8, opBinBytes, opShortBinBytes, opBinBytes8:
		n, err := u.length(op)
		if err != nil {
			return false, err
		}
		b, err := u.bytes(n)
		if err != nil {
			return false, err
		}
		switch op {
		case opBinBytes, opShortBinBytes, opBinBytes8:
			u.push(pyBytes(b))
		default:
			if !utf8.Valid(b) {
				return false, errorf("string is not valid UTF-8")
			}
			u.push(string(b))
		}
	case opEmptyDict:
		u.push(&pyDict{})
	case opEmptyList:
		u.push(&pyList{})
	case opEmptyTuple:
		u.push(pyTuple{})
	case opTuple, opList, opDict:
		items, err := u.popMark()
		if err != nil {
			return false, err
		}
		switch op {
		case opTuple:
			u.push(pyTuple(items))
		case opList:
			u.push(&pyList{items: items})
		default:
			d := &pyDict{}
			if err := setItems(d, items); err != nil {
				return false, err
			}
			u.push(d)
		}
	case opTuple1, opTuple2, opTuple3:
		n := int(op-opTuple1) + 1
		if len(u.stack)-n < u.fence() {
			return false, errorf("%s needs %d objects on the stack", opNames[op], n)
		}
		t := make(pyTuple, n)
		copy(t, u.stack[len(u.stack)-n:])
		u.stack = u.stack[:len(u.stack)-n]
		u.push(t)
	case opAppend, opAppends:
		var items []any
		if op == opAppend {
			v, err := u.pop()
			if err != nil {
				return false, err
			}
			items = []any{v}
		} else if items, err = u.popMark(); err != nil {
			return false, err
		}
		top, err := u.top()
		if err != nil {
			return false, err
		}
		l, ok := top.(*pyList)
		if !ok {
			return false, errorf("%s to %s, not a list", opNames[op], typeName(top))
		}
		l.items = append(l.items, items...)
	case opSetItem, opSetItems:
		var items []any
		if op == opSetItem {
			v, err := u.pop()
			if err != nil {
				return false, err
			}
			k, err := u.pop()
			if err != nil {
				return false, err
			}
			items = []any{k, v}
		} else if items, err = u.popMark(); err != nil {
			return false, err
		}
		top, err := u.top()
		if err != nil {
			return false, err
		}
		d, ok := top.(*pyDict)
		if !ok {
			return false, errorf("%s on %s, not a dict", opNames[op], typeName(top))
		}
		if err := setItems(d, items); err != nil {
			return false, err
		}
	case opBinPut, opLongBinPut, opMemoize:
		var idx uint32
		switch op {
		case opBinPut:
			v, err := u.u8()
			if err != nil {
				return false, err
			}
			idx = uint32(v)
		case opLongBinPut:
			b, err := u.bytes(4)
			if err != nil {
				return false, err
			}
			idx = binary.LittleEndian.Uint32(b)
		default:
			idx = uint32(len(u.memo))
		}
		v, err := u.top()
		if err != nil {
			return false, err
		}
		u.memo[idx] = v
	case opBinGet, opLongBinGet:
		var idx uint32
		if op == opBinGet {
			v, err := u.u8()
			if err != nil {
				return false, err
			}
			idx = uint32(v)
		} else {
			b, err := u.bytes(4)
			if err != nil {
				return false, err
			}
			idx = binary.LittleEndian.Uint32(b)
		}
		v, ok := u.memo[idx]
		if !ok {
			return false, errorf("memo index %d is out of range (never stored)", idx)
		}
		u.push(v)
	case opGlobal:
		module, err := u.line()
		if err != nil {
			return false, err
		}
		name, err := u.line()
		if err != nil {
			return false, err
		}
		g, err := allowGlobal(module, name)
		if err != nil {
			return false, err
		}
		u.push(g)
	case opStackGlobal:
		name, err := u.pop()
		if err != nil {
			return false, err
		}
		module, err := u.pop()
		if err != nil {
			return false, err
		}
		m, ok1 := module.(string)
		n, ok2 := name.(string)
		if !ok1 || !ok2 {
			return false, errorf("STACK_GLOBAL of %s and %s, not strings", typeName(module), typeName(name))
		}
		g, err := allowGlobal(m, n)
		if err != nil {
			return false, err
		}
		u.push(g)
	case opBinPersID:
		pid, err := u.pop()
		if err != nil {
			return false, err
		}
		st, err := u.persistentStorage(pid)
		if err != nil {
			return false, err
		}
		u.push(st)
	case opReduce:
		args, err := u.pop()
		if err != nil {
			return false, err
		}
		fn, err := u.pop()
		if err != nil {
			return false, err
		}
		v, err := reduce(fn, args)
		if err != nil {
			return false, err
		}
		u.push(v)
	case opBuild:
		state, err := u.pop()
		if err != nil {
			return false, err
		}
		top, err := u.top()
		if err != nil {
			return false, err
		}
		// The only BUILD a state dict has sets the _metadata attribute of
		// an OrderedDict (module.state_dict()): harmless, and ignored.
		if _, ok := top.(*pyDict); !ok {
			return false, errorf("BUILD of %s is not allowed (only an OrderedDict's attributes are set)", typeName(top))
		}
		if _, ok := state.(*pyDict); !ok && state != nil {
			return false, errorf("BUILD with %s as state is not allowed (a dict is)", typeName(state))
		}
	default:
		if name, ok := opNames[op]; ok {
			return false, errorf("pickle opcode %s (0x%02x) is not allowed in a state dict", name, op)
		}
		return false, errorf("unknown pickle opcode 0x%02x", op)
	}
	return false, nil
}

// setItems adds key, value pairs to d.
func setItems(d *pyDict, items []any) error {
	if len(items)%2 != 0 {
		return errorf("odd number of objects (%d) for dict items", len(items))
	}
	for i := 0; i < len(items); i += 2 {
		if err := d.set(items[i], items[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// length reads the length prefix of a string or bytes opcode.
func (u *unpickler) length(op byte) (uint64, error) {
	switch op {
	case opShortBinUnicode, opShortBinBytes:
		v, err := u.u8()
		return uint64(v), err
	case opBinUnicode, opBinBytes:
		b, err := u.bytes(4)
		if err != nil {
			return 0, err
		}
		return uint64(binary.LittleEndian.Uint32(b)), nil
	}
	b, err := u.bytes(8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

func (u *unpickler) u8() (byte, error) {
	b, err := u.bytes(1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

// bytes consumes the next n bytes.
func (u *unpickler) bytes(n uint64) ([]byte, error) {
	if n > uint64(len(u.data)-u.pos) {
		return nil, errorf("truncated pickle: %s needs %d more bytes, %d are left", opNames[u.data[u.op]], n, len(u.data)-u.pos)
	}
	b := u.data[u.pos : u.pos+int(n)]
	u.pos += int(n)
	return b, nil
}

// line consumes a newline-terminated string (GLOBAL's arguments).
func (u *unpickler) line() (string, error) {
	const maxLine = 256
	for i := u.pos; i < len(u.data) && i-u.pos <= maxLine; i++ {
		if u.data[i] == '\n' {
			s := string(u.data[u.pos:i])
			u.pos = i + 1
			return s, nil
		}
	}
	return "", errorf("truncated or over-long GLOBAL name")
}

func (u *unpickler) push(v any) { u.stack = append(u.stack, v) }

// fence is the stack height below which pops may not go: the last MARK.
func (u *unpickler) fence() int {
	if len(u.marks) == 0 {
		return 0
	}
	return u.marks[len(u.marks)-1]
}

func (u *unpickler) pop() (any, error) {
	if len(u.stack) <= u.fence() {
		return nil, errorf("%s with too few objects on the stack", opNames[u.data[u.op]])
	}
	v := u.stack[len(u.stack)-1]
	u.stack = u.stack[:len(u.stack)-1]
	return v, nil
}

func (u *unpickler) top() (any, error) {
	if len(u.stack) <= u.fence() {
		return nil, errorf("%s with too few objects on the stack", opNames[u.data[u.op]])
	}
	return u.stack[len(u.stack)-1], nil
}

// popMark pops everything above the last MARK, and the MARK.
func (u *unpickler) popMark() ([]any, error) {
	if len(u.marks) == 0 {
		return nil, errorf("%s without a MARK", opNames[u.data[u.op]])
	}
	m := u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	items := append([]any(nil), u.stack[m:]...)
	u.stack = u.stack[:m]
	return items, nil
}

// persistentStorage checks a persistent id ('storage', torch.FloatStorage,
// key, location, numel) and returns its storage, the same one for every
// id with the same key.
func (u *unpickler) persistentStorage(pid any) (*storage, error) {
	t, ok := pid.(pyTuple)
	if !ok || len(t) != 5 {
		return nil, errorf("persistent id %s is not a ('storage', type, key, location, numel) tuple", describe(pid))
	}
	if s, ok := t[0].(string); !ok || s != "storage" {
		return nil, errorf("persistent id of kind %s is not supported (only 'storage')", describe(t[0]))
	}
	g, ok := t[1].(pyGlobal)
	dt, known := storageTypes[g.name]
	if !ok || g.module != "torch" || !known {
		return nil, errorf("persistent id storage type %s is not a torch storage type", describe(t[1]))
	}
	key, ok := t[2].(string)
	if !ok {
		return nil, errorf("storage key %s is not a string", describe(t[2]))
	}
	if _, ok := t[3].(string); !ok {
		return nil, errorf("storage %q: location %s is not a string", key, describe(t[3]))
	}
	numel, ok := t[4].(int64)
	if !ok || numel < 0 || numel > math.MaxInt64/int64(dt.Size()) || numel*int64(dt.Size()) > int64(maxInt) {
		return nil, errorf("storage %q: invalid element count %s", key, describe(t[4]))
	}
	if st, ok := u.storages[key]; ok {
		if st.dtype != dt || st.numel != numel {
			return nil, errorf("storage %q declared twice, as %d %s and as %d %s", key, st.numel, st.dtype, numel, dt)
		}
		return st, nil
	}
	st := &storage{key: key, dtype: dt, numel: numel}
	u.storages[key] = st
	return st, nil
}

const maxInt = int(^uint(0) >> 1)

// reduce calls one of the allowed callables.
func reduce(fn, args any) (any, error) {
	g, ok := fn.(pyGlobal)
	if !ok {
		return nil, errorf("REDUCE of %s is not allowed (only tensor rebuilding and OrderedDict are called)", typeName(fn))
	}
	a, ok := args.(pyTuple)
	if !ok {
		return nil, errorf("REDUCE of %s.%s with %s as arguments, not a tuple", g.module, g.name, typeName(args))
	}
	switch g {
	case pyGlobal{modCollections, orderedDict}:
		if len(a) != 0 {
			return nil, errorf("collections.OrderedDict called with %d arguments, want none", len(a))
		}
		return &pyDict{}, nil
	case pyGlobal{modUtils, rebuildTensor}:
		return rebuildTensorV2(a)
	case pyGlobal{modUtils, rebuildParam}:
		// _rebuild_parameter(data, requires_grad, backward_hooks)
		if len(a) != 3 {
			return nil, errorf("%s.%s called with %d arguments, want 3", modUtils, rebuildParam, len(a))
		}
		t, ok := a[0].(*tensorRef)
		if !ok {
			return nil, errorf("%s.%s of %s, not a tensor", modUtils, rebuildParam, typeName(a[0]))
		}
		return t, nil
	}
	return nil, errorf("REDUCE of %s.%s is not allowed (only tensor rebuilding and OrderedDict are called)", g.module, g.name)
}

// rebuildTensorV2 checks the arguments of torch._utils._rebuild_tensor_v2
// (storage, storage_offset, size, stride, requires_grad, backward_hooks[,
// metadata]) and returns the view they describe.
func rebuildTensorV2(a pyTuple) (*tensorRef, error) {
	if len(a) != 6 && len(a) != 7 {
		return nil, errorf("%s called with %d arguments, want 6 or 7", rebuildTensor, len(a))
	}
	st, ok := a[0].(*storage)
	if !ok {
		return nil, errorf("%s of %s, not a storage", rebuildTensor, typeName(a[0]))
	}
	off, ok := a[1].(int64)
	if !ok || off < 0 {
		return nil, errorf("storage offset %s is not a non-negative int", describe(a[1]))
	}
	shape, err := intTuple("size", a[2])
	if err != nil {
		return nil, err
	}
	stride, err := intTuple("stride", a[3])
	if err != nil {
		return nil, err
	}
	if len(shape) != len(stride) {
		return nil, errorf("size %v and stride %v differ in length", shape, stride)
	}
	if _, ok := a[4].(bool); !ok {
		return nil, errorf("requires_grad %s is not a bool", describe(a[4]))
	}
	if _, ok := a[5].(*pyDict); !ok {
		return nil, errorf("backward_hooks %s is not a dict", describe(a[5]))
	}
	if len(a) == 7 {
		if _, ok := a[6].(*pyDict); !ok {
			return nil, errorf("tensor metadata %s is not a dict", describe(a[6]))
		}
	}
	t := &tensorRef{storage: st, offset: off, shape: shape, stride: stride}
	es := int64(st.dtype.Size())
	// numel, with numel·element size bounded like the storage's.
	t.numel = 1
	for _, d := range shape {
		if d == 0 {
			t.numel = 0
			break
		}
	}
	if t.numel != 0 {
		for _, d := range shape {
			if t.numel > int64(maxInt)/es/int64(d) {
				return nil, errorf("size %v is too large", shape)
			}
			t.numel *= int64(d)
		}
	}
	t.contiguous = true
	want := int64(1)
	for i := len(shape) - 1; i >= 0; i-- {
		if shape[i] != 1 && int64(stride[i]) != want {
			t.contiguous = false
		}
		want *= int64(shape[i]) // bounded: numel fits
	}
	if t.numel == 0 {
		t.contiguous = true
		return t, nil
	}
	// The last element the view reads must lie in the storage.
	last := off
	for i, d := range shape {
		step := int64(stride[i])
		if step != 0 && int64(d-1) > (math.MaxInt64-last)/step {
			return nil, errorf("view (offset %d, size %v, stride %v) overflows", off, shape, stride)
		}
		last += int64(d-1) * step
	}
	if last >= st.numel {
		return nil, errorf("view (offset %d, size %v, stride %v) reads element %d of storage %q, which has %d elements",
			off, shape, stride, last, st.key, st.numel)
	}
	if !t.contiguous && overlaps(shape, stride) {
		return nil, errorf("view with size %v and stride %v has overlapping elements (a zero or too-small stride): not supported; save a contiguous copy (tensor.contiguous())", shape, stride)
	}
	return t, nil
}

// overlaps reports whether two indexes of the view name one element:
// sorted by stride, each dimension of extent > 1 must step past everything
// the smaller ones reach.
func overlaps(shape, stride []int) bool {
	type dim struct{ size, stride int64 }
	var dims []dim
	for i, d := range shape {
		if d > 1 {
			dims = append(dims, dim{int64(d), int64(stride[i])})
		}
	}
	for i := 1; i < len(dims); i++ { // insertion sort: at most maxDims
		for j := i; j > 0 && dims[j].stride < dims[j-1].stride; j-- {
			dims[j], dims[j-1] = dims[j-1], dims[j]
		}
	}
	span := int64(1) // elements spanned by the dimensions so far
	for _, d := range dims {
		if d.stride < span {
			return true
		}
		span += d.stride * (d.size - 1) // bounded: checked against the storage
	}
	return false
}

// intTuple checks a tuple of non-negative ints (a size or a stride).
func intTuple(what string, v any) ([]int, error) {
	t, ok := v.(pyTuple)
	if !ok {
		return nil, errorf("tensor %s %s is not a tuple", what, describe(v))
	}
	if len(t) > maxDims {
		return nil, errorf("tensor %s has %d dimensions, more than %d", what, len(t), maxDims)
	}
	out := make([]int, len(t))
	for i, e := range t {
		n, ok := e.(int64)
		if !ok || n < 0 || n > int64(maxInt) {
			return nil, errorf("tensor %s %s: element %d is not a non-negative int", what, describe(v), i)
		}
		out[i] = int(n)
	}
	return out, nil
}

// view returns the tensor's elements from its storage's bytes: a slice of
// them when the view is contiguous, else a contiguous copy, whose size is
// also returned.
func (t *tensorRef) view(data []byte) ([]byte, int64) {
	es := int64(t.storage.dtype.Size())
	if t.numel == 0 {
		return []byte{}, 0
	}
	if t.contiguous {
		lo, hi := t.offset*es, (t.offset+t.numel)*es
		return data[lo:hi:hi], 0
	}
	out := make([]byte, t.numel*es)
	idx := make([]int, len(t.shape))
	src := t.offset
	for i := int64(0); i < t.numel; i++ {
		copy(out[i*es:(i+1)*es], data[src*es:(src+1)*es])
		for d := len(t.shape) - 1; d >= 0; d-- {
			idx[d]++
			src += int64(t.stride[d])
			if idx[d] < t.shape[d] {
				break
			}
			src -= int64(t.stride[d]) * int64(t.shape[d])
			idx[d] = 0
		}
	}
	return out, int64(len(out))
}

// typeName names a value's Python type, for errors.
func typeName(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case bool:
		return "a bool"
	case int64:
		return "an int"
	case float64:
		return "a float"
	case string:
		return "a str"
	case pyBytes:
		return "bytes"
	case pyTuple:
		return fmt.Sprintf("a %d-tuple", len(v))
	case *pyList:
		return "a list"
	case *pyDict:
		return "a dict"
	case pyGlobal:
		return v.module + "." + v.name
	case *storage:
		return "a storage"
	case *tensorRef:
		return "a tensor"
	}
	return fmt.Sprintf("%T", v)
}

// describe shows a small value, else its type.
func describe(v any) string {
	switch v := v.(type) {
	case int64, bool, float64:
		return fmt.Sprint(v)
	case string:
		return fmt.Sprintf("%q", printable(v))
	case pyTuple:
		if len(v) <= 8 {
			s := "("
			for i, e := range v {
				if i > 0 {
					s += ", "
				}
				s += describe(e)
			}
			return s + ")"
		}
	}
	return typeName(v)
}
