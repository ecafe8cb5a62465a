package nn

import (
	"hash/fnv"
	"math"
	"strings"

	"github.com/unclip-go/unclip/tensor"
)

// NewRandomStateDict returns a state dict that makes up every weight a
// layer asks for, deterministically from seed and the weight's name, so a
// model of any size can be built without a checkpoint (for benchmarks and
// the built-in demo). Matrices and kernels are uniform with the variance of
// torch's default initialisation (1/fan_in); normalisation weights are near
// 1; other vectors are small. The weights are float32 on the CPU, or
// converted to dtype when it is F16 or BF16.
func NewRandomStateDict(seed uint64, dtype tensor.DType) *StateDict {
	sd := NewStateDict(map[string]*tensor.Tensor{})
	sd.random = &randomInit{seed: seed, dtype: dtype}
	return sd
}

type randomInit struct {
	seed  uint64
	dtype tensor.DType
}

func (r *randomInit) make(sd *StateDict, key string, shape []int) *tensor.Tensor {
	h := fnv.New64a()
	h.Write([]byte(key))
	state := h.Sum64() ^ r.seed*0x9e3779b97f4a7c15
	next := func() float32 { // splitmix64 → uniform in [−1, 1)
		state += 0x9e3779b97f4a7c15
		z := state
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		z ^= z >> 31
		return float32(z>>40)/float32(1<<23) - 1
	}
	n := 1
	for _, d := range shape {
		n *= d
	}
	// Host memory outside the Go heap, released with the state dict.
	st, err := tensor.CPU().Reserve(4 * n)
	if err != nil {
		panic(err) // out of memory: as make would
	}
	sd.owned = append(sd.owned, st)
	v := tensor.Float32View(st.Host)[:n]
	last := key[strings.LastIndexByte(key, '.')+1:]
	switch {
	case strings.HasSuffix(key, "clip_std"):
		for i := range v {
			v[i] = 1 + 0.1*next()*next()
		}
	case len(shape) == 1 && last == "weight" && strings.Contains(key, "norm"):
		for i := range v {
			v[i] = 1 + 0.05*next()
		}
	case len(shape) >= 2 && last == "weight":
		fan := n / shape[0]
		a := float32(math.Sqrt(3 / float64(max(fan, 1))))
		for i := range v {
			v[i] = a * next()
		}
	default:
		for i := range v {
			v[i] = 0.02 * next()
		}
	}
	t := tensor.OnStorage(st, tensor.F32, shape...)
	if r.dtype == tensor.F16 || r.dtype == tensor.BF16 {
		t = t.Cast(r.dtype) // the float32 values are not needed any more
		st.Free()
		sd.owned = sd.owned[:len(sd.owned)-1]
	}
	return t
}
