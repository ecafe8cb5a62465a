package tensor

import (
	"math"
	"math/rand/v2"
	"testing"
)

// The references below work from the definitions of the formats in float64
// and share no code with dtype.go.

// refF16Value decodes binary16 bits: (−1)^s · 2^(e−15) · (1 + m/1024) for a
// normal number, (−1)^s · 2^−24 · m for a subnormal.
func refF16Value(h uint16) float64 {
	s, e, m := h>>15, int(h>>10)&0x1f, float64(h&0x3ff)
	var v float64
	switch {
	case e == 0x1f && m != 0:
		return math.NaN()
	case e == 0x1f:
		v = math.Inf(1)
	case e == 0:
		v = math.Ldexp(m, -24)
	default:
		v = math.Ldexp(1+m/1024, e-15)
	}
	if s == 1 {
		v = -v
	}
	return v
}

// refF16Bits rounds x to the nearest binary16 value, ties to even, and
// encodes it. x must not be NaN.
func refF16Bits(x float64) uint16 {
	var sign uint16
	if math.Signbit(x) {
		sign = 0x8000
		x = -x
	}
	if math.IsInf(x, 0) {
		return sign | 0x7c00
	}
	if x == 0 {
		return sign
	}
	// quantum: the spacing of binary16 values around x
	q := math.Ldexp(1, -24) // subnormals and the first normal binade
	if x >= math.Ldexp(1, -14) {
		_, e := math.Frexp(x) // x = f·2^e, f in [0.5, 1)
		q = math.Ldexp(1, e-1-10)
	}
	v := math.RoundToEven(x/q) * q
	if v >= 65536 { // past the largest finite value 65504 after rounding
		return sign | 0x7c00
	}
	if v == 0 {
		return sign
	}
	if v < math.Ldexp(1, -14) {
		return sign | uint16(v/math.Ldexp(1, -24))
	}
	f, e := math.Frexp(v)
	return sign | uint16(e-1+15)<<10 | uint16((2*f-1)*1024)
}

// refBF16Bits rounds x (a float32 value, not NaN) to the nearest bfloat16,
// ties to even: bfloat16 keeps 8 significant bits and float32's exponent
// range, so its values are the float32 values with 16 low zero bits.
func refBF16Bits(x float64) uint16 {
	var sign uint16
	if math.Signbit(x) {
		sign = 0x8000
		x = -x
	}
	if math.IsInf(x, 0) {
		return sign | 0x7f80
	}
	if x == 0 {
		return sign
	}
	q := math.Ldexp(1, -126-7) // float32 subnormal range
	if x >= math.Ldexp(1, -126) {
		_, e := math.Frexp(x)
		q = math.Ldexp(1, e-1-7)
	}
	v := math.RoundToEven(x/q) * q
	if v >= math.Ldexp(1, 128) {
		return sign | 0x7f80
	}
	return sign | uint16(math.Float32bits(float32(v))>>16)
}

func isF16NaN(h uint16) bool  { return h&0x7c00 == 0x7c00 && h&0x3ff != 0 }
func isBF16NaN(h uint16) bool { return h&0x7f80 == 0x7f80 && h&0x7f != 0 }

func TestF16ToF32AllPatterns(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		got := F16ToF32(h)
		want := refF16Value(h)
		if math.IsNaN(want) {
			if !math.IsNaN(float64(got)) {
				t.Errorf("F16ToF32(%#04x) = %v, want NaN", h, got)
			}
			if math.Signbit(float64(got)) != (h&0x8000 != 0) {
				t.Errorf("F16ToF32(%#04x) = %#08x: NaN sign lost", h, math.Float32bits(got))
			}
			continue
		}
		if float64(got) != want || math.Signbit(float64(got)) != math.Signbit(want) {
			t.Errorf("F16ToF32(%#04x) = %v, want %v", h, got, want)
		}
	}
}

