package torchrand

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestMT19937Reference checks the engine against the reference MT19937 (init_genrand(5489)):
// its first outputs, and the 10000th, which C++ requires of std::mt19937.
func TestMT19937Reference(t *testing.T) {
	g := New(5489)
	want := []uint32{3499211612, 581869302, 3890346734, 3586334585, 545404204}
	for i, w := range want {
		if got := g.Uint32(); got != w {
			t.Fatalf("output %d = %d, want %d", i, got, w)
		}
	}
	for i := len(want); i < 9999; i++ {
		g.Uint32()
	}
	if got := g.Uint32(); got != 4123659995 {
		t.Errorf("10000th output = %d, want 4123659995", got)
	}
}

func TestSeed(t *testing.T) {
	// torch seeds MT19937 with the low 32 bits of the seed.
	a, b := New(7), New(1<<32+7)
	for i := 0; i < 1000; i++ {
		if x, y := a.Uint32(), b.Uint32(); x != y {
			t.Fatalf("output %d: seed 7 gives %d, seed 2^32+7 gives %d", i, x, y)
		}
	}
	if b.Seed() != 1<<32+7 {
		t.Errorf("Seed() = %d", b.Seed())
	}
	// Reseed restores the initial state and drops the cached normal.
	g := New(3)
	first := g.Randn(3)
	g.Uint32()
	g.Reseed(3)
	if again := g.Randn(3); !slices.Equal(first, again) {
		t.Errorf("after Reseed: %v, want %v", again, first)
	}
	// Uint64 is two draws, high half first.
	g1, g2 := New(11), New(11)
	hi, lo := g2.Uint32(), g2.Uint32()
	if got := g1.Uint64(); got != uint64(hi)<<32|uint64(lo) {
		t.Errorf("Uint64 = %#x, want %#x", got, uint64(hi)<<32|uint64(lo))
	}
}

// TestUniform checks torch.manual_seed(0); torch.rand(5) = [0.4963, 0.7682, 0.0885, 0.1320, 0.3074].
func TestUniform(t *testing.T) {
	g := New(0)
	want := []float32{0.4963, 0.7682, 0.0885, 0.1320, 0.3074}
	for i, w := range want {
		got := g.Float32()
		if math.Abs(float64(got-w)) > 5e-5 {
			t.Errorf("rand[%d] = %.6f, want %.4f", i, got, w)
		}
	}
	g = New(0)
	if got := g.Float32(); got != float32(2357136044&0xFFFFFF)/(1<<24) {
		t.Errorf("first uniform %v", got)
	}
	g = New(0)
	if u := g.Float64(); !(u >= 0 && u < 1) {
		t.Errorf("Float64 = %v", u)
	}
}

// TestRandnSmall checks the scalar (n < 16) path against well-known torch outputs:
// manual_seed(0); randn(5) and manual_seed(42); randn(2, 3) (printed to 4 decimals).
func TestRandnSmall(t *testing.T) {
	cases := []struct {
		seed uint64
		want []float32
	}{
		{0, []float32{1.5410, -0.2934, -2.1788, 0.5684, -1.0845}},
		{42, []float32{0.3367, 0.1288, 0.2345, 0.2303, -1.1229, -0.1863}},
	}
	for _, c := range cases {
		got := New(c.seed).Randn(len(c.want))
		for i := range c.want {
			if math.Abs(float64(got[i]-c.want[i])) > 5e-5 {
				t.Errorf("seed %d: randn(%d) = %v, want %v", c.seed, len(c.want), got, c.want)
				break
			}
		}
	}
	// The second value of each Box-Muller pair is cached in the generator and survives
	// across calls: 1 + 1 + 3 draws equal one draw of 5.
	g := New(0)
	var split []float32
	for _, n := range []int{1, 1, 3} {
		split = append(split, g.Randn(n)...)
	}
	if whole := New(0).Randn(5); !slices.Equal(split, whole) {
		t.Errorf("split scalar draws %v, want %v", split, whole)
	}
	// Three pairs use 12 engine outputs; the cached sixth value costs nothing.
	g, ref := New(0), New(0)
	g.Randn(5)
	for range 12 {
		ref.Uint32()
	}
	if g.Uint32() != ref.Uint32() {
		t.Error("scalar randn(5) did not consume exactly 12 engine outputs")
	}
	// A vectorised draw neither uses nor clears the cache.
	g = New(0)
	a := g.Randn(1)
	g.Randn(16)
	b := g.Randn(1)
	if w := New(0).Randn(2); a[0] != w[0] || b[0] != w[1] {
		t.Errorf("cache across a vectorised draw: %v %v, want %v", a, b, w)
	}
	if len(New(0).Randn(0)) != 0 {
		t.Error("Randn(0) not empty")
	}
}

