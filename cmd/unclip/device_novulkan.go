//go:build !cgo || novulkan

package main

import (
	"errors"

	"github.com/unclip-go/unclip/tensor"
)

// openVulkan reports that this binary has no Vulkan backend.
func openVulkan(index int) (tensor.Backend, error) {
	return nil, errors.New("this build has no Vulkan backend")
}
