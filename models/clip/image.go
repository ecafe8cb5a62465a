package clip

import (
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // JPEG input (Go's decoder; see DecodeImage)
	_ "image/png"
	"io"
	"math"
	"path/filepath"

	"github.com/unclip-go/unclip/models/modelfile"
)

// RGB is an 8-bit RGB image, row-major H×W×3 (the array CLIPImageProcessor
// works on after its RGB conversion).
type RGB struct {
	W, H int
	Pix  []uint8
}

// DecodeImage reads a PNG or JPEG and converts it to RGB as Pillow's
// convert("RGB") does for the common modes: gray is replicated, a palette
// looked up, alpha dropped (not composited), and 16-bit samples keep their
// high byte. JPEG is decoded by Go's image/jpeg, whose IDCT and chroma
// upsampling can differ from Pillow's libjpeg by a level or two.
func DecodeImage(r io.Reader) (*RGB, error) {
	img, format, err := image.Decode(r)
	if err != nil {
		return nil, fmt.Errorf("decoding image: %w", err)
	}
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if w <= 0 || h <= 0 || w > 1<<15 || h > 1<<15 {
		return nil, fmt.Errorf("%s image of %d×%d pixels (want 1..32768 per side)", format, w, h)
	}
	out := &RGB{W: w, H: h, Pix: make([]uint8, 3*w*h)}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			p := out.Pix[3*(y*w+x):]
			switch c := img.At(b.Min.X+x, b.Min.Y+y).(type) {
			case color.NRGBA:
				p[0], p[1], p[2] = c.R, c.G, c.B
			case color.NRGBA64:
				p[0], p[1], p[2] = uint8(c.R>>8), uint8(c.G>>8), uint8(c.B>>8)
			case color.Gray:
				p[0], p[1], p[2] = c.Y, c.Y, c.Y
			case color.Gray16:
				p[0], p[1], p[2] = uint8(c.Y>>8), uint8(c.Y>>8), uint8(c.Y>>8)
			default:
				// RGBA (premultiplied, from an opaque decoder), YCbCr,
				// palettes: their non-premultiplied colour.
				n := color.NRGBAModel.Convert(c).(color.NRGBA)
				p[0], p[1], p[2] = n.R, n.G, n.B
			}
		}
	}
	return out, nil
}

// pillowPrecision is the fixed-point precision of Pillow's 8-bit resampler
// (Resample.c: PRECISION_BITS = 32 − 8 − 2).
const pillowPrecision = 22

// bicubic is the Keys cubic with a = −0.5, Pillow's BICUBIC filter.
func bicubic(t float64) float64 {
	const a = -0.5
	t = math.Abs(t)
	switch {
	case t < 1:
		return ((a+2)*t-(a+3))*t*t + 1
	case t < 2:
		return ((t-5)*t+8)*t*a - 4*a
	}
	return 0
}

// pillowCoeffs are the fixed-point weights of one axis: for output i, the
// inputs [lo[i], lo[i]+n[i]) with weights k[i·ksize:].
type pillowCoeffs struct {
	lo, n []int
	k     []int32
	ksize int
}

// precompute mirrors Pillow's precompute_coeffs and normalize_coeffs_8bpc
// for resizing in → out pixels: support scaled by the downsampling factor,
// weights normalised by their plain sum, then rounded to 22-bit fixed point.
func precompute(in, out int) pillowCoeffs {
	scale := float64(in) / float64(out)
	filterscale := max(scale, 1)
	support := 2 * filterscale
	ksize := int(math.Ceil(support))*2 + 1
	c := pillowCoeffs{lo: make([]int, out), n: make([]int, out), k: make([]int32, out*ksize), ksize: ksize}
	ww := make([]float64, ksize)
	ss := 1 / filterscale
	for i := 0; i < out; i++ {
		center := (float64(i) + 0.5) * scale
		xmin := max(0, int(center-support+0.5))
		xmax := min(in, int(center+support+0.5)) - xmin
		var total float64
		for x := 0; x < xmax; x++ {
			w := bicubic((float64(x+xmin) - center + 0.5) * ss)
			ww[x] = w
			total += w
		}
		for x := 0; x < xmax; x++ {
			w := ww[x]
			if total != 0 {
				w /= total
			}
			if w < 0 {
				c.k[i*ksize+x] = int32(w*(1<<pillowPrecision) - 0.5)
			} else {
				c.k[i*ksize+x] = int32(w*(1<<pillowPrecision) + 0.5)
			}
		}
		c.lo[i], c.n[i] = xmin, xmax
	}
	return c
}

