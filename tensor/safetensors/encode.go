package safetensors

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Encode writes tensors and metadata to w in safetensors format.
//
// The header lists "__metadata__" first (omitted when metadata is empty),
// then the tensors in the given order, and is padded with spaces to a
// multiple of 8 bytes, as the Python library does, so that the data buffer
// starts 8-byte aligned. The tensors' data is laid out in the given order.
//
// Encode validates its input before writing anything: every name must be
// valid UTF-8, unique and not "__metadata__"; every dtype must be known;
// every shape must be non-negative; and len(Data) must equal the shape's
// element count times the dtype size. Metadata keys and values must be
// valid UTF-8.
func Encode(w io.Writer, tensors []TensorInfo, metadata map[string]string) error {
	header, err := encodeHeader(tensors, metadata)
	if err != nil {
		return err
	}
	var prefix [8]byte
	binary.LittleEndian.PutUint64(prefix[:], uint64(len(header)))
	if _, err := w.Write(prefix[:]); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	if _, err := w.Write(header); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	for _, t := range tensors {
		if len(t.Data) == 0 {
			continue
		}
		if _, err := w.Write(t.Data); err != nil {
			return fmt.Errorf("safetensors: %w", err)
		}
	}
	return nil
}

// encodeHeader validates its input and returns the padded header JSON.
func encodeHeader(tensors []TensorInfo, metadata map[string]string) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	if len(metadata) > 0 {
		b.WriteString(`"` + metadataKey + `":{`)
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			v := metadata[k]
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return nil, errorf("metadata key %q or its value is not valid UTF-8", k)
			}
			if i > 0 {
				b.WriteByte(',')
			}
			writeString(&b, k)
			b.WriteByte(':')
			writeString(&b, v)
		}
		b.WriteByte('}')
	}
	seen := make(map[string]bool, len(tensors))
	var offset uint64
	for i, t := range tensors {
		switch {
		case !utf8.ValidString(t.Name):
			return nil, errorf("tensor %q: name is not valid UTF-8", t.Name)
		case t.Name == metadataKey:
			return nil, errorf("tensor name %q is reserved", t.Name)
		case seen[t.Name]:
			return nil, errorf("duplicate tensor name %q", t.Name)
		case t.DType.Size() == 0:
			return nil, errorf("tensor %q: unknown dtype %q", t.Name, string(t.DType))
		}
		seen[t.Name] = true
		want, ok := byteSize(t.DType, t.Shape)
		if !ok {
			return nil, errorf("tensor %q: invalid shape %v", t.Name, t.Shape)
		}
		if len(t.Data) != want {
			return nil, errorf("tensor %q: data is %d bytes, but %s shape %v needs %d",
				t.Name, len(t.Data), t.DType, t.Shape, want)
		}
		if i > 0 || len(metadata) > 0 {
			b.WriteByte(',')
		}
		writeString(&b, t.Name)
		b.WriteString(`:{"dtype":"` + string(t.DType) + `","shape":[`)
		for j, d := range t.Shape {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(d))
		}
		end := offset + uint64(want)
		fmt.Fprintf(&b, `],"data_offsets":[%d,%d]}`, offset, end)
		offset = end
	}
	b.WriteByte('}')
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	if b.Len() > maxHeaderSize {
		return nil, errorf("header is %d bytes, over the limit of %d", b.Len(), maxHeaderSize)
	}
	return b.Bytes(), nil
}

// writeString writes s as a JSON string without HTML escaping.
func writeString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	enc.Encode(s)           // cannot fail for a string
	b.Truncate(b.Len() - 1) // drop the newline Encode appends
}

// WriteFile writes tensors and metadata to the file at path with [Encode].
// It writes a temporary file in the same directory, syncs it and renames it
// over path, so path never holds a half-written file; on any error the
// temporary file is removed. The file is created with mode 0644.
func WriteFile(path string, tensors []TensorInfo, metadata map[string]string) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	if err := finishTemp(tmp, path, tensors, metadata); err != nil {
		tmp.Close() // already closed on some paths; the error is moot
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// finishTemp encodes into tmp, syncs and closes it, and renames it to path.
func finishTemp(tmp *os.File, path string, tensors []TensorInfo, metadata map[string]string) error {
	w := bufio.NewWriterSize(tmp, 1<<20)
	if err := Encode(w, tensors, metadata); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	return nil
}
