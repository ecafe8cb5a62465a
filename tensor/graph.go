package tensor

import (
	"context"
	"errors"
	"fmt"
	"sort"
)

// Planned execution.
//
// A denoising step runs the same ops on the same shapes every time. Capture
// runs a function once under a tracer and keeps what it did as a Graph: a
// list of the op set's Nodes whose operands are graph values (the inputs
// and every intermediate) or constants (weights, tensors computed before
// the capture). Tracing follows the data: an op with a graph value among
// its operands is recorded instead of run and its result is a new graph
// value; an op on constants alone runs at once, as always, and its result
// is a constant. So model code is written against the ordinary tensor API
// and works unchanged, eagerly or captured.
//
// Plan gives every value an offset in one arena from liveness: a value
// lives from the first node that touches it to the last one (inputs from
// the start, outputs to the end), and values whose lifetimes do not overlap
// share space (each at the lowest offset free of its overlapping
// neighbours, in the best of several orders: see assign). The arena's size
// is known before anything runs (Graph.ArenaBytes), which is what a memory
// report or a device budget needs. Before planning, rewrite rules fuse
// nodes (fuse.go), so that every backend runs the fused form.
//
// Instantiate reserves the arena on the graph's backend and binds every
// node to it once; Exec.Run replays the nodes. A replay allocates nothing
// but what a kernel allocates inside itself: the arena is reused, and the
// host writes the step's inputs into it (CopyInto Exec.Input(i)) and reads
// its outputs from it (Exec.Output(i), valid until the next replay). A
// backend that records work (Vulkan) receives the whole step in one
// uninterrupted stream and submits it as one batch when the caller syncs.

// value is one graph value: an input or an intermediate. Its tensors are
// views on a placeholder Storage whose Handle is the value.
type value struct {
	g     *Graph
	id    int
	bytes int
	first int // first node touching the value (−1 for an input), set by liveness
	last  int // last node touching it (len(nodes) for an output)
	off   int // arena offset in bytes, after planning
}

// Graph is a captured function: its nodes, inputs, outputs and memory plan.
type Graph struct {
	name    string
	backend Backend
	nodes   []*Node
	values  []*value
	inputs  []*Tensor
	outputs []*Tensor
	arena   int
	err     error // the first misuse met while capturing
	// serials bound the storages created while capturing: the constants
	// computed then belong to the graph (Release).
	serial0, serial1 uint64
}

// Spec describes a graph input: a dense tensor of this type and shape.
type Spec struct {
	DType DType
	Shape []int
}

// arenaAlign is the alignment of every value in an arena: at least any
// element size and any device's minStorageBufferOffsetAlignment.
const arenaAlign = 256

// Capture records f as a graph named name on backend b. f receives one
// placeholder per input spec and returns the graph's outputs; it runs once.
// A shape mistake inside f (a *ShapeError panic) is returned as an error,
// as is reading a placeholder's data (Bytes, Float32s, To), which has no
// data while capturing.
func Capture(name string, b Backend, inputs []Spec, f func(in []*Tensor) ([]*Tensor, error)) (*Graph, error) {
	g := &Graph{name: name, backend: b, serial0: storageSerial.Load()}
	in := make([]*Tensor, len(inputs))
	for i, s := range inputs {
		in[i] = g.newValue(s.DType, s.Shape)
	}
	g.inputs = in
	var out []*Tensor
	err := Catch(func() (err error) {
		out, err = f(in)
		return err
	})
	if err == nil {
		err = g.err
	}
	if err != nil {
		return nil, fmt.Errorf("capture %s: %w", name, err)
	}
	for i, t := range out {
		if t == nil {
			return nil, fmt.Errorf("capture %s: output %d is nil", name, i)
		}
		if err := t.Err(); err != nil {
			return nil, fmt.Errorf("capture %s: output %d: %w", name, i, err)
		}
		if t.st.backend != b {
			return nil, fmt.Errorf("capture %s: output %d is on %s, not %s", name, i, t.st.backend.Name(), b.Name())
		}
		if v := valueOf(t); v != nil && v.g != g {
			return nil, fmt.Errorf("capture %s: output %d belongs to another graph", name, i)
		}
	}
	g.outputs = out
	g.serial1 = storageSerial.Load()
	g.fuse()
	g.plan()
	return g, nil
}

