package tensor_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	_ "github.com/unclip-go/unclip/kernels/cpu"
	"github.com/unclip-go/unclip/tensor"
)

// arange returns a contiguous F32 CPU tensor holding 0, 1, 2, ... so that
// every element names its own position in the base storage.
func arange(shape ...int) *tensor.Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(i)
	}
	return tensor.FromFloat32(v, shape...)
}

// flat is the row-major position of idx in a contiguous tensor of shape.
func flat(shape, idx []int) int {
	p := 0
	for i, d := range shape {
		p = p*d + idx[i]
	}
	return p
}

// forEach calls fn with every index of shape in row-major order.
func forEach(shape []int, fn func(idx []int)) {
	for _, d := range shape {
		if d == 0 {
			return
		}
	}
	idx := make([]int, len(shape))
	for {
		fn(idx)
		d := len(shape) - 1
		for ; d >= 0; d-- {
			idx[d]++
			if idx[d] < shape[d] {
				break
			}
			idx[d] = 0
		}
		if d < 0 {
			return
		}
	}
}

// checkView reads got (through Float32s, which makes a dense copy of a
// strided view) and compares it with want(idx) at every index of shape.
func checkView(t *testing.T, name string, got *tensor.Tensor, shape []int, want func(idx []int) float32) {
	t.Helper()
	if !slices.Equal(got.Shape(), shape) {
		t.Fatalf("%s: shape %v, want %v", name, got.Shape(), shape)
	}
	v, err := got.Float32s()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if len(v) != got.Numel() {
		t.Fatalf("%s: %d values for %d elements", name, len(v), got.Numel())
	}
	i, bad := 0, 0
	forEach(shape, func(idx []int) {
		if w := want(idx); v[i] != w {
			if bad++; bad <= 5 {
				t.Errorf("%s: at %v got %v, want %v", name, idx, v[i], w)
			}
		}
		i++
	})
}

// wantShapeError runs f and checks that it panics with a *tensor.ShapeError.
func wantShapeError(t *testing.T, name string, f func()) {
	t.Helper()
	r := func() (r any) {
		defer func() { r = recover() }()
		f()
		return nil
	}()
	if r == nil {
		t.Errorf("%s: no panic, want a *tensor.ShapeError", name)
		return
	}
	if _, ok := r.(*tensor.ShapeError); !ok {
		t.Errorf("%s: panic %T (%v), want a *tensor.ShapeError", name, r, r)
	}
}

func TestReshape(t *testing.T) {
	x := arange(3, 5, 7)
	for _, c := range []struct {
		in    []int
		shape []int
	}{
		{[]int{105}, []int{105}},
		{[]int{7, 15}, []int{7, 15}},
		{[]int{-1, 5}, []int{21, 5}},
		{[]int{5, -1, 3}, []int{5, 7, 3}},
		{[]int{1, 105, 1}, []int{1, 105, 1}},
		{[]int{3, 1, -1, 1}, []int{3, 1, 35, 1}},
		{[]int{3, 5, 7}, []int{3, 5, 7}},
	} {
		name := fmt.Sprintf("Reshape%v", c.in)
		y := x.Reshape(c.in...)
		if y.Storage() != x.Storage() {
			t.Errorf("%s of a contiguous tensor copied", name)
		}
		if !y.IsContiguous() {
			t.Errorf("%s: not contiguous", name)
		}
		checkView(t, name, y, c.shape, func(idx []int) float32 { return float32(flat(c.shape, idx)) })
	}

	// A contiguous narrow along the first dimension is a view with an offset:
	// the reshape keeps that offset.
	n := x.Narrow(0, 1, 2)
	y := n.Reshape(-1, 7)
	if y.Storage() != x.Storage() || y.Offset() != 35 {
		t.Errorf("reshape of a contiguous narrow: same storage %v, offset %d, want a view at 35", y.Storage() == x.Storage(), y.Offset())
	}
	checkView(t, "Narrow(0,1,2).Reshape(-1,7)", y, []int{10, 7}, func(idx []int) float32 { return float32(35 + idx[0]*7 + idx[1]) })

	// Non-contiguous views must be copied first, in row-major order of the view.
	p := x.Permute(2, 0, 1) // (7, 3, 5)
	y = p.Reshape(7, 15)
	if y.Storage() == x.Storage() {
		t.Error("reshape of a permuted view did not copy")
	}
	checkView(t, "Permute(2,0,1).Reshape(7,15)", y, []int{7, 15}, func(idx []int) float32 {
		i, j, k := idx[1]/5, idx[1]%5, idx[0]
		return float32(flat([]int{3, 5, 7}, []int{i, j, k}))
	})
	nn := x.Narrow(2, 2, 4) // (3, 5, 4)
	y = nn.Reshape(-1)
	if y.Storage() == x.Storage() {
		t.Error("reshape of an inner narrow did not copy")
	}
	checkView(t, "Narrow(2,2,4).Reshape(-1)", y, []int{60}, func(idx []int) float32 {
		i := idx[0]
		return float32(flat([]int{3, 5, 7}, []int{i / 20, (i / 4) % 5, 2 + i%4}))
	})
	e := arange(1, 5).Expand(3, 5)
	checkView(t, "Expand(3,5).Reshape(15)", e.Reshape(15), []int{15}, func(idx []int) float32 { return float32(idx[0] % 5) })

	// empty tensors
	z := arange(0, 4)
	if got := z.Reshape(4, 0).Shape(); !slices.Equal(got, []int{4, 0}) {
		t.Errorf("Reshape of empty: %v", got)
	}
	// 0-d
	s := tensor.Scalar(3)
	if got := s.Reshape(1, 1).Shape(); !slices.Equal(got, []int{1, 1}) {
		t.Errorf("Scalar.Reshape(1,1): %v", got)
	}
	if got := s.Reshape(1, 1).Reshape().Rank(); got != 0 {
		t.Errorf("Reshape() rank %d", got)
	}
}

