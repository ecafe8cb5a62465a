package clip

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/unclip-go/unclip/models/golden/fixtures"
	"github.com/unclip-go/unclip/tensor/safetensors"
)

// variationFixture opens the image-variation recording (its golden
// tensors, raw) and returns its folder.
func variationFixture(t *testing.T) (string, *safetensors.File) {
	t.Helper()
	dir := filepath.Join(fixtures.Require(t), "unclip-tiny-variation")
	st, err := safetensors.Open(filepath.Join(dir, "golden.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return dir, st
}

func goldenU8(t *testing.T, st *safetensors.File, key string) ([]uint8, []int) {
	t.Helper()
	info, ok := st.Get(key)
	if !ok {
		t.Fatalf("no %s in the recording", key)
	}
	if info.DType != safetensors.U8 {
		t.Fatalf("%s: %v, want U8", key, info.DType)
	}
	return info.Data, info.Shape
}

func sameBytes(t *testing.T, name string, got, want []uint8) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	bad, worst := 0, 0
	for i := range want {
		if d := int(got[i]) - int(want[i]); d != 0 {
			bad++
			worst = max(worst, d, -d)
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d values differ (by up to %d levels)", name, bad, len(want), worst)
	}
}

// TestImagePreprocessing reproduces CLIPImageProcessor bit for bit on the
// recorded inputs: PNG decoding, the shortest-edge Pillow bicubic resize,
// the center crop and the float32 pixel values; and Pillow's resize alone
// on the recorded one-axis, strong-downscale and upscale cases.
func TestImagePreprocessing(t *testing.T) {
	dir, st := variationFixture(t)
	p, err := LoadImageProcessor(filepath.Join(dir, "model", "feature_extractor"))
	if err != nil {
		t.Fatal(err)
	}
	imgs := map[string]*RGB{}
	for i := 0; i < 2; i++ {
		f, err := os.Open(filepath.Join(dir, "inputs", fmt.Sprintf("input%d.png", i)))
		if err != nil {
			t.Fatal(err)
		}
		img, err := DecodeImage(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprintf("inputs.image%d", i)
		want, shape := goldenU8(t, st, key)
		if img.H != shape[0] || img.W != shape[1] {
			t.Fatalf("%s: %d×%d, want %v", key, img.H, img.W, shape)
		}
		sameBytes(t, key, img.Pix, want)
		imgs[key] = img
		pix, resized, cropped := p.Preprocess(img)
		pre := fmt.Sprintf("preprocess.image%d.", i)
		want, shape = goldenU8(t, st, pre+"resized")
		if resized.H != shape[0] || resized.W != shape[1] {
			t.Fatalf("%sresized: %d×%d, want %v", pre, resized.H, resized.W, shape)
		}
		sameBytes(t, pre+"resized", resized.Pix, want)
		want, _ = goldenU8(t, st, pre+"cropped")
		sameBytes(t, pre+"cropped", cropped.Pix, want)
		info, ok := st.Get(pre + "pixel_values")
		if !ok {
			t.Fatalf("no %spixel_values in the recording", pre)
		}
		wantF, err := info.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		bad := 0
		for j := range wantF {
			if pix[j] != wantF[j] {
				bad++
			}
		}
		if bad > 0 {
			t.Errorf("%spixel_values: %d of %d values differ", pre, bad, len(wantF))
		}
	}
	var meta struct {
		Cases []struct {
			Case          int
			Input         string
			Width, Height int
		} `json:"pil_bicubic_cases"`
	}
	if err := readJSON(filepath.Join(dir, "golden.json"), &meta); err != nil {
		t.Fatal(err)
	}
	if len(meta.Cases) == 0 {
		t.Fatal("no pil_bicubic_cases in golden.json")
	}
	for _, c := range meta.Cases {
		out := ResizeBicubic(imgs[c.Input], c.Width, c.Height)
		want, _ := goldenU8(t, st, fmt.Sprintf("pil_bicubic.case%d.out", c.Case))
		sameBytes(t, fmt.Sprintf("case %d (%s → %d×%d)", c.Case, c.Input, c.Width, c.Height), out.Pix, want)
	}
}

// TestDecodeImageModes converts gray, gray+alpha, palette, 16-bit and
// RGBA PNGs as Pillow's convert("RGB") does.
func TestDecodeImageModes(t *testing.T) {
	cases := []struct {
		name string
		img  image.Image
		want [3]uint8
	}{
		{"gray", &image.Gray{Pix: []uint8{77}, Stride: 1, Rect: image.Rect(0, 0, 1, 1)}, [3]uint8{77, 77, 77}},
		{"gray16", &image.Gray16{Pix: []uint8{0x12, 0x34}, Stride: 2, Rect: image.Rect(0, 0, 1, 1)}, [3]uint8{0x12, 0x12, 0x12}},
		{"rgba-translucent", &image.NRGBA{Pix: []uint8{200, 100, 50, 128}, Stride: 4, Rect: image.Rect(0, 0, 1, 1)}, [3]uint8{200, 100, 50}},
		{"rgb48", &image.NRGBA64{Pix: []uint8{0xab, 0xcd, 0x12, 0x34, 0xfe, 0xdc, 0xff, 0xff}, Stride: 8, Rect: image.Rect(0, 0, 1, 1)}, [3]uint8{0xab, 0x12, 0xfe}},
		{"palette", &image.Paletted{Pix: []uint8{1}, Stride: 1, Rect: image.Rect(0, 0, 1, 1),
			Palette: color.Palette{color.NRGBA{0, 0, 0, 255}, color.NRGBA{9, 8, 7, 255}}}, [3]uint8{9, 8, 7}},
	}
	for _, c := range cases {
		var buf bytes.Buffer
		if err := png.Encode(&buf, c.img); err != nil {
			t.Fatal(err)
		}
		got, err := DecodeImage(&buf)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if [3]uint8(got.Pix) != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got.Pix, c.want)
		}
	}
	if _, err := DecodeImage(bytes.NewReader([]byte("GIF89a not really"))); err == nil {
		t.Error("a non-image decoded")
	}
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}
