package unclip

import (
	"fmt"

	"github.com/unclip-go/unclip/nn"
	"github.com/unclip-go/unclip/tensor"
)

// Residency selects which weights live on the device.
type Residency int

const (
	// AutoResidency keeps every weight on the device when they fit in its
	// memory (tensor.MemoryReporter: the budget, or the device-local heap)
	// with a quarter to spare for the stages' arenas, and offloads
	// otherwise.
	AutoResidency Residency = iota
	// Resident uploads every weight once, at load time.
	Resident
	// Offload keeps only the running stage's weights on the device.
	Offload
)

// ParseResidency reads "auto", "true" (offload) or "false" (resident), the
// values of the CLI's --offload flag.
func ParseResidency(s string) (Residency, error) {
	switch s {
	case "auto", "":
		return AutoResidency, nil
	case "true", "1", "on":
		return Offload, nil
	case "false", "0", "off":
		return Resident, nil
	}
	return 0, fmt.Errorf("--offload %q: want auto, true or false", s)
}

// weights lists every loaded model's weights.
func (p *Pipeline) weights() []*nn.StateDict {
	return p.stageWeights("text", "image", "prior", "decoder", "super_res")
}

// stageWeights lists the weights of the models that the given stages run.
func (p *Pipeline) stageWeights(stages ...string) []*nn.StateDict {
	var out []*nn.StateDict
	add := func(sds ...*nn.StateDict) {
		for _, sd := range sds {
			if sd != nil {
				out = append(out, sd)
			}
		}
	}
	for _, s := range stages {
		switch s {
		case "text":
			if p.Text != nil {
				add(p.Text.Weights)
			}
		case "image":
			if p.Image != nil {
				add(p.Image.Weights)
			}
		case "prior":
			if p.Prior != nil {
				add(p.Prior.Weights)
			}
		case "decoder":
			if p.TextProj != nil {
				add(p.TextProj.Weights)
			}
			if p.Decoder != nil {
				add(p.Decoder.Weights)
			}
		case "super_res":
			if p.SRFirst != nil {
				add(p.SRFirst.Weights)
			}
			if p.SRLast != nil {
				add(p.SRLast.Weights)
			}
		}
	}
	return out
}

// WeightBytes is the device size of the weights a stage runs ("text",
// "image", "prior", "decoder", "super_res"), or of every model for "".
func (p *Pipeline) WeightBytes(stage string) int64 {
	sds := p.weights()
	if stage != "" {
		sds = p.stageWeights(stage)
	}
	var n int64
	for _, sd := range sds {
		n += sd.DeviceBytes()
	}
	return n
}

// settleResidency decides, after loading with every device weight left on
// the host, whether to upload them all now (Resident) or per stage.
func (p *Pipeline) settleResidency(r Residency) error {
	total := p.WeightBytes("")
	if total == 0 { // weights already live on the device (the CPU)
		return nil
	}
	if r == AutoResidency {
		r = Resident
		if mr, ok := p.Device.(tensor.MemoryReporter); ok {
			if limit, _ := mr.Memory(); limit > 0 && total+total/4 > limit {
				r = Offload
			}
		}
	}
	if r == Offload {
		p.Offload = true
		return nil
	}
	for _, sd := range p.weights() {
		if err := sd.Restore(); err != nil {
			return fmt.Errorf("uploading %d MiB of weights to %s (use --offload to keep only the running stage's): %w",
				total>>20, p.Device.Name(), err)
		}
	}
	return nil
}

// Acquire makes the weights of a stage ("text", "image", "prior",
// "decoder", "super_res") resident on the device. The pipeline's stages call it
// themselves; call it (and Release) around direct use of a model with
// offload on.
func (p *Pipeline) Acquire(stage string) error {
	return p.restore(stage, p.stageWeights(stage))
}

// restore uploads the evicted weights of sds (used by stage), naming the
// stage and the size when the device cannot take them.
func (p *Pipeline) restore(stage string, sds []*nn.StateDict) error {
	for _, sd := range sds {
		if err := sd.Restore(); err != nil {
			return fmt.Errorf("%s stage: uploading %d MiB of weights to %s: %w", stage, sd.DeviceBytes()>>20, p.Device.Name(), err)
		}
	}
	return nil
}

// Release ends a stage: its weights leave the device (Offload) or are
// released altogether (OneShot), once the stage's work has finished.
func (p *Pipeline) Release(stage string) {
	if !p.Offload && !p.OneShot {
		return
	}
	_ = p.Device.Sync()
	for _, sd := range p.stageWeights(stage) {
		if p.OneShot {
			_ = sd.Release()
		} else {
			sd.Evict()
		}
	}
}
