package safetensors

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxHeaderSize is the largest header length Parse accepts (100 MiB).
const maxHeaderSize = 100 << 20

// metadataKey is the reserved header key holding the string→string metadata.
const metadataKey = "__metadata__"

// formatError is a validation failure. Its message is prefixed with
// "safetensors: " and, once Open sets it, the file path.
type formatError struct {
	path string
	msg  string
}

func (e *formatError) Error() string {
	if e.path != "" {
		return "safetensors: " + e.path + ": " + e.msg
	}
	return "safetensors: " + e.msg
}

func errorf(format string, args ...any) error {
	return &formatError{msg: fmt.Sprintf(format, args...)}
}

// withPath returns err with the file path added to its message.
func withPath(err error, path string) error {
	var fe *formatError
	if errors.As(err, &fe) {
		return &formatError{path: path, msg: fe.msg}
	}
	return fmt.Errorf("safetensors: %s: %w", path, err)
}

// Load reads a safetensors file into memory that the File owns, validates
// it and returns it: unlike Open, a later change to the file on disk (a
// truncation, an overwrite) has no effect on the tensors. Close releases
// the memory. Model weights are read this way.
func Load(path string) (*File, error) { return open(path, readFile) }

// Open opens and validates the safetensors file at path. On Unix systems it
// maps the file read-only into memory, and the Data of the tensors it holds
// aliases that mapping (see [TensorInfo]); on other systems it reads the
// whole file. The file must not be truncated while mapped. Call
// [File.Close] to release the mapping.
//
// Validation errors are those of [Parse], with the path in the message.
func Open(path string) (*File, error) { return open(path, loadFile) }

func open(path string, load func(*os.File, int) ([]byte, func([]byte) error, error)) (*File, error) {
	// Stat before opening: opening a FIFO named like a weight file would
	// block until a writer appears.
	if st, err := os.Stat(path); err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			pe.Op = "open"
		}
		return nil, fmt.Errorf("safetensors: %w", err)
	} else if !st.Mode().IsRegular() {
		return nil, withPath(errorf("not a regular file"), path)
	}
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, withPath(errorf("not a regular file"), path)
	}
	size := fi.Size()
	switch {
	case size == 0:
		return nil, withPath(errorf("empty file"), path)
	case size < 8:
		return nil, withPath(errorf("file is %d bytes, shorter than the 8-byte header length prefix", size), path)
	case uint64(size) > uint64(maxInt):
		return nil, withPath(errorf("file is %d bytes, too large to load on this platform", size), path)
	}
	data, unmap, err := load(fh, int(size))
	if err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", path, err)
	}
	f, err := parse(data)
	if err != nil {
		if unmap != nil {
			unmap(data)
		}
		return nil, withPath(err, path)
	}
	f.path = path
	f.unmap = unmap
	return f, nil
}

// Parse validates the safetensors file contents in data and returns a File
// describing it. It does not copy data: the Data of the returned tensors
// aliases it, so data must not be modified while the File is in use.
// [File.Close] on the result releases nothing but is still allowed.
//
// Parse rejects, with a descriptive error: data shorter than 8 bytes; a
// header length of 0, over 100 MiB or past the end of data; a header that is
// not a UTF-8 JSON object, or whose object has duplicate keys; a
// "__metadata__" entry that is not a string→string object; a tensor entry
// with an unknown dtype, a shape that is not a list of non-negative integers
// (or whose element count overflows), or data_offsets that are not two
// integers with 0 ≤ begin ≤ end ≤ data size and end-begin equal to the
// tensor's byte size; and tensors that overlap or leave bytes of the data
// buffer uncovered.
func Parse(data []byte) (*File, error) {
	return parse(data)
}

// entry is one tensor entry of the header, before its data is attached.
type entry struct {
	name       string
	dtype      DType
	shape      []int
	begin, end uint64
}

