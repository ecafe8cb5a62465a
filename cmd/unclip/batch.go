package main

import (
	"github.com/unclip-go/unclip/models/unclip"
	"github.com/unclip-go/unclip/tensor"
)

// imagesThatFit is how many images one batch may hold in the memory left
// after loading: the device's budget on a device with a memory of its
// own, else the host's available memory; at least 1.
func imagesThatFit(p *unclip.Pipeline, guidance bool) int {
	per := p.ImageBytes(guidance)
	if per <= 0 {
		return maxImages
	}
	var free int64
	if mr, ok := p.Device.(tensor.MemoryReporter); ok {
		limit, inUse := mr.Memory()
		free = limit - inUse
		if p.Offload {
			// Only one stage's weights are held at a time: leave room for the
			// largest of them.
			free -= p.WeightBytes("") / 2
		}
	} else {
		free = int64(memAvailable())
	}
	if free <= 0 {
		return 1
	}
	return int(max(1, min(free*3/4/per, maxImages)))
}
