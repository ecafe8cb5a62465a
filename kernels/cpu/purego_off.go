//go:build !purego

package cpu

// pureGo is set by the purego build tag: the reference kernels are the
// default and no assembly is linked.
const pureGo = false
