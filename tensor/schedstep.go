package tensor

import "math"

// StepParams are the scalars of one UnCLIP scheduler step (diffusers'
// UnCLIPScheduler.step), every one a float32 computed as diffusers does
// (package scheduler derives them from its tables).
type StepParams struct {
	Epsilon               bool    // the model predicts noise; otherwise it predicts x0
	Learned               bool    // learned_range variance: the model output also carries v
	Clip                  bool    // clamp x0 to ±ClipRange
	AddNoise              bool    // t > 0: add std·noise
	ClipRange             float32 //
	SqrtAlphaProd         float32 // ᾱ_t^0.5
	SqrtOneMinusAlphaProd float32 // (1 − ᾱ_t)^0.5
	CX0, CXt              float32 // posterior mean coefficients of x0 and of the sample
	Std                   float32 // fixed_small_log standard deviation
	MinLog, MaxLog        float32 // learned_range: log β̃ and log β
}

// Element computes one output value from the prediction (ε or x0), the
// variance value v (learned_range only), the sample x and the noise z, in
// float32 and in diffusers' order of operations. Every product is rounded
// before it is added (no fused multiply-add), as torch's separate
// tensor ops do.
func (p *StepParams) Element(pred, v, x, z float32) float32 {
	x0 := pred
	if p.Epsilon {
		x0 = (x - float32(p.SqrtOneMinusAlphaProd*pred)) / p.SqrtAlphaProd
	}
	if p.Clip {
		if x0 < -p.ClipRange {
			x0 = -p.ClipRange
		} else if x0 > p.ClipRange {
			x0 = p.ClipRange
		}
	}
	mean := float32(p.CX0*x0) + float32(p.CXt*x)
	if p.AddNoise {
		std := p.Std
		if p.Learned {
			frac := (v + 1) / 2
			logvar := float32(frac*p.MaxLog) + float32((1-frac)*p.MinLog)
			std = float32(math.Exp(float64(float32(0.5 * logvar))))
		}
		mean += float32(std * z)
	}
	return mean
}

const (
	stepEpsilon = 1 << iota
	stepLearned
	stepClip
	stepAddNoise
	stepDynamic // the per-step scalars come from Src[3] (see StepVector)
)

// StepVectorLen is the length of a StepVector.
const StepVectorLen = 9

// StepVector returns the per-step scalars of p as the F32 vector that
// SchedulerStepDyn reads from a tensor: ClipRange, SqrtAlphaProd,
// SqrtOneMinusAlphaProd, CX0, CXt, Std, MinLog, MaxLog, and 1 when noise is
// added (else 0).
func (p StepParams) StepVector() []float32 {
	add := float32(0)
	if p.AddNoise {
		add = 1
	}
	return []float32{p.ClipRange, p.SqrtAlphaProd, p.SqrtOneMinusAlphaProd, p.CX0, p.CXt, p.Std, p.MinLog, p.MaxLog, add}
}

// StepFromVector is the inverse of StepVector for the per-step scalars,
// with the mode flags (Epsilon, Learned, Clip) taken from mode.
func StepFromVector(mode StepParams, v []float32) StepParams {
	p := mode
	p.ClipRange, p.SqrtAlphaProd, p.SqrtOneMinusAlphaProd, p.CX0, p.CXt, p.Std, p.MinLog, p.MaxLog = v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]
	p.AddNoise = v[8] != 0
	return p
}

// SchedulerStep applies one scheduler step to device tensors: sample
// (B, C, ...) and noise of the same shape (nil when p.AddNoise is false),
// and the model output (B, C, ...) — or (B, 2C, ...) with learned_range,
// whose channels C..2C−1 are the variance values. The result has the
// sample's shape.
func SchedulerStep(modelOutput, sample, noise *Tensor, p StepParams) *Tensor {
	checkStep(modelOutput, sample, noise, p)
	out := newOut(sample, F32, sample.shape...)
	src := []*Tensor{modelOutput, sample, nil}
	if p.AddNoise {
		src[2] = noise
	}
	n := &Node{Op: OpSchedulerStep, Dst: out, Src: src}
	n.Int[0] = stepFlags(p)
	n.Float = [8]float32{p.ClipRange, p.SqrtAlphaProd, p.SqrtOneMinusAlphaProd, p.CX0, p.CXt, p.Std, p.MinLog, p.MaxLog}
	return run(n)
}

func checkStep(modelOutput, sample, noise *Tensor, p StepParams) {
	if sample.Rank() < 2 || modelOutput.Rank() != sample.Rank() || modelOutput.Dim(0) != sample.Dim(0) {
		shapePanic("tensor.SchedulerStep: model output %v, sample %v", modelOutput.shape, sample.shape)
	}
	c := sample.Dim(1)
	want := c
	if p.Learned {
		want = 2 * c
	}
	if modelOutput.Dim(1) != want || !SameShape(modelOutput.shape[2:], sample.shape[2:]) {
		shapePanic("tensor.SchedulerStep: model output %v for sample %v (learned %v)", modelOutput.shape, sample.shape, p.Learned)
	}
	if p.AddNoise && (noise == nil || !SameShape(noise.shape, sample.shape)) {
		shapePanic("tensor.SchedulerStep: noise required with the sample's shape %v", sample.shape)
	}
}

// SchedulerStepDyn is SchedulerStep with the per-step scalars read from
// params, an F32 tensor of StepVectorLen elements on the sample's device
// (StepVector), so that one captured graph serves every step of a stage.
// mode gives the flags fixed for the stage (Epsilon, Learned, Clip); noise
// must be given, and is added only when the vector's last element is not 0.
func SchedulerStepDyn(modelOutput, sample, noise, params *Tensor, mode StepParams) *Tensor {
	if params == nil || params.dtype != F32 || params.Numel() != StepVectorLen {
		shapePanic("tensor.SchedulerStepDyn: params must be F32[%d]", StepVectorLen)
	}
	mode.AddNoise = true
	checkStep(modelOutput, sample, noise, mode)
	n := &Node{Op: OpSchedulerStep, Dst: newOut(sample, F32, sample.shape...), Src: []*Tensor{modelOutput, sample, noise, params.Reshape(StepVectorLen)}}
	n.Int[0] = stepFlags(mode) | stepDynamic
	return run(n)
}

func stepFlags(p StepParams) int {
	flags := 0
	for _, f := range []struct {
		on  bool
		bit int
	}{{p.Epsilon, stepEpsilon}, {p.Learned, stepLearned}, {p.Clip, stepClip}, {p.AddNoise, stepAddNoise}} {
		if f.on {
			flags |= f.bit
		}
	}
	return flags
}

// StepDynamic reports whether an OpSchedulerStep node reads its per-step
// scalars from Src[3] (SchedulerStepDyn); StepParamsOf then gives only the
// mode flags.
func StepDynamic(n *Node) bool { return n.Int[0]&stepDynamic != 0 }

// StepParamsOf decodes the parameters of an OpSchedulerStep node.
func StepParamsOf(n *Node) StepParams {
	f := n.Int[0]
	return StepParams{Epsilon: f&stepEpsilon != 0, Learned: f&stepLearned != 0, Clip: f&stepClip != 0, AddNoise: f&stepAddNoise != 0,
		ClipRange: n.Float[0], SqrtAlphaProd: n.Float[1], SqrtOneMinusAlphaProd: n.Float[2], CX0: n.Float[3], CXt: n.Float[4],
		Std: n.Float[5], MinLog: n.Float[6], MaxLog: n.Float[7]}
}