func TestF16RoundTripAllPatterns(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		got := F32ToF16(F16ToF32(h))
		if isF16NaN(h) {
			if !isF16NaN(got) || got&0x8000 != h&0x8000 {
				t.Errorf("F16 NaN %#04x → %#04x, want a NaN of the same sign", h, got)
			}
			continue
		}
		if got != h {
			t.Errorf("F16 %#04x → F32 %v → %#04x", h, F16ToF32(h), got)
		}
	}
}

// f16Probes returns float32 values that exercise F32→F16 rounding: every
// halfway point between adjacent finite f16 values and the float32
// neighbours of each, the boundaries named in the format, and random bit
// patterns over all exponents.
func f16Probes() []float32 {
	var vs []float32
	for h := uint16(0); h < 0x7c00; h++ {
		lo, hi := refF16Value(h), refF16Value(h+1)
		mid := float32((lo + hi) / 2) // 12 significant bits: exact in float32
		if float64(mid) != (lo+hi)/2 {
			panic("midpoint not exact")
		}
		vs = append(vs, mid, math.Nextafter32(mid, 0), math.Nextafter32(mid, float32(math.Inf(1))), float32(lo))
	}
	tiny := func(e int) float32 { return float32(math.Ldexp(1, e)) }
	vs = append(vs,
		0, 65504, 65519.99, 65520, math.Nextafter32(65520, 0), 65536, 1e6, math.MaxFloat32,
		tiny(-24), tiny(-25), math.Nextafter32(tiny(-25), 1), math.Nextafter32(tiny(-25), 0),
		tiny(-26), 1.5*tiny(-24), 2.5*tiny(-24), 3*tiny(-25), tiny(-14), math.Nextafter32(tiny(-14), 0),
		tiny(-14)-tiny(-25), 1e-8, 1e-30, math.SmallestNonzeroFloat32, 1, 1+tiny(-11), 1+3*tiny(-11),
		2048+1, 2048+3, 4096+2, 0.1, 1.0/3, float32(math.Inf(1)))
	r := rand.New(rand.NewPCG(16, 1))
	for range 100000 {
		v := math.Float32frombits(r.Uint32() &^ (1 << 31))
		if !math.IsNaN(float64(v)) {
			vs = append(vs, v)
		}
	}
	// values in and near the f16 range are the interesting ones
	for range 100000 {
		e := r.IntN(48) - 30
		vs = append(vs, float32(math.Ldexp(1+r.Float64(), e)))
	}
	return vs
}

func TestF32ToF16Rounding(t *testing.T) {
	n := 0
	for _, v := range f16Probes() {
		for _, x := range []float32{v, -v} {
			got, want := F32ToF16(x), refF16Bits(float64(x))
			if got != want {
				n++
				if n <= 20 {
					t.Errorf("F32ToF16(%g = %#08x) = %#04x (%g), want %#04x (%g)",
						x, math.Float32bits(x), got, refF16Value(got), want, refF16Value(want))
				}
			}
		}
	}
	if n > 20 {
		t.Errorf("%d mismatches in all", n)
	}
}

