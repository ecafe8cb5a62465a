// Package torchrand reproduces torch's CPU random number generator: the MT19937 engine
// behind torch.Generator() / torch.manual_seed, and torch.randn for float32 tensors.
//
// A Generator seeded with New(seed) yields the same 32-bit stream as
// torch.Generator().manual_seed(seed), and Randn(n) consumes it exactly as
// torch.randn(n, generator=g) (or any float32 shape with n elements) does, so a sequence of
// draws stays aligned with torch draw for draw. The uniforms match bit for bit, and so do
// the normals of torch's x86 vectorised path (n ≥ 16, every tensor the pipeline draws);
// see Randn for the details and the rare exceptions.
package torchrand

// MT19937 parameters (Matsumoto & Nishimura).
const (
	mtN       = 624
	mtM       = 397
	matrixA   = 0x9908b0df
	upperMask = 0x80000000
	lowerMask = 0x7fffffff
)

// Generator is torch's CPUGeneratorImpl: an MT19937 engine plus the cached second value of
// the scalar Box-Muller transform. It is not safe for concurrent use.
type Generator struct {
	seed  uint64
	state [mtN]uint32
	next  int // index of the next state word to temper; mtN means "twist first"

	// nextNormal caches the second Box-Muller value of the scalar (double) normal path,
	// like CPUGeneratorImpl::next_double_normal_sample_.
	nextNormal    float64
	hasNextNormal bool
}

// New returns a generator in the state of torch.Generator().manual_seed(seed). torch
// initialises MT19937 with init_genrand on the seed truncated to 32 bits, so seeds that
// differ only above bit 31 give the same stream; Seed still reports the full value.
func New(seed uint64) *Generator {
	g := &Generator{}
	g.Reseed(seed)
	return g
}

// Reseed resets g to the state of New(seed), dropping any cached normal value
// (torch's manual_seed on an existing generator).
func (g *Generator) Reseed(seed uint64) {
	g.seed = seed
	g.state[0] = uint32(seed)
	for j := 1; j < mtN; j++ {
		prev := g.state[j-1]
		g.state[j] = 1812433253*(prev^(prev>>30)) + uint32(j)
	}
	g.next = mtN
	g.hasNextNormal = false
	g.nextNormal = 0
}

// Seed returns the seed g was created or last reseeded with (torch's initial_seed()).
func (g *Generator) Seed() uint64 { return g.seed }

// twist regenerates the 624-word state block.
func (g *Generator) twist() {
	s := &g.state
	for i := 0; i < mtN; i++ {
		y := s[i]&upperMask | s[(i+1)%mtN]&lowerMask
		v := s[(i+mtM)%mtN] ^ y>>1
		if y&1 != 0 {
			v ^= matrixA
		}
		s[i] = v
	}
	g.next = 0
}

// Uint32 returns the next tempered 32-bit output of the engine (torch's random()).
func (g *Generator) Uint32() uint32 {
	if g.next >= mtN {
		g.twist()
	}
	y := g.state[g.next]
	g.next++
	y ^= y >> 11
	y ^= y << 7 & 0x9d2c5680
	y ^= y << 15 & 0xefc60000
	y ^= y >> 18
	return y
}

// Uint64 returns two consecutive 32-bit outputs, the first as the high half
// (torch's random64()).
func (g *Generator) Uint64() uint64 {
	hi := g.Uint32()
	lo := g.Uint32()
	return uint64(hi)<<32 | uint64(lo)
}

// Float32 returns a uniform value in [0, 1) from one 32-bit draw, as torch's
// uniform_real_distribution<float>(0, 1): the low 24 bits times 2^-24.
func (g *Generator) Float32() float32 {
	return float32(g.Uint32()&(1<<24-1)) * (1.0 / (1 << 24))
}

// Float64 returns a uniform value in [0, 1) from two 32-bit draws, as torch's
// uniform_real_distribution<double>(0, 1): the low 53 bits of Uint64 times 2^-53.
func (g *Generator) Float64() float64 {
	return float64(g.Uint64()&(1<<53-1)) * (1.0 / (1 << 53))
}
