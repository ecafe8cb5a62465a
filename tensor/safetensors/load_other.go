//go:build !unix

package safetensors

import (
	"io"
	"os"
)

// loadFile reads the first size bytes of f into memory; there is nothing
// to release, so the returned function is nil.
func loadFile(f *os.File, size int) ([]byte, func([]byte) error, error) {
	data := make([]byte, size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, nil, err
	}
	return data, nil, nil
}

// readFile reads the first size bytes of f into memory.
func readFile(f *os.File, size int) ([]byte, func([]byte) error, error) {
	return loadFile(f, size)
}