func TestPermuteTranspose(t *testing.T) {
	shape := []int{3, 5, 7, 2}
	x := arange(shape...)
	for _, perm := range [][]int{{0, 1, 2, 3}, {3, 2, 1, 0}, {2, 0, 3, 1}, {1, 0, 2, 3}, {0, -1, 1, -2}} {
		p := make([]int, len(perm))
		for i, d := range perm {
			p[i] = (d + 4) % 4
		}
		out := make([]int, 4)
		for i, d := range p {
			out[i] = shape[d]
		}
		y := x.Permute(perm...)
		if y.Storage() != x.Storage() {
			t.Errorf("Permute%v copied", perm)
		}
		checkView(t, fmt.Sprintf("Permute%v", perm), y, out, func(idx []int) float32 {
			src := make([]int, 4)
			for i, d := range p {
				src[d] = idx[i]
			}
			return float32(flat(shape, src))
		})
		// Permuting back gives the original.
		inv := make([]int, 4)
		for i, d := range p {
			inv[d] = i
		}
		checkView(t, fmt.Sprintf("Permute%v inverse", perm), y.Permute(inv...), shape, func(idx []int) float32 { return float32(flat(shape, idx)) })
	}

	for _, c := range []struct {
		a, b int
	}{{0, 2}, {-1, -3}, {1, 1}, {3, 0}} {
		a, b := (c.a+4)%4, (c.b+4)%4
		out := slices.Clone(shape)
		out[a], out[b] = out[b], out[a]
		checkView(t, fmt.Sprintf("Transpose(%d,%d)", c.a, c.b), x.Transpose(c.a, c.b), out, func(idx []int) float32 {
			src := slices.Clone(idx)
			src[a], src[b] = src[b], src[a]
			return float32(flat(shape, src))
		})
	}

	m := arange(7, 9)
	checkView(t, "T", m.T(), []int{9, 7}, func(idx []int) float32 { return float32(idx[1]*9 + idx[0]) })
	checkView(t, "T.T", m.T().T(), []int{7, 9}, func(idx []int) float32 { return float32(idx[0]*9 + idx[1]) })
	if !slices.Equal(m.T().Strides(), []int{1, 9}) {
		t.Errorf("T strides %v, want [1 9]", m.T().Strides())
	}
	b := arange(2, 3, 5)
	checkView(t, "batched T", b.T(), []int{2, 5, 3}, func(idx []int) float32 { return float32(flat([]int{2, 3, 5}, []int{idx[0], idx[2], idx[1]})) })
}

