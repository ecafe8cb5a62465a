package cpu

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/unclip-go/unclip/tensor"
)

// TestBinaryFast compares the fast elementwise kernels with the reference
// for every kind on dense, broadcast (stride 0 inner and outer) and
// transposed operands of odd sizes.
func TestBinaryFast(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	for _, sh := range [][]int{{1}, {7}, {33, 5}, {2, 7, 257}, {3, 40000}} {
		n := numelOf(sh)
		a := tensor.FromFloat32(randSlice(rng, n), sh...)
		last := sh[len(sh)-1]
		type pair struct {
			name string
			x, y *tensor.Tensor
		}
		pairs := []pair{
			{"dense", a, tensor.FromFloat32(randSlice(rng, n), sh...)},
			{"row-bcast", a, tensor.FromFloat32(randSlice(rng, last), last).Expand(sh...)},
			{"scalar", tensor.FromFloat32(randSlice(rng, 1), 1).Expand(sh...), a},
		}
		if len(sh) == 2 {
			pairs = append(pairs, pair{"col-bcast", a, tensor.FromFloat32(randSlice(rng, sh[0]), sh[0], 1).Expand(sh...)},
				pair{"transposed", a, tensor.FromFloat32(randSlice(rng, n), sh[1], sh[0]).T()})
		}
		for _, p := range pairs {
			for k := tensor.BinaryAdd; k <= tensor.BinaryDiv; k++ {
				mk := func() *tensor.Node {
					nd := &tensor.Node{Op: tensor.OpBinary, Dst: tensor.New(tensor.CPU(), tensor.F32, sh...), Src: []*tensor.Tensor{p.x, p.y}}
					nd.Int[0] = int(k)
					return nd
				}
				runBoth(t, fmt.Sprintf("%v %s kind %d", sh, p.name, k), mk, binaryOp, func(n *tensor.Node) error {
					ok, err := binaryFast(n)
					if !ok {
						t.Fatalf("binaryFast declined %v", sh)
					}
					return err
				}, 0)
			}
		}
	}
}

// TestCopyFast compares the fast strided copy with the reference on
// permuted, sliced and broadcast sources and a strided destination.
func TestCopyFast(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 20))
	base := tensor.FromFloat32(randSlice(rng, 2*7*33), 2, 7, 33)
	for _, c := range []struct {
		name string
		src  *tensor.Tensor
	}{
		{"dense", base},
		{"permuted", base.Permute(2, 0, 1)},
		{"narrow", base.Narrow(2, 3, 20)},
		{"broadcast", tensor.FromFloat32(randSlice(rng, 33), 1, 1, 33).Expand(2, 7, 33)},
	} {
		sh := c.src.Shape()
		mk := func() *tensor.Node {
			return &tensor.Node{Op: tensor.OpCopy, Dst: tensor.New(tensor.CPU(), tensor.F32, sh...), Src: []*tensor.Tensor{c.src}}
		}
		runBoth(t, "copy "+c.name, mk, func(n *tensor.Node) error { return copyOp(n.Dst, n.Src[0]) }, func(n *tensor.Node) error {
			ok, err := copyFast(n)
			if !ok {
				t.Fatal("copyFast declined")
			}
			return err
		}, 0)
	}
	// A strided destination: a column slice of a wider tensor.
	wide := tensor.New(tensor.CPU(), tensor.F32, 2, 7, 40)
	dst := wide.Narrow(2, 5, 33)
	if ok, err := copyFast(&tensor.Node{Op: tensor.OpCopy, Dst: dst, Src: []*tensor.Tensor{base}}); !ok || err != nil {
		t.Fatal(ok, err)
	}
	checkClose(t, "copy into slice", dst.Contiguous().MustFloat32s(), base.MustFloat32s(), 0)
}
