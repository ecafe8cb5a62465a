package cpu

import (
	"fmt"

	"github.com/unclip-go/unclip/tensor"
)

// schedulerStepOp applies tensor.StepParams.Element to every element.
func schedulerStepOp(n *tensor.Node) error {
	if n.Dst.DType() != tensor.F32 {
		return fmt.Errorf("cpu: scheduler step into %v", n.Dst.DType())
	}
	p := tensor.StepParamsOf(n)
	if tensor.StepDynamic(n) {
		p = tensor.StepFromVector(p, f32(n.Src[3]).dense())
	}
	mo := f32(n.Src[0]).dense()
	x := f32(n.Src[1]).dense()
	var z []float32
	if p.AddNoise {
		z = f32(n.Src[2]).dense()
	}
	y := out(n.Dst)
	b := n.Dst.Dim(0)
	per := len(y) / max(b, 1)
	stride := per
	if p.Learned {
		stride = 2 * per
	}
	for bi := 0; bi < b; bi++ {
		for i := 0; i < per; i++ {
			var v, zz float32
			if p.Learned {
				v = mo[bi*stride+per+i]
			}
			if z != nil {
				zz = z[bi*per+i]
			}
			y[bi*per+i] = p.Element(mo[bi*stride+i], v, x[bi*per+i], zz)
		}
	}
	return nil
}
