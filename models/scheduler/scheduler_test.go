package scheduler

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func newDefault(t *testing.T) *Scheduler {
	t.Helper()
	s, err := New(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sha32(v []float32) string {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// TestTables checks the β, α and ᾱ tables against diffusers' values: spot values from the
// spec (section 3.1) and SHA-256 digests of the whole float32 tables, computed in Python
// with math.cos / float64 exactly as betas_for_alpha_bar does and a float64-accumulated,
// per-prefix-rounded cumprod (torch's CPU cumprod).
func TestTables(t *testing.T) {
	s := newDefault(t)
	betas, alphas, ac := s.Betas(), s.Alphas(), s.AlphasCumprod()
	if len(betas) != 1000 || len(alphas) != 1000 || len(ac) != 1000 {
		t.Fatalf("table lengths %d %d %d", len(betas), len(alphas), len(ac))
	}
	spots := []struct {
		name string
		got  float32
		want float32
	}{
		{"beta[0]", betas[0], 4.12842237e-05},
		{"beta[999]", betas[999], 0.999000013},
		{"alphas_cumprod[0]", ac[0], 0.999958694},
		{"alphas_cumprod[42]", ac[42], 0.993851483},
		{"alphas_cumprod[500]", ac[500], 0.492285043},
		{"alphas_cumprod[957]", ac[957], 0.00427823374},
		{"alphas_cumprod[999]", ac[999], 2.42873499e-09},
	}
	for _, sp := range spots {
		if sp.got != sp.want {
			t.Errorf("%s = %.9g, want %.9g", sp.name, sp.got, sp.want)
		}
	}
	digests := []struct {
		name string
		v    []float32
		want string
	}{
		{"betas", betas, "ee9cd3d5d1b98fa46b637fac268971c24c4ecac99011989f216c21fa14ea7840"},
		{"alphas", alphas, "8988bbfd09f70a0077113ff38ead117f0362e726c8d56b17861736acffdc7a22"},
		{"alphas_cumprod", ac, "f32ff0b43921c3125e2d7457bebc7aa5dd64586e4c1c837c2653aa637b657525"},
	}
	for _, d := range digests {
		if got := sha32(d.v); got != d.want {
			t.Errorf("%s digest %s, want %s", d.name, got, d.want)
		}
	}
	// The copies must not alias the scheduler's tables.
	betas[0] = 7
	if s.Betas()[0] == 7 {
		t.Error("Betas returned the internal table")
	}
}

func TestCosCorrectlyRounded(t *testing.T) {
	// Reference values: Python math.cos (glibc) on the same float64 arguments.
	cases := []struct{ x, want float64 }{
		{0.014024967203525864, 0x1.fff31bfb0c29bp-1},
		{0.015583296892806513, 0x1.fff015eaeedaep-1},
		{0.7916314821545709, 0x1.67c6632cbb8eap-1},
		{1.5692379971056158, 0x1.9881b15f37debp-10},
		{0, 1},
	}
	for _, c := range cases {
		if got := cosCorrectlyRounded(c.x); got != c.want {
			t.Errorf("cos(%v) = %x, want %x", c.x, got, c.want)
		}
	}
}

func TestTimesteps(t *testing.T) {
	s := newDefault(t)
	want := map[int][]int{
		25: {999, 957, 916, 874, 832, 791, 749, 708, 666, 624, 583, 541, 500, 458, 416, 375, 333, 291, 250, 208, 166, 125, 83, 42, 0},
		7:  {999, 832, 666, 500, 333, 166, 0},
		2:  {999, 0},
	}
	for n, w := range want {
		got, err := s.Timesteps(n)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, w) {
			t.Errorf("Timesteps(%d) = %v, want %v", n, got, w)
		}
	}
	all, err := s.Timesteps(1000)
	if err != nil {
		t.Fatal(err)
	}
	for i, ts := range all {
		if ts != 999-i {
			t.Fatalf("Timesteps(1000)[%d] = %d", i, ts)
		}
	}
	for _, n := range []int{-1, 0, 1, 1001} {
		if _, err := s.Timesteps(n); err == nil {
			t.Errorf("Timesteps(%d): no error", n)
		}
	}
}

// appendixA holds the spec's appendix A tables: t, prev, abar_t, abar_prev, beta_eff, c_x0,
// c_xt, std (fixed_small_log), log(post.var), log(beta_eff). NaN marks a cell that does not
// apply (the t = 0 step adds no noise).
var appendixA = map[int][][10]float64{
	25: {
		{999, 957, 2.42873499e-09, 0.00427823374, 0.999999404, 0.0654081702, 0.00076873746, 0.997858286, -0.00428801915, -5.96046618e-07},
		{957, 916, 0.00427823374, 0.0166386906, 0.742874384, 0.0962358713, 0.50078094, 0.856535256, -0.309719592, -0.297228307},
		{916, 874, 0.0166386906, 0.0374719575, 0.555969536, 0.109443784, 0.652238846, 0.737692952, -0.608455181, -0.587041795},
		{874, 832, 0.0374719575, 0.0662205368, 0.434133887, 0.116066441, 0.729772985, 0.648974061, -0.864725173, -0.834402323},
		{832, 791, 0.0662205368, 0.101449512, 0.347256243, 0.118448809, 0.77744472, 0.578061581, -1.09614968, -1.05769229},
		{791, 749, 0.101449512, 0.144272104, 0.296818256, 0.125469819, 0.798595786, 0.531669736, -1.26346564, -1.21463525},
		{749, 708, 0.144272104, 0.191953585, 0.248401105, 0.127179146, 0.818641305, 0.484314054, -1.45004344, -1.39271045},
		{708, 666, 0.191953585, 0.246000558, 0.219702661, 0.134855002, 0.824261069, 0.452777714, -1.58470798, -1.51548016},
		{666, 624, 0.246000558, 0.304394871, 0.19183737, 0.140372112, 0.829356313, 0.420690298, -1.73171675, -1.65110731},
		{624, 583, 0.304394871, 0.364636362, 0.16520977, 0.143417746, 0.834542155, 0.388461232, -1.89112389, -1.80053926},
		{583, 541, 0.364636362, 0.428628683, 0.149295449, 0.153838441, 0.829440951, 0.366413355, -2.00798631, -1.90182805},
		{541, 500, 0.428628683, 0.492285043, 0.129307926, 0.158787042, 0.829151392, 0.338971645, -2.16367769, -2.04555869},
		{500, 458, 0.492285043, 0.557616889, 0.117162585, 0.172320485, 0.818688929, 0.319509476, -2.28193665, -2.1441927},
		{458, 416, 0.557616889, 0.621964455, 0.103458583, 0.184438169, 0.809131801, 0.297337919, -2.42577195, -2.26858401},
		{416, 375, 0.621964455, 0.68277657, 0.0890659094, 0.19467859, 0.800895929, 0.273383349, -2.59376049, -2.41837859},
		{375, 333, 0.68277657, 0.741974711, 0.0797845721, 0.216644794, 0.780264378, 0.254746348, -2.73497391, -2.52842522},
		{333, 291, 0.741974711, 0.797033966, 0.069080174, 0.239017427, 0.758957088, 0.233108029, -2.91250658, -2.6724875},
		{291, 250, 0.797033966, 0.845888019, 0.057754755, 0.261710316, 0.737046719, 0.209411427, -3.12690878, -2.85154963},
		{250, 208, 0.845888019, 0.890080571, 0.0496500731, 0.303947181, 0.695312202, 0.188182384, -3.34068727, -3.0027554},
		{208, 166, 0.890080571, 0.927600086, 0.0404479504, 0.354407132, 0.6452052, 0.163222522, -3.62528181, -3.20773935},
		{166, 125, 0.927600086, 0.957174659, 0.0308977962, 0.417527467, 0.58230108, 0.135190159, -4.00214577, -3.47707033},
		{125, 83, 0.957174659, 0.979738772, 0.0230307579, 0.532307446, 0.467633247, 0.104384623, -4.51934576, -3.77092457},
		{83, 42, 0.979738772, 0.993851483, 0.0142000318, 0.69868964, 0.30129993, 0.065644294, -5.44700909, -4.25451088},
		{42, 0, 0.993851483, 0.999958694, 0.00610744953, 0.9933002, 0.00669749966, 0.00640547648, -10.1012039, -5.0982461},
		{0, -1, 0.999958694, 1, 4.12842237e-05, 0.99947232, 0, 0, math.NaN(), -10.0950298},
	},
	7: {
		{999, 832, 2.42873499e-09, 0.0662205368, 0.99999994, 0.257333487, 0.000227973505, 0.966322601, -0.06851504, -5.96046448e-08},
		{832, 666, 0.0662205368, 0.246000558, 0.730811477, 0.388176352, 0.418943048, 0.768185377, -0.527448356, -0.313599735},
		{666, 500, 0.246000558, 0.492285043, 0.500288367, 0.465540737, 0.476001889, 0.580409706, -1.08804214, -0.692570627},
		{500, 333, 0.492285043, 0.741974711, 0.336520433, 0.570934117, 0.413957804, 0.413548887, -1.76595902, -1.08909643},
		{333, 166, 0.741974711, 0.927600086, 0.200113595, 0.746955514, 0.250951588, 0.23696062, -2.8797226, -1.60887015},
		{166, 0, 0.927600086, 0.999958694, 0.0723615885, 0.999449968, 0.000549496152, 0.006425275, -10.0950317, -2.62607956},
		{0, -1, 0.999958694, 1, 4.12842237e-05, 0.99947232, 0, 0, math.NaN(), -10.0950298},
	},
}

// TestAppendixA reproduces every cell of the spec's coefficient tables. The tables print
// float32 values with 8-9 significant digits, which identify a float32 uniquely, so the
// comparison is exact, except for the std column: see exp32.
func TestAppendixA(t *testing.T) {
	s := newDefault(t)
	for _, n := range []int{25, 7} {
		plan, err := s.Schedule(n)
		if err != nil {
			t.Fatal(err)
		}
		rows := appendixA[n]
		if len(plan) != len(rows) {
			t.Fatalf("%d steps: %d coefficient rows, want %d", n, len(plan), len(rows))
		}
		for i, c := range plan {
			r := rows[i]
			if c.T != int(r[0]) || c.Prev != int(r[1]) {
				t.Errorf("%d steps row %d: t=%d prev=%d, want %v %v", n, i, c.T, c.Prev, r[0], r[1])
			}
			cols := []struct {
				name string
				got  float32
				want float64
			}{
				{"abar_t", c.AlphaProd, r[2]},
				{"abar_prev", c.AlphaProdPrev, r[3]},
				{"beta_eff", c.Beta, r[4]},
				{"c_x0", c.CX0, r[5]},
				{"c_xt", c.CXt, r[6]},
				{"std", c.Std, r[7]},
				{"log(post.var)", c.LogVariance, r[8]},
				{"log(beta_eff)", c.LogBeta, r[9]},
			}
			for _, col := range cols {
				if math.IsNaN(col.want) {
					continue
				}
				w := float32(col.want)
				if col.name == "std" && ulpDiff(col.got, w) <= 1 {
					// exp32 is correctly rounded; the appendix was made with SLEEF's expf,
					// which is one ulp off in 4 of its 30 standard deviations.
					continue
				}
				if col.got != w {
					t.Errorf("%d steps row %d (t=%d) %s = %.9g, want %.9g", n, i, c.T, col.name, col.got, float32(col.want))
				}
			}
			if c.AddNoise != (c.T > 0) {
				t.Errorf("%d steps row %d: AddNoise %v", n, i, c.AddNoise)
			}
		}
	}
}

func TestCoeffsPrev(t *testing.T) {
	s := newDefault(t)
	// No previous timestep means t-1: the stored beta and alpha are used.
	c, err := s.Coeffs(500, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if c.Prev != 499 || c.Beta != s.betas[500] || c.Alpha != s.alphas[500] || c.AlphaProdPrev != s.alphasCumprod[499] {
		t.Errorf("Coeffs(500, none) = %+v", c)
	}
	// An explicit prev of t-1 is the same step.
	c2, err := s.Coeffs(500, 499, true)
	if err != nil {
		t.Fatal(err)
	}
	if c2 != c {
		t.Errorf("Coeffs(500, 499) = %+v, want %+v", c2, c)
	}
	// The last step: t = 0 and no prev gives prev = -1, abar_prev = 1, and c_x0 = 0.99947232.
	c0, err := s.Coeffs(0, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if c0.Prev != -1 || c0.AlphaProdPrev != 1 || c0.CX0 != 0.99947232 || c0.CXt != 0 || c0.AddNoise || c0.Std != 0 {
		t.Errorf("Coeffs(0, none) = %+v", c0)
	}
	for _, bad := range [][2]int{{-1, 0}, {1000, 0}, {5, 1000}} {
		if _, err := s.Coeffs(bad[0], bad[1], true); err == nil {
			t.Errorf("Coeffs(%d, %d): no error", bad[0], bad[1])
		}
	}
}

// TestFixtureSteps replays every recorded scheduler step of the tiny fixture: the recorded
// model output, sample and noise through Step must give the recorded prev_sample.
func TestFixtureSteps(t *testing.T) {
	dir := fixtureDir(t)
	g := loadGolden(t)
	for _, name := range []string{"prior_scheduler", "decoder_scheduler", "super_res_scheduler"} {
		cfg, err := LoadConfig(filepath.Join(dir, "model", name, "scheduler_config.json"))
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ts, ok := g[name+".timesteps"]
		if !ok {
			t.Fatalf("%s.timesteps missing", name)
		}
		got, err := s.Timesteps(len(ts.I64))
		if err != nil {
			t.Fatal(err)
		}
		for i := range got {
			if int64(got[i]) != ts.I64[i] {
				t.Errorf("%s timesteps %v, want %v", name, got, ts.I64)
				break
			}
		}
		steps := 0
		for k := 0; ; k++ {
			pre := fmt.Sprintf("%s.step%d.", name, k)
			mo, ok := g[pre+"in.model_output"]
			if !ok {
				break
			}
			steps++
			sample, want := g[pre+"in.sample"], g[pre+"out.prev_sample"]
			tt := int(g[pre+"in.timestep"].I64[0])
			pv, hasPrev := g[pre+"in.prev_timestep"]
			prev := 0
			if hasPrev {
				prev = int(pv.I64[0])
			}
			c, err := s.Coeffs(tt, prev, hasPrev)
			if err != nil {
				t.Fatal(err)
			}
			noise, hasNoise := g[pre+"in.noise"]
			if hasNoise != c.AddNoise {
				t.Errorf("%s step %d: noise recorded %v, AddNoise %v", name, k, hasNoise, c.AddNoise)
			}
			batch := sample.Shape[0]
			out := make([]float32, len(sample.F32))
			if err := s.Step(out, mo.F32, sample.F32, noise.F32, batch, c); err != nil {
				t.Fatalf("%s step %d: %v", name, k, err)
			}
			var maxRef, maxErr float64
			mism := 0
			for i := range out {
				maxRef = max(maxRef, math.Abs(float64(want.F32[i])))
				d := math.Abs(float64(out[i]) - float64(want.F32[i]))
				maxErr = max(maxErr, d)
				if out[i] != want.F32[i] {
					mism++
				}
			}
			rel := maxErr / maxRef
			t.Logf("%s step %d (t=%d prev=%d): max abs err %.3g, rel %.3g, %d/%d values not bit-exact", name, k, tt, c.Prev, maxErr, rel, mism, len(out))
			if rel > 1e-6 {
				t.Errorf("%s step %d: max error %.3g relative to max|prev_sample| %.3g exceeds 1e-6", name, k, rel, maxRef)
			}
			// Stepping in place (out aliasing sample) gives the same result.
			inplace := append([]float32(nil), sample.F32...)
			if err := s.Step(inplace, mo.F32, inplace, noise.F32, batch, c); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(inplace, out) {
				t.Errorf("%s step %d: in-place step differs", name, k)
			}
		}
		if steps != len(ts.I64) {
			t.Errorf("%s: %d recorded steps, want %d", name, steps, len(ts.I64))
		}
	}
}

func TestLoadConfig(t *testing.T) {
	dir := fixtureDir(t)
	want := map[string]Config{
		"prior_scheduler":     {1000, "squaredcos_cap_v2", "fixed_small_log", "sample", true, 5},
		"decoder_scheduler":   {1000, "squaredcos_cap_v2", "learned_range", "epsilon", true, 1},
		"super_res_scheduler": {1000, "squaredcos_cap_v2", "fixed_small_log", "epsilon", true, 1},
	}
	for name, w := range want {
		got, err := LoadConfig(filepath.Join(dir, "model", name, "scheduler_config.json"))
		if err != nil {
			t.Fatal(err)
		}
		if got != w {
			t.Errorf("%s: %+v, want %+v", name, got, w)
		}
	}
	// Absent keys keep the diffusers defaults; unknown keys are ignored.
	got, err := ParseConfig([]byte(`{"variance_type": "learned_range", "some_new_key": [1, 2]}`))
	if err != nil {
		t.Fatal(err)
	}
	w := DefaultConfig()
	w.VarianceType = "learned_range"
	if got != w {
		t.Errorf("ParseConfig: %+v, want %+v", got, w)
	}
	if w := DefaultConfig(); w != (Config{1000, "squaredcos_cap_v2", "fixed_small_log", "epsilon", true, 1}) {
		t.Errorf("DefaultConfig() = %+v", w)
	}
	if _, err := ParseConfig([]byte(`{"_class_name": "DDPMScheduler"}`)); err == nil || !strings.Contains(err.Error(), "DDPMScheduler") {
		t.Errorf("wrong _class_name: err %v", err)
	}
	if _, err := ParseConfig([]byte(`{"num_train_timesteps": "many"}`)); err == nil {
		t.Error("bad JSON type: no error")
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("missing file: no error")
	}
	p := filepath.Join(t.TempDir(), "scheduler_config.json")
	if err := os.WriteFile(p, []byte(`{"_class_name": "UnCLIPScheduler", "clip_sample_range": 5.0}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if c, err := LoadConfig(p); err != nil || c.ClipSampleRange != 5 {
		t.Errorf("LoadConfig: %+v, %v", c, err)
	}
}

func TestBadConfigs(t *testing.T) {
	cases := []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.BetaSchedule = "linear" }, `"linear"`},
		{func(c *Config) { c.VarianceType = "fixed_small" }, `"fixed_small"`},
		{func(c *Config) { c.VarianceType = "learned" }, `"learned"`},
		{func(c *Config) { c.PredictionType = "v_prediction" }, `"v_prediction"`},
		{func(c *Config) { c.NumTrainTimesteps = 1 }, "num_train_timesteps 1"},
		{func(c *Config) { c.NumTrainTimesteps = 0 }, "num_train_timesteps 0"},
		{func(c *Config) { c.ClipSampleRange = float32(math.NaN()) }, "clip_sample_range"},
	}
	for _, tc := range cases {
		cfg := DefaultConfig()
		tc.edit(&cfg)
		_, err := New(cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v): error %v, want one naming %s", cfg, err, tc.want)
		}
	}
	// A small but valid schedule works.
	s, err := New(Config{NumTrainTimesteps: 2, BetaSchedule: "squaredcos_cap_v2", VarianceType: "fixed_small_log", PredictionType: "epsilon"})
	if err != nil {
		t.Fatal(err)
	}
	if ts, err := s.Timesteps(2); err != nil || !slices.Equal(ts, []int{1, 0}) {
		t.Errorf("2-step schedule of 2 train steps: %v %v", ts, err)
	}
}

func TestStepErrors(t *testing.T) {
	fixed := newDefault(t)
	cfg := DefaultConfig()
	cfg.VarianceType = "learned_range"
	learned, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	noisy, _ := fixed.Coeffs(999, 500, true)
	last, _ := fixed.Coeffs(0, 0, false)
	v8, v16, v4 := make([]float32, 8), make([]float32, 16), make([]float32, 4)
	bad := []struct {
		name                   string
		s                      *Scheduler
		out, mo, sample, noise []float32
		batch                  int
		c                      Coeffs
	}{
		{"batch 0", fixed, v8, v8, v8, v8, 0, noisy},
		{"sample not a multiple of batch", fixed, v8, v8, v8, v8, 3, noisy},
		{"short out", fixed, v4, v8, v8, v8, 2, noisy},
		{"short model output", fixed, v8, v4, v8, v8, 2, noisy},
		{"doubled model output without learned_range", fixed, v8, v16, v8, v8, 2, noisy},
		{"missing noise", fixed, v8, v8, v8, nil, 2, noisy},
		{"learned_range without variance channels", learned, v8, v8, v8, v8, 2, noisy},
	}
	for _, b := range bad {
		if err := b.s.Step(b.out, b.mo, b.sample, b.noise, b.batch, b.c); err == nil {
			t.Errorf("%s: no error", b.name)
		}
	}
	// The last step needs no noise, and learned_range then needs no variance channels.
	if err := fixed.Step(v8, v8, v8, nil, 2, last); err != nil {
		t.Errorf("last step without noise: %v", err)
	}
	if err := learned.Step(v8, v8, v8, nil, 2, last); err != nil {
		t.Errorf("learned_range last step without variance: %v", err)
	}
	if err := learned.Step(v8, v16, v8, v8, 2, noisy); err != nil {
		t.Errorf("learned_range step: %v", err)
	}
}

// TestStepFormula checks Step against a direct float32 evaluation of diffusers' formulas on
// a few hand values, including clipping and the learned-range variance split.
func TestStepFormula(t *testing.T) {
	cfg := DefaultConfig()
	cfg.VarianceType = "learned_range"
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Coeffs(500, 458, true)
	if err != nil {
		t.Fatal(err)
	}
	sample := []float32{0.3, -1.2, 2.5, 0.01}
	// batch 2, n 2: item b holds eps (2 values) then v (2 values).
	mo := []float32{0.5, -0.25, 0.9, -1.1, 3.0, -0.7, 0.0, 0.4}
	noise := []float32{1.5, -0.5, 0.25, -2}
	out := make([]float32, 4)
	if err := s.Step(out, mo, sample, noise, 2, c); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		b, j := i/2, i%2
		eps, v := mo[b*4+j], mo[b*4+2+j]
		x0 := (sample[i] - float32(c.SqrtOneMinusAlphaProd*eps)) / c.SqrtAlphaProd
		x0 = min(max(x0, -1), 1)
		mean := float32(c.CX0*x0) + float32(c.CXt*sample[i])
		frac := (v + 1) / 2
		lv := float32(frac*c.LogBeta) + float32((1-frac)*c.LogVariance)
		std := float32(math.Exp(float64(0.5 * lv)))
		want := mean + float32(std*noise[i])
		if out[i] != want {
			t.Errorf("out[%d] = %.9g, want %.9g", i, out[i], want)
		}
	}
}

// ulpDiff returns how many float32 values lie between a and b (both finite, same sign).
func ulpDiff(a, b float32) int64 {
	d := int64(math.Float32bits(a)) - int64(math.Float32bits(b))
	if d < 0 {
		d = -d
	}
	return d
}