func TestNarrowIndex(t *testing.T) {
	shape := []int{5, 7, 3}
	x := arange(shape...)
	for _, c := range []struct{ d, start, length int }{
		{0, 0, 5}, {0, 2, 3}, {1, 6, 1}, {1, 1, 5}, {2, 1, 2}, {-1, 2, 1}, {-3, 4, 1}, {1, 3, 0},
	} {
		d := (c.d + 3) % 3
		out := slices.Clone(shape)
		out[d] = c.length
		y := x.Narrow(c.d, c.start, c.length)
		if y.Storage() != x.Storage() {
			t.Errorf("Narrow copied")
		}
		checkView(t, fmt.Sprintf("Narrow(%d,%d,%d)", c.d, c.start, c.length), y, out, func(idx []int) float32 {
			src := slices.Clone(idx)
			src[d] += c.start
			return float32(flat(shape, src))
		})
	}
	// narrow of a narrow of a permuted view
	y := x.Permute(2, 0, 1).Narrow(1, 1, 3).Narrow(2, 2, 4).Narrow(0, 1, 2) // (2, 3, 4)
	checkView(t, "Permute.Narrow.Narrow.Narrow", y, []int{2, 3, 4}, func(idx []int) float32 {
		return float32(flat(shape, []int{idx[1] + 1, idx[2] + 2, idx[0] + 1}))
	})

	for _, c := range []struct{ d, i int }{{0, 0}, {0, 4}, {1, 3}, {2, 2}, {-1, 0}, {-2, 6}} {
		d := (c.d + 3) % 3
		out := append(slices.Clone(shape[:d]), shape[d+1:]...)
		checkView(t, fmt.Sprintf("Index(%d,%d)", c.d, c.i), x.Index(c.d, c.i), out, func(idx []int) float32 {
			src := slices.Insert(slices.Clone(idx), d, c.i)
			return float32(flat(shape, src))
		})
	}
	checkView(t, "Index.Index.Index", x.Index(2, 1).Index(1, 4).Index(0, 3), []int{}, func([]int) float32 {
		return float32(flat(shape, []int{3, 4, 1}))
	})
}

func TestSqueezeUnsqueeze(t *testing.T) {
	x := arange(3, 1, 7)
	checkView(t, "Squeeze(1)", x.Squeeze(1), []int{3, 7}, func(idx []int) float32 { return float32(idx[0]*7 + idx[1]) })
	checkView(t, "Squeeze(-2)", x.Squeeze(-2), []int{3, 7}, func(idx []int) float32 { return float32(idx[0]*7 + idx[1]) })
	y := arange(3, 7)
	for _, c := range []struct {
		d     int
		shape []int
	}{
		{0, []int{1, 3, 7}}, {1, []int{3, 1, 7}}, {2, []int{3, 7, 1}}, {-1, []int{3, 7, 1}}, {-3, []int{1, 3, 7}}, {-2, []int{3, 1, 7}},
	} {
		u := y.Unsqueeze(c.d)
		if !u.IsContiguous() {
			t.Errorf("Unsqueeze(%d) of a contiguous tensor: not contiguous (strides %v)", c.d, u.Strides())
		}
		pos := c.d
		if pos < 0 {
			pos += 3
		}
		checkView(t, fmt.Sprintf("Unsqueeze(%d)", c.d), u, c.shape, func(idx []int) float32 {
			src := slices.Delete(slices.Clone(idx), pos, pos+1)
			return float32(src[0]*7 + src[1])
		})
		back := u.Squeeze(c.d)
		checkView(t, fmt.Sprintf("Unsqueeze(%d).Squeeze", c.d), back, []int{3, 7}, func(idx []int) float32 { return float32(idx[0]*7 + idx[1]) })
	}
	// Unsqueeze of a transposed view keeps the values.
	tr := y.T().Unsqueeze(1) // (7, 1, 3)
	checkView(t, "T.Unsqueeze(1)", tr, []int{7, 1, 3}, func(idx []int) float32 { return float32(idx[2]*7 + idx[0]) })
	s := tensor.Scalar(4).Unsqueeze(0)
	checkView(t, "Scalar.Unsqueeze(0)", s, []int{1}, func([]int) float32 { return 4 })
}

