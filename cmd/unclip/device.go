package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/unclip-go/unclip/kernels/cpu"
	"github.com/unclip-go/unclip/tensor"
)

// deviceFlagHelp documents --device.
const deviceFlagHelp = "compute device: auto, cpu, vulkan or vulkan:N (auto picks a Vulkan GPU when one is usable, else the CPU)"

// openDevice resolves a --device value to a backend and says which one was
// picked on w (when w is not nil).
func openDevice(name string, threads int, w io.Writer) (tensor.Backend, error) {
	cpu.SetThreads(threads)
	name = strings.ToLower(strings.TrimSpace(name))
	switch {
	case name == "" || name == "auto":
		if b, err := openVulkan(-1); err == nil {
			say(w, "device: %s (auto)\n", b.Name())
			return b, nil
		} else {
			say(w, "device: cpu (auto: %v)\n", err)
		}
		return tensor.CPU(), nil
	case name == "cpu":
		return tensor.CPU(), nil
	case name == "vulkan":
		return openVulkan(-1)
	case strings.HasPrefix(name, "vulkan:"):
		var idx int
		if _, err := fmt.Sscanf(name, "vulkan:%d", &idx); err != nil || idx < 0 {
			return nil, fmt.Errorf("bad device %q: want vulkan:N with N ≥ 0", name)
		}
		return openVulkan(idx)
	}
	return nil, fmt.Errorf("unknown device %q (want auto, cpu, vulkan or vulkan:N)", name)
}

func say(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, format, args...)
	}
}
