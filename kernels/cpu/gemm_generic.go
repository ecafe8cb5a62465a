//go:build !amd64 || purego

package cpu

import "math"

// archKernels is empty: no assembly micro-kernels on this platform (or with
// the purego tag); the pure-Go kernel runs.
var archKernels []*microKernel

// peakLoops is empty without assembly.
var peakLoops []peakLoop

// rowMax returns the maximum of a non-empty x.
func rowMax(x []float32) float32 {
	m := float32(math.Inf(-1))
	for _, v := range x {
		m = max(m, v)
	}
	return m
}

// expSum sets x[i] = exp(x[i] − m) and returns the sum.
func expSum(x []float32, m float32) float32 {
	var s float32
	for i, v := range x {
		e := float32(math.Exp(float64(v - m)))
		x[i] = e
		s += e
	}
	return s
}

// colSoftmax is one online-softmax step over the columns of s (rows ×
// width); see colSoftmaxGo.
func colSoftmax(s []float32, rows, width int, m, l, corr []float32) {
	colSoftmaxGo(s, rows, width, m, l, corr)
}

// mulRows scales each row of o (rows × width) elementwise by v.
func mulRows(o []float32, rows, width int, v []float32) { mulRowsGo(o, rows, width, v) }
