package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/unclip-go/unclip/kernels/cpu"
)

func TestBenchKernelsRefusesHugeShapes(t *testing.T) {
	for _, c := range []struct{ op, shape, want string }{
		{"matmul", "100000x100000x100000", "available"},
		{"conv2d", "64x4096x512x512", "available"},
		{"attention", "1000x1000x100000x100000x64", "available"},
		{"matmul", "9223372036854775807x2x2", "overflow"},
		{"softmax", "4611686018427387904x4", "overflow"},
		{"matmul", "0x2x2", "bad size"},
	} {
		// Without --no-peak: the shapes are checked before the peak is
		// measured or anything is printed.
		code, stdout, stderr := cli(t, "bench", "kernels", "--op", c.op, "--shape", c.shape, "--reps", "1")
		if code == 0 || !strings.Contains(stderr, c.want) || stdout != "" {
			t.Errorf("%s %s: exit %d, stdout %q, stderr %q; want a failure saying %q before any output", c.op, c.shape, code, stdout, stderr, c.want)
		}
	}
}

// TestParseBench checks shape parsing and sizing without allocating.
func TestParseBench(t *testing.T) {
	for _, c := range []struct{ op, shape, want string }{
		{"matmul", "2x3x4", ""},
		{"matmul", "2x3x4/linear", ""},
		{"conv2d", "1x4x8x8:2:4", ""},
		{"groupnorm", "1x32x8x8:4", ""},
		{"attention", "1x2x8x8x4", ""},
		{"softmax", "3x8", ""},
		{"layernorm", "3x8", ""},
		{"matmul", "2x3", "want 3 x-separated sizes"},
		{"matmul", "-3x2x2", "bad size"},
		{"matmul", "2x+x2", "bad size"},
		{"conv2d", "1x4x8x8:0", "bad option"},
		{"conv2d", "1x4x8x8:1:2:3", "at most 2"},
		{"conv2d", "1x1x8x8:1:9223372036854775807", "overflow"},
		{"groupnorm", "1x30x8x8:4", "channels in 4 groups"},
		{"attention", "1000000x1000000x1000000x1000000x64", "overflow"},
		{"layernorm", "1000000x100000000", "available"},
		{"gemv", "2x2", "unknown op"},
	} {
		_, err := parseBench(c.op, c.shape)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s %s: %v", c.op, c.shape, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s %s: error %v, want one saying %q", c.op, c.shape, err, c.want)
		}
	}
}

// TestParseDevice checks that vulkan:N takes only a plain decimal index.
func TestParseDevice(t *testing.T) {
	for _, c := range []struct {
		name string
		idx  int
		ok   bool
	}{
		{"vulkan", -1, true},
		{"vulkan:0", 0, true},
		{"vulkan:12", 12, true},
		{"vulkan:007", 7, true},
		{"vulkan:65535", 65535, true},
		{"vulkan:65536", 0, false},
		{"vulkan:0x", 0, false},
		{"vulkan:0x1", 0, false},
		{"vulkan:", 0, false},
		{"vulkan:-1", 0, false},
		{"vulkan:+1", 0, false},
		{"vulkan: 1", 0, false},
		{"vulkan:1.0", 0, false},
		{"vulkan:99999999999999999999", 0, false},
		{"vulkan0", 0, false},
	} {
		idx, err := parseDevice(c.name)
		if (err == nil) != c.ok || idx != c.idx {
			t.Errorf("parseDevice(%q) = %d, %v; want %d, ok %v", c.name, idx, err, c.idx, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "auto, cpu, vulkan or vulkan:N") {
			t.Errorf("parseDevice(%q): error %q does not list the accepted forms", c.name, err)
		}
	}
}

// TestSetThreads checks the --threads bounds and the warning past the cores.
func TestSetThreads(t *testing.T) {
	defer cpu.SetThreads(0)
	cores := runtime.NumCPU()
	for _, c := range []struct {
		n          int
		err, warns bool
		use        int
	}{
		{0, false, false, runtime.GOMAXPROCS(0)},
		{1, false, false, 1},
		{cores + 1, false, true, cores + 1},
		{maxThreads, false, cores < maxThreads, maxThreads},
		{maxThreads + 1, true, false, 0},
		{1<<32 + 1, true, false, 0},
		{-1, true, false, 0},
		{-(1 << 32) + 5, true, false, 0},
	} {
		cpu.SetThreads(0)
		var w strings.Builder
		err := setThreads(c.n, &w)
		if (err != nil) != c.err || strings.Contains(w.String(), "warning") != c.warns {
			t.Errorf("setThreads(%d): error %v, output %q", c.n, err, w.String())
			continue
		}
		if err == nil && cpu.Threads() != c.use {
			t.Errorf("setThreads(%d): %d threads used", c.n, cpu.Threads())
		}
	}
}

func TestThreadsAndDeviceValidation(t *testing.T) {
	defer cpu.SetThreads(0)
	out := filepath.Join(t.TempDir(), "x.png")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--threads", "-1"}, "--threads must be"},
		{[]string{"--threads", "4294967297"}, "at most 1024"},
		{[]string{"--threads", "1000000"}, "at most 1024"},
		{[]string{"--device", "vulkan:0x"}, `bad device "vulkan:0x"`},
		{[]string{"--device", "vulkan:"}, "bad device"},
		{[]string{"--device", "vulkan:-1"}, "bad device"},
		{[]string{"--device", "vulkan:+1"}, "bad device"},
		{[]string{"--device", "gpu"}, "unknown device"},
	} {
		args := append([]string{"generate", "-m", "demo", "-p", "x", "-o", out}, c.args...)
		code, _, stderr := cli(t, args...)
		if code == 0 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want %q", c.args, code, stderr, c.want)
		}
	}
	if code, _, stderr := cli(t, "bench", "peak", "--threads", "5000"); code == 0 || !strings.Contains(stderr, "at most") {
		t.Errorf("bench peak --threads 5000: exit %d, %q", code, stderr)
	}
}