func TestExpand(t *testing.T) {
	x := arange(3, 1, 5)
	y := x.Expand(2, 3, 4, 5)
	if y.Storage() != x.Storage() {
		t.Error("Expand copied")
	}
	if got := y.Strides(); !slices.Equal(got, []int{0, 5, 0, 1}) {
		t.Errorf("Expand strides %v, want [0 5 0 1]", got)
	}
	if y.IsContiguous() {
		t.Error("a broadcasting Expand reports contiguous")
	}
	checkView(t, "Expand(2,3,4,5)", y, []int{2, 3, 4, 5}, func(idx []int) float32 { return float32(idx[1]*5 + idx[3]) })
	checkView(t, "Expand same shape", x.Expand(3, 1, 5), []int{3, 1, 5}, func(idx []int) float32 { return float32(idx[0]*5 + idx[2]) })
	checkView(t, "Scalar.Expand", tensor.Scalar(2).Expand(3, 2), []int{3, 2}, func([]int) float32 { return 2 })
	// Expand of a transposed view
	m := arange(1, 7).T() // (7, 1), strides (1, 7)
	checkView(t, "T.Expand", m.Expand(7, 3), []int{7, 3}, func(idx []int) float32 { return float32(idx[0]) })
	// An expanded dimension of size 0.
	if got := arange(1, 3).Expand(0, 3).Numel(); got != 0 {
		t.Errorf("Expand(0,3) numel %d", got)
	}
}

func TestContiguous(t *testing.T) {
	shape := []int{4, 7, 9}
	x := arange(shape...)
	if x.Contiguous() != x {
		t.Error("Contiguous of a contiguous tensor is not the tensor itself")
	}
	for _, c := range []struct {
		name  string
		v     *tensor.Tensor
		shape []int
		want  func(idx []int) float32
	}{
		{"permuted", x.Permute(2, 0, 1), []int{9, 4, 7}, func(idx []int) float32 { return float32(flat(shape, []int{idx[1], idx[2], idx[0]})) }},
		{"transposed", x.T(), []int{4, 9, 7}, func(idx []int) float32 { return float32(flat(shape, []int{idx[0], idx[2], idx[1]})) }},
		{"narrowed", x.Narrow(2, 3, 5), []int{4, 7, 5}, func(idx []int) float32 { return float32(flat(shape, []int{idx[0], idx[1], idx[2] + 3})) }},
		{"narrowed middle", x.Narrow(1, 1, 5).Narrow(0, 2, 1), []int{1, 5, 9}, func(idx []int) float32 { return float32(flat(shape, []int{2, idx[1] + 1, idx[2]})) }},
		{"expanded", x.Index(2, 4).Unsqueeze(1).Expand(2, 4, 3, 7), []int{2, 4, 3, 7}, func(idx []int) float32 { return float32(flat(shape, []int{idx[1], idx[3], 4})) }},
		{"permuted narrowed", x.Permute(1, 2, 0).Narrow(0, 2, 3).Narrow(2, 1, 2), []int{3, 9, 2}, func(idx []int) float32 { return float32(flat(shape, []int{idx[2] + 1, idx[0] + 2, idx[1]})) }},
	} {
		if c.v.IsContiguous() && c.name != "narrowed middle" {
			t.Errorf("%s: view reports contiguous", c.name)
		}
		y := c.v.Contiguous()
		if !y.IsContiguous() {
			t.Errorf("%s: Contiguous() is not contiguous: strides %v", c.name, y.Strides())
		}
		if !c.v.IsContiguous() && y.Storage() == x.Storage() {
			t.Errorf("%s: Contiguous() did not copy", c.name)
		}
		if !c.v.IsContiguous() && !slices.Equal(y.Strides(), tensor.ContiguousStrides(c.shape)) {
			t.Errorf("%s: strides %v", c.name, y.Strides())
		}
		checkView(t, c.name, y, c.shape, c.want)
		// the dense bytes of the copy are the values in row-major order
		b, err := y.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		fv := tensor.Float32View(b)
		i := 0
		forEach(c.shape, func(idx []int) {
			if fv[i] != c.want(idx) {
				t.Errorf("%s: Bytes at %v = %v, want %v", c.name, idx, fv[i], c.want(idx))
			}
			i++
		})
	}
	// Contiguous keeps the dtype of non-float tensors.
	ids := tensor.FromInt64([]int64{1, 2, 3, 4, 5, 6}, 2, 3)
	got, err := ids.T().Contiguous().Int64s()
	if err != nil || !slices.Equal(got, []int64{1, 4, 2, 5, 3, 6}) {
		t.Errorf("I64 T().Contiguous() = %v, %v", got, err)
	}
	bs, err := tensor.FromBool([]bool{true, false, false, true, true, false}, 3, 2).T().Contiguous().Bools()
	if err != nil || !slices.Equal(bs, []bool{true, false, true, false, true, false}) {
		t.Errorf("Bool T().Contiguous() = %v, %v", bs, err)
	}
}

