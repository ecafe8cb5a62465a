package cpu

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/unclip-go/unclip/tensor"
)

// packKernels are the micro-kernels whose layouts weights are packed in:
// every usable float32 kernel, the pure-Go direct-convolution twin, and
// the bf16 ones (pairs and rounding).
func packKernels() []*microKernel {
	return append(convKernels(), bf16Kernels()...)
}

// plainBytes returns t's bytes (a copy).
func plainBytes(t *tensor.Tensor) []byte {
	b, err := t.Bytes()
	if err != nil {
		panic(err)
	}
	return b
}

// weightCopy returns a marked weight holding t's values in new storage
// (so that packing it leaves t alone), and the bytes its packed copy must
// unpack to: t's own, or their bf16 rounding for a bf16 kernel.
func weightCopy(t *tensor.Tensor, mk *microKernel) (w *tensor.Tensor, want []byte) {
	b := plainBytes(t)
	w = tensor.FromBytes(t.DType(), slices.Clone(b), t.Shape()...)
	w.Storage().MarkWeight()
	want = b
	if mk.pairs || mk.round {
		r := t.Cast(tensor.F32).Cast(tensor.BF16).Cast(tensor.F32)
		if t.DType() != tensor.F32 {
			r = r.Cast(t.DType())
		}
		want = plainBytes(r)
	}
	return w, want
}

// TestPackedRoundTrip packs weights whole in every kernel's layout (B of
// a linear layer, both orientations; A of the GEMM convolution; A of the
// direct convolution) over odd sizes that leave partial panels and a short
// last K block, and checks that unpacking gives back the weight (its bf16
// rounding for a bf16 kernel), that the plain copy is gone while packed,
// and that the packed memory is returned.
func TestPackedRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	for _, mk := range packKernels() {
		ks := []int{1, 7, mk.kc + 5, 2*mk.kc + 3}
		for _, dt := range []tensor.DType{tensor.F32, tensor.F16} {
			check := func(name string, plain *tensor.Tensor, layout packedOp, pack func(w *tensor.Tensor) (*packedOp, error)) {
				t.Helper()
				if dt != tensor.F32 {
					plain = plain.Cast(dt)
				}
				w, want := weightCopy(plain, mk)
				// Packed only where the copy is about as small: never a
				// 16-bit weight widened to float32, nor a thin one whose
				// padding would be more than an eighth.
				packs := layout.fits(w.Storage().Bytes)
				if dt == tensor.F32 && !mk.pairs && layout.size() == plain.Numel() && !packs {
					t.Fatalf("%s: a float32 weight with no padding does not fit", name)
				}
				before := ReservedBytes()
				p, err := pack(w)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if (p != nil) != packs {
					t.Fatalf("%s: packed %v, want %v", name, p != nil, packs)
				}
				if p == nil {
					return
				}
				if w.Storage().Host != nil || w.Storage().Packing() != p {
					t.Fatalf("%s: the storage does not hold the packed copy in place of its bytes", name)
				}
				if again, err := pack(w); err != nil || again != p {
					t.Fatalf("%s: a second use packed again (%v)", name, err)
				}
				got := plainBytes(w) // unpacks
				if w.Storage().Packing() != nil {
					t.Fatalf("%s: still packed after a read", name)
				}
				if !slices.Equal(got, want) {
					t.Errorf("%s: unpacked bytes differ from the weight's", name)
				}
				if r := ReservedBytes(); r != before {
					t.Errorf("%s: %d reserved bytes after unpacking, %d before packing", name, r, before)
				}
				if again, _ := pack(w); again != nil {
					t.Errorf("%s: packed again after being unpacked", name)
				}
			}
			for _, k := range ks {
				for _, n := range []int{1, mk.nr - 1, 2 * mk.nr, 9*mk.nr - 3} {
					name := fmt.Sprintf("%s/%v/B k=%d n=%d", mk.name, dt, k, n)
					wt := tensor.FromFloat32(randSlice(rng, n*k), n, k)
					check(name+" Wᵀ", wt, bLayout(mk, k, n, 1, k, dt), func(w *tensor.Tensor) (*packedOp, error) { return packedGemmB(w.T(), mk, k, n) })
					wd := tensor.FromFloat32(randSlice(rng, k*n), k, n)
					check(name+" dense", wd, bLayout(mk, k, n, n, 1, dt), func(w *tensor.Tensor) (*packedOp, error) { return packedGemmB(w, mk, k, n) })
				}
				for _, m := range []int{1, mk.mr + 1, 3 * mk.mr, 9*mk.mr - 5} {
					name := fmt.Sprintf("%s/%v/A m=%d k=%d", mk.name, dt, m, k)
					wa := tensor.FromFloat32(randSlice(rng, m*k), m, k)
					check(name, wa, aLayout(mk, m, k, mk.kBlock(k), false, dt), func(w *tensor.Tensor) (*packedOp, error) {
						return packedGemmA(w, mk, m, k, mk.kBlock(k), false)
					})
				}
			}
			for _, c := range []int{1, 3, 33, 70} {
				if mk.conv == nil {
					break // no direct convolution with this kernel
				}
				for _, o := range []int{1, 13, 25, 96} {
					name := fmt.Sprintf("%s/%v/direct c=%d o=%d", mk.name, dt, c, o)
					wc := tensor.FromFloat32(randSlice(rng, o*c*9), o, c, 3, 3)
					check(name, wc, aLayout(mk, o, 9*c, 9*directBlock(mk, c), true, dt), func(w *tensor.Tensor) (*packedOp, error) {
						return packedGemmA(w, mk, o, 9*c, 9*directBlock(mk, c), true)
					})
				}
			}
		}
	}
}