func TestHelpExitsZero(t *testing.T) {
	for _, args := range [][]string{
		{"devices", "-h"}, {"bench", "-h"}, {"bench", "--help"}, {"bench", "pipeline", "-h"}, {"bench", "kernels", "-h"},
		{"bench", "peak", "-h"}, {"generate", "-h"}, {"help", "devices"},
	} {
		code, _, stderr := cli(t, args...)
		if code != 0 || !strings.Contains(stderr, "usage: unclip") {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
		}
	}
}

func TestDevicesShowsCPU(t *testing.T) {
	defer cpu.SetThreads(0)
	t.Setenv("UNCLIP_CACHE_DIR", t.TempDir())
	code, stdout, stderr := cli(t, "devices", "--threads", "1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"cpu      " + cpuModel(), "kernels " + cpu.Kernels(), "1 threads", "run 'unclip bench peak'"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("devices output %q lacks %q", stdout, want)
		}
	}
	if cpu.PeakVariant() == "" {
		return
	}
	if err := savePeak(cpu.PeakVariant(), 1, 123.4); err != nil {
		t.Fatal(err)
	}
	_, stdout, _ = cli(t, "devices", "--threads", "1")
	if !strings.Contains(stdout, "FMA peak 123.4 GFLOP/s on 1 threads") {
		t.Errorf("devices output %q does not show the kept peak", stdout)
	}
}

// TestBenchPeakKeepsPeak checks that bench peak keeps its result for
// devices, and that a cache it cannot write is a warning, not a failure.
func TestBenchPeakKeepsPeak(t *testing.T) {
	if cpu.PeakVariant() == "" {
		t.Skip("no FMA peak loop in this build")
	}
	defer cpu.SetThreads(0)
	dir := t.TempDir()
	t.Setenv("UNCLIP_CACHE_DIR", dir)
	if code, _, stderr := cli(t, "bench", "peak", "--threads", "1", "--reps", "1"); code != 0 {
		t.Fatalf("bench peak: exit %d: %s", code, stderr)
	}
	if g := cachedPeak(cpu.PeakVariant(), 1); g <= 0 {
		t.Errorf("bench peak kept no peak in %s", dir)
	}
	_, stdout, _ := cli(t, "devices", "--threads", "1")
	if !strings.Contains(stdout, "GFLOP/s on 1 threads (measured by 'unclip bench peak')") {
		t.Errorf("devices output %q does not show the kept peak", stdout)
	}

	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("UNCLIP_CACHE_DIR", notDir) // peak.json cannot be created under a file
	code, stdout, stderr := cli(t, "bench", "peak", "--threads", "1", "--reps", "1")
	if code != 0 || !strings.Contains(stderr, "warning: the peak is not kept") || !strings.Contains(stdout, "GFLOP/s") {
		t.Errorf("bench peak with an unwritable cache: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func TestBenchPipelineDemo(t *testing.T) {
	code, stdout, stderr := cli(t, "bench", "pipeline", "-m", "demo", "--device", "cpu",
		"--prior-steps", "2", "--decoder-steps", "2", "--sr-steps", "2")
	if code != 0 || !strings.Contains(stdout, "demo (tiny, untrained)") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// --profile on the CPU: the op table, with the U-Nets' convolutions.
	code, _, stderr = cli(t, "bench", "pipeline", "-m", "demo", "--device", "cpu", "--stages", "decoder", "--decoder-steps", "2", "--profile")
	if code != 0 || !strings.Contains(stderr, "op profile (cpu") || !strings.Contains(stderr, "conv2d 3x3") || !strings.Contains(stderr, "total") {
		t.Errorf("--profile: exit %d, stderr %q", code, stderr)
	}
	for _, extra := range [][]string{{"--config", "karlo"}, {"--random-weights"}, {"--variant", "fp16"}} {
		args := append([]string{"bench", "pipeline", "-m", "demo", "--device", "cpu"}, extra...)
		if code, _, stderr := cli(t, args...); code == 0 || !strings.Contains(stderr, "-m demo is the built-in tiny model: it takes no "+extra[0]) {
			t.Errorf("%v: exit %d, stderr %q", extra, code, stderr)
		}
	}
}

// TestBenchPipelineSignal interrupts a running bench pipeline (the built
// binary) and checks that the first SIGINT stops it between ops, as it
// stops generate, with exit status 130.
func TestBenchPipelineSignal(t *testing.T) {
	bin := buildBinary(t)
	interruptRun(t, bin, []string{"bench", "pipeline", "-m", "demo", "--device", "cpu", "--stages", "decoder", "--decoder-steps", "1000", "-n", "16"},
		"built in", 200*time.Millisecond, os.Interrupt, 130, // settle: into the decoder's steps
		"stopping after the current operation", "interrupted in the decoder stage")
}
