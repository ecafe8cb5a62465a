package tensor

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugePageMin is the allocation size from which HostBytes asks for
// transparent huge pages.
const hugePageMin = 4 << 20

// adviseHuge asks the kernel to back the 2 MiB-aligned part of b with
// transparent huge pages (MADV_HUGEPAGE, which matters where THP is set to
// "madvise", the common default). Activations of the full-size U-Nets are
// tens to hundreds of MiB each, freshly allocated per op; with 4 KiB pages
// their first touch costs a page fault per 4 KiB, which measured a fifth
// of the CPU time of the super-res stage. Failure is harmless and ignored.
func adviseHuge(b []byte) {
	const huge = 2 << 20
	if len(b) < hugePageMin {
		return
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	start := (p + huge - 1) &^ (huge - 1)
	end := (p + uintptr(len(b))) &^ (huge - 1)
	if end <= start {
		return
	}
	_ = unix.Madvise(b[start-p:end-p], unix.MADV_HUGEPAGE)
}
