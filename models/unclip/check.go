package unclip

import "github.com/unclip-go/unclip/nn"

// Check reads a model folder as Load does — model_index.json, every
// config, the tokenizer, and every weight file's header checked against
// the configs (names, shapes, types) — without reading the weights, and
// reports the first problem. inspect uses it to say what generate would.
func Check(dir, variant string) error {
	p, err := Load(dir, LoadOptions{Variant: variant, headersOnly: true})
	if err != nil {
		return err
	}
	for _, sd := range p.weights() {
		sd.Release()
	}
	return nil
}

// ComponentParams is the parameter count of one component.
type ComponentParams struct {
	Component string
	Params    int64
}

// ParameterCounts lists the loaded components' parameter counts, in
// pipeline order.
func (p *Pipeline) ParameterCounts() []ComponentParams {
	var out []ComponentParams
	add := func(name string, sd *nn.StateDict) {
		if sd != nil {
			out = append(out, ComponentParams{name, sd.NumParams()})
		}
	}
	if p.Text != nil {
		add(TextEncoder, p.Text.Weights)
	}
	if p.Image != nil {
		add(ImageEncoder, p.Image.Weights)
	}
	if p.Prior != nil {
		add(Prior, p.Prior.Weights)
	}
	if p.TextProj != nil {
		add(TextProj, p.TextProj.Weights)
	}
	if p.Decoder != nil {
		add(Decoder, p.Decoder.Weights)
	}
	if p.SRFirst != nil {
		add(SuperResFirst, p.SRFirst.Weights)
	}
	if p.SRLast != nil {
		add(SuperResLast, p.SRLast.Weights)
	}
	return out
}
