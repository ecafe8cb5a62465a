//go:build unix

package safetensors

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// loadFile maps the first size bytes of f read-only into memory. The
// returned function unmaps them.
func loadFile(f *os.File, size int) ([]byte, func([]byte) error, error) {
	data, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, &os.PathError{Op: "mmap", Path: f.Name(), Err: err}
	}
	return data, unix.Munmap, nil
}

// readFile reads the first size bytes of f into anonymous memory mapped
// outside the Go heap (returned to the system at once by the returned
// function), so that the data does not depend on the file afterwards.
func readFile(f *os.File, size int) ([]byte, func([]byte) error, error) {
	data, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, nil, &os.PathError{Op: "read", Path: f.Name(), Err: fmt.Errorf("%d MiB of memory: %w", size>>20, err)}
	}
	if _, err := io.ReadFull(io.NewSectionReader(f, 0, int64(size)), data); err != nil {
		unix.Munmap(data)
		if err == io.ErrUnexpectedEOF {
			err = fmt.Errorf("the file shrank to fewer than %d bytes while being read", size)
		}
		return nil, nil, &os.PathError{Op: "read", Path: f.Name(), Err: err}
	}
	return data, unix.Munmap, nil
}