// Release frees the constants computed while the graph was captured (ops
// on constants alone ran then, and their results are the graph's): the
// graph and its Execs cannot run afterwards. Weights and other tensors made
// before the capture are untouched.
func (g *Graph) Release() {
	for _, n := range g.nodes {
		for _, t := range n.Src {
			if t != nil && valueOf(t) == nil && t.st.serial > g.serial0 && t.st.serial <= g.serial1 {
				t.st.Free()
			}
		}
	}
}

// valueOf returns the graph value behind t, or nil for a real tensor.
func valueOf(t *Tensor) *value {
	if t == nil || t.st == nil {
		return nil
	}
	v, _ := t.st.Handle.(*value)
	return v
}

// IsTraced reports whether t is a graph value being captured (it has no
// data until the graph runs).
func (t *Tensor) IsTraced() bool { return valueOf(t) != nil }

func (g *Graph) newValue(dt DType, shape []int) *Tensor {
	n := numel(shape) * dt.Size()
	v := &value{g: g, id: len(g.values), bytes: n} // lifetime: liveness, after capture
	g.values = append(g.values, v)
	st := &Storage{backend: g.backend, Handle: v, Bytes: n}
	return &Tensor{st: st, dtype: dt, shape: append([]int(nil), shape...), strides: ContiguousStrides(shape)}
}

// record appends a node whose operands include graph values of g.
func (g *Graph) record(n *Node) {
	m := *n
	m.Src = append([]*Tensor(nil), n.Src...)
	g.nodes = append(g.nodes, &m)
}

// fail keeps the first misuse met while capturing.
func (g *Graph) fail(err error) {
	if g.err == nil {
		g.err = err
	}
}

// plan computes every value's lifetime and assigns arena offsets (see the
// package comment above).
func (g *Graph) plan() {
	g.liveness()
	g.assign()
}

// liveness sets every value's first and last node.
func (g *Graph) liveness() {
	end := len(g.nodes)
	for _, v := range g.values {
		v.first, v.last = end+1, -1 // untouched: no space
	}
	for i, n := range g.nodes {
		for _, t := range append([]*Tensor{n.Dst}, n.Src...) {
			if v := valueOf(t); v != nil {
				v.first = min(v.first, i)
				v.last = max(v.last, i)
			}
		}
	}
	for _, t := range g.outputs {
		if v := valueOf(t); v != nil {
			v.last = end
		}
	}
	for _, t := range g.inputs {
		v := valueOf(t)
		v.first = -1
		v.last = max(v.last, -1)
	}
}

// assign gives every value with a lifetime its arena offset. Placement is
// a heuristic (the optimum is NP-hard): the values are placed one by one,
// each at the lowest offset free of every placed value whose lifetime
// overlaps its own. The order decides how well they pack, and no one order
// wins everywhere (largest first suits transformers; with the skip
// connections of a U-Net, long-lived values first), so several orders are
// tried and the smallest plan kept. On Karlo's U-Nets and prior it meets
// LiveBytes, the bound no plan can beat.
func (g *Graph) assign() {
	live := make([]*value, 0, len(g.values))
	for _, v := range g.values {
		if v.bytes > 0 && v.first <= v.last {
			live = append(live, v)
		}
	}
	span := func(v *value) int { return v.last - v.first }
	orders := []func(a, b *value) bool{
		func(a, b *value) bool { return a.bytes > b.bytes },
		func(a, b *value) bool { return a.bytes > b.bytes || a.bytes == b.bytes && span(a) > span(b) },
		func(a, b *value) bool { return span(a) > span(b) || span(a) == span(b) && a.bytes > b.bytes },
		func(a, b *value) bool { return a.first < b.first || a.first == b.first && a.bytes > b.bytes },
		func(a, b *value) bool { return a.last > b.last || a.last == b.last && a.bytes > b.bytes },
		func(a, b *value) bool { return a.bytes*(span(a)+1) > b.bytes*(span(b)+1) },
	}
	best := -1
	var bestOff []int
	order := make([]*value, len(live))
	for _, less := range orders {
		copy(order, live)
		sort.SliceStable(order, func(i, j int) bool { return less(order[i], order[j]) })
		if arena := place(order); best < 0 || arena < best {
			best = arena
			bestOff = bestOff[:0]
			for _, v := range live {
				bestOff = append(bestOff, v.off)
			}
		}
	}
	for i, v := range live {
		v.off = bestOff[i]
	}
	g.arena = max(best, 0)
}