func parse(data []byte) (*File, error) {
	if len(data) < 8 {
		return nil, errorf("data is %d bytes, shorter than the 8-byte header length prefix", len(data))
	}
	n := binary.LittleEndian.Uint64(data)
	switch {
	case n == 0:
		return nil, errorf("header length is 0")
	case n > maxHeaderSize:
		return nil, errorf("header length %d exceeds the limit of %d bytes", n, maxHeaderSize)
	case n > uint64(len(data)-8):
		return nil, errorf("truncated header: header length %d exceeds the %d bytes after the length prefix", n, len(data)-8)
	}
	header := data[8 : 8+n]
	buf := data[8+n:]
	if !utf8.Valid(header) {
		return nil, errorf("header is not valid UTF-8")
	}
	entries, metadata, err := parseHeader(header)
	if err != nil {
		return nil, err
	}

	size := uint64(len(buf))
	for _, e := range entries {
		if e.begin > e.end {
			return nil, errorf("tensor %q: data_offsets [%d %d] have begin after end", e.name, e.begin, e.end)
		}
		if e.end > size {
			return nil, errorf("tensor %q: data_offsets [%d %d] exceed data size %d (the file is truncated or its header is corrupt)", e.name, e.begin, e.end, size)
		}
		want, ok := byteSize(e.dtype, e.shape)
		if !ok {
			return nil, errorf("tensor %q: shape %v has too many elements", e.name, e.shape)
		}
		if e.end-e.begin != uint64(want) {
			return nil, errorf("tensor %q: data_offsets [%d %d] span %d bytes, but %s shape %v needs %d",
				e.name, e.begin, e.end, e.end-e.begin, e.dtype, e.shape, want)
		}
	}

	// The tensors must tile the data buffer: sorted by offsets, each begins
	// where the previous one ends, and the last ends at the end of the buffer.
	sorted := make([]*entry, len(entries))
	for i := range entries {
		sorted[i] = &entries[i]
	}
	slices.SortFunc(sorted, func(a, b *entry) int {
		return cmp.Or(cmp.Compare(a.begin, b.begin), cmp.Compare(a.end, b.end), strings.Compare(a.name, b.name))
	})
	var prev *entry
	var pos uint64
	for _, e := range sorted {
		switch {
		case e.begin > pos:
			return nil, errorf("data bytes [%d %d) are not covered by any tensor (gap before tensor %q)", pos, e.begin, e.name)
		case e.begin < pos:
			return nil, errorf("tensor %q: data_offsets [%d %d] overlap tensor %q at [%d %d]",
				e.name, e.begin, e.end, prev.name, prev.begin, prev.end)
		}
		prev, pos = e, e.end
	}
	if pos != size {
		return nil, errorf("data bytes [%d %d) after the last tensor are not covered by any tensor", pos, size)
	}

	f := &File{
		data:     data,
		metadata: metadata,
		tensors:  make(map[string]TensorInfo, len(entries)),
		keys:     make([]string, 0, len(entries)),
	}
	for _, e := range entries {
		f.tensors[e.name] = TensorInfo{
			Name:  e.name,
			DType: e.dtype,
			Shape: e.shape,
			Data:  buf[e.begin:e.end:e.end],
		}
		f.keys = append(f.keys, e.name)
	}
	slices.Sort(f.keys)
	return f, nil
}

// headerParser walks the header JSON token by token, which lets it reject
// duplicate keys that json.Unmarshal would silently merge.
type headerParser struct {
	dec *json.Decoder
}

// next returns the next token, turning a premature end into an error.
func (p *headerParser) next() (json.Token, error) {
	tok, err := p.dec.Token()
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, errorf("header is not valid JSON: %v", err)
	}
	return tok, nil
}

// key returns the next object key.
func (p *headerParser) key() (string, error) {
	tok, err := p.next()
	if err != nil {
		return "", err
	}
	k, ok := tok.(string)
	if !ok {
		return "", errorf("header is not valid JSON: unexpected %v where an object key belongs", tok)
	}
	return k, nil
}

// end consumes the closing delimiter of the current object or array.
func (p *headerParser) end(want json.Delim) error {
	tok, err := p.next()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return errorf("header is not valid JSON: unexpected %v, want %v", tok, want)
	}
	return nil
}

func parseHeader(header []byte) ([]entry, map[string]string, error) {
	dec := json.NewDecoder(bytes.NewReader(header))
	dec.UseNumber()
	p := &headerParser{dec: dec}

	tok, err := p.next()
	if err != nil {
		return nil, nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, errorf("header is not a JSON object")
	}
	var (
		entries  []entry
		metadata map[string]string
		seen     = make(map[string]bool)
	)
	for dec.More() {
		name, err := p.key()
		if err != nil {
			return nil, nil, err
		}
		if seen[name] {
			return nil, nil, errorf("duplicate key %q in header", name)
		}
		seen[name] = true
		if name == metadataKey {
			if metadata, err = p.metadata(); err != nil {
				return nil, nil, err
			}
			continue
		}
		e, err := p.entry(name)
		if err != nil {
			return nil, nil, err
		}
		entries = append(entries, e)
	}
	if err := p.end('}'); err != nil {
		return nil, nil, err
	}
	if tok, err := dec.Token(); err != io.EOF {
		if err != nil {
			return nil, nil, errorf("header is not valid JSON: %v", err)
		}
		return nil, nil, errorf("header has data after the JSON object: %v", tok)
	}
	return entries, metadata, nil
}

