// Package scheduler reproduces diffusers' UnCLIPScheduler in float32, bit for bit except
// for rare one-ulp differences in exp (see exp32).
//
// diffusers keeps every scheduler scalar in a 0-d float32 torch tensor, so each arithmetic
// operation rounds to float32. That rounding is visible in the result: at the last step
// (t = 0) the x0 coefficient is 0.99947232, not 1, because 1 − ᾱ₀ rounds differently from
// β₀. This package therefore performs every scalar and element-wise operation in float32,
// in the order diffusers does, and converts products to float32 explicitly so that the Go
// compiler cannot fuse a multiply and an add into one FMA (which rounds once instead of
// twice). See unclip-spec.md section 3 and appendix A.
//
// Typical use by a pipeline stage:
//
//	s, _ := scheduler.New(cfg)
//	plan, _ := s.Schedule(steps) // one Coeffs per step, prev = next timestep, none on the last
//	for _, c := range plan {
//		... run the model at timestep c.T ...
//		var z []float32
//		if c.AddNoise {
//			z = rng.Randn(len(latents)) // drawn only when t > 0, with the sample's shape
//		}
//		s.Step(latents, modelOutput, latents, z, batch, c)
//	}
package scheduler

import (
	"fmt"
	"math"

	"github.com/unclip-go/unclip/tensor"
)

// InitNoiseSigma is the standard deviation of the initial noise (diffusers'
// init_noise_sigma); the starting latents are plain standard-normal draws times this.
const InitNoiseSigma = 1.0

// Scheduler holds the float32 tables of one UnCLIPScheduler configuration. It is immutable
// after New and safe for concurrent use.
type Scheduler struct {
	cfg           Config
	betas         []float32
	alphas        []float32
	alphasCumprod []float32
}

// New validates cfg and builds the β, α and ᾱ tables exactly as diffusers does:
//   - β_i = min(1 − ᾱ((i+1)/N)/ᾱ(i/N), 0.999) in float64 with
//     ᾱ(u) = cos((u + 0.008)/1.008 · π/2)², then rounded to float32;
//   - α_i = 1 − β_i in float32;
//   - ᾱ_i = cumprod(α) accumulated in float64 with every prefix rounded to float32
//     (torch's CPU cumprod).
//
// It fails on a beta_schedule other than squaredcos_cap_v2, a variance_type other than
// fixed_small_log / learned_range, a prediction_type other than epsilon / sample, or
// num_train_timesteps < 2.
func New(cfg Config) (*Scheduler, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	n := cfg.NumTrainTimesteps
	s := &Scheduler{
		cfg:           cfg,
		betas:         make([]float32, n),
		alphas:        make([]float32, n),
		alphasCumprod: make([]float32, n),
	}
	prod := 1.0
	abPrev := alphaBar(0)
	for i := 0; i < n; i++ {
		ab := alphaBar(float64(i+1) / float64(n))
		beta := math.Min(1-ab/abPrev, 0.999)
		abPrev = ab
		s.betas[i] = float32(beta)
		s.alphas[i] = 1 - s.betas[i]
		prod *= float64(s.alphas[i])
		s.alphasCumprod[i] = float32(prod)
	}
	return s, nil
}

// Config returns the configuration the scheduler was built from.
func (s *Scheduler) Config() Config { return s.cfg }

// Betas returns a copy of the float32 β table (length NumTrainTimesteps).
func (s *Scheduler) Betas() []float32 { return append([]float32(nil), s.betas...) }

// Alphas returns a copy of the float32 α = 1 − β table.
func (s *Scheduler) Alphas() []float32 { return append([]float32(nil), s.alphas...) }

// AlphasCumprod returns a copy of the float32 ᾱ table (cumulative product of α).
func (s *Scheduler) AlphasCumprod() []float32 { return append([]float32(nil), s.alphasCumprod...) }

// Timesteps returns diffusers' set_timesteps(n) schedule: round(k·(N−1)/(n−1)) for
// k = n−1 … 0, where the ratio is float64 and the rounding is numpy's half-to-even
// (25 steps give …, 832, …, 500, …, 166, …; 7 steps give [999 832 666 500 333 166 0]).
// n must lie in [2, NumTrainTimesteps]: n = 1 divides by zero in diffusers.
func (s *Scheduler) Timesteps(n int) ([]int, error) {
	N := s.cfg.NumTrainTimesteps
	if n < 2 {
		return nil, fmt.Errorf("scheduler: %d inference steps is not supported (need at least 2; diffusers divides by n-1)", n)
	}
	if n > N {
		return nil, fmt.Errorf("scheduler: %d inference steps exceeds num_train_timesteps %d", n, N)
	}
	ratio := float64(N-1) / float64(n-1)
	ts := make([]int, n)
	for k := 0; k < n; k++ {
		ts[n-1-k] = int(math.RoundToEven(float64(k) * ratio))
	}
	return ts, nil
}

