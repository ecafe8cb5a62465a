//go:build cgo && !novulkan

package vulkan

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/unclip-go/unclip/tensor"
	"github.com/unclip-go/unclip/tensor/tensortest"
)

// TestConformanceF16 runs every op with F16 operands and F16 results
// against the CPU reference (float32 compute, one rounding), with 16-bit
// storage buffers where the device has them.
func TestConformanceF16(t *testing.T) {
	b := openTest(t)
	t.Logf("device: %s; SupportsF16 %v (16-bit storage %v, in use %v; shaderFloat16 %v)", b.Info().Name, b.SupportsF16(),
		b.Info().Storage16Bit, b.storage16, b.Info().Float16)
	tensortest.ConformanceF16(t, b, 1e-4)
}

// TestConformanceBF16 is the same suite with BF16 operands and results.
func TestConformanceBF16(t *testing.T) {
	b := openTest(t)
	tensortest.ConformanceDType(t, b, tensor.BF16, 1e-4)
}

// TestConformanceF16Packed runs the F16 and BF16 suites on a second
// backend without 16-bit storage: halves packed in 32-bit words, stored
// with atomics (the path of devices lacking storageBuffer16BitAccess).
func TestConformanceF16Packed(t *testing.T) {
	b := openTest(t)
	t.Setenv("UNCLIP_VK_NO_STORAGE16", "1")
	pb, err := newBackend(b.in, 0, b.name+"-packed16", "")
	if err != nil {
		t.Fatal(err)
	}
	defer pb.Close()
	if pb.storage16 {
		t.Fatal("16-bit storage still enabled")
	}
	tensor.Register(pb)
	t.Run("F16", func(t *testing.T) { tensortest.ConformanceF16(t, pb, 1e-4) })
	t.Run("BF16", func(t *testing.T) { tensortest.ConformanceDType(t, pb, tensor.BF16, 1e-4) })
}