// place sets the offset of the values in order, each at the lowest offset
// free of every value before it whose lifetime overlaps its own, and
// returns the arena size.
func place(order []*value) int {
	type span struct{ lo, hi int }
	busy := make([]span, 0, 64)
	arena := 0
	for i, v := range order {
		busy = busy[:0]
		for _, p := range order[:i] {
			if p.first <= v.last && v.first <= p.last {
				busy = append(busy, span{p.off, p.off + alignUp(p.bytes, arenaAlign)})
			}
		}
		sort.Slice(busy, func(i, j int) bool { return busy[i].lo < busy[j].lo })
		off := 0
		size := alignUp(v.bytes, arenaAlign)
		for _, s := range busy {
			if off+size <= s.lo {
				break
			}
			off = max(off, s.hi)
		}
		v.off = off
		arena = max(arena, off+size)
	}
	return arena
}

func alignUp(n, a int) int { return (n + a - 1) / a * a }

// Len is the number of recorded nodes.
func (g *Graph) Len() int { return len(g.nodes) }

// Nodes returns the recorded nodes in execution order; their operands are
// placeholders (graph values) or constants. For inspection and tests.
func (g *Graph) Nodes() []*Node { return g.nodes }

// ArenaBytes is the size of the planned arena: every input, intermediate
// and output of one run, with reuse.
func (g *Graph) ArenaBytes() int { return g.arena }

// ValueBytes is the sum of every value's size: what the graph would need
// without reuse (for reports).
func (g *Graph) ValueBytes() int {
	s := 0
	for _, v := range g.values {
		if v.first <= v.last {
			s += alignUp(v.bytes, arenaAlign)
		}
	}
	return s
}

// LiveBytes is the most bytes of values live at once, at any node: a
// lower bound for ArenaBytes that no placement can beat (for reports).
func (g *Graph) LiveBytes() int {
	delta := make([]int, len(g.nodes)+3) // index i+1: change at node i (inputs at −1)
	for _, v := range g.values {
		if v.first <= v.last {
			sz := alignUp(v.bytes, arenaAlign)
			delta[v.first+1] += sz
			delta[min(v.last, len(g.nodes))+2] -= sz
		}
	}
	peak, cur := 0, 0
	for _, d := range delta {
		cur += d
		peak = max(peak, cur)
	}
	return peak
}

// ConstantBytes is the size of the distinct constant storages the nodes
// read (the weights and other tensors made before the capture).
func (g *Graph) ConstantBytes() int {
	seen := map[*Storage]bool{}
	s := 0
	for _, n := range g.nodes {
		for _, t := range n.Src {
			if t != nil && valueOf(t) == nil && !seen[t.st] {
				seen[t.st] = true
				s += t.st.Bytes
			}
		}
	}
	return s
}

// Exec is a graph bound to an arena on its backend, ready to replay.
type Exec struct {
	g       *Graph
	arena   *Storage
	owned   bool // the arena was reserved by Instantiate
	nodes   []Node
	inputs  []*Tensor
	outputs []*Tensor
	rec     Recording // set by Record
}

// Instantiate reserves the graph's arena on its backend (Backend.Reserve)
// and binds every node to it. Free the Exec to release the arena.
func (g *Graph) Instantiate() (*Exec, error) {
	st, err := g.backend.Reserve(max(g.arena, arenaAlign))
	if err != nil {
		return nil, fmt.Errorf("%s: arena of %d MiB on %s: %w", g.name, g.arena>>20, g.backend.Name(), err)
	}
	e, err := g.Bind(st)
	if err != nil {
		st.Free()
		return nil, err
	}
	e.owned = true
	return e, nil
}

// Bind binds the graph to arena, storage of at least ArenaBytes on the
// graph's backend that the caller owns (graphs that never run at the same
// time may share one).
func (g *Graph) Bind(arena *Storage) (*Exec, error) {
	if arena.backend != g.backend || arena.Bytes < g.arena {
		return nil, fmt.Errorf("%s: arena of %d bytes on %s, need %d on %s", g.name, arena.Bytes, arena.backend.Name(), g.arena, g.backend.Name())
	}
	e := &Exec{g: g, arena: arena, nodes: make([]Node, len(g.nodes))}
	bound := map[*Tensor]*Tensor{}
	bind := func(t *Tensor) *Tensor {
		v := valueOf(t)
		if v == nil {
			return t
		}
		if b, ok := bound[t]; ok {
			return b
		}
		es := t.dtype.Size()
		b := &Tensor{st: arena, dtype: t.dtype, shape: t.shape, strides: t.strides, offset: v.off/es + t.offset}
		bound[t] = b
		return b
	}
	for i, n := range g.nodes {
		m := *n
		m.Dst = bind(n.Dst)
		m.Src = make([]*Tensor, len(n.Src))
		for j, s := range n.Src {
			m.Src[j] = bind(s)
		}
		e.nodes[i] = m
	}
	for _, t := range g.inputs {
		e.inputs = append(e.inputs, bind(t))
	}
	for _, t := range g.outputs {
		e.outputs = append(e.outputs, bind(t))
	}
	return e, nil
}