// Coeffs holds every scalar of one scheduler step, each a float32 computed exactly as
// diffusers computes it with 0-d float32 tensors.
type Coeffs struct {
	// T is the current timestep; Prev the timestep stepped to (−1 after the last step).
	T, Prev int
	// AlphaProd is ᾱ_t; AlphaProdPrev is ᾱ_prev, or 1 when Prev < 0.
	AlphaProd, AlphaProdPrev float32
	// Beta and Alpha are β_t and α_t when Prev == T−1, otherwise the effective values of the
	// skipped interval, β = 1 − ᾱ_t/ᾱ_prev and α = 1 − β.
	Beta, Alpha float32
	// CX0 = (ᾱ_prev^0.5 · β) / (1 − ᾱ_t) multiplies the (clipped) predicted x0;
	// CXt = α^0.5 · (1 − ᾱ_prev) / (1 − ᾱ_t) multiplies the current sample.
	CX0, CXt float32
	// Variance is the posterior variance β̃ = (1 − ᾱ_prev)/(1 − ᾱ_t) · β.
	Variance float32
	// LogVariance is log(max(β̃, 1e-20)), the fixed_small_log log-variance and the
	// learned_range lower end (which diffusers takes unclamped; the two agree whenever
	// β̃ ≥ 1e-20, i.e. at every step with t > 0). LogBeta is log(β), the learned_range upper end.
	LogVariance, LogBeta float32
	// Std is the fixed_small_log noise standard deviation exp(0.5·LogVariance) when
	// AddNoise is set, and 0 otherwise (no noise is added at t = 0).
	Std float32
	// SqrtAlphaProd = ᾱ_t^0.5 and SqrtOneMinusAlphaProd = (1 − ᾱ_t)^0.5, used to turn an
	// epsilon prediction into x0.
	SqrtAlphaProd, SqrtOneMinusAlphaProd float32
	// AddNoise reports whether the step draws and adds noise (t > 0).
	AddNoise bool
}

// Coeffs computes the scalars of a step from timestep t. With hasPrev the step goes to
// timestep prev (diffusers' prev_timestep argument; any prev < 0 means ᾱ_prev = 1).
// Without it (prev_timestep=None) prev is ignored and t−1 is used; the pipeline does that
// only on its last step, where t = 0 and so prev = −1. t must lie in
// [0, NumTrainTimesteps) and prev below NumTrainTimesteps.
func (s *Scheduler) Coeffs(t, prev int, hasPrev bool) (Coeffs, error) {
	N := s.cfg.NumTrainTimesteps
	if t < 0 || t >= N {
		return Coeffs{}, fmt.Errorf("scheduler: timestep %d outside [0, %d)", t, N)
	}
	if !hasPrev {
		prev = t - 1
	}
	if prev >= N {
		return Coeffs{}, fmt.Errorf("scheduler: previous timestep %d outside [.., %d)", prev, N)
	}
	c := Coeffs{T: t, Prev: prev, AddNoise: t > 0}
	c.AlphaProd = s.alphasCumprod[t]
	c.AlphaProdPrev = 1
	if prev >= 0 {
		c.AlphaProdPrev = s.alphasCumprod[prev]
	}
	betaProd := 1 - c.AlphaProd
	betaProdPrev := 1 - c.AlphaProdPrev
	if prev == t-1 {
		c.Beta = s.betas[t]
		c.Alpha = s.alphas[t]
	} else {
		c.Beta = 1 - c.AlphaProd/c.AlphaProdPrev
		c.Alpha = 1 - c.Beta
	}
	c.CX0 = float32(sqrt32(c.AlphaProdPrev)*c.Beta) / betaProd
	c.CXt = float32(sqrt32(c.Alpha)*betaProdPrev) / betaProd
	c.Variance = float32(betaProdPrev/betaProd) * c.Beta
	c.LogVariance = log32(max(c.Variance, float32(1e-20)))
	c.LogBeta = log32(c.Beta)
	if c.AddNoise {
		c.Std = exp32(float32(0.5 * c.LogVariance))
	}
	c.SqrtAlphaProd = sqrt32(c.AlphaProd)
	c.SqrtOneMinusAlphaProd = sqrt32(betaProd)
	return c, nil
}

