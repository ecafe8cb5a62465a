package unclip

import "github.com/unclip-go/unclip/models/unet"

// activationFactor is how many of a U-Net's widest activations its step
// arena holds at once, with headroom: the planned Karlo arenas hold about
// ten (super-resolution: 801.5 MiB for 320×256×256 float32 activations of
// 80 MiB; the decoder: 100 MiB for 10 MiB at batch 2).
const activationFactor = 12

// ImageBytes estimates the memory one image adds to a run, in bytes: the
// largest step arena per image (a dozen of the widest activation of the
// decoder, doubled by guidance, or of a super-resolution network) plus the
// results kept on the host. Weights are not included: they do not grow
// with the batch. It is an estimate for choosing batch sizes, not a plan.
func (p *Pipeline) ImageBytes(guidance bool) int64 {
	widest := func(m *unet.Model, rows int64) int64 {
		if m == nil || len(m.Config.BlockOutChannels) == 0 {
			return 0
		}
		h, w := sampleSize(m.Config)
		return rows * int64(m.Config.BlockOutChannels[0]) * int64(h) * int64(w) * 4
	}
	cfg := int64(1)
	if guidance {
		cfg = 2
	}
	act := max(widest(p.Decoder, cfg), widest(p.SRFirst, 1), widest(p.SRLast, 1))
	var results int64
	if p.SRLast != nil {
		h, w := sampleSize(p.SRLast.Config)
		results = 2 * int64(h) * int64(w) * 3 * 4 // the float32 image and its NHWC copy
	}
	return activationFactor*act + results
}
