package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"

	"github.com/unclip-go/unclip/kernels/cpu"
	"github.com/unclip-go/unclip/kernels/vulkan"
	"github.com/unclip-go/unclip/tensor"
)

// runDevices lists the CPU (model, the kernel set chosen for it, the
// threads used and the FMA peak kept by "unclip bench peak") and every
// Vulkan device with the facts that decide how the engine uses it. A
// machine without Vulkan gets a clear message and a zero exit status: "no
// devices" is an answer, not a failure.
func runDevices(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("devices", flag.ContinueOnError)
	threads := fs.Int("threads", 0, "CPU threads to report the peak for (0: all cores; at most 1024)")
	setUsage(fs, "unclip devices [--threads N]\n\nLists the CPU (model, kernel set, threads, measured FMA peak) and every Vulkan device.")
	pos, err := parseFlags(fs, args, stderr)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		fmt.Fprintln(stderr, "usage: unclip devices [--threads N]")
		return errUsage
	}
	if err := setThreads(*threads, stderr); err != nil {
		return err
	}
	n := cpu.Threads()
	fmt.Fprintf(stdout, "cpu      %s (--device cpu)\n", cpuModel())
	fmt.Fprintf(stdout, "         kernels %s, %d threads of %d cores\n", cpu.Kernels(), n, runtime.NumCPU())
	bf16 := "rounded float32 operands (no AVX512_BF16)"
	if _, native := cpu.BF16(); native {
		bf16 = "native (AVX512_BF16)"
	}
	fmt.Fprintf(stdout, "         %s; bf16 compute %s; Winograd 3×3 convolution %s\n", cpuCaches(), bf16, cpu.Winograd())
	if g := cachedPeak(cpu.PeakVariant(), n); g > 0 {
		fmt.Fprintf(stdout, "         FMA peak %.1f GFLOP/s on %d threads (measured by 'unclip bench peak')\n", g, n)
	} else {
		fmt.Fprintf(stdout, "         FMA peak not measured on %d threads yet: run 'unclip bench peak' (a few seconds; it is kept for this listing)\n", n)
	}
	if v := cpu.BF16PeakVariant(); v != "" {
		if g := cachedPeak(v, n); g > 0 {
			fmt.Fprintf(stdout, "         bf16 dot-product peak %.1f GFLOP/s on %d threads (measured by 'unclip bench peak')\n", g, n)
		}
	}
	ds, err := vulkan.Devices()
	if err != nil {
		if errors.Is(err, vulkan.ErrUnavailable) {
			fmt.Fprintf(stdout, "vulkan   none: %v\n", err)
			return nil
		}
		return err
	}
	if len(ds) == 0 {
		fmt.Fprintln(stdout, "vulkan   none: the Vulkan loader found no device (install a driver, e.g. mesa-vulkan-drivers)")
		return nil
	}
	for _, d := range ds {
		fmt.Fprint(stdout, d.String())
	}
	fmt.Fprintf(stdout, "--device vulkan picks vulkan:0 (%s)\n", ds[0].Name)
	return nil
}

// isCPUVulkan reports whether b is a Vulkan device that runs on the CPU
// (Mesa's lavapipe, SwiftShader): correct but far slower than the CPU
// backend, so "--device auto" should not pick it (an explicit
// "--device vulkan" still may).
func isCPUVulkan(b tensor.Backend) bool {
	d, ok := b.(interface{ Info() vulkan.DeviceInfo })
	return ok && d.Info().Type == "cpu"
}
