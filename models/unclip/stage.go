package unclip

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime/metrics"
	"time"
	"unsafe"

	"github.com/unclip-go/unclip/models/scheduler"
	"github.com/unclip-go/unclip/nn"
	"github.com/unclip-go/unclip/tensor"
)

// A denoising stage runs the same step — network forward, guidance,
// scheduler step — on the same shapes every time. In planned mode (the
// default) the step is captured once as a tensor.Graph, planned into one
// arena and replayed every step: the only per-step host work is writing
// the step's inputs into the arena (the latent, and one row each of the
// stage's timestep, noise and scheduler tables, uploaded once when the
// stage starts), so nothing is allocated per step and a recording backend
// gets one uninterrupted stream with no wait until the stage's result is
// read. Request.Eager runs the same step function op by op instead.

// stepFunc is one denoising step: the next latent from the latent, the
// timestep sinusoid, the noise and the scheduler's per-step vector
// (tensor.StepVector). The same function runs eagerly or under capture.
type stepFunc func(lat, tsin, noise, params *tensor.Tensor) (*tensor.Tensor, error)

// stage describes one denoising loop.
type stage struct {
	name     string
	sch      *scheduler.Scheduler
	steps    []scheduler.Coeffs
	lat      *tensor.Tensor // the initial latent, on the device
	sinusoid func(t int) *tensor.Tensor
	// nets are the step functions; net(i) picks the one for step i (the
	// super-resolution stage uses its second network on the last step).
	nets []stepFunc
	net  func(i int) int
	// netWeights, when set, gives each network's weights: with offload
	// only the running network's are then on the device (the caller has
	// not acquired them); otherwise the caller made the stage resident.
	netWeights func(k int) []*nn.StateDict
	// post makes the stage's result from the final latent (read before the
	// stage's memory goes).
	post func(lat *tensor.Tensor) *tensor.Tensor
}

// residentNet makes network k's weights the only ones of the stage on the
// device (offload with per-network weights); earlier work on the others is
// finished before their memory is reused.
func (p *Pipeline) residentNet(st *stage, k int) error {
	if !p.Offload || st.netWeights == nil {
		return nil
	}
	for j := range st.nets {
		if j != k {
			for _, sd := range st.netWeights(j) {
				sd.Evict()
			}
		}
	}
	return p.restore(st.name, st.netWeights(k))
}

// StageStats describes the memory and execution of one denoising stage.
type StageStats struct {
	// Planned is set when the steps were replayed from a captured graph.
	Planned bool
	// Nodes is the number of ops per step (of the first graph).
	Nodes int
	// ArenaBytes is the planned arena: every intermediate of one step,
	// with reuse (shared by the stage's graphs).
	ArenaBytes int64
	// NaiveBytes is what the intermediates would take without reuse.
	NaiveBytes int64
	// FLOPsPerStep is the arithmetic of one step (tensor.Graph.FLOPs of
	// the largest network's graph), for estimates such as an ETA.
	FLOPsPerStep int64
	// WeightBytes is the device memory of the stage's models' weights; on
	// the CPU (no separate device) the constant storage the step reads: the
	// weights and the stage's conditioning.
	WeightBytes int64
	// AllocBytesPerStep is the Go heap allocated per replayed step
	// (runtime/metrics), averaged over the steps after the first.
	AllocBytesPerStep int64
	// Submits counts the backend's submissions during the steps, and
	// HostWaits its host waits during the whole stage, the final read of
	// its result included (recording backends only; see tensor.Counters).
	Submits, HostWaits int64
	// Dispatches counts the kernel dispatches submitted during the steps
	// (recording backends only).
	Dispatches int64
}

