//go:build cgo && !novulkan

package vulkan

import (
	"fmt"

	"github.com/unclip-go/unclip/tensor"
)

// launch is one dispatch of a compute shader. Every op records its
// dispatches through Backend.launch, which binds the operands, fills and
// checks the push constants, checks the grid and records the dispatch.
type launch struct {
	shader string           // the shader (dispatch picks its 16-bit-storage variant)
	dst    *tensor.Tensor   // bound first, written
	srcs   []*tensor.Tensor // bound next, in order, read
	status bool             // binds the status flags (written) after srcs

	// setup, when set, runs once the operands are bound, before push, with
	// b.mu held: for choices that depend on the operands' element offsets
	// or on state b.mu guards (the GEMM's tile and vec4 loads). It may
	// change the launch's shader, grid and spec.
	setup func(l *launch, off []uint32) error

	// push returns the shader's push-constant block, a value of the
	// struct type pushBlocks registers for the shader (push.go), given
	// the element offsets of the bound operands in their ranges: off[0]
	// is dst's, off[i] is srcs[i-1]'s.
	push func(off []uint32) any

	grid [3]int   // workgroups in x, y, z (none recorded when one is ≤ 0)
	spec []uint32 // specialization constants
}

// launch records ls in order, holding b.mu across them (an op's
// dispatches are not interleaved with another goroutine's).
func (b *Backend) launch(n *tensor.Node, ls ...launch) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range ls {
		if err := b.launchLocked(n, &ls[i]); err != nil {
			return err
		}
	}
	return nil
}

// launchLocked records one launch; the caller holds b.mu.
func (b *Backend) launchLocked(n *tensor.Node, l *launch) error {
	ops, err := b.operands(l.dst, l.srcs...)
	if err != nil {
		return err
	}
	if l.status {
		ops = append(ops, b.statusOperand())
	}
	var offs [maxBindings]uint32
	if len(ops) > len(offs) {
		return fmt.Errorf("%s: %d buffers, more than %d", l.shader, len(ops), len(offs))
	}
	off := offs[:len(ops)]
	for i, o := range ops {
		off[i] = o.off
	}
	if l.setup != nil {
		if err := l.setup(l, off); err != nil {
			return err
		}
	}
	if l.push == nil {
		return fmt.Errorf("%s: a launch without push constants", l.shader)
	}
	pb, err := encodePush(l.shader, l.push(off))
	if err != nil {
		return err
	}
	gx, gy, gz := l.grid[0], l.grid[1], l.grid[2]
	if gx <= 0 || gy <= 0 || gz <= 0 {
		return nil
	}
	if gx > int(b.maxGroup[0]) || gy > int(b.maxGroup[1]) || gz > int(b.maxGroup[2]) {
		return fmt.Errorf("%s: %d×%d×%d workgroups exceed the device limit %v", l.shader, gx, gy, gz, b.maxGroup)
	}
	return b.dispatch(n, l.shader, ops, pb, gx, gy, gz, l.spec...)
}

// linear is the grid of n items of size per group, folded into (x, y)
// when x would exceed the device limit (see groups).
func (b *Backend) linear(n, per int) [3]int {
	gx, gy := b.groups(n, per)
	return [3]int{gx, gy, 1}
}