// Input returns input i as a tensor in the arena: write it (CopyInto)
// before Run.
func (e *Exec) Input(i int) *Tensor { return e.inputs[i] }

// Output returns output i: a view in the arena (valid until the next Run
// or Free) or, for an output that does not depend on the inputs, the
// constant itself.
func (e *Exec) Output(i int) *Tensor { return e.outputs[i] }

// ErrFreed is returned by Run after Free.
var ErrFreed = errors.New("tensor: graph's arena was freed")

// Record records the nodes once on a backend that can replay recordings
// (Recorder), so that Run submits the recording instead of handing the
// nodes to the backend one by one; elsewhere it does nothing. It reports
// whether a recording was made. Record again after an operand's storage
// has moved (a weight evicted and restored).
func (e *Exec) Record() (bool, error) {
	r, ok := e.g.backend.(Recorder)
	if !ok {
		return false, nil
	}
	if e.rec != nil {
		e.rec.Free()
		e.rec = nil
	}
	rec, err := r.Record(e.nodes)
	if err != nil {
		return false, fmt.Errorf("%s: recording: %w", e.g.name, err)
	}
	e.rec = rec
	return true, nil
}

// Run replays every node on the backend, in order (or submits the
// recording, after Record). A recording backend may return before the work
// has finished; read an output or Sync to wait.
func (e *Exec) Run() error { return e.RunContext(context.Background()) }

// RunContext is Run that stops between nodes once ctx is done and returns
// ctx.Err(); the arena's contents are then undefined. A recording is
// submitted whole, so ctx is checked only before it.
func (e *Exec) RunContext(ctx context.Context) error {
	if e.arena == nil {
		return ErrFreed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if e.rec != nil {
		if err := e.rec.Submit(); err != nil {
			return fmt.Errorf("%s: %w", e.g.name, err)
		}
		return nil
	}
	b := e.g.backend
	done := ctx.Done()
	for i := range e.nodes {
		if done != nil {
			select {
			case <-done:
				return ctx.Err()
			default:
			}
		}
		n := &e.nodes[i]
		if err := b.Run(n); err != nil {
			return fmt.Errorf("%s: node %d of %d (%s): %w", e.g.name, i, len(e.nodes), n.Name(), err)
		}
	}
	return nil
}

// Free releases the arena reserved by Instantiate (after pending work that
// uses it; an arena given to Bind stays the caller's). The Exec and its
// inputs and outputs must not be used again.
func (e *Exec) Free() {
	if e.rec != nil {
		e.rec.Free()
		e.rec = nil
	}
	if e.arena != nil && e.owned {
		e.arena.Free()
	}
	e.arena = nil
}

// RunOnce runs f once as a captured graph on backend b: its intermediates
// live in an arena that is released as soon as the outputs are copied out,
// rather than in eager storage that waits for the collector. inputs are
// f's arguments (copied into the arena); the outputs are new dense tensors.
func RunOnce(name string, b Backend, inputs []*Tensor, f func(in []*Tensor) ([]*Tensor, error)) ([]*Tensor, error) {
	specs := make([]Spec, len(inputs))
	for i, t := range inputs {
		specs[i] = Spec{DType: t.dtype, Shape: t.shape}
	}
	g, err := Capture(name, b, specs, f)
	if err != nil {
		return nil, err
	}
	defer g.Release()
	ex, err := g.Instantiate()
	if err != nil {
		return nil, err
	}
	defer ex.Free()
	for i, t := range inputs {
		if err := CopyInto(ex.Input(i), t); err != nil {
			return nil, fmt.Errorf("%s: input %d: %w", name, i, err)
		}
	}
	if err := ex.Run(); err != nil {
		return nil, err
	}
	out := make([]*Tensor, len(g.outputs))
	for i := range out {
		o := ex.Output(i)
		out[i] = o.Cast(o.dtype)
		if err := out[i].Err(); err != nil {
			return nil, fmt.Errorf("%s: output %d: %w", name, i, err)
		}
	}
	return out, nil
}
