package unclip

import (
	"fmt"
	"slices"

	"github.com/unclip-go/unclip/models/torchrand"
)

// Noise supplies the standard-normal draws of a run, in the pipeline's draw
// order (prior latents, prior steps, decoder latents, decoder steps,
// super-res latents, super-res steps).
type Noise interface {
	// Randn returns numel(shape) float32 standard-normal values, row major.
	Randn(shape []int) ([]float32, error)
}

// TorchNoise reproduces torch.randn on a CPU torch.Generator seeded with
// manual_seed(seed), so a seed gives diffusers' noise.
type TorchNoise struct{ g *torchrand.Generator }

// NewTorchNoise returns a generator seeded like torch.Generator().manual_seed(seed).
func NewTorchNoise(seed uint64) *TorchNoise { return &TorchNoise{g: torchrand.New(seed)} }

// Randn draws like torch.randn(shape, generator=g).
func (n *TorchNoise) Randn(shape []int) ([]float32, error) {
	return n.g.Randn(numel(shape)), nil
}

// ReplayNoise returns recorded draws in order, checking their shapes.
type ReplayNoise struct {
	Draws  [][]float32
	Shapes [][]int
	next   int
}

// Randn returns the next recorded draw.
func (r *ReplayNoise) Randn(shape []int) ([]float32, error) {
	if r.next >= len(r.Draws) {
		return nil, fmt.Errorf("replay noise: draw %d of shape %v requested, only %d recorded", r.next, shape, len(r.Draws))
	}
	i := r.next
	if r.Shapes != nil && !slices.Equal(r.Shapes[i], shape) {
		return nil, fmt.Errorf("replay noise: draw %d has shape %v, the pipeline asks for %v", i, r.Shapes[i], shape)
	}
	if len(r.Draws[i]) != numel(shape) {
		return nil, fmt.Errorf("replay noise: draw %d has %d values, the pipeline asks for %v", i, len(r.Draws[i]), shape)
	}
	r.next++
	return r.Draws[i], nil
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}
