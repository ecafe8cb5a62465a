package main

import (
	"crypto/rand"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/unclip-go/unclip/kernels/cpu"
	"github.com/unclip-go/unclip/kernels/vulkan"
	"github.com/unclip-go/unclip/models/unclip"
	"github.com/unclip-go/unclip/tensor"
)

// deviceFlagHelp documents --device.
const deviceFlagHelp = "compute device: auto, cpu, vulkan or vulkan:N (auto picks a Vulkan GPU when one is usable, else the CPU)"

// precisionFlagHelp documents --precision.
const precisionFlagHelp = "network precision: fp32; fp16 (16-bit weights and activations, float32 accumulation, norms, softmax and scheduler); " +
	"bf16 (on the CPU: matrix products, convolutions and attention on bfloat16-rounded operands with float32 accumulation, through AVX512_BF16 where the CPU has it; on Vulkan: bfloat16 storage as fp16)"

// parsePrecision maps --precision to the networks' dtype. fp32 keeps a
// checkpoint's weight type (fp16 files stay 16-bit in memory) and computes
// in float32.
func parsePrecision(p string, dev tensor.Backend) (tensor.DType, error) {
	switch strings.ToLower(p) {
	case "", "fp32", "f32", "float32":
		return tensor.Invalid, nil
	case "fp16", "f16", "float16", "half":
		if s, ok := dev.(interface{ SupportsF16() bool }); ok && !s.SupportsF16() {
			return 0, fmt.Errorf("--precision fp16: %s has no 16-bit storage; use fp32", dev.Name())
		}
		return tensor.F16, nil
	case "bf16", "bfloat16":
		if dev == tensor.CPU() {
			if cpu.Kernels() == "ref" {
				return 0, fmt.Errorf("--precision bf16 runs in the fast CPU kernels, and the reference kernels are selected (UNCLIP_CPU_KERNELS=ref)")
			}
			// Activations stay float32; products, convolutions and
			// attention round their operands to bf16 (kernels/cpu.SetBF16).
			cpu.SetBF16(true)
			return tensor.Invalid, nil
		}
		if s, ok := dev.(interface{ SupportsF16() bool }); ok && !s.SupportsF16() {
			return 0, fmt.Errorf("--precision bf16: %s has no 16-bit storage; use fp32", dev.Name())
		}
		return tensor.BF16, nil
	}
	return 0, fmt.Errorf("unknown precision %q (fp32, fp16 or bf16)", p)
}

// openCompute checks the memory flags, opens the --device (saying which
// one was picked on w, when w is not nil) and parses --precision for it:
// the start of every command that loads a pipeline.
func openCompute(device string, threads int, precision string, mem *memoryFlags, w io.Writer) (tensor.Backend, tensor.DType, error) {
	if err := mem.prepare(device); err != nil {
		return nil, 0, err
	}
	dev, err := openDevice(device, threads, w)
	if err != nil {
		return nil, 0, err
	}
	dtype, err := parsePrecision(precision, dev)
	if err != nil {
		return nil, 0, err
	}
	return dev, dtype, nil
}

// randomSeed is a seed for --seed -1: 32 random bits (torch seeds its CPU
// generator with 32).
func randomSeed() uint64 {
	var b [4]byte
	rand.Read(b[:])
	return uint64(binary.LittleEndian.Uint32(b[:]))
}

// profiler is implemented by backends that time their kernels.
type profiler interface {
	SetProfile(on bool) error
}

// startProfile turns kernel timing on when asked; the returned function
// prints the per-kernel table.
func startProfile(on bool, dev tensor.Backend, w io.Writer) (func(), error) {
	if !on {
		return func() {}, nil
	}
	p, ok := dev.(profiler)
	if !ok {
		return nil, fmt.Errorf("--profile: %s does not time its kernels (Vulkan devices do)", dev.Name())
	}
	if err := p.SetProfile(true); err != nil {
		return nil, err
	}
	return func() { printProfile(dev, w) }, nil
}

// openDevice resolves a --device value to a backend and says which one was
// picked on w (when w is not nil).
func openDevice(name string, threads int, w io.Writer) (tensor.Backend, error) {
	if err := setThreads(threads, w); err != nil {
		return nil, err
	}
	name = strings.ToLower(strings.TrimSpace(name))
	switch {
	case name == "" || name == "auto":
		b, err := openVulkan(-1)
		switch {
		case err != nil:
			say(w, "device: cpu (auto: %v)\n", err)
		case isCPUVulkan(b):
			// A CPU Vulkan driver (lavapipe) is far slower than the CPU backend.
			say(w, "device: cpu (auto: the only Vulkan device, %s, is a CPU emulation)\n", b.Name())
		default:
			say(w, "device: %s (auto)\n", b.Name())
			return b, nil
		}
		return tensor.CPU(), nil
	case name == "cpu":
		return tensor.CPU(), nil
	case name == "vulkan" || strings.HasPrefix(name, "vulkan:"):
		idx, err := parseDevice(name)
		if err != nil {
			return nil, err
		}
		return openVulkan(idx)
	}
	return nil, fmt.Errorf("unknown device %q (%s)", name, deviceForms)
}