func TestIsContiguous(t *testing.T) {
	x := arange(3, 5, 7)
	for _, c := range []struct {
		name string
		v    *tensor.Tensor
		want bool
	}{
		{"fresh", x, true},
		{"reshaped", x.Reshape(15, 7), true},
		{"permuted", x.Permute(1, 0, 2), false},
		{"transposed", x.T(), false},
		{"identity permute", x.Permute(0, 1, 2), true},
		{"narrow first dim", x.Narrow(0, 1, 2), true},
		{"narrow inner dim", x.Narrow(2, 0, 6), false},
		{"narrow middle dim", x.Narrow(1, 1, 3), false},
		{"narrow middle to 1", x.Narrow(1, 2, 1), false},
		{"index first", x.Index(0, 2), true},
		{"index middle", x.Index(1, 2), false},
		{"index last", x.Index(2, 2), false},
		{"unsqueezed", x.Unsqueeze(1).Unsqueeze(4), true},
		{"transpose of (1, n)", arange(1, 7).T(), true},
		{"transpose of (n, 1)", arange(7, 1).T(), true},
		{"expand size-1 only", arange(1, 7).Expand(1, 7), true},
		{"expand broadcast", arange(1, 7).Expand(3, 7), false},
		{"expand new leading", arange(7).Expand(1, 7), true},
		{"scalar", tensor.Scalar(1), true},
		{"narrow to one element", x.Narrow(0, 1, 1).Narrow(1, 3, 1).Narrow(2, 5, 1), true},
	} {
		if got := c.v.IsContiguous(); got != c.want {
			t.Errorf("%s: IsContiguous() = %v, want %v (shape %v, strides %v)", c.name, got, c.want, c.v.Shape(), c.v.Strides())
		}
	}
	if got := tensor.ContiguousStrides([]int{3, 5, 7}); !slices.Equal(got, []int{35, 7, 1}) {
		t.Errorf("ContiguousStrides = %v", got)
	}
	if got := tensor.ContiguousStrides(nil); len(got) != 0 {
		t.Errorf("ContiguousStrides(nil) = %v", got)
	}
}

func TestBroadcastShape(t *testing.T) {
	for _, c := range []struct {
		in   [][]int
		want []int
	}{
		{[][]int{{3, 1, 5}, {4, 1}}, []int{3, 4, 5}},
		{[][]int{{7}, {7}}, []int{7}},
		{[][]int{{}, {2, 3}}, []int{2, 3}},
		{[][]int{{}, {}}, []int{}},
		{[][]int{{1}, {2, 3}}, []int{2, 3}},
		{[][]int{{5, 1, 1}, {1, 7, 1}, {1, 1, 9}}, []int{5, 7, 9}},
		{[][]int{{1, 0}, {3, 1}}, []int{3, 0}},
		{[][]int{{2, 1, 33}, {1}, {9, 1}}, []int{2, 9, 33}},
		{[][]int{{2, 3}}, []int{2, 3}},
	} {
		got := tensor.BroadcastShape(c.in...)
		if !slices.Equal(got, c.want) {
			t.Errorf("BroadcastShape%v = %v, want %v", c.in, got, c.want)
		}
	}
	for _, in := range [][][]int{
		{{2}, {3}},
		{{3, 4}, {4, 3}},
		{{0}, {3}},
		{{3}, {0}},
		{{2, 1}, {1, 3}, {3, 3}},
	} {
		wantShapeError(t, fmt.Sprintf("BroadcastShape%v", in), func() { tensor.BroadcastShape(in...) })
	}
}

func TestAccessorsCopy(t *testing.T) {
	x := arange(3, 5)
	s := x.Shape()
	s[0] = 99
	st := x.Strides()
	st[0] = 99
	if x.Dim(0) != 3 || x.Strides()[0] != 5 {
		t.Errorf("Shape()/Strides() alias the tensor: %v %v", x.Shape(), x.Strides())
	}
	if x.Dim(-1) != 5 || x.Rank() != 2 || x.Numel() != 15 {
		t.Errorf("Dim(-1) %d, Rank %d, Numel %d", x.Dim(-1), x.Rank(), x.Numel())
	}
	if got := x.String(); got != "F32[3 5]@cpu" {
		t.Errorf("String() = %q", got)
	}
	// Views of a view do not alias the parent's shape slices.
	y := x.Reshape(15)
	_ = y.Unsqueeze(0)
	_ = x.Unsqueeze(1).Squeeze(1)
	if !slices.Equal(x.Shape(), []int{3, 5}) || !slices.Equal(y.Shape(), []int{15}) {
		t.Errorf("shapes changed by derived views: %v %v", x.Shape(), y.Shape())
	}
}