func TestF32ToF16Special(t *testing.T) {
	inf := float32(math.Inf(1))
	nz := float32(math.Copysign(0, -1))
	p := func(e int) float32 { return float32(math.Ldexp(1, e)) }
	for _, c := range []struct {
		x    float32
		want uint16
	}{
		{0, 0x0000},
		{nz, 0x8000},
		{inf, 0x7c00},
		{-inf, 0xfc00},
		{1, 0x3c00},
		{-2, 0xc000},
		{65504, 0x7bff},
		{-65504, 0xfbff},
		{65519.99, 0x7bff},
		{65520, 0x7c00}, // exact tie between 65504 and 65536: to even, which is Inf
		{-65520, 0xfc00},
		{1e6, 0x7c00},
		{math.MaxFloat32, 0x7c00},
		{p(-14), 0x0400},                           // smallest normal
		{p(-24), 0x0001},                           // smallest subnormal
		{p(-25), 0x0000},                           // tie between 0 and 2^-24: to even, 0
		{-p(-25), 0x8000},                          // and keeps its sign
		{math.Nextafter32(p(-25), 1), 0x0001},      // just above the tie
		{3 * p(-25), 0x0002},                       // tie 1.5 quanta: to even 2
		{5 * p(-25), 0x0002},                       // tie 2.5 quanta: to even 2
		{p(-14) - p(-25), 0x0400},                  // tie below the smallest normal, rounds up into it
		{math.SmallestNonzeroFloat32, 0x0000},      // float32 subnormal
		{-math.SmallestNonzeroFloat32, 0x8000},     // keeps its sign
		{1 + p(-11), 0x3c00},                       // tie: to even mantissa 0
		{1 + 3*p(-11), 0x3c02},                     // tie: to even mantissa 2
		{math.Nextafter32(1+p(-11), 2), 0x3c01},    // just above the tie
		{2047.5 * 32, 0x7c00},                      // = 65520
		{math.Nextafter32(65520, 0), 0x7bff},       // just below the overflow threshold
		{float32(math.Ldexp(1023.5, -24)), 0x0400}, // rounds to the first normal
		{float32(math.Ldexp(1022.5, -24)), 0x03fe}, // tie: to even 1022
		{float32(math.Ldexp(1024.5, -24)), 0x0400}, // tie in the first normal binade: to even
		{float32(math.Ldexp(1025.5, -24)), 0x0402}, // tie in the first normal binade: odd rounds up
	} {
		if got := F32ToF16(c.x); got != c.want {
			t.Errorf("F32ToF16(%g) = %#04x, want %#04x", c.x, got, c.want)
		}
	}
	for _, bits := range []uint32{0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7f802000, 0x7fffffff, 0x7fa00000} {
		x := math.Float32frombits(bits)
		got := F32ToF16(x)
		if !isF16NaN(got) || (got&0x8000 != 0) != (bits>>31 == 1) {
			t.Errorf("F32ToF16(NaN %#08x) = %#04x, want a NaN of the same sign", bits, got)
		}
	}
}

func TestBF16RoundTripAllPatterns(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		f := BF16ToF32(h)
		if math.Float32bits(f) != uint32(h)<<16 {
			t.Errorf("BF16ToF32(%#04x) = %#08x, want %#08x", h, math.Float32bits(f), uint32(h)<<16)
		}
		got := F32ToBF16(f)
		if isBF16NaN(h) {
			if !isBF16NaN(got) || got&0x8000 != h&0x8000 {
				t.Errorf("BF16 NaN %#04x → %#04x, want a NaN of the same sign", h, got)
			}
			continue
		}
		if got != h {
			t.Errorf("BF16 %#04x → F32 %v → %#04x", h, f, got)
		}
	}
}

func TestF32ToBF16Rounding(t *testing.T) {
	var vs []float32
	for h := uint32(0); h < 0x7f80; h++ {
		lo := math.Float32frombits(h << 16)
		mid := math.Float32frombits(h<<16 | 0x8000) // exactly halfway to the next bf16
		vs = append(vs, lo, mid, math.Nextafter32(mid, 0), math.Nextafter32(mid, float32(math.Inf(1))))
	}
	vs = append(vs, math.MaxFloat32, math.SmallestNonzeroFloat32, float32(math.Inf(1)), 0, 1.00390625, 1.01171875, 3.3895314e38)
	r := rand.New(rand.NewPCG(17, 2))
	for range 200000 {
		v := math.Float32frombits(r.Uint32() &^ (1 << 31))
		if !math.IsNaN(float64(v)) {
			vs = append(vs, v)
		}
	}
	n := 0
	for _, v := range vs {
		for _, x := range []float32{v, -v} {
			got, want := F32ToBF16(x), refBF16Bits(float64(x))
			if got != want {
				n++
				if n <= 20 {
					t.Errorf("F32ToBF16(%g = %#08x) = %#04x, want %#04x", x, math.Float32bits(x), got, want)
				}
			}
		}
	}
	if n > 20 {
		t.Errorf("%d mismatches in all", n)
	}
}

