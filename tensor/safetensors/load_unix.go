//go:build unix

package safetensors

import (
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
