package main

import (
	"bytes"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/unclip-go/unclip/kernels/cpu"
	"github.com/unclip-go/unclip/tensor"
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

// TestBenchPeak checks that the FMA peak loop runs where it exists, and
// the bf16 dot-product loop where the CPU has AVX512_BF16.
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
	got := map[string]float64{}
	dec := json.NewDecoder(&out)
	for dec.More() {
		var r peakResult
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		got[r.Op] = r.GFLOPS
	}
	if got["fma_peak"] <= 0 {
		t.Errorf("no FMA peak: %v", got)
	}
	if _, ok := got["bf16_peak"]; ok != (cpu.BF16PeakVariant() != "") {
		t.Errorf("bf16 peak reported %v, this CPU's bf16 loop is %q", ok, cpu.BF16PeakVariant())
	}
	if cpu.BF16PeakVariant() != "" && got["bf16_peak"] <= 0 {
		t.Errorf("no bf16 peak: %v", got)
	}
}

// TestBenchKernelsPrecision checks --precision bf16 (the products are
// timed as bf16, the norms stay float32, and bf16 compute is off again
// afterwards) and --packed (reported, and the weight packed: its storage
// no longer holds the plain copy).
func TestBenchKernelsPrecision(t *testing.T) {
	if cpu.Kernels() == "ref" {
		t.Skip("bf16 runs in the fast kernels; the reference kernels are selected")
	}
	defer cpu.SetThreads(0)
	for op, shape := range map[string]string{
		"matmul": "7x33x9/linear", "conv2d": "1x4x7x7:5", "attention": "1x2x7x9x8", "groupnorm": "1x8x3x3:4",
	} {
		var out bytes.Buffer
		err := runBenchKernels([]string{"--op", op, "--shape", shape, "--precision", "bf16", "--packed", "--threads", "1", "--reps", "1", "--json", "--no-peak"}, &out, io.Discard)
		if err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		var r kernelResult
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v in %q", op, err, out.String())
		}
		want := "bf16"
		if op == "groupnorm" {
			want = "f32"
		}
		if r.DType != want || !r.Packed {
			t.Errorf("%s: dtype %q packed %v, want %q and packed", op, r.DType, r.Packed, want)
		}
		if on, _ := cpu.BF16(); on {
			t.Fatalf("%s: bf16 compute left on", op)
		}
	}
	err := runBenchKernels([]string{"--op", "matmul", "--shape", "2x3x4", "--precision", "fp8"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "fp32 or bf16") {
		t.Errorf("--precision fp8: got %v", err)
	}
}

// TestPrepareBenchPacked checks that --packed marks the weights as a
// model's, so that the first run packs them in place.
func TestPrepareBenchPacked(t *testing.T) {
	if cpu.Kernels() == "ref" {
		t.Skip("the reference kernels do not pack")
	}
	for _, c := range []struct{ op, shape string }{{"matmul", "20x40x30/linear"}, {"conv2d", "1x16x8x40:24"}, {"conv2d", "1x64x8x8:64"}} {
		for _, packed := range []bool{false, true} {
			sp, err := parseBench(c.op, c.shape)
			if err != nil {
				t.Fatal(err)
			}
			bc := prepareBench(tensor.CPU(), sp, packed)
			if err := tensor.CPU().Run(bc.node); err != nil {
				t.Fatal(err)
			}
			w := bc.node.Src[1].Storage()
			if got := w.Packing() != nil; got != packed {
				t.Errorf("%s %s --packed=%v: weight packed %v", c.op, c.shape, packed, got)
			}
		}
	}
}

// TestColdCopies checks --cold's copies: at least two, each with a weight
// of its own (the same shape and layout, marked with --packed) and the
// other operands shared; ops without a weight run alone. And the JSON
// line says cold.
func TestColdCopies(t *testing.T) {
	for _, c := range []struct{ op, shape string }{{"matmul", "20x40x30/linear"}, {"matmul", "20x40x30"}, {"conv2d", "1x8x9x9:16"}} {
		sp, err := parseBench(c.op, c.shape)
		if err != nil {
			t.Fatal(err)
		}
		bc := prepareBench(tensor.CPU(), sp, true)
		nodes := coldCopies(tensor.CPU(), bc.node, true)
		if len(nodes) < 2 {
			t.Fatalf("%s %s: %d nodes", c.op, c.shape, len(nodes))
		}
		w := bc.node.Src[1]
		for i, n := range nodes[1:] {
			nw := n.Src[1]
			if nw.Storage() == w.Storage() || !slices.Equal(nw.Shape(), w.Shape()) || !slices.Equal(nw.Strides(), w.Strides()) ||
				!nw.Storage().Packable() {
				t.Errorf("%s %s copy %d: weight %v strides %v (packable %v), want a new %v strides %v", c.op, c.shape, i+1,
					nw.Shape(), nw.Strides(), nw.Storage().Packable(), w.Shape(), w.Strides())
			}
			if n.Src[0] != bc.node.Src[0] || n.Dst != bc.node.Dst {
				t.Errorf("%s %s copy %d: the input or result is not shared", c.op, c.shape, i+1)
			}
		}
	}
	sp, _ := parseBench("softmax", "3x33")
	if n := coldCopies(tensor.CPU(), prepareBench(tensor.CPU(), sp, false).node, false); len(n) != 1 {
		t.Errorf("softmax: %d nodes, want 1", len(n))
	}
	var out bytes.Buffer
	if err := runBenchKernels([]string{"--op", "matmul", "--shape", "7x33x9/linear", "--cold", "--threads", "1", "--reps", "3", "--json", "--no-peak"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var r kernelResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil || !r.Cold {
		t.Errorf("--cold: %v, %s", err, out.String())
	}
}