func TestF32ToBF16Special(t *testing.T) {
	f := math.Float32frombits
	for _, c := range []struct {
		bits uint32
		want uint16
	}{
		{0x00000000, 0x0000},
		{0x80000000, 0x8000},
		{0x7f800000, 0x7f80}, // +Inf
		{0xff800000, 0xff80}, // −Inf
		{0x3f800000, 0x3f80}, // 1
		{0x3f808000, 0x3f80}, // tie, even stays
		{0x3f818000, 0x3f82}, // tie, odd rounds up
		{0x3f808001, 0x3f81}, // just above the tie
		{0x3f807fff, 0x3f80}, // just below the tie
		{0x7f7f7fff, 0x7f7f}, // below the overflow tie
		{0x7f7f8000, 0x7f80}, // overflow tie (odd) → Inf
		{0x7f7fffff, 0x7f80}, // MaxFloat32 → Inf
		{0xff7fffff, 0xff80},
		{0x00008000, 0x0000}, // subnormal tie → 0
		{0x00018000, 0x0002}, // subnormal tie, odd → up
		{0x00000001, 0x0000},
		{0x807fffff, 0x8080}, // largest subnormal rounds into the smallest normal
	} {
		if got := F32ToBF16(f(c.bits)); got != c.want {
			t.Errorf("F32ToBF16(%#08x) = %#04x, want %#04x", c.bits, got, c.want)
		}
	}
	// NaNs stay NaN, including those whose payload lives only in the low 16
	// bits: truncating or rounding them would give ±Inf.
	for _, bits := range []uint32{0x7f800001, 0xff800001, 0x7f80ffff, 0xff808000, 0x7f807fff, 0x7fc00000, 0xffc00000, 0x7fffffff, 0xffffffff, 0x7f81ffff} {
		got := F32ToBF16(f(bits))
		if !isBF16NaN(got) || (got&0x8000 != 0) != (bits>>31 == 1) {
			t.Errorf("F32ToBF16(NaN %#08x) = %#04x, want a NaN of the same sign", bits, got)
		}
	}
}

func TestDTypeNames(t *testing.T) {
	for _, c := range []struct {
		d       DType
		name    string
		size    int
		isFloat bool
	}{
		{F32, "F32", 4, true},
		{F16, "F16", 2, true},
		{BF16, "BF16", 2, true},
		{I64, "I64", 8, false},
		{I32, "I32", 4, false},
		{Bool, "BOOL", 1, false},
	} {
		if got := c.d.String(); got != c.name {
			t.Errorf("%d.String() = %q, want %q", c.d, got, c.name)
		}
		d, err := ParseDType(c.name)
		if err != nil || d != c.d {
			t.Errorf("ParseDType(%q) = %v, %v, want %v", c.name, d, err, c.d)
		}
		if got := c.d.Size(); got != c.size {
			t.Errorf("%v.Size() = %d, want %d", c.d, got, c.size)
		}
		if got := c.d.IsFloat(); got != c.isFloat {
			t.Errorf("%v.IsFloat() = %v, want %v", c.d, got, c.isFloat)
		}
	}
	for _, s := range []string{"", "f32", "F64", "U8", "Bool", "INVALID", "DType(0)"} {
		if d, err := ParseDType(s); err == nil {
			t.Errorf("ParseDType(%q) = %v, want an error", s, d)
		}
	}
	if got := Invalid.String(); got != "DType(0)" {
		t.Errorf("Invalid.String() = %q", got)
	}
	if got := DType(200).String(); got != "DType(200)" {
		t.Errorf("DType(200).String() = %q", got)
	}
	if Invalid.Size() != 0 || Invalid.IsFloat() {
		t.Errorf("Invalid: size %d, float %v", Invalid.Size(), Invalid.IsFloat())
	}
}