// TestF16NoConversions checks that F16 ops read and write F16 directly:
// a block of F16 work dispatches no copy (conversion) kernel.
func TestF16NoConversions(t *testing.T) {
	b := openTest(t)
	if err := b.SetProfile(true); err != nil {
		t.Skip(err)
	}
	defer b.SetProfile(false)
	h := func(seed uint64, shape ...int) *tensor.Tensor {
		return tensortest.Rand(seed, shape...).Cast(tensor.F16).To(b)
	}
	x, w, bias := h(1, 1, 4, 6, 6), h(2, 8, 4, 3, 3), h(3, 8)
	gw, gb := h(4, 8), h(5, 8)
	lw, lb, wl := h(6, 36), h(7, 36), h(8, 36, 36)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	copies := func() int {
		stats, err := b.Profile()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range stats {
			if s.Name == "copy" {
				return s.Calls
			}
		}
		return 0
	}
	before := copies()
	y := tensor.Conv2d(x, w, bias, 1, 1)
	y = tensor.GroupNorm(y, 4, gw, gb, 1e-5, true)
	y = tensor.Add(y, tensor.UpsampleNearest(tensor.AvgPool2d(y, 2), 2))
	s := tensor.LayerNorm(y.Reshape(1, 8, 36), lw, lb, 1e-5)
	s = tensor.Linear(s, wl, lb)
	q := s.Reshape(1, 2, 4, 36)
	a := tensor.Attention(q, q, q, nil, 0.2, false)
	a = tensor.Softmax(tensor.GELU(a))
	a = tensor.UpsampleBicubic(a.Reshape(1, 2, 4, 36), 8, 20)
	if a.DType() != tensor.F16 {
		t.Fatalf("result %v, want F16", a.DType())
	}
	if n := copies() - before; n != 0 { // Profile waits for the work
		t.Errorf("%d copy (conversion) dispatches in F16 work, want none", n)
	}
	if err := a.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestF16AllValues widens every binary16 bit pattern on the device (the
// shaders' f16ToF32, used by every 16-bit load) and compares the float32
// bits with the CPU's tensor.F16ToF32: subnormals, ±0, ±Inf and NaN
// payloads included; then through the GEMM's vec4 and scalar loads.
func TestF16AllValues(t *testing.T) {
	b := openTest(t)
	raw := make([]byte, 2*65536)
	for i := 0; i < 65536; i++ {
		binary.LittleEndian.PutUint16(raw[2*i:], uint16(i))
	}
	x := tensor.FromBytes(tensor.F16, raw, 65536)
	got, err := x.To(b).Cast(tensor.F32).Float32s()
	if err != nil {
		t.Fatal(err)
	}
	bad := 0
	for i, g := range got {
		want := tensor.F16ToF32(uint16(i))
		if math.Float32bits(g) != math.Float32bits(want) {
			if bad++; bad <= 5 {
				t.Errorf("%#04x: got %#08x, want %#08x", i, math.Float32bits(g), math.Float32bits(want))
			}
		}
	}
	// The GEMM widens its operands itself: finite values times 1 (vec4
	// loads: K = 4; scalar loads: K = 1).
	var fin []byte
	for i := 0; i < 65536; i++ {
		if uint16(i)&0x7c00 != 0x7c00 {
			fin = binary.LittleEndian.AppendUint16(fin, uint16(i))
		}
	}
	n := len(fin) / 2 / 4 * 4
	a := tensor.FromBytes(tensor.F16, fin[:2*n], n/4, 4)
	one := tensor.FromFloat32([]float32{1, 0, 0, 0}, 4, 1)
	y, err := tensor.MatMul(a.To(b), one.To(b)).Float32s()
	if err != nil {
		t.Fatal(err)
	}
	for r, g := range y {
		want := tensor.F16ToF32(binary.LittleEndian.Uint16(fin[8*r:]))
		if math.Float32bits(g) != math.Float32bits(want) && !(g == 0 && want == 0) {
			if bad++; bad <= 5 {
				t.Errorf("gemm row %d: got %v, want %v", r, g, want)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d values differ", bad)
	}
}

// TestF16Rounding narrows float32 values on the device (every op's 16-bit
// store goes through the shaders' f32ToF16) and compares the bits with the
// CPU's tensor.F32ToF16: ties, the subnormal range, overflow, ±Inf, NaN
// payloads and a sweep of exponents.
func TestF16Rounding(t *testing.T) {
	b := openTest(t)
	var vals []float32
	for e := -30; e <= 17; e++ {
		base := math.Ldexp(1, e)
		for _, m := range []float64{1, 1.0009765625, 1.00048828125, 1.00146484375, 1.5, 1.99951171875, 1.999755859375, 1.9998779296875} {
			vals = append(vals, float32(base*m), -float32(base*m))
		}
	}
	for i := uint32(0); i < 1<<16; i++ {
		// Every mantissa pattern of the low bits around one binade and the
		// subnormal binades.
		vals = append(vals, math.Float32frombits(0x3f800000|i<<7), math.Float32frombits(0x33000000+i*97), math.Float32frombits(0x38000000+i*13))
	}
	vals = append(vals, 0, float32(math.Copysign(0, -1)), 65504, 65519.99, 65520, 1e10, float32(math.Inf(1)), float32(math.Inf(-1)),
		math.Float32frombits(0x7fc00001), math.Float32frombits(0xffa12345), math.Float32frombits(1), math.Float32frombits(0x80000001))
	got, err := tensor.FromFloat32(vals, len(vals)).To(b).Cast(tensor.F16).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	bad := 0
	for i, v := range vals {
		g, w := binary.LittleEndian.Uint16(got[2*i:]), tensor.F32ToF16(v)
		if g != w {
			if bad++; bad <= 5 {
				t.Errorf("%v (%#08x): got %#04x, want %#04x", v, math.Float32bits(v), g, w)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d values differ", bad, len(vals))
	}
}