func TestShapeErrors(t *testing.T) {
	x := arange(3, 5, 7)
	m := arange(4, 6)
	for _, c := range []struct {
		name string
		f    func()
	}{
		{"Reshape wrong count", func() { x.Reshape(4, 26) }},
		{"Reshape two -1", func() { x.Reshape(-1, -1, 7) }},
		{"Reshape -1 not dividing", func() { x.Reshape(-1, 4) }},
		{"Reshape -1 with zero", func() { x.Reshape(0, -1) }},
		{"Reshape negative", func() { x.Reshape(-3, -35) }},
		{"Permute too few", func() { x.Permute(0, 1) }},
		{"Permute repeated", func() { x.Permute(0, 1, 1) }},
		{"Permute out of range", func() { x.Permute(0, 1, 3) }},
		{"Permute repeated via negative", func() { x.Permute(0, 2, -1) }},
		{"Transpose out of range", func() { x.Transpose(0, 3) }},
		{"T of rank 1", func() { arange(5).T() }},
		{"Narrow past end", func() { x.Narrow(1, 3, 3) }},
		{"Narrow negative start", func() { x.Narrow(1, -1, 2) }},
		{"Narrow negative length", func() { x.Narrow(1, 2, -1) }},
		{"Narrow bad axis", func() { x.Narrow(3, 0, 1) }},
		{"Index out of range", func() { x.Index(0, 3) }},
		{"Index negative", func() { x.Index(0, -1) }},
		{"Squeeze non-1", func() { x.Squeeze(1) }},
		{"Squeeze bad axis", func() { x.Squeeze(-4) }},
		{"Unsqueeze too far", func() { x.Unsqueeze(4) }},
		{"Unsqueeze too far negative", func() { x.Unsqueeze(-5) }},
		{"Dim out of range", func() { x.Dim(3) }},
		{"Expand fewer dims", func() { x.Expand(5, 7) }},
		{"Expand non-1 dim", func() { x.Expand(3, 6, 7) }},
		{"Expand to 1", func() { x.Expand(3, 1, 7) }},
		{"New negative", func() { tensor.New(tensor.CPU(), tensor.F32, 2, -1) }},
		{"FromFloat32 wrong size", func() { tensor.FromFloat32(make([]float32, 5), 2, 3) }},
		{"Cast I64 to F32", func() { tensor.FromInt64([]int64{1}, 1).Cast(tensor.F32) }},
		{"MatMul inner", func() { tensor.MatMul(m, m) }},
		{"MatMul rank 1", func() { tensor.MatMul(arange(6), m) }},
		{"MatMul batch", func() { tensor.MatMul(arange(2, 4, 6), arange(3, 6, 2)) }},
		{"Add no broadcast", func() { tensor.Add(m, arange(4, 5)) }},
		{"Concat mismatch", func() { tensor.Concat(0, m, arange(4, 5)) }},
		{"Concat none", func() { tensor.Concat(0) }},
		{"Linear weight", func() { tensor.Linear(m, arange(3, 5), nil) }},
		{"LayerNorm weight", func() { tensor.LayerNorm(m, arange(5), nil, 1e-5) }},
		{"GroupNorm groups", func() { tensor.GroupNorm(arange(2, 6, 3), 4, arange(6), arange(6), 1e-5, false) }},
		{"Conv2d channels", func() { tensor.Conv2d(arange(1, 3, 5, 5), arange(2, 4, 3, 3), nil, 1, 1) }},
		{"Conv2d too small", func() { tensor.Conv2d(arange(1, 1, 2, 2), arange(1, 1, 3, 3), nil, 1, 0) }},
		{"Attention rank", func() { tensor.Attention(m, m, m, nil, 1, false) }},
		{"Embedding float ids", func() { tensor.Embedding(m, arange(3)) }},
		{"UnaryFloat I64", func() { tensor.SiLU(tensor.FromInt64([]int64{1}, 1)) }},
		{"CopyInto shape", func() { _ = tensor.CopyInto(arange(3, 4), arange(4, 3)) }},
		{"AvgPool2d kernel", func() { tensor.AvgPool2d(arange(1, 1, 3, 3), 4) }},
	} {
		wantShapeError(t, c.name, c.f)
	}
}

