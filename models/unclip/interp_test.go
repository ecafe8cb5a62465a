package unclip

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/unclip-go/unclip/models/golden"
	"github.com/unclip-go/unclip/models/golden/fixtures"
)

// TestInterpolationMath checks torch's linspace and the community
// pipelines' slerp against the image-interpolation recording: the weights
// exactly, the slerped embeddings from the recorded end points within
// 1e-5 (the fixture's tolerance), and the end points exactly.
func TestInterpolationMath(t *testing.T) {
	dir := filepath.Join(fixtures.Require(t), "unclip-tiny-variation")
	g, err := golden.Open(filepath.Join(dir, "golden.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for _, run := range []string{"interp_image.", "interp_text."} {
		wantT, _, err := g.Float32s(run + "interp.t")
		if err != nil {
			t.Fatal(err)
		}
		gotT := Linspace(0, 1, len(wantT))
		for i := range wantT {
			if gotT[i] != wantT[i] {
				t.Errorf("%slinspace[%d] = %v, want %v", run, i, gotT[i], wantT[i])
			}
		}
	}
	ends, shape, err := g.Float32s("interp_image.image_encoder.call0.out.image_embeds")
	if err != nil {
		t.Fatal(err)
	}
	want, _, err := g.Float32s("interp_image.interp.image_embeddings")
	if err != nil {
		t.Fatal(err)
	}
	d := shape[1]
	low, high := ends[:d], ends[d:]
	ts := Linspace(0, 1, len(want)/d)
	for i, tv := range ts {
		got, err := Slerp(tv, low, high)
		if err != nil {
			t.Fatal(err)
		}
		worst := 0.0
		for j := range got {
			worst = max(worst, math.Abs(float64(got[j]-want[i*d+j])))
		}
		if worst > 1e-5 {
			t.Errorf("frame %d (t=%v): max abs %.3g > 1e-5", i, tv, worst)
		}
		if (tv == 0 || tv == 1) && worst != 0 {
			t.Errorf("frame %d (t=%v): the end point is not exact (%.3g)", i, tv, worst)
		}
	}
	// The text run slerps whole 77×D matrices (one norm over all values).
	hid, hs, err := g.Float32s("interp_text.text_encoder.call0.out.last_hidden_state")
	if err != nil {
		t.Fatal(err)
	}
	wantH, _, err := g.Float32s("interp_text.interp.last_hidden_state")
	if err != nil {
		t.Fatal(err)
	}
	n := hs[1] * hs[2]
	for i, tv := range Linspace(0, 1, len(wantH)/n) {
		got, _ := Slerp(tv, hid[:n], hid[n:2*n])
		worst := 0.0
		for j := range got {
			worst = max(worst, math.Abs(float64(got[j]-wantH[i*n+j])))
		}
		if worst > 1e-5 {
			t.Errorf("text frame %d: max abs %.3g > 1e-5", i, worst)
		}
	}
	if _, err := Slerp(0.5, []float32{1, 2}, []float32{1}); err == nil {
		t.Error("mismatched lengths accepted")
	}
}

func TestLinspaceEdges(t *testing.T) {
	if got := Linspace(0, 1, 1); len(got) != 1 || got[0] != 0 {
		t.Errorf("linspace(0, 1, 1) = %v", got)
	}
	if got := Linspace(2, -2, 5); got[0] != 2 || got[4] != -2 || got[2] != 0 {
		t.Errorf("linspace(2, -2, 5) = %v", got)
	}
}