// heapAllocs reads the Go heap's cumulative allocated bytes.
func heapAllocs() int64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// runStage runs the stage's steps and returns st.post of the final latent.
func (p *Pipeline) runStage(ctx context.Context, req *Request, st *stage) (*tensor.Tensor, StageStats, error) {
	var stats StageStats
	dev := p.Device
	n := len(st.steps)
	shape := st.lat.Shape()
	// The per-step tables: noise drawn in the order diffusers draws it
	// (one tensor per step that adds noise), timestep sinusoids and
	// scheduler vectors, each uploaded once.
	per := st.lat.Numel()
	noise := make([]float32, n*per)
	var tsins []float32
	params := make([]float32, 0, n*tensor.StepVectorLen)
	var sinShape []int
	for i, c := range st.steps {
		if c.AddNoise {
			z, err := req.Noise.Randn(shape)
			if err != nil {
				return nil, stats, err
			}
			copy(noise[i*per:], z)
		}
		s := st.sinusoid(c.T)
		sinShape = s.Shape()
		v, err := s.Float32s()
		if err != nil {
			return nil, stats, err
		}
		tsins = append(tsins, v...)
		params = append(params, st.sch.Params(c).StepVector()...)
	}
	var reserved []*tensor.Storage
	defer func() {
		for _, s := range reserved {
			s.Free()
		}
	}()
	upload := func(v []float32, shape ...int) (*tensor.Tensor, error) {
		s, err := dev.Reserve(4 * len(v))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", st.name, err)
		}
		reserved = append(reserved, s)
		if len(v) > 0 {
			if err := dev.Write(s, 0, unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))); err != nil {
				return nil, fmt.Errorf("%s: %w", st.name, err)
			}
		}
		return tensor.OnStorage(s, tensor.F32, shape...), nil
	}
	noiseT, err := upload(noise, append([]int{n}, shape...)...)
	if err != nil {
		return nil, stats, err
	}
	sinT, err := upload(tsins, append([]int{n}, sinShape...)...)
	if err != nil {
		return nil, stats, err
	}
	parT, err := upload(params, n, tensor.StepVectorLen)
	if err != nil {
		return nil, stats, err
	}
	row := func(t *tensor.Tensor, i int) *tensor.Tensor { return t.Index(0, i) }
	counters, _ := dev.(tensor.Counters)
	var sub0, wait0, disp0 int64
	if counters != nil {
		sub0, wait0, disp0 = counters.Counters()
	}
	lat := st.lat
	t0 := time.Now()
	progress := func(i int) {
		req.progress(Event{Stage: st.name, Step: i + 1, Total: n, Elapsed: time.Since(t0), Done: i == n-1})
	}
	if req.Eager {
		for i := range st.steps {
			if err := ctx.Err(); err != nil {
				return nil, stats, err
			}
			next, err := st.nets[st.net(i)](lat, row(sinT, i), row(noiseT, i), row(parT, i))
			if err != nil {
				return nil, stats, err
			}
			lat = next
			if err := p.settle(lat); err != nil {
				return nil, stats, fmt.Errorf("%s step %d: %w", st.name, i+1, err)
			}
			progress(i)
		}
		out := st.post(lat)
		freeAll(lat)
		return out, stats, out.Err()
	}

	// Planned: capture each network's step once. The step graph reads its
	// timestep, noise and scheduler rows from the tables at a step counter
	// that it advances itself, and writes the new latent over its input,
	// so a replay needs nothing from the host: on a recording backend each
	// step is one resubmission of commands recorded once.
	succ := make([]int32, n+1) // counter → counter + 1 (the last stays)
	for i := range succ {
		succ[i] = int32(min(i+1, n))
	}
	succT := tensor.FromBytes(tensor.I32, unsafe.Slice((*byte)(unsafe.Pointer(&succ[0])), 4*len(succ)), n+1, 1).To(dev)
	defer freeAll(succT)
	specs := []tensor.Spec{{DType: tensor.F32, Shape: shape}, {DType: tensor.I32, Shape: []int{1}}}
	graphs := make([]*tensor.Graph, len(st.nets))
	for i := range st.steps {
		k := st.net(i)
		if graphs[k] != nil {
			continue
		}
		if err := p.residentNet(st, k); err != nil {
			return nil, stats, err
		}
		g, err := tensor.Capture(fmt.Sprintf("%s step", st.name), dev, specs, func(in []*tensor.Tensor) ([]*tensor.Tensor, error) {
			lat, c := in[0], in[1]
			row := func(t *tensor.Tensor, shape ...int) *tensor.Tensor {
				return tensor.Embedding(t.Reshape(n, -1), c).Reshape(shape...)
			}
			next, err := st.nets[k](lat, row(sinT, sinShape...), row(noiseT, shape...), row(parT, tensor.StepVectorLen))
			if err != nil {
				return nil, err
			}
			if err := tensor.CopyInto(lat, next); err != nil {
				return nil, err
			}
			if err := tensor.CopyInto(c, tensor.Embedding(succT, c).Reshape(1)); err != nil {
				return nil, err
			}
			return []*tensor.Tensor{lat}, nil
		})
		if err != nil {
			return nil, stats, err
		}
		graphs[k] = g
		defer g.Release()
		stats.ArenaBytes = max(stats.ArenaBytes, int64(g.ArenaBytes()))
		stats.NaiveBytes = max(stats.NaiveBytes, int64(g.ValueBytes()))
		stats.FLOPsPerStep = max(stats.FLOPsPerStep, g.FLOPs())
		stats.WeightBytes += int64(g.ConstantBytes())
		if stats.Nodes == 0 {
			stats.Nodes = g.Len()
		}
	}
	stats.Planned = true
	if w := p.WeightBytes(st.name); w > 0 {
		stats.WeightBytes = w // the stage's models on the device
		if p.Offload && st.netWeights != nil {
			// One network at a time: the largest one's.
			stats.WeightBytes = 0
			for k := range st.nets {
				var nb int64
				for _, sd := range st.netWeights(k) {
					nb += sd.DeviceBytes()
				}
				stats.WeightBytes = max(stats.WeightBytes, nb)
			}
		}
	}
	req.progress(Event{Stage: st.name, Step: 0, Total: n, Plan: &stats})
	if req.DryRun {
		out := st.post(lat)
		return out, stats, out.Err()
	}
	arena, err := dev.Reserve(int(max(stats.ArenaBytes, 256)))
	if err != nil {
		return nil, stats, fmt.Errorf("%s: arena of %d MiB: %w", st.name, stats.ArenaBytes>>20, err)
	}
	reserved = append(reserved, arena)
	execs := make([]*tensor.Exec, len(graphs))
	for k, g := range graphs {
		if g == nil {
			continue
		}
		if execs[k], err = g.Bind(arena); err != nil {
			return nil, stats, err
		}
		defer execs[k].Free()
	}
	// The latent and the counter live in the running graph's inputs; when
	// the network changes they move (through copies outside the arena,
	// which the graphs share) to the next graph's.
	zero := tensor.FromBytes(tensor.I32, make([]byte, 4), 1).To(dev)
	defer freeAll(zero)
	var cur *tensor.Exec
	var a1 int64
	flusher, _ := dev.(tensor.Flusher)
	for i := range st.steps {
		if err := ctx.Err(); err != nil {
			return nil, stats, err
		}
		if i == 1 {
			a1 = heapAllocs()
		}
		k := st.net(i)
		if ex := execs[k]; ex != cur {
			latIn, cIn := lat, zero
			if cur != nil {
				latIn, cIn = cur.Input(0).Cast(tensor.F32), cur.Input(1).Cast(tensor.I32)
			}
			if err := p.residentNet(st, k); err != nil {
				return nil, stats, err
			}
			if err := errors.Join(tensor.CopyInto(ex.Input(0), latIn), tensor.CopyInto(ex.Input(1), cIn)); err != nil {
				return nil, stats, fmt.Errorf("%s step %d: %w", st.name, i+1, err)
			}
			if cur != nil {
				freeAll(latIn, cIn)
			}
			if _, err := ex.Record(); err != nil && !errors.Is(err, tensor.ErrNoRecording) {
				return nil, stats, err
			}
			cur = ex
		}
		if flusher != nil {
			flusher.Hold()
		}
		if err := cur.RunContext(ctx); err != nil {
			if ctx.Err() != nil {
				return nil, stats, ctx.Err()
			}
			return nil, stats, fmt.Errorf("%s step %d: %w", st.name, i+1, err)
		}
		if flusher != nil {
			if err := flusher.Flush(); err != nil {
				return nil, stats, fmt.Errorf("%s step %d: %w", st.name, i+1, err)
			}
		}
		progress(i)
	}
	if n > 1 {
		stats.AllocBytesPerStep = (heapAllocs() - a1) / int64(n-1)
	}
	var s1, d1 int64
	if counters != nil {
		s1, _, d1 = counters.Counters()
	}
	// The result, read out of the arena; one wait: it must be complete
	// before the arena and tables are released.
	out := st.post(cur.Input(0))
	if err := p.settle(out); err != nil {
		return nil, stats, fmt.Errorf("%s: %w", st.name, err)
	}
	if counters != nil {
		_, w1, _ := counters.Counters()
		stats.Submits, stats.HostWaits, stats.Dispatches = s1-sub0, w1-wait0, d1-disp0
	}
	if err := checkFinite(st.name, cur.Input(0)); err != nil {
		freeAll(out)
		return nil, stats, err
	}
	return out, stats, nil
}

// ErrNonFinite reports a stage whose result holds NaN or ±Inf.
var ErrNonFinite = errors.New("non-finite values")

// checkFinite fails when the stage's final latent holds NaN or ±Inf: every
// later stage and the image would be garbage (an all-black PNG). It reads
// the latent once, after the stage's single wait.
func checkFinite(stage string, lat *tensor.Tensor) error {
	v, err := lat.Float32s()
	if err != nil {
		return fmt.Errorf("%s: reading the result: %w", stage, err)
	}
	bad := 0
	for _, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			bad++
		}
	}
	if bad == 0 {
		return nil
	}
	return fmt.Errorf("%s: %w: %d of %d values of the result are NaN or ±Inf (weights with NaN or Inf, a float16 overflow under --precision fp16, or guidance scales too large)",
		stage, ErrNonFinite, bad, len(v))
}