// TestPackedProducts runs products and convolutions whose weight is packed
// once against the same ops on an unmarked copy (packed per call): with
// every kernel and 1–3 threads the results must be identical bit for bit,
// on the call that packs, on the next one that reads the packed copy, and
// after a read of the weight has unpacked it.
func TestPackedProducts(t *testing.T) {
	defer SetThreads(Threads())
	rng := rand.New(rand.NewPCG(33, 34))
	type run func(mk *microKernel, w *tensor.Tensor) []float32
	type cse struct {
		name   string
		weight *tensor.Tensor
		run    run
		// packs: the weight's lanes fill whole panels of every kernel
		// but for at most an eighth (others may stay plain).
		packs bool
	}
	fits := func(lanes int) bool { return lanes%96 == 0 || lanes%96 == 95 }
	var cases []cse
	for _, s := range []struct{ batch, m, k, n int }{
		{0, 1, 37, 96}, {0, 5, 300, 33}, {0, 13, 1100, 191}, {2, 7, 129, 95}, {0, 300, 64, 575}, {0, 3, 40, 4223},
	} {
		var a *tensor.Tensor
		if s.batch > 0 {
			a = tensor.FromFloat32(randSlice(rng, s.batch*s.m*s.k), s.batch, s.m, s.k)
		} else {
			a = tensor.FromFloat32(randSlice(rng, s.m*s.k), s.m, s.k)
		}
		bias := tensor.FromFloat32(randSlice(rng, s.n), s.n)
		cases = append(cases, cse{
			name:   fmt.Sprintf("linear %+v", s),
			weight: tensor.FromFloat32(randSlice(rng, s.n*s.k), s.n, s.k),
			packs:  fits(s.n),
			run: func(mk *microKernel, w *tensor.Tensor) []float32 {
				b := w.T()
				if s.batch > 0 {
					b = b.Expand(s.batch, s.k, s.n)
				}
				n := matmulNode(a, b, bias)
				if err := matmulFast(n, mk); err != nil {
					t.Fatal(err)
				}
				return n.Dst.MustFloat32s()
			},
		})
	}
	for _, s := range []struct{ n, c, h, w, o, k, stride, pad int }{
		{2, 5, 3, 37, 14, 3, 1, 1},   // direct
		{1, 70, 3, 33, 95, 3, 1, 1},  // direct, three K blocks
		{2, 33, 7, 9, 96, 3, 1, 1},   // small maps: one GEMM for the batch
		{1, 32, 33, 33, 95, 1, 1, 0}, // pointwise
		{2, 21, 17, 19, 95, 3, 1, 1}, // runCols at two threads
		{1, 5, 11, 13, 9, 3, 2, 1},   // strided
	} {
		x := tensor.FromFloat32(randSlice(rng, s.n*s.c*s.h*s.w), s.n, s.c, s.h, s.w)
		bias := tensor.FromFloat32(randSlice(rng, s.o), s.o)
		cases = append(cases, cse{
			name:   fmt.Sprintf("conv %+v", s),
			weight: tensor.FromFloat32(randSlice(rng, s.o*s.c*s.k*s.k), s.o, s.c, s.k, s.k),
			packs:  fits(s.o),
			run: func(mk *microKernel, w *tensor.Tensor) []float32 {
				n := convNode(x, w, bias, s.stride, s.pad)
				if err := conv2dFast(n, mk); err != nil {
					t.Fatal(err)
				}
				return n.Dst.MustFloat32s()
			},
		})
	}
	for _, c := range cases {
		for _, mk := range packKernels() {
			for _, th := range []int{1, 2, 3} {
				SetThreads(th)
				name := fmt.Sprintf("%s/%s/%dthr", c.name, mk.name, th)
				want := c.run(mk, c.weight) // not marked: packed per call
				w, plain := weightCopy(c.weight, mk)
				for i, stage := range []string{"packing", "packed"} {
					if got := c.run(mk, w); !slices.Equal(got, want) {
						t.Fatalf("%s: %s call differs from packing per call", name, stage)
					}
					if i == 0 && c.packs && w.Storage().Packing() == nil {
						t.Fatalf("%s: the weight was not packed", name)
					}
				}
				if w.Storage().Packing() == nil {
					plain = plainBytes(c.weight) // not packed: not rounded either
				}
				if got := plainBytes(w); !slices.Equal(got, plain) {
					t.Fatalf("%s: the weight reads back wrong", name)
				}
				if got := c.run(mk, w); !slices.Equal(got, want) || w.Storage().Packing() != nil {
					t.Fatalf("%s: after unpacking: equal %v, packed again %v", name, slices.Equal(got, want), w.Storage().Packing() != nil)
				}
			}
		}
	}
}