// metadata parses the value of "__metadata__": null or a string→string
// object.
func (p *headerParser) metadata() (map[string]string, error) {
	tok, err := p.next()
	if err != nil {
		return nil, err
	}
	if tok == nil {
		return nil, nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errorf("%s is not a JSON object", metadataKey)
	}
	m := make(map[string]string)
	for p.dec.More() {
		k, err := p.key()
		if err != nil {
			return nil, err
		}
		if _, dup := m[k]; dup {
			return nil, errorf("duplicate key %q in %s", k, metadataKey)
		}
		tok, err := p.next()
		if err != nil {
			return nil, err
		}
		v, ok := tok.(string)
		if !ok {
			return nil, errorf("%s value of %q is %s, not a string", metadataKey, k, describe(tok))
		}
		m[k] = v
	}
	return m, p.end('}')
}

// entry parses the value of a tensor entry.
func (p *headerParser) entry(name string) (entry, error) {
	e := entry{name: name}
	tok, err := p.next()
	if err != nil {
		return e, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return e, errorf("tensor %q: entry is %s, not an object", name, describe(tok))
	}
	var haveDType, haveShape, haveOffsets bool
	for p.dec.More() {
		k, err := p.key()
		if err != nil {
			return e, err
		}
		switch k {
		case "dtype":
			if haveDType {
				return e, errorf("tensor %q: duplicate field %q", name, k)
			}
			haveDType = true
			tok, err := p.next()
			if err != nil {
				return e, err
			}
			s, ok := tok.(string)
			if !ok {
				return e, errorf("tensor %q: dtype is %s, not a string", name, describe(tok))
			}
			e.dtype = DType(s)
			if e.dtype.Size() == 0 {
				return e, errorf("tensor %q: unknown dtype %q", name, s)
			}
		case "shape":
			if haveShape {
				return e, errorf("tensor %q: duplicate field %q", name, k)
			}
			haveShape = true
			dims, err := p.uintList(name, k)
			if err != nil {
				return e, err
			}
			e.shape = make([]int, len(dims))
			for i, d := range dims {
				if d > uint64(maxInt) {
					return e, errorf("tensor %q: shape dimension %d is too large", name, d)
				}
				e.shape[i] = int(d)
			}
		case "data_offsets":
			if haveOffsets {
				return e, errorf("tensor %q: duplicate field %q", name, k)
			}
			haveOffsets = true
			offs, err := p.uintList(name, k)
			if err != nil {
				return e, err
			}
			if len(offs) != 2 {
				return e, errorf("tensor %q: data_offsets has %d values, want 2", name, len(offs))
			}
			e.begin, e.end = offs[0], offs[1]
		default:
			// Unknown fields are ignored, as by the reference implementation.
			var skip json.RawMessage
			if err := p.dec.Decode(&skip); err != nil {
				return e, errorf("header is not valid JSON: %v", err)
			}
		}
	}
	if err := p.end('}'); err != nil {
		return e, err
	}
	switch {
	case !haveDType:
		return e, errorf("tensor %q: missing dtype", name)
	case !haveShape:
		return e, errorf("tensor %q: missing shape", name)
	case !haveOffsets:
		return e, errorf("tensor %q: missing data_offsets", name)
	}
	return e, nil
}

// uintList parses a JSON array of non-negative integers, the value of field
// of tensor name.
func (p *headerParser) uintList(name, field string) ([]uint64, error) {
	tok, err := p.next()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, errorf("tensor %q: %s is %s, not a list", name, field, describe(tok))
	}
	list := []uint64{}
	for p.dec.More() {
		tok, err := p.next()
		if err != nil {
			return nil, err
		}
		num, ok := tok.(json.Number)
		if !ok {
			return nil, errorf("tensor %q: %s has an element that is %s, not an integer", name, field, describe(tok))
		}
		s := string(num)
		if strings.HasPrefix(s, "-") {
			return nil, errorf("tensor %q: %s has negative value %s", name, field, s)
		}
		if strings.ContainsAny(s, ".eE") {
			return nil, errorf("tensor %q: %s has non-integer value %s", name, field, s)
		}
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return nil, errorf("tensor %q: %s value %s is out of range", name, field, s)
		}
		list = append(list, v)
	}
	return list, p.end(']')
}

// describe names the kind of a JSON token for error messages.
func describe(tok json.Token) string {
	switch t := tok.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case json.Delim:
		if t == '{' {
			return "an object"
		}
		return "a list"
	}
	return fmt.Sprintf("%v", tok)
}