// TestRandnVectorised checks torch.manual_seed(0); torch.randn(4, 4) (4 decimals) and the
// redraw of the last 16 values when n is not a multiple of 16.
func TestRandnVectorised(t *testing.T) {
	want := []float32{
		-1.1258, -1.1524, -0.2506, -0.4339, 0.8487, 0.6920, -0.3160, -2.1152,
		0.3223, -1.2633, 0.3500, 0.3081, 0.1198, 1.2377, 1.1168, -0.2473,
	}
	got := New(0).Randn(16)
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 5e-5 {
			t.Fatalf("randn(4,4) = %v, want %v", got, want)
		}
	}
	// n = 20: the first 16 uniforms become one block; then 16 fresh uniforms (engine
	// outputs 20..35) replace slots 4..19 and are transformed as a block, so out[:4] is
	// randn(16)[:4] and the call consumes 36 engine outputs.
	g := New(0)
	out := g.Randn(20)
	tail := make([]float32, 16)
	u := New(0)
	for range 20 {
		u.Uint32()
	}
	for i := range tail {
		tail[i] = u.Float32()
	}
	normalFill16(tail)
	if !slices.Equal(out[:4], got[:4]) || !slices.Equal(out[4:], tail) {
		t.Errorf("randn(20) = %v, want %v + %v", out, got[:4], tail)
	}
	ref := New(0)
	for range 36 {
		ref.Uint32()
	}
	if g.Uint32() != ref.Uint32() {
		t.Error("randn(20) did not consume 36 engine outputs")
	}
	// RandnInto is Randn.
	dst := make([]float32, 48)
	New(9).RandnInto(dst)
	if !slices.Equal(dst, New(9).Randn(48)) {
		t.Error("RandnInto differs from Randn")
	}
}

// TestFixtureNoise draws every recorded noise tensor of the tiny fixture, in order, from
// one generator seeded like the recorded run; the acceptance bar is 1e-5 max abs error,
// and the emulation of torch's AVX2 path is expected to be bit-exact.
func TestFixtureNoise(t *testing.T) {
	dir := fixtureDir(t)
	raw, err := os.ReadFile(filepath.Join(dir, "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		Settings struct {
			Seed uint64 `json:"seed"`
		} `json:"settings"`
		NoiseShapes [][]int `json:"noise_shapes"`
	}
	if err := json.Unmarshal(raw, &meta); err != nil {
		t.Fatal(err)
	}
	if len(meta.NoiseShapes) == 0 {
		t.Fatal("golden.json lists no noise shapes")
	}
	gold := loadGolden(t)
	g := New(meta.Settings.Seed)
	var maxErr float64
	total, exact := 0, 0
	for k, shape := range meta.NoiseShapes {
		name := fmt.Sprintf("noise.%03d", k)
		ref, ok := gold[name]
		if !ok {
			t.Fatalf("%s missing", name)
		}
		n := 1
		for _, d := range shape {
			n *= d
		}
		if n != len(ref.F32) || !slices.Equal(shape, ref.Shape) {
			t.Fatalf("%s: shape %v in golden.json, %v in the tensors", name, shape, ref.Shape)
		}
		got := g.Randn(n)
		var m float64
		for i := range got {
			d := math.Abs(float64(got[i]) - float64(ref.F32[i]))
			m = max(m, d)
			if got[i] == ref.F32[i] {
				exact++
			}
		}
		total += n
		maxErr = max(maxErr, m)
		t.Logf("%s %v: max abs err %.3g", name, shape, m)
	}
	t.Logf("all noise: max abs err %.3g, %d/%d values bit-exact", maxErr, exact, total)
	if maxErr > 1e-5 {
		t.Errorf("max abs error %.3g exceeds 1e-5", maxErr)
	}
	if exact != total {
		t.Errorf("%d of %d values are not bit-exact", total-exact, total)
	}
}

