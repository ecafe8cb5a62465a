package tensortest

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/unclip-go/unclip/tensor"
)

// ConformanceF16 runs the reduced-precision op cases on backend b and on the
// CPU reference: inputs and weights are F16 (attention biases F32, as the op
// requires) and every float result is F16, except the scheduler step, whose
// result stays F32. The CPU reference computes each op in float32 and rounds
// once into F16, so a conforming backend (float32 accumulation, softmax and
// norm statistics, one rounding on store) differs by at most an F16 ulp or
// two where the float32 results straddle a rounding boundary. An element
// fails when it differs from the reference by more than 2 F16 ulps of the
// reference value plus tol (a small absolute term, e.g. 1e-4).
func ConformanceF16(t *testing.T, b tensor.Backend, tol float64) {
	t.Helper()
	ConformanceDType(t, b, tensor.F16, tol)
}

// ConformanceDType is ConformanceF16 for dt, F16 or BF16 (the ulps are dt's).
func ConformanceDType(t *testing.T, b tensor.Backend, dt tensor.DType, tol float64) {
	t.Helper()
	if dt != tensor.F16 && dt != tensor.BF16 {
		t.Fatalf("ConformanceDType: %v is not a 16-bit float type", dt)
	}
	ref := tensor.CPU()
	for _, c := range halfCases(dt) {
		t.Run(c.name, func(t *testing.T) {
			want, err := runCase(c, ref)
			if err != nil {
				t.Fatalf("on the CPU reference: %v", err)
			}
			got, err := runCase(c, b)
			if err != nil {
				t.Fatalf("on %s: %v", b.Name(), err)
			}
			compareHalf(t, b, dt, want, got, tol)
		})
	}
}

// ulpOf is the spacing of dt's values at |v| (F16: 10 mantissa bits,
// subnormal spacing 2⁻²⁴; BF16: 7 mantissa bits).
func ulpOf(dt tensor.DType, v float64) float64 {
	mant, minExp := 10, -14
	if dt == tensor.BF16 {
		mant, minExp = 7, -126
	}
	a := math.Abs(v)
	if a == 0 || math.IsInf(a, 0) || math.IsNaN(a) {
		return math.Ldexp(1, minExp-mant)
	}
	_, e := math.Frexp(a) // a = f·2^e, f in [0.5, 1)
	e--
	if e < minExp {
		e = minExp
	}
	return math.Ldexp(1, e-mant)
}

func compareHalf(t *testing.T, b tensor.Backend, dt tensor.DType, want, got *tensor.Tensor, tol float64) {
	t.Helper()
	if got.DType() != want.DType() || !slices.Equal(got.Shape(), want.Shape()) {
		t.Fatalf("result %v%v, want %v%v", got.DType(), got.Shape(), want.DType(), want.Shape())
	}
	if got.Backend() != b {
		t.Errorf("result lives on %s, want %s", got.Backend().Name(), b.Name())
	}
	rw, rg := read(want), read(got)
	if rw.err != nil {
		t.Fatalf("reading the CPU reference: %v", rw.err)
	}
	if rg.err != nil {
		t.Fatalf("reading the %s result: %v", b.Name(), rg.err)
	}
	if len(rw.f) != len(rg.f) {
		t.Fatalf("%d values, want %d", len(rg.f), len(rw.f))
	}
	bad, worst := 0, 0.0
	for i := range rw.f {
		d := elemDiff(rw.f[i], rg.f[i])
		ulps := d / ulpOf(dt, float64(rw.f[i]))
		if d > 2*ulpOf(dt, float64(rw.f[i]))+tol || math.IsNaN(d) {
			if bad++; bad <= 5 {
				t.Errorf("at %v: got %v, want %v (%.1f ulps)", unflat(want.Shape(), i), rg.f[i], rw.f[i], ulps)
			}
		}
		if d <= tol {
			ulps = 0
		}
		worst = max(worst, ulps)
	}
	if bad > 0 {
		t.Errorf("%d of %d elements differ by more than 2 %v ulps + %g", bad, len(rw.f), dt, tol)
	}
	if testing.Verbose() && worst > 0 {
		t.Logf("worst difference %.2f ulps", worst)
	}
}