func clip8(v int64) uint8 {
	v >>= pillowPrecision
	switch {
	case v < 0:
		return 0
	case v > 255:
		return 255
	}
	return uint8(v)
}

// ResizeBicubic resizes img to w×h exactly as Pillow's
// Image.resize((w, h), BICUBIC) does for an 8-bit RGB image: a horizontal
// pass (when the width changes) whose result is rounded and clipped to
// 8 bits, then a vertical pass (when the height changes), each with
// 22-bit fixed-point weights.
func ResizeBicubic(img *RGB, w, h int) *RGB {
	cur := img
	if w != cur.W {
		c := precompute(cur.W, w)
		next := &RGB{W: w, H: cur.H, Pix: make([]uint8, 3*w*cur.H)}
		for y := 0; y < cur.H; y++ {
			row := cur.Pix[3*y*cur.W:]
			for x := 0; x < w; x++ {
				k := c.k[x*c.ksize:]
				for ch := 0; ch < 3; ch++ {
					s := int64(1) << (pillowPrecision - 1)
					for j := 0; j < c.n[x]; j++ {
						s += int64(row[3*(c.lo[x]+j)+ch]) * int64(k[j])
					}
					next.Pix[3*(y*w+x)+ch] = clip8(s)
				}
			}
		}
		cur = next
	}
	if h != cur.H {
		c := precompute(cur.H, h)
		next := &RGB{W: cur.W, H: h, Pix: make([]uint8, 3*cur.W*h)}
		for y := 0; y < h; y++ {
			k := c.k[y*c.ksize:]
			for x := 0; x < cur.W; x++ {
				for ch := 0; ch < 3; ch++ {
					s := int64(1) << (pillowPrecision - 1)
					for j := 0; j < c.n[y]; j++ {
						s += int64(cur.Pix[3*((c.lo[y]+j)*cur.W+x)+ch]) * int64(k[j])
					}
					next.Pix[3*(y*cur.W+x)+ch] = clip8(s)
				}
			}
		}
		cur = next
	}
	if cur == img {
		cur = &RGB{W: img.W, H: img.H, Pix: append([]uint8(nil), img.Pix...)}
	}
	return cur
}

// CenterCrop cuts an h×w window from the middle (top and left offsets
// floored), padding with zeros where the image is smaller, as
// CLIPImageProcessor's center_crop does.
func CenterCrop(img *RGB, w, h int) *RGB {
	top, left := (img.H-h)/2, (img.W-w)/2
	if img.H < h {
		top = -((h - img.H + 1) / 2)
	}
	if img.W < w {
		left = -((w - img.W + 1) / 2)
	}
	out := &RGB{W: w, H: h, Pix: make([]uint8, 3*w*h)}
	for y := 0; y < h; y++ {
		sy := y + top
		if sy < 0 || sy >= img.H {
			continue
		}
		for x := 0; x < w; x++ {
			sx := x + left
			if sx < 0 || sx >= img.W {
				continue
			}
			copy(out.Pix[3*(y*w+x):3*(y*w+x)+3], img.Pix[3*(sy*img.W+sx):])
		}
	}
	return out
}

// ImageProcessor is CLIPImageProcessor (preprocessor_config.json), the
// PIL path: RGB, shortest-edge bicubic resize, center crop, rescale and
// normalise.
type ImageProcessor struct {
	ShortestEdge  int        // resize target of the shorter side
	CropW, CropH  int        // center crop
	RescaleFactor float64    // 1/255
	Mean, Std     [3]float64 // per-channel normalisation
	DoResize      bool
	DoCenterCrop  bool
	DoRescale     bool
	DoNormalize   bool
}

// NewImageProcessor is CLIPImageProcessor's defaults for images of size
// pixels: shortest edge and center crop of that size, rescale by 1/255 and
// the CLIP mean and standard deviation.
func NewImageProcessor(size int) *ImageProcessor {
	return &ImageProcessor{ShortestEdge: size, CropW: size, CropH: size, RescaleFactor: 1.0 / 255,
		DoResize: true, DoCenterCrop: true, DoRescale: true, DoNormalize: true,
		Mean: [3]float64{0.48145466, 0.4578275, 0.40821073}, Std: [3]float64{0.26862954, 0.26130258, 0.27577711}}
}