// TestMathFun checks the emulated Cephes functions against float64 math: they are
// approximations, accurate to a few float32 ulps.
func TestMathFun(t *testing.T) {
	var maxLog, maxSin, maxCos float64
	for i := 1; i <= 1<<14; i++ {
		u := float32(i) / (1 << 14) // (0, 1]
		maxLog = max(maxLog, math.Abs(float64(logPS(u))-math.Log(float64(u))))
		x := float32(2*math.Pi) * u
		s, c := sincosPS(x)
		maxSin = max(maxSin, math.Abs(float64(s)-math.Sin(float64(x))))
		maxCos = max(maxCos, math.Abs(float64(c)-math.Cos(float64(x))))
	}
	t.Logf("max abs error: log %.3g, sin %.3g, cos %.3g", maxLog, maxSin, maxCos)
	if maxLog > 2e-6 || maxSin > 5e-7 || maxCos > 5e-7 {
		t.Errorf("Cephes emulation inaccurate: log %.3g sin %.3g cos %.3g", maxLog, maxSin, maxCos)
	}
	if !math.IsNaN(float64(logPS(0))) || !math.IsNaN(float64(logPS(-1))) || logPS(1) != 0 {
		t.Errorf("logPS edge cases: %v %v %v", logPS(0), logPS(-1), logPS(1))
	}
}

func TestFMA32(t *testing.T) {
	cases := []struct{ a, b, c, want float32 }{
		{2, 3, 1, 7},
		// a·b + c = 1 + 5·2^-24 + 2^-70: just above the midpoint of 1+2·2^-23 and
		// 1+3·2^-23. Rounding through float64 loses the 2^-70 and would then round the tie
		// to even (1+2·2^-23); a true FMA gives 1+3·2^-23.
		{1 + 1.0/(1<<23), -(1 - 1.0/(1<<23)) / (1 << 24), 1 + 3.0/(1<<23), 1 + 3.0/(1<<23)},
	}
	for _, c := range cases {
		if got := fma32(c.a, c.b, c.c); got != c.want {
			t.Errorf("fma32(%g, %g, %g) = %.9g, want %.9g", c.a, c.b, c.c, got, c.want)
		}
	}
	// Random operands against exact big.Float arithmetic.
	rng := rand.New(rand.NewPCG(1, 2))
	f := func() float32 {
		return float32(rng.NormFloat64() * math.Pow(2, float64(rng.IntN(40)-20)))
	}
	for i := 0; i < 20000; i++ {
		a, b, c := f(), f(), f()
		if i%2 == 0 { // make a·b and c comparable so that cancellation happens
			c = -float32(a * b)
			c = math.Float32frombits(math.Float32bits(c) + uint32(rng.IntN(5)) - 2)
		}
		exact := new(big.Float).SetPrec(200).Mul(big.NewFloat(float64(a)), big.NewFloat(float64(b)))
		exact.Add(exact, big.NewFloat(float64(c)))
		want, _ := exact.Float32()
		if got := fma32(a, b, c); got != want {
			t.Fatalf("fma32(%g, %g, %g) = %.9g, want %.9g", a, b, c, got, want)
		}
	}
}

func BenchmarkRandn(b *testing.B) {
	g := New(0)
	dst := make([]float32, 3*64*64)
	b.SetBytes(int64(4 * len(dst)))
	for b.Loop() {
		g.RandnInto(dst)
	}
}