// TestPackedBackend checks the backend's handling of a packed weight: the
// fast product packs it, another op reading it (here an addition) sees
// its values, and the reference kernels, which read plain layouts only,
// unpack it.
func TestPackedBackend(t *testing.T) {
	if active.Load() == nil {
		t.Skip("reference kernels selected: nothing is packed")
	}
	rng := rand.New(rand.NewPCG(35, 36))
	a := tensor.FromFloat32(randSlice(rng, 6*50), 6, 50)
	wv := randSlice(rng, 64*50)
	w := tensor.FromFloat32(slices.Clone(wv), 64, 50)
	w.Storage().MarkWeight()
	ref := tensor.FromFloat32(wv, 64, 50)
	want := tensor.MatMul(a, ref.T()).MustFloat32s()
	if got := tensor.MatMul(a, w.T()).MustFloat32s(); !slices.Equal(got, want) {
		t.Fatal("product with a weight packed on first use differs")
	}
	if w.Storage().Packing() == nil {
		t.Fatal("the backend did not pack the weight")
	}
	if got := tensor.Add(w, ref).MustFloat32s(); !slices.Equal(got, tensor.Add(ref, ref).MustFloat32s()) {
		t.Error("an op reading the packed weight got other values")
	}
	// Packed again? No: it was read plain once.
	tensor.MatMul(a, w.T()).MustFloat32s()
	if w.Storage().Packing() != nil {
		t.Error("a weight read in its plain layout was packed again")
	}
	w2 := tensor.FromFloat32(slices.Clone(wv), 64, 50)
	w2.Storage().MarkWeight()
	tensor.MatMul(a, w2.T()).MustFloat32s()
	prev := Kernels()
	if err := SetKernels("ref"); err != nil {
		t.Fatal(err)
	}
	got := tensor.MatMul(a, w2.T()).MustFloat32s()
	wantRef := tensor.MatMul(a, ref.T()).MustFloat32s()
	SetKernels(prev)
	if w2.Storage().Packing() != nil {
		t.Fatal("the reference kernels ran on a packed weight")
	}
	if !slices.Equal(got, wantRef) {
		t.Error("the reference product of an unpacked weight differs")
	}
}

// TestPackedReserve checks that packing a weight held in Reserve memory
// (as random weights are) unmaps the plain copy: the reserved bytes grow
// by the packed copy and shrink by the plain one, and return to their
// level once the storage is freed.
func TestPackedReserve(t *testing.T) {
	mk := packKernels()[0]
	before := ReservedBytes()
	st, err := Backend{}.Reserve(4 * 96 * 40)
	if err != nil {
		t.Fatal(err)
	}
	copy(tensor.Float32View(st.Host), randSlice(rand.New(rand.NewPCG(37, 38)), 96*40))
	st.MarkWeight()
	w := tensor.OnStorage(st, tensor.F32, 96, 40)
	p, err := packedGemmB(w.T(), mk, 40, 96)
	if err != nil || p == nil {
		t.Fatalf("not packed (%v)", err)
	}
	if got, want := ReservedBytes()-before, int64(len(p.mem)); got != want {
		t.Errorf("%d bytes reserved while packed, want the packed copy's %d", got, want)
	}
	st.Free()
	if r := ReservedBytes(); r != before {
		t.Errorf("%d bytes reserved after Free, %d before", r, before)
	}
}