// LoadImageProcessor reads a feature_extractor folder's
// preprocessor_config.json.
func LoadImageProcessor(dir string) (*ImageProcessor, error) {
	path := filepath.Join(dir, "preprocessor_config.json")
	data, err := modelfile.Read(path, 1<<20)
	if err != nil {
		return nil, err
	}
	var c struct {
		Size          json.RawMessage `json:"size"`
		CropSize      json.RawMessage `json:"crop_size"`
		RescaleFactor *float64        `json:"rescale_factor"`
		Mean          []float64       `json:"image_mean"`
		Std           []float64       `json:"image_std"`
		Resample      *int            `json:"resample"`
		DoResize      *bool           `json:"do_resize"`
		DoCenterCrop  *bool           `json:"do_center_crop"`
		DoRescale     *bool           `json:"do_rescale"`
		DoNormalize   *bool           `json:"do_normalize"`
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	p := NewImageProcessor(0)
	for _, b := range []struct {
		dst *bool
		src *bool
	}{{&p.DoResize, c.DoResize}, {&p.DoCenterCrop, c.DoCenterCrop}, {&p.DoRescale, c.DoRescale}, {&p.DoNormalize, c.DoNormalize}} {
		if b.src != nil {
			*b.dst = *b.src
		}
	}
	if c.Resample != nil && *c.Resample != 3 {
		return nil, fmt.Errorf("%s: resample %d is not supported (only 3, bicubic)", path, *c.Resample)
	}
	if c.RescaleFactor != nil {
		p.RescaleFactor = *c.RescaleFactor
	}
	if len(c.Mean) > 0 || len(c.Std) > 0 {
		if len(c.Mean) != 3 || len(c.Std) != 3 {
			return nil, fmt.Errorf("%s: image_mean and image_std need 3 values each", path)
		}
		copy(p.Mean[:], c.Mean)
		copy(p.Std[:], c.Std)
	}
	// size: {"shortest_edge": n} or a plain n (older configs).
	var se struct {
		ShortestEdge int `json:"shortest_edge"`
	}
	if err := json.Unmarshal(c.Size, &se); err != nil || se.ShortestEdge == 0 {
		if err := json.Unmarshal(c.Size, &se.ShortestEdge); err != nil {
			return nil, fmt.Errorf("%s: size must be {\"shortest_edge\": n} or n", path)
		}
	}
	var cs struct{ Height, Width int }
	if err := json.Unmarshal(c.CropSize, &cs); err != nil || cs.Height == 0 {
		var n int
		if err := json.Unmarshal(c.CropSize, &n); err != nil {
			return nil, fmt.Errorf("%s: crop_size must be {\"height\": h, \"width\": w} or n", path)
		}
		cs.Height, cs.Width = n, n
	}
	p.ShortestEdge, p.CropH, p.CropW = se.ShortestEdge, cs.Height, cs.Width
	for _, v := range []int{p.ShortestEdge, p.CropH, p.CropW} {
		if v < 1 || v > 4096 {
			return nil, fmt.Errorf("%s: image size %d out of range 1..4096", path, v)
		}
	}
	for _, s := range p.Std {
		if s == 0 || math.IsNaN(s) || math.IsInf(s, 0) {
			return nil, fmt.Errorf("%s: image_std %v", path, p.Std)
		}
	}
	return p, nil
}

// ResizeShortestEdge scales img so that its shorter side is n pixels; the
// longer one becomes int(n·long/short) (CLIPImageProcessor's
// get_resize_output_image_size).
func ResizeShortestEdge(img *RGB, n int) *RGB {
	short, long := min(img.W, img.H), max(img.W, img.H)
	nl := int(float64(n*long) / float64(short))
	if img.W <= img.H {
		return ResizeBicubic(img, n, nl)
	}
	return ResizeBicubic(img, nl, n)
}

// Preprocess turns one image into pixel_values (3, CropH, CropW), float32
// CHW, and returns the intermediate images (resized, cropped) too.
func (p *ImageProcessor) Preprocess(img *RGB) (pix []float32, resized, cropped *RGB) {
	resized, cropped = img, img
	if p.DoResize {
		resized = ResizeShortestEdge(img, p.ShortestEdge)
		cropped = resized
	}
	if p.DoCenterCrop {
		cropped = CenterCrop(resized, p.CropW, p.CropH)
	}
	h, w := cropped.H, cropped.W
	pix = make([]float32, 3*h*w)
	var mean, std [3]float32
	for c := range mean {
		mean[c], std[c] = float32(p.Mean[c]), float32(p.Std[c])
	}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			for c := 0; c < 3; c++ {
				v := float32(cropped.Pix[3*(y*w+x)+c])
				if p.DoRescale {
					v = float32(float64(cropped.Pix[3*(y*w+x)+c]) * p.RescaleFactor)
				}
				if p.DoNormalize {
					v = (v - mean[c]) / std[c]
				}
				pix[(c*h+y)*w+x] = v
			}
		}
	}
	return pix, resized, cropped
}