// Schedule returns the coefficients of every step of an n-step run in the order the
// pipeline takes them: step i goes from Timesteps(n)[i] to Timesteps(n)[i+1], and the last
// step passes no previous timestep (so it goes from 0 to −1).
func (s *Scheduler) Schedule(n int) ([]Coeffs, error) {
	ts, err := s.Timesteps(n)
	if err != nil {
		return nil, err
	}
	out := make([]Coeffs, len(ts))
	for i, t := range ts {
		last := i == len(ts)-1
		prev := 0
		if !last {
			prev = ts[i+1]
		}
		if out[i], err = s.Coeffs(t, prev, !last); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Step applies one scheduler step (diffusers' step()) to flat NCHW float32 data of batch
// items. sample holds batch·n values. modelOutput holds batch·n values (the epsilon or x0
// prediction), or, with variance_type learned_range, batch·2n values: per batch item the
// first n are the prediction and the next n the variance value v (the model's output
// channels split in half). learned_range needs those v channels whenever c.AddNoise is set.
// noise holds batch·n standard-normal values and is required iff c.AddNoise; it is ignored
// otherwise. The result is written to out (batch·n values), which may alias sample but
// must not overlap modelOutput or noise otherwise.
//
// Per element, in float32 and in diffusers' order:
//
//	x0   = (sample − (1−ᾱ_t)^0.5·eps) / ᾱ_t^0.5   (epsilon) or model output (sample)
//	x0   = clamp(x0, −range, range)                (clip_sample)
//	mean = CX0·x0 + CXt·sample
//	std  = Std (fixed_small_log) or exp(0.5·(frac·log β + (1−frac)·log β̃)), frac = (v+1)/2
//	out  = mean + std·noise                        (only when t > 0)
func (s *Scheduler) Step(out, modelOutput, sample, noise []float32, batch int, c Coeffs) error {
	if batch <= 0 {
		return fmt.Errorf("scheduler: step: batch %d must be positive", batch)
	}
	if len(sample)%batch != 0 {
		return fmt.Errorf("scheduler: step: sample length %d is not a multiple of batch %d", len(sample), batch)
	}
	n := len(sample) / batch
	if len(out) != len(sample) {
		return fmt.Errorf("scheduler: step: out length %d, want %d", len(out), len(sample))
	}
	learned := s.cfg.VarianceType == "learned_range"
	var stride int
	switch {
	case len(modelOutput) == len(sample):
		stride = n
		if learned && c.AddNoise {
			return fmt.Errorf("scheduler: step: learned_range at t=%d needs the variance channels: model output length %d, want %d", c.T, len(modelOutput), 2*len(sample))
		}
	case learned && len(modelOutput) == 2*len(sample):
		stride = 2 * n
	default:
		want := fmt.Sprint(len(sample))
		if learned {
			want += " or " + fmt.Sprint(2*len(sample))
		}
		return fmt.Errorf("scheduler: step: model output length %d, want %s", len(modelOutput), want)
	}
	if c.AddNoise && len(noise) != len(sample) {
		return fmt.Errorf("scheduler: step: noise length %d, want %d (t=%d adds noise)", len(noise), len(sample), c.T)
	}

	p := s.Params(c)
	for b := 0; b < batch; b++ {
		pred := modelOutput[b*stride : b*stride+n]
		xs := sample[b*n : (b+1)*n]
		dst := out[b*n : (b+1)*n]
		for i := range n {
			var v, z float32
			if stride == 2*n {
				v = modelOutput[b*stride+n+i]
			}
			if c.AddNoise {
				z = noise[b*n+i]
			}
			dst[i] = p.Element(pred[i], v, xs[i], z)
		}
	}
	return nil
}

// Params returns the step's scalars in the form of tensor.SchedulerStep,
// which runs the same arithmetic (tensor.StepParams.Element) on a device.
func (s *Scheduler) Params(c Coeffs) tensor.StepParams {
	p := tensor.StepParams{
		Epsilon:               s.cfg.PredictionType == "epsilon",
		Learned:               s.cfg.VarianceType == "learned_range",
		Clip:                  s.cfg.ClipSample,
		AddNoise:              c.AddNoise,
		ClipRange:             s.cfg.ClipSampleRange,
		SqrtAlphaProd:         c.SqrtAlphaProd,
		SqrtOneMinusAlphaProd: c.SqrtOneMinusAlphaProd,
		CX0:                   c.CX0,
		CXt:                   c.CXt,
		Std:                   c.Std,
	}
	if p.Learned && c.AddNoise {
		p.MinLog = log32(c.Variance) // diffusers: variance.log(), unclamped
		p.MaxLog = c.LogBeta
	}
	return p
}

// sqrt32 is torch's float32 x**0.5 (sqrt, correctly rounded).
func sqrt32(x float32) float32 { return float32(math.Sqrt(float64(x))) }

// log32 is float32 log, evaluated in float64 and rounded once (correctly rounded in
// practice). It matched torch's float32 log on every value checked (appendix A, fixture).
func log32(x float32) float32 { return float32(math.Log(float64(x))) }

// exp32 is float32 exp, evaluated in float64 and rounded once (correctly rounded in
// practice). torch's float32 exp is not exactly this: x86 builds with MKL call MKL's vsExp
// (high-accuracy mode), builds without it SLEEF's expf_u10, and both differ from the
// correctly rounded value by one ulp for a small fraction of arguments. Against the
// fixture's learned_range step (torch 2.11, x86) the correctly rounded exp agrees on 6135
// of 6144 values, SLEEF's on 6053; the spec's appendix A standard deviations were made
// with SLEEF and differ from this in 4 of 30 entries, by one ulp.
func exp32(x float32) float32 { return float32(math.Exp(float64(x))) }
