package main

import (
	"path/filepath"
	"strings"
	"testing"

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
		code, _, stderr := cli(t, "bench", "kernels", "--op", c.op, "--shape", c.shape, "--no-peak", "--reps", "1")
		if code == 0 || !strings.Contains(stderr, c.want) {
			t.Errorf("%s %s: exit %d, stderr %q; want a failure saying %q", c.op, c.shape, code, stderr, c.want)
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

func TestBenchPipelineDemo(t *testing.T) {
	code, stdout, stderr := cli(t, "bench", "pipeline", "-m", "demo", "--device", "cpu",
		"--prior-steps", "2", "--decoder-steps", "2", "--sr-steps", "2")
	if code != 0 || !strings.Contains(stdout, "demo (tiny, untrained)") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}