func TestCatch(t *testing.T) {
	x := arange(3, 5)
	err := tensor.Catch(func() error {
		x.Reshape(4, 4)
		return nil
	})
	var se *tensor.ShapeError
	if !errors.As(err, &se) {
		t.Fatalf("Catch of a shape panic = %v (%T), want a *tensor.ShapeError", err, err)
	}
	if !strings.Contains(se.Error(), "Reshape") || se.Msg != se.Error() {
		t.Errorf("ShapeError message %q", se.Error())
	}
	if err := tensor.Catch(func() error { x.Permute(0, 1); return nil }); err != nil {
		t.Errorf("Catch without a panic = %v", err)
	}
	plain := errors.New("plain")
	if err := tensor.Catch(func() error { return plain }); err != plain {
		t.Errorf("Catch passes on %v, want the function's error", err)
	}
	// Other panics propagate.
	func() {
		defer func() {
			if r := recover(); r != "other" {
				t.Errorf("recovered %v, want the original panic", r)
			}
		}()
		_ = tensor.Catch(func() error { panic("other") })
		t.Error("Catch swallowed a non-shape panic")
	}()
}

// devBackend is a stand-in for a GPU: its storage is not host memory (Host
// is nil, bytes live behind Handle), it moves data only through Upload and
// Download, and it runs no kernels. failAlloc makes every allocation fail.
type devBackend struct{ failAlloc bool }

func (b *devBackend) Name() string { return "dev" }

func (b *devBackend) Alloc(n int) (*tensor.Storage, error) {
	if b.failAlloc {
		return nil, errors.New("dev: out of memory")
	}
	return tensor.NewDeviceStorage(b, make([]byte, n), n), nil
}

func (b *devBackend) Upload(src []byte) (*tensor.Storage, error) {
	if b.failAlloc {
		return nil, errors.New("dev: out of memory")
	}
	return tensor.NewDeviceStorage(b, slices.Clone(src), len(src)), nil
}

func (b *devBackend) Download(s *tensor.Storage, dst []byte, off int) error {
	h := s.Handle.([]byte)
	if off < 0 || off+len(dst) > len(h) {
		return fmt.Errorf("dev: read [%d, %d) of %d bytes", off, off+len(dst), len(h))
	}
	copy(dst, h[off:])
	return nil
}

func (b *devBackend) Run(n *tensor.Node) error               { return fmt.Errorf("dev: no kernel for %v", n.Op) }
func (b *devBackend) Sync() error                            { return nil }
func (b *devBackend) Reserve(n int) (*tensor.Storage, error) { return b.Alloc(n) }
func (b *devBackend) Free(*tensor.Storage)                   {}
func (b *devBackend) Write(s *tensor.Storage, off int, src []byte) error {
	copy(s.Handle.([]byte)[off:], src)
	return nil
}

func TestDeviceTransfer(t *testing.T) {
	dev := &devBackend{}
	x := arange(3, 5, 7)
	d := x.To(dev)
	if d.Backend() != dev || d.Storage().Host != nil || d.Err() != nil {
		t.Fatalf("To(dev): backend %v, host %v, err %v", d.Backend().Name(), d.Storage().Host != nil, d.Err())
	}
	if d.To(dev) != d {
		t.Error("To the tensor's own backend copied")
	}
	shape := []int{3, 5, 7}
	checkView(t, "To(dev)", d, shape, func(idx []int) float32 { return float32(flat(shape, idx)) })
	// Contiguous views of device memory read through Download at an offset.
	checkView(t, "dev Narrow(0,1,2)", d.Narrow(0, 1, 2), []int{2, 5, 7}, func(idx []int) float32 { return float32(35 + flat([]int{2, 5, 7}, idx)) })
	checkView(t, "dev Index(0,2).Index(0,4)", d.Index(0, 2).Index(0, 4), []int{7}, func(idx []int) float32 { return float32(70 + 28 + idx[0]) })
	checkView(t, "dev Reshape", d.Reshape(-1, 5), []int{21, 5}, func(idx []int) float32 { return float32(idx[0]*5 + idx[1]) })
	// A strided CPU view is made dense on the way over.
	p := x.Permute(2, 0, 1).To(dev)
	checkView(t, "permuted To(dev)", p, []int{7, 3, 5}, func(idx []int) float32 { return float32(flat(shape, []int{idx[1], idx[2], idx[0]})) })
	back := d.To(tensor.CPU())
	if back.Backend() != tensor.CPU() || back.Storage().Host == nil {
		t.Error("To(CPU) did not give a CPU tensor")
	}
	checkView(t, "To(dev).To(cpu)", back, shape, func(idx []int) float32 { return float32(flat(shape, idx)) })
	// Empty tensors move too.
	if b, err := arange(0, 3).To(dev).Bytes(); err != nil || len(b) != 0 {
		t.Errorf("empty tensor via dev: %v, %v", b, err)
	}
	// A strided device view needs a kernel to read; this backend has none,
	// so the read fails with the backend's error instead of panicking.
	if _, err := d.Permute(1, 0, 2).Float32s(); err == nil || !strings.Contains(err.Error(), "dev") {
		t.Errorf("strided device read: err %v, want the backend's error", err)
	}
}

