//go:build !cgo || novulkan

package vulkan

import (
	"fmt"

	"github.com/unclip-go/unclip/tensor"
)

// Available reports whether this binary has the Vulkan backend.
const Available = false

// Open reports that this binary was built without the Vulkan backend.
func Open(index int) (tensor.Backend, error) {
	return nil, fmt.Errorf("%w: this binary was built without the Vulkan backend (cgo disabled or novulkan tag)", ErrUnavailable)
}

// Devices reports that this binary was built without the Vulkan backend.
func Devices() ([]DeviceInfo, error) {
	_, err := Open(-1)
	return nil, err
}

// ValidationMessages always reports no messages in this build.
func ValidationMessages() (int, string) { return 0, "" }
