package cpu

import (
	"fmt"

	"github.com/unclip-go/unclip/tensor"
)

// epilogue is the part of an OpMatMul or OpConv2d node that follows the
// product and bias (tensor.EpilogueAct): an activation, then a residual
// added. Both use the functions the unfused ops would run with the same
// kernels, so a fused node gives the unfused result bit for bit.
type epilogue struct {
	act func(row []float32) // in place; nil for none
	res []float32           // dense, laid out as the destination; nil for none
}

// epilogueOf returns the epilogue of n (nil when it has none), with the
// fast row functions when fast is set and the reference ones otherwise.
func epilogueOf(n *tensor.Node, fast bool) (*epilogue, error) {
	kind, res := n.Activation(), n.Residual()
	if kind == 0 && res == nil {
		return nil, nil
	}
	e := &epilogue{}
	if kind != 0 {
		if !tensor.EpilogueActivation(kind) {
			return nil, fmt.Errorf("cpu: %s: unary kind %d in an epilogue", n.Name(), kind)
		}
		e.act = activationRow(kind, fast)
	}
	if res != nil {
		if !tensor.SameShape(res.Shape(), n.Dst.Shape()) {
			return nil, fmt.Errorf("cpu: %s: residual %v", n.Name(), res.Shape())
		}
		e.res = f32(res).dense()
	}
	return e, nil
}

// activationRow returns an in-place row function for an epilogue
// activation: the vector kernels of siluFast and geluFast when fast is
// set (runFast uses them for those kinds), else the reference function.
func activationRow(kind tensor.UnaryKind, fast bool) func([]float32) {
	switch {
	case fast && kind == tensor.UnarySiLU:
		return func(r []float32) { affine(r, r, 0, 1, 0, true) }
	case fast && kind == tensor.UnaryGELU:
		return func(r []float32) { gelu(r, r) }
	}
	f, _ := unaryKindFunc(kind, 0, 0)
	return func(r []float32) {
		for i, v := range r {
			r[i] = f(v)
		}
	}
}

// apply runs the epilogue on y, the destination elements [at, at+len(y)).
func (e *epilogue) apply(y []float32, at int) {
	if e.act != nil {
		e.act(y)
	}
	if e.res != nil {
		r := e.res[at : at+len(y)]
		for i := range y {
			y[i] += r[i]
		}
	}
}

// block runs the epilogue on the rows×cols block of y whose first element
// is destination element at, rows ld apart.
func (e *epilogue) block(y []float32, at, ld, rows, cols int) {
	for r := 0; r < rows; r++ {
		e.apply(y[r*ld:r*ld+cols], at+r*ld)
	}
}

// all runs the epilogue over the whole destination y, in parallel chunks
// (the reference kernels, and paths that finish their output in one go).
func (e *epilogue) all(y []float32) {
	if e == nil {
		return
	}
	const chunk = 1 << 14
	parallelFor(ceilDiv(len(y), chunk), len(y), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			s, t := i*chunk, min(len(y), (i+1)*chunk)
			e.apply(y[s:t], s)
		}
	})
}
