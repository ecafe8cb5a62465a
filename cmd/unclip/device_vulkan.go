//go:build cgo && !novulkan

package main

import (
	"github.com/unclip-go/unclip/kernels/vulkan"
	"github.com/unclip-go/unclip/tensor"
)

// openVulkan opens Vulkan device index (−1: the best one, discrete >
// integrated > virtual > CPU).
func openVulkan(index int) (tensor.Backend, error) {
	return vulkan.Open(index)
}
