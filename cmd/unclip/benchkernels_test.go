package main

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/unclip-go/unclip/kernels/cpu"
)

// TestBenchKernelsJSON runs every op once on a tiny shape and checks the
// documented JSON fields.
func TestBenchKernelsJSON(t *testing.T) {
	defer cpu.SetThreads(0)
	for op, shape := range map[string]string{
		"matmul": "7x33x9/linear", "conv2d": "1x4x7x7:5", "attention": "1x2x7x9x8",
		"groupnorm": "1x8x3x3:4", "layernorm": "3x33", "softmax": "3x33",
	} {
		var out bytes.Buffer
		err := runBenchKernels([]string{"--op", op, "--shape", shape, "--threads", "1", "--reps", "1", "--json", "--no-peak"}, &out, io.Discard)
		if err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		var r map[string]any
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v in %q", op, err, out.String())
		}
		for _, f := range []string{"op", "shape", "dtype", "device", "threads", "seconds", "gflops"} {
			if _, ok := r[f]; !ok {
				t.Errorf("%s: no field %q in %s", op, f, out.String())
			}
		}
		if r["op"] != op || r["shape"] != shape || r["device"] != "cpu" {
			t.Errorf("%s: %s", op, out.String())
		}
	}
	var out bytes.Buffer
	if err := runBenchKernels([]string{"--op", "matmul", "--shape", "2x3", "--json"}, &out, io.Discard); err == nil || !strings.Contains(err.Error(), "3 x-separated") {
		t.Errorf("bad shape: got %v", err)
	}
}

// TestBenchPeak checks that the FMA peak loop runs where it exists.
func TestBenchPeak(t *testing.T) {
	defer cpu.SetThreads(0)
	t.Setenv("UNCLIP_CACHE_DIR", t.TempDir()) // the peak is kept there
	var out bytes.Buffer
	err := runBenchPeak([]string{"--threads", "1", "--reps", "1", "--json"}, &out, io.Discard)
	if err != nil {
		if strings.Contains(err.Error(), "no FMA peak loop") {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	var r map[string]any
	if err := json.Unmarshal(out.Bytes(), &r); err != nil || r["gflops"].(float64) <= 0 {
		t.Fatalf("%v: %s", err, out.String())
	}
}