// halfCases are the op cases of ConformanceDType: every op with 16-bit
// operands and results, including strided, permuted and broadcast views.
func halfCases(dt tensor.DType) []opCase {
	var cs []opCase
	add := func(c ...opCase) { cs = append(cs, c...) }
	F32 := tensor.F32
	h := func(seed uint64, shape ...int) func() *tensor.Tensor { return rc(dt, seed, shape...) }
	hi := func(seed uint64, lo, hi float32, shape ...int) func() *tensor.Tensor {
		return func() *tensor.Tensor { return randIn(seed, lo, hi, shape...).Cast(dt) }
	}
	scaled := func(seed uint64, s float32, shape ...int) func() *tensor.Tensor {
		return func() *tensor.Tensor { return tensor.Scale(Rand(seed, shape...), s).Cast(dt) }
	}

	// copies between and within 16-bit views
	add(opCase{name: "copy/permuted", inputs: in(h(1, 3, 5, 7)),
		run: func(x ts) *tensor.Tensor { return x[0].Permute(2, 0, 1).Contiguous() }},
		opCase{name: "copy/from_f32", inputs: in(r(2, 4, 9)),
			run: func(x ts) *tensor.Tensor { return x[0].T().Cast(dt) }},
		opCase{name: "copy/concat", inputs: in(h(3, 2, 3, 5), h(4, 2, 4, 5)),
			run: func(x ts) *tensor.Tensor { return tensor.Concat(1, x[0], x[1]) }})

	// unary
	for _, u := range []struct {
		name string
		f    func(*tensor.Tensor) *tensor.Tensor
	}{
		{"silu", tensor.SiLU}, {"gelu", tensor.GELU}, {"quickgelu", tensor.QuickGELU},
		{"sigmoid", tensor.Sigmoid}, {"exp", tensor.Exp}, {"neg", tensor.Neg},
		{"affine", func(x *tensor.Tensor) *tensor.Tensor { return tensor.Affine(x, 1.5, -0.25) }},
		{"clamp", func(x *tensor.Tensor) *tensor.Tensor { return tensor.Clamp(x, -0.5, 0.3) }},
	} {
		add(opCase{name: "unary/" + u.name, inputs: in(scaled(10, 4, 3, 5, 7)),
			run: func(x ts) *tensor.Tensor { return u.f(x[0]) }})
	}
	add(opCase{name: "unary/silu_permuted", inputs: in(scaled(11, 4, 4, 6, 5)),
		run: func(x ts) *tensor.Tensor { return tensor.SiLU(x[0].Permute(1, 0, 2)) }},
		opCase{name: "unary/odd_numel", inputs: in(h(12, 1, 37)),
			run: func(x ts) *tensor.Tensor { return tensor.GELU(x[0]) }})

	// binary
	for k, name := range []string{"add", "sub", "mul", "div"} {
		f := []func(a, b *tensor.Tensor) *tensor.Tensor{tensor.Add, tensor.Sub, tensor.Mul, tensor.Div}[k]
		add(opCase{name: "binary/" + name + "_broadcast", inputs: in(h(20, 2, 3, 5), hi(21, 0.5, 2, 3, 1)),
			run: func(x ts) *tensor.Tensor { return f(x[0], x[1]) }})
	}
	add(opCase{name: "binary/add_transposed", inputs: in(h(22, 6, 5), h(23, 5, 6)),
		run: func(x ts) *tensor.Tensor { return tensor.Add(x[0], x[1].T()) }},
		opCase{name: "binary/mul_odd", inputs: in(h(24, 3, 7), h(25, 7)),
			run: func(x ts) *tensor.Tensor { return tensor.Mul(x[0], x[1]) }})

	// matmul and linear
	add(opCase{name: "matmul/batched", inputs: in(h(30, 2, 5, 7), h(31, 7, 9)),
		run: func(x ts) *tensor.Tensor { return tensor.MatMul(x[0], x[1]) }},
		opCase{name: "matmul/transposed_b", inputs: in(h(32, 3, 6, 33), h(33, 3, 10, 33)),
			run: func(x ts) *tensor.Tensor { return tensor.MatMul(x[0], x[1].Transpose(-1, -2)) }},
		opCase{name: "linear/bias", inputs: in(h(34, 2, 5, 24), h(35, 13, 24), h(36, 13)),
			run: func(x ts) *tensor.Tensor { return tensor.Linear(x[0], x[1], x[2]) }},
		opCase{name: "linear/k130", inputs: in(h(37, 9, 130), h(38, 11, 130), h(39, 11)),
			run: func(x ts) *tensor.Tensor { return tensor.Linear(x[0], x[1], x[2]) }})

	// norms and softmax
	add(opCase{name: "layernorm/bias", inputs: in(scaled(40, 3, 2, 5, 48), h(41, 48), h(42, 48)),
		run: func(x ts) *tensor.Tensor { return tensor.LayerNorm(x[0], x[1], x[2], 1e-5) }},
		opCase{name: "layernorm/nobias_offset", inputs: in(func() *tensor.Tensor {
			return tensor.Affine(Rand(43, 3, 37), 1, 20).Cast(dt)
		}, h(44, 37)),
			run: func(x ts) *tensor.Tensor { return tensor.LayerNorm(x[0], x[1], nil, 1e-5) }})
	for _, silu := range []bool{false, true} {
		add(opCase{name: fmt.Sprintf("groupnorm/silu=%v", silu), inputs: in(scaled(50, 2, 2, 8, 5, 3), h(51, 8), h(52, 8)),
			run: func(x ts) *tensor.Tensor { return tensor.GroupNorm(x[0], 4, x[1], x[2], 1e-5, silu) }})
	}
	add(opCase{name: "softmax/rows", inputs: in(scaled(60, 8, 4, 37)),
		run: func(x ts) *tensor.Tensor { return tensor.Softmax(x[0]) }},
		opCase{name: "softmax/transposed", inputs: in(scaled(61, 4, 9, 6)),
			run: func(x ts) *tensor.Tensor { return tensor.Softmax(x[0].T()) }})

	// attention: 16-bit q, k, v; F32 bias
	attn := func(name string, bsz, hd, lq, lk, d, dv int, bias, causal bool) opCase {
		ins := []func() *tensor.Tensor{h(70, bsz, hd, lq, d), h(71, bsz, hd, lk, d), h(72, bsz, hd, lk, dv)}
		if bias {
			ins = append(ins, r(73, 1, hd, lq, lk))
		}
		return opCase{name: "attention/" + name, inputs: in(ins...), run: func(x ts) *tensor.Tensor {
			var bt *tensor.Tensor
			if bias {
				bt = x[3]
				if bt.DType() != F32 {
					bt = bt.Cast(F32)
				}
			}
			return tensor.Attention(x[0], x[1], x[2], bt, float32(1/math.Sqrt(float64(d))), causal)
		}}
	}
	add(attn("plain", 2, 2, 5, 7, 8, 8, false, false),
		attn("causal_bias", 1, 3, 6, 6, 16, 12, true, true),
		attn("long_head", 1, 1, 3, 5, 80, 72, false, false))

	// embedding of a 16-bit table
	add(opCase{name: "embedding/i64", inputs: in(h(80, 11, 6), fixed(ids64([]int64{3, 0, 10, 3, 7, 1}, 2, 3))),
		run: func(x ts) *tensor.Tensor { return tensor.Embedding(x[0], x[1]) }},
		opCase{name: "embedding/i32_odd", inputs: in(h(81, 5, 7), fixed(ids32([]int32{4, 1, 2}, 3))),
			run: func(x ts) *tensor.Tensor { return tensor.Embedding(x[0], x[1]) }})

	// convolution and resampling
	add(opCase{name: "conv2d/3x3_bias", inputs: in(h(90, 2, 3, 7, 6), h(91, 5, 3, 3, 3), h(92, 5)),
		run: func(x ts) *tensor.Tensor { return tensor.Conv2d(x[0], x[1], x[2], 1, 1) }},
		opCase{name: "conv2d/stride2_nobias", inputs: in(h(93, 1, 4, 9, 8), h(94, 3, 4, 3, 3)),
			run: func(x ts) *tensor.Tensor { return tensor.Conv2d(x[0], x[1], nil, 2, 1) }},
		opCase{name: "conv2d/1x1_permuted", inputs: in(h(95, 1, 5, 6, 4), h(96, 7, 4, 1, 1), h(97, 7)),
			run: func(x ts) *tensor.Tensor { return tensor.Conv2d(x[0].Permute(0, 3, 1, 2), x[1], x[2], 1, 0) }})
	add(opCase{name: "avgpool2d/k2", inputs: in(h(100, 2, 3, 6, 7)),
		run: func(x ts) *tensor.Tensor { return tensor.AvgPool2d(x[0], 2) }},
		opCase{name: "upsample_nearest/f2", inputs: in(h(101, 1, 3, 3, 5)),
			run: func(x ts) *tensor.Tensor { return tensor.UpsampleNearest(x[0], 2) }},
		opCase{name: "upsample_bicubic/up", inputs: in(h(102, 1, 2, 5, 4)),
			run: func(x ts) *tensor.Tensor { return tensor.UpsampleBicubic(x[0], 11, 9) }},
		opCase{name: "upsample_bicubic/down", inputs: in(h(103, 1, 2, 12, 9)),
			run: func(x ts) *tensor.Tensor { return tensor.UpsampleBicubic(x[0], 5, 4) }})

	// scheduler step: 16-bit model output, F32 sample and noise, F32 result
	for _, learned := range []bool{false, true} {
		c := 3
		if learned {
			c = 6
		}
		p := tensor.StepParams{Epsilon: true, Learned: learned, Clip: true, AddNoise: true,
			ClipRange: 0.5, SqrtAlphaProd: 0.8, SqrtOneMinusAlphaProd: 0.6, CX0: 0.3, CXt: 0.7, Std: 0.05,
			MinLog: -6, MaxLog: -2}
		add(opCase{name: fmt.Sprintf("scheduler_step/learned=%v", learned), inputs: in(h(110, 2, c, 3, 5), r(111, 2, 3, 3, 5), r(112, 2, 3, 3, 5)),
			run: func(x ts) *tensor.Tensor { return tensor.SchedulerStep(x[0], x[1], x[2], p) }})
	}
	return cs
}