// deviceForms lists the accepted --device values.
const deviceForms = "want auto, cpu, vulkan or vulkan:N with N a device index: 0, 1, …; 'unclip devices' lists them"

// parseDevice parses a lower-cased "vulkan" or "vulkan:N" strictly: N is
// decimal digits only (no sign, no trailing characters), at most 65535.
// It returns −1 for plain "vulkan" (the best device).
func parseDevice(name string) (index int, err error) {
	if name == "vulkan" {
		return -1, nil
	}
	num, ok := strings.CutPrefix(name, "vulkan:")
	if !ok || num == "" || len(num) > 5 || strings.Trim(num, "0123456789") != "" {
		return 0, fmt.Errorf("bad device %q (%s)", name, deviceForms)
	}
	idx, err := strconv.Atoi(num)
	if err != nil || idx > 65535 {
		return 0, fmt.Errorf("bad device %q (%s)", name, deviceForms)
	}
	return idx, nil
}

// maxThreads bounds --threads. It is fixed rather than a multiple of the
// cores so that a command line means the same on every machine: 1024 is
// past any CPU the engine runs on (more threads than cores only slows the
// kernels), and a larger number is a typo, not a plan (a million threads
// spent 8 s starting workers; 2³²+1 wrapped to 1).
const maxThreads = 1024

// threadsFlagHelp documents --threads.
const threadsFlagHelp = "CPU threads (0: all cores; at most 1024)"

// setThreads checks and applies --threads (0: all cores). More threads
// than the machine has cores are allowed, with a warning on w (they slow
// the kernels down), up to maxThreads; negative counts and counts past
// maxThreads are errors.
func setThreads(n int, w io.Writer) error {
	cores := runtime.NumCPU()
	switch {
	case n < 0:
		return fmt.Errorf("--threads must be 0 (all cores) or positive, got %d", n)
	case n > maxThreads:
		return fmt.Errorf("--threads %d: at most %d (this machine has %d cores)", n, maxThreads, cores)
	case n > cores:
		say(w, "warning: --threads %d is more than the %d cores; kernels run slower with more threads than cores\n", n, cores)
	}
	cpu.SetThreads(n)
	return nil
}

func say(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, format, args...)
	}
}

// printProfile prints the per-kernel time table of a profiling backend.
func printProfile(dev tensor.Backend, w io.Writer) {
	if c, ok := dev.(cpu.Backend); ok {
		stats, _ := c.Profile()
		fmt.Fprintf(w, "\nop profile (cpu, %d threads, kernels %s):\n%s", cpu.Threads(), cpu.Kernels(), cpu.FormatProfile(stats))
		return
	}
	p, ok := dev.(vulkan.Profiler)
	if !ok {
		return
	}
	stats, err := p.Profile()
	if err != nil {
		fmt.Fprintf(w, "profile: %v\n", err)
		return
	}
	fmt.Fprintf(w, "\nkernel profile (%s):\n%s", dev.Name(), vulkan.FormatProfile(stats))
}

// memoryFlags are --offload and --device-memory, shared by the commands
// that load a pipeline.
type memoryFlags struct{ offload, budget string }

func (m *memoryFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&m.offload, "offload", "auto", "keep only the running stage's weights on the device: auto (when all weights would not fit), true or false")
	fs.StringVar(&m.budget, "device-memory", "", "cap the device memory the engine may use, e.g. 6GiB (Vulkan; default: the device's, or UNCLIP_DEVICE_MEMORY)")
}

// prepare checks the flags and, with --device-memory, sets the budget for
// the device about to be opened (before its first allocation).
func (m *memoryFlags) prepare(device string) error {
	if _, err := unclip.ParseResidency(m.offload); err != nil {
		return err
	}
	if m.budget == "" {
		return nil
	}
	if _, err := tensor.ParseBytes(m.budget); err != nil {
		return fmt.Errorf("--device-memory: %w", err)
	}
	if strings.ToLower(strings.TrimSpace(device)) == "cpu" {
		return fmt.Errorf("--device-memory applies to Vulkan devices, not --device cpu")
	}
	return os.Setenv("UNCLIP_DEVICE_MEMORY", m.budget)
}

// residency is the weight residency to load with.
func (m *memoryFlags) residency() unclip.Residency {
	r, _ := unclip.ParseResidency(m.offload)
	return r
}