func TestDeviceErrorsPropagate(t *testing.T) {
	dev := &devBackend{}
	x := arange(2, 3).To(dev)
	y := tensor.SiLU(x)
	if y.Err() == nil {
		t.Fatal("an op the backend cannot run did not fail")
	}
	for _, s := range []string{"dev", "unary"} {
		if !strings.Contains(y.Err().Error(), s) {
			t.Errorf("error %q does not name %q", y.Err(), s)
		}
	}
	// Every tensor computed from a failed one carries the first error, and
	// reading returns it.
	z := tensor.MatMul(tensor.Add(y, x).Reshape(3, 2), x)
	if !errors.Is(z.Err(), y.Err()) && (z.Err() == nil || z.Err().Error() != y.Err().Error()) {
		t.Errorf("downstream error %v, want %v", z.Err(), y.Err())
	}
	if _, err := z.Float32s(); err == nil {
		t.Error("Float32s of a failed tensor returned no error")
	}
	if _, err := y.T().Bytes(); err == nil {
		t.Error("Bytes of a view of a failed tensor returned no error")
	}
	if err := tensor.CopyInto(arange(2, 3).To(dev), y); err == nil {
		t.Error("CopyInto from a failed tensor returned no error")
	}

	// A failed allocation is carried the same way.
	oom := &devBackend{failAlloc: true}
	n := tensor.New(oom, tensor.F32, 4, 5)
	if n.Err() == nil || !strings.Contains(n.Err().Error(), "out of memory") {
		t.Fatalf("New on a full device: err %v", n.Err())
	}
	if !slices.Equal(n.Shape(), []int{4, 5}) {
		t.Errorf("failed New keeps shape %v", n.Shape())
	}
	if _, err := tensor.Scale(n.Narrow(0, 1, 2), 2).Float32s(); err == nil {
		t.Error("an op on a failed allocation did not fail")
	}
	u := arange(3).To(oom)
	if u.Err() == nil {
		t.Error("upload to a full device did not fail")
	}
	if _, err := u.Float32s(); err == nil {
		t.Error("reading a failed upload returned no error")
	}
}

// TestMixedBackends: an op whose operands live on different backends is
// an error carried by its result (or returned by CopyInto), never a panic
// and never a crash inside a kernel that reads memory it does not own.
func TestMixedBackends(t *testing.T) {
	dev := &devBackend{}
	c := arange(3, 4)
	d := arange(3, 4).To(dev)
	for _, tc := range []struct {
		name string
		f    func() error
	}{
		{"MatMul", func() error { return tensor.MatMul(c, d.T()).Err() }},
		{"Add", func() error { return tensor.Add(d, c).Err() }},
		{"LayerNorm weight", func() error { return tensor.LayerNorm(c, arange(4).To(dev), nil, 1e-5).Err() }},
		{"CopyInto cpu dst dev src", func() error { return tensor.CopyInto(c, d) }},
		{"CopyInto dev dst cpu src", func() error { return tensor.CopyInto(d, c) }},
		{"Concat", func() error { return tensor.Concat(0, c, d).Err() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.f()
			if err == nil || !strings.Contains(err.Error(), "operands on") {
				t.Errorf("%s: error %v, want one naming the operands' backends", tc.name, err)
			}
		})
	}
	if err := c.Err(); err != nil {
		t.Errorf("a failed CopyInto left an error on its destination: %v", err)
	}
}
