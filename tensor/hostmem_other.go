//go:build !(linux || darwin || freebsd)

package tensor

// MapHost returns n zeroed bytes for storage whose lifetime the caller
// manages. Here it is Go heap memory, returned at the next collection
// after UnmapHost.
func MapHost(n int) ([]byte, error) { return HostBytes(n), nil }

// UnmapHost releases memory from MapHost (here: leaves it to the collector).
func UnmapHost(b []byte) error { return nil }

// DiscardHost gives back the pages of a mapping inside b whose contents
// are no longer needed (here: does nothing).
func DiscardHost(b []byte) {}
