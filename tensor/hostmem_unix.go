//go:build linux || darwin || freebsd

package tensor

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// MapHost returns n zeroed bytes of anonymous memory mapped outside the Go
// heap (huge pages advised), for storage whose lifetime the caller manages:
// UnmapHost returns it to the system at once, where memory on the Go heap
// would wait for a collection.
func MapHost(n int) ([]byte, error) {
	if n == 0 {
		return []byte{}, nil
	}
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("mmap of %d MiB: %w", n>>20, err)
	}
	adviseHuge(b)
	return b, nil
}

// UnmapHost releases memory from MapHost.
func UnmapHost(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	return unix.Munmap(b)
}

// DiscardHost gives back the whole pages inside b, a view of a memory
// mapping whose contents are no longer needed, to the system: they stop
// counting in the process's resident memory, and touching them again
// reads zeros (anonymous memory) or the file (a file mapping).
func DiscardHost(b []byte) {
	ps := uintptr(unix.Getpagesize())
	if len(b) == 0 {
		return
	}
	start := uintptr(unsafe.Pointer(&b[0]))
	lo := (start + ps - 1) &^ (ps - 1)
	hi := (start + uintptr(len(b))) &^ (ps - 1)
	if hi <= lo {
		return
	}
	_ = unix.Madvise(b[lo-start:hi-start], unix.MADV_DONTNEED)
}
