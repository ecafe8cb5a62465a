//go:build cgo && !novulkan

package vulkan

import (
	"fmt"
	"math"
	"testing"

	"github.com/unclip-go/unclip/tensor"
	"github.com/unclip-go/unclip/tensor/tensortest"
)

// compareOn runs f on the CPU and on b with the same CPU-made inputs and
// compares the results elementwise within tol·(1 + |want|).
func compareOn(t *testing.T, b tensor.Backend, tol float64, inputs []*tensor.Tensor, f func(in []*tensor.Tensor) *tensor.Tensor) {
	t.Helper()
	want, err := f(inputs).Float32s()
	if err != nil {
		t.Fatalf("cpu: %v", err)
	}
	dev := make([]*tensor.Tensor, len(inputs))
	for i, x := range inputs {
		if x != nil {
			dev[i] = x.To(b)
		}
	}
	out := f(dev)
	if out.Backend() != b {
		t.Fatalf("result on %s", out.Backend().Name())
	}
	got, err := out.Float32s()
	if err != nil {
		t.Fatalf("%s: %v", b.Name(), err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d values, want %d", len(got), len(want))
	}
	bad := 0
	for i := range want {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if d > tol*(1+math.Abs(float64(want[i]))) || math.IsNaN(float64(got[i])) != math.IsNaN(float64(want[i])) {
			if bad++; bad <= 5 {
				t.Errorf("at %d: got %v, want %v", i, got[i], want[i])
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d values differ", bad, len(want))
	}
}

// TestSchedulerStep covers every flag combination of OpSchedulerStep.
func TestSchedulerStep(t *testing.T) {
	b := openTest(t)
	for flags := 0; flags < 16; flags++ {
		p := tensor.StepParams{
			Epsilon: flags&1 != 0, Learned: flags&2 != 0, Clip: flags&4 != 0, AddNoise: flags&8 != 0,
			ClipRange: 0.5, SqrtAlphaProd: 0.8, SqrtOneMinusAlphaProd: 0.6, CX0: 0.3, CXt: 0.7, Std: 0.05,
			MinLog: -6, MaxLog: -2,
		}
		t.Run(fmt.Sprintf("flags=%04b", flags), func(t *testing.T) {
			c := 3
			if p.Learned {
				c = 6
			}
			in := []*tensor.Tensor{tensortest.Rand(uint64(10+flags), 2, c, 5, 7), tensortest.Rand(uint64(30+flags), 2, 3, 5, 7), nil}
			if p.AddNoise {
				in[2] = tensortest.Rand(uint64(50+flags), 2, 3, 5, 7)
			}
			compareOn(t, b, 1e-5, in, func(x []*tensor.Tensor) *tensor.Tensor {
				return tensor.SchedulerStep(x[0], x[1], x[2], p)
			})
		})
	}
}

// TestLargeDispatch folds more workgroups than the x limit into y.
func TestLargeDispatch(t *testing.T) {
	b := openTest(t)
	rows := int(b.maxGroup[0]) + 1000
	compareOn(t, b, 1e-6, []*tensor.Tensor{tensortest.Rand(7, rows, 2)}, func(x []*tensor.Tensor) *tensor.Tensor {
		return tensor.Softmax(x[0])
	})
	compareOn(t, b, 1e-5, []*tensor.Tensor{tensortest.Rand(8, 1, rows, 2), tensortest.Rand(9, rows), tensortest.Rand(10, rows)},
		func(x []*tensor.Tensor) *tensor.Tensor { return tensor.GroupNorm(x[0], rows, x[1], x[2], 1e-5, true) })
}

// TestHighRankCopy copies a view of rank 8 that no dimension merging can
// reduce to the shaders' rank 6.
func TestHighRankCopy(t *testing.T) {
	b := openTest(t)
	compareOn(t, b, 0, []*tensor.Tensor{tensortest.Rand(11, 2, 3, 2, 3, 2, 3, 2, 3)}, func(x []*tensor.Tensor) *tensor.Tensor {
		return x[0].Permute(7, 6, 5, 4, 3, 2, 1, 0).Contiguous()
	})
	compareOn(t, b, 0, []*tensor.Tensor{tensortest.Rand(12, 2, 3, 2, 3, 2, 3, 2, 3), tensortest.Rand(13, 3, 2, 3, 2, 3, 2, 3, 2)},
		func(x []*tensor.Tensor) *tensor.Tensor {
			return tensor.Add(x[0].Permute(7, 6, 5, 4, 3, 2, 1, 0), x[1])
		})
}

// TestMemoryReuse allocates and drops many tensors: sub-allocations must be
// recycled, not leaked.
func TestMemoryReuse(t *testing.T) {
	b := openTest(t)
	x := tensortest.Rand(14, 256, 256).To(b)
	for i := 0; i < 300; i++ {
		x = tensor.Affine(x, 1, 0.001)
	}
	v, err := x.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	want := tensortest.Rand(14, 256, 256).MustFloat32s()
	for i := range want {
		want[i] += 0.3
	}
	for i := range v {
		if math.Abs(float64(v[i]-want[i])) > 1e-4 {
			t.Fatalf("at %d: %v, want %v", i, v[i], want[i])
		}
	}
	b.mu.Lock()
	held := b.mem.total
	b.mu.Unlock()
	if held > 512<<20 {
		t.Errorf("%d MiB held after 300 × 256 KiB temporaries", held>>20)
	}
}

// TestEmbeddingError: an out-of-range id fails when the result is read, and
// the next read is clean.
func TestEmbeddingError(t *testing.T) {
	b := openTest(t)
	table := tensortest.Rand(15, 5, 3).To(b)
	bad := tensor.Embedding(table, tensor.FromInt64([]int64{1, 5}, 2).To(b))
	if _, err := bad.Float32s(); err == nil {
		t.Fatal("out-of-range id read without error")
	}
	good := tensor.Embedding(table, tensor.FromInt64([]int64{4, 0}, 2).To(b))
	if _, err := good.Float32s(); err != nil {
		t.Fatalf("clean read after an error: %v", err)
	}
}

// TestAllocErrors: impossible allocations and oversized operands are
// errors that name the sizes, not crashes.
func TestAllocErrors(t *testing.T) {
	b := openTest(t)
	huge := tensor.New(b, tensor.F32, int(b.mem.maxAlloc/4)+1024)
	if err := huge.Err(); err == nil {
		t.Fatal("allocation beyond maxMemoryAllocationSize succeeded")
	} else {
		t.Logf("%v", err)
	}
	if b.maxRange >= b.mem.maxAlloc || b.maxRange > 512<<20 {
		t.Skipf("maxStorageBufferRange %d: no cheap oversized operand", b.maxRange)
	}
	big := tensor.New(b, tensor.F32, int(b.maxRange/4)+1024)
	if err := big.Err(); err != nil {
		t.Fatal(err)
	}
	_, err := tensor.Scale(big, 2).Float32s()
	if err == nil {
		t.Fatal("an operand beyond maxStorageBufferRange was bound")
	}
	t.Logf("%v", err)
}

// TestProfile records timestamps per dispatch and sums them per shader.
func TestProfile(t *testing.T) {
	b := openTest(t)
	if err := b.SetProfile(true); err != nil {
		t.Skip(err)
	}
	defer b.SetProfile(false)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	x := tensortest.Rand(16, 64, 64).To(b)
	y := tensor.MatMul(x, x)
	for i := 0; i < 3; i++ {
		y = tensor.SiLU(tensor.MatMul(y, x))
	}
	if _, err := y.Float32s(); err != nil {
		t.Fatal(err)
	}
	stats, err := b.Profile()
	if err != nil {
		t.Fatal(err)
	}
	var _ Profiler = b
	t.Logf("\n%s", FormatProfile(stats))
	calls := map[string]int{}
	for _, s := range stats {
		calls[s.Name] = s.Calls
		if s.Time <= 0 {
			t.Errorf("%s: %v", s.Name, s.Time)
		}
		t.Logf("%-10s %4d calls %v", s.Name, s.Calls, s.Time)
	}
	if calls["gemm"] < 4 || calls["unary"] < 3 {
		t.Errorf("calls %v, want ≥ 4 gemm and ≥ 3 unary", calls)
	}
	// A held batch (a replayed step) holds more than one query pool's
	// worth of dispatches: every one is timed (this wrote past the pool
	// and crashed once).
	b.Hold()
	z := tensortest.Rand(17, 8, 8).To(b)
	for i := 0; i < 3*batchOps; i++ {
		z = tensor.SiLU(z)
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := z.Float32s(); err != nil {
		t.Fatal(err)
	}
	stats, err = b.Profile()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stats {
		if s.Name == "unary" && s.Calls < 3+3*batchOps {
			t.Errorf("unary: %d calls timed, want %d", s.Calls, 3+3*batchOps)
		}
	}
}

// TestAttentionShapes covers both attention kernels beyond the conformance
// sizes: several query blocks and key tiles, and heads larger than 64.
func TestAttentionShapes(t *testing.T) {
	b := openTest(t)
	for _, c := range []struct {
		name                  string
		bsz, h, lq, lk, d, dv int
		causal, bias          bool
	}{
		{"tiles", 2, 3, 70, 45, 40, 24, false, false},
		{"tiles-causal-bias", 1, 2, 130, 130, 64, 64, true, true},
		{"d16", 1, 1, 5, 100, 8, 16, false, true},
		{"large-head", 1, 2, 9, 37, 80, 72, false, true},
		{"large-head-causal", 2, 1, 33, 33, 128, 96, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := []*tensor.Tensor{
				tensortest.Rand(20, c.bsz, c.h, c.lq, c.d), tensortest.Rand(21, c.bsz, c.h, c.lk, c.d),
				tensortest.Rand(22, c.bsz, c.h, c.lk, c.dv), nil,
			}
			if c.bias {
				in[3] = tensortest.Rand(23, 1, c.h, c.lq, c.lk)
			}
			compareOn(t, b, 2e-5, in, func(x []*tensor.Tensor) *tensor.Tensor {
				return tensor.Attention(x[0], x[1], x[2], x[3], 0.3, c.causal)
			})
		})
	}
}

// TestEmbeddingWindows binds the table a few rows at a time, as for tables
// beyond maxStorageBufferRange.
func TestEmbeddingWindows(t *testing.T) {
	b := openTest(t)
	b.mu.Lock()
	b.embedWindow = 3
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.embedWindow = 0
		b.mu.Unlock()
	}()
	ids := tensor.FromInt64([]int64{0, 10, 3, 3, 7, 1, 9, 2}, 2, 4)
	compareOn(t, b, 0, []*tensor.Tensor{tensortest.Rand(17, 11, 5), ids}, func(x []*tensor.Tensor) *tensor.Tensor {
		return tensor.Embedding(x[0], x[1])
	})
	compareOn(t, b, 0, []*tensor.Tensor{tensortest.Rand(18, 11, 5).Cast(tensor.F16), ids}, func(x []*tensor.Tensor) *tensor.Tensor {
		return tensor.Embedding(x[0], x[1])
	})
	bad := tensor.Embedding(tensortest.Rand(19, 11, 5).To(b), tensor.FromInt64([]int64{4, 11}, 2).To(b))
	if _, err := bad.Float32s(); err == nil {
		t.Fatal("out-of-range id read without error")
	}
}

// TestStaged runs the conformance suite on a second backend over the same
// device that keeps storage unmapped and copies through staging buffers,
// as on GPUs whose VRAM is not host-visible.
func TestStaged(t *testing.T) {
	b := openTest(t)
	sb, err := newBackend(b.in, 0, b.name+"-staged", "1")
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	if !sb.staged {
		t.Fatal("staging not in effect")
	}
	tensor.Register(sb)
	tensortest.Conformance(t, sb, 1e-4)
	x := tensortest.Rand(24, 3, 1000).To(sb)
	for i := 0; i < 50; i++ {
		x = tensor.Affine(x, 1, 0.01)
	}
	v, err := x.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	want := tensortest.Rand(24, 3, 1000).MustFloat32s()
	for i := range want {
		if math.Abs(float64(v[i]-want[i]-0.5)) > 1e-4 {
			t.Fatalf("at %d: %v, want %v", i, v[i], want[i]+0.5)
		}
	}
}

// TestGroupNormScaleShift runs the fused GroupNorm + scale-shift + SiLU
// on the device (strided halves of one projection, F32 and F16) against
// the CPU.
func TestGroupNormScaleShift(t *testing.T) {
	b := openTest(t)
	for _, dt := range []tensor.DType{tensor.F32, tensor.F16} {
		for _, silu := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/silu=%v", dt, silu), func(t *testing.T) {
				in := []*tensor.Tensor{tensortest.Rand(81, 2, 12, 7, 5), tensortest.Rand(82, 12), tensortest.Rand(83, 12), tensortest.Rand(84, 2, 24)}
				tol := 2e-5
				if dt != tensor.F32 {
					in[0], in[3] = in[0].Cast(dt), in[3].Cast(dt)
					tol = 1e-2
				}
				compareOn(t, b, tol, in, func(x []*tensor.Tensor) *tensor.Tensor {
					return tensor.GroupNormScaleShift(x[0], 3, x[1], x[2], x[3].Narrow(1, 0, 12), x[3].Narrow(1, 12, 12), 1e-5, silu)
				})
			})
		}
	}
}
