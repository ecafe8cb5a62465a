package unclip

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/unclip-go/unclip/models/clip"
	"github.com/unclip-go/unclip/tensor"
)

// The other half of the unCLIP paper, on top of Generate: image variations
// (diffusers' UnCLIPImageVariationPipeline), the community image and text
// interpolation pipelines, and the paper's text diffs.

// PixelValues preprocesses images as CLIPImageProcessor does and stacks
// them: (N, 3, crop, crop) float32 on the CPU.
func (p *Pipeline) PixelValues(imgs []*clip.RGB) (*tensor.Tensor, error) {
	if p.Features == nil {
		return nil, fmt.Errorf("%s has no feature_extractor (CLIPImageProcessor): not an image-variations model", p.Dir)
	}
	if len(imgs) == 0 {
		return nil, fmt.Errorf("no image")
	}
	var all []float32
	var h, w int
	for i, img := range imgs {
		pix, _, cropped := p.Features.Preprocess(img)
		if i > 0 && (cropped.H != h || cropped.W != w) {
			return nil, fmt.Errorf("image %d preprocesses to %d×%d, image 0 to %d×%d", i, cropped.W, cropped.H, w, h)
		}
		h, w = cropped.H, cropped.W
		all = append(all, pix...)
	}
	return tensor.FromFloat32(all, len(imgs), 3, h, w), nil
}

// EncodeImages runs the image encoder on images in one batch and returns
// their CLIP image embeddings (image_embeds), N rows of projection_dim
// values.
func (p *Pipeline) EncodeImages(ctx context.Context, req *Request, imgs []*clip.RGB) ([]float32, error) {
	if p.Image == nil {
		return nil, fmt.Errorf("%s has no image_encoder: image variations and image interpolation need an image-variations model (kakaobrain/karlo-v1-alpha-image-variations)", p.Dir)
	}
	t0 := time.Now()
	pix, err := p.PixelValues(imgs)
	if err != nil {
		return nil, err
	}
	if err := p.Acquire("image"); err != nil {
		return nil, err
	}
	defer p.Release("image")
	out, err := p.Image.Forward(pix)
	if err != nil {
		return nil, err
	}
	emb, err := out.ImageEmbeds.Float32s()
	freeAll(out.ImageEmbeds, out.LastHidden)
	if err != nil {
		return nil, err
	}
	req.progress(Event{Stage: "image", Step: 1, Total: 1, Elapsed: time.Since(t0), Done: true})
	return emb, ctx.Err()
}

// Variation turns req into UnCLIPImageVariationPipeline's request for
// images with the given embeddings (one row each): one empty prompt per
// image, the embeddings in place of the prior, ImagesPerPrompt variations
// of each image.
func Variation(req Request, embeddings []float32, images int) Request {
	req.Prompts = make([]string, images)
	req.ImageEmbeddings = embeddings
	return req
}

// SlerpFrames is the community image-interpolation pipeline's
// embedding path: frames slerps (Slerp, element-wise) from low to high at
// t = Linspace(0, 1, frames). It returns frames rows and the weights.
func SlerpFrames(low, high []float32, frames int) (rows, t []float32, err error) {
	if frames < 1 {
		return nil, nil, fmt.Errorf("interpolation needs at least 1 frame, got %d", frames)
	}
	t = Linspace(0, 1, frames)
	for _, v := range t {
		r, err := Slerp(v, low, high)
		if err != nil {
			return nil, nil, err
		}
		rows = append(rows, r...)
	}
	return rows, t, nil
}

// ImageInterpolation turns req into the community image-interpolation
// pipeline's request for slerped embeddings (frames rows): an empty prompt
// per frame and one decoder starting latent shared by every frame.
func ImageInterpolation(req Request, rows []float32, frames int) Request {
	req = Variation(req, rows, frames)
	req.ImagesPerPrompt = 1
	req.SharedDecoderLatent = true
	return req
}

// TextInterpolation is the encoded text of the community
// text-interpolation pipeline, before the unconditional rows are added.
type TextInterpolation struct {
	T          []float32      // the slerp weights, Linspace(0, 1, frames)
	TextEmbeds *tensor.Tensor // (frames, projection_dim), slerped
	Hidden     *tensor.Tensor // (frames, L, hidden), slerped as whole L×hidden matrices
	Mask       []int64        // frames·L: the union of the two prompts' masks, every frame
	L          int
}

// EncodeTextInterpolation encodes two prompts as the community
// UnCLIPTextInterpolationPipeline does: both through the text encoder in
// one batch WITH their attention masks (the only unCLIP path that masks
// the encoder), text_embeds and last_hidden_state slerped (Slerp) from the
// start prompt to the end one at Linspace(0, 1, frames), and the union of
// the two masks used for every frame — so positions that are padding for
// the shorter prompt are attended to.
func (p *Pipeline) EncodeTextInterpolation(ctx context.Context, req *Request, start, end string, frames int) (*TextInterpolation, error) {
	if frames < 1 {
		return nil, fmt.Errorf("interpolation needs at least 1 frame, got %d", frames)
	}
	if p.Tokenizer == nil || p.Text == nil {
		return nil, fmt.Errorf("pipeline: the tokenizer and text encoder are not loaded")
	}
	if err := p.Acquire("text"); err != nil {
		return nil, err
	}
	defer p.Release("text")
	ids, masks, err := p.tokenize(req, "prompt", []string{start, end})
	if err != nil {
		return nil, err
	}
	out, err := p.Text.ForwardMasked(ids, masks)
	if err != nil {
		return nil, err
	}
	emb, err1 := out.TextEmbeds.Float32s()
	hid, err2 := out.LastHidden.Float32s()
	freeAll(out.TextEmbeds, out.LastHidden)
	if err := firstError(err1, err2); err != nil {
		return nil, err
	}
	l, h, d := len(ids[0]), out.LastHidden.Dim(2), out.TextEmbeds.Dim(1)
	ti := &TextInterpolation{L: l}
	var es, hs []float32
	if es, ti.T, err = SlerpFrames(emb[:d], emb[d:], frames); err != nil {
		return nil, err
	}
	if hs, _, err = SlerpFrames(hid[:l*h], hid[l*h:], frames); err != nil {
		return nil, err
	}
	ti.TextEmbeds = tensor.FromFloat32(es, frames, d).To(p.Device)
	ti.Hidden = tensor.FromFloat32(hs, frames, l, h).To(p.Device)
	union := make([]int64, l)
	for j := range union {
		union[j] = max(masks[0][j], masks[1][j])
	}
	for range frames {
		ti.Mask = append(ti.Mask, union...)
	}
	return ti, ctx.Err()
}

// TextState returns the interpolation as the text the prior and decoder
// are conditioned on, with the unconditional rows (the empty prompt,
// encoded without a mask) in front when cfg is set.
func (p *Pipeline) TextState(ti *TextInterpolation, cfg bool) (*TextState, error) {
	frames := ti.TextEmbeds.Dim(0)
	mask := make([]bool, len(ti.Mask))
	for i, v := range ti.Mask {
		mask[i] = v != 0
	}
	st := &TextState{CFG: cfg, Batch: frames, L: ti.L, PromptEmbeds: ti.TextEmbeds, Hidden: ti.Hidden, Mask: mask}
	if cfg {
		if err := p.Acquire("text"); err != nil {
			return nil, err
		}
		defer p.Release("text")
		var err error
		if st.PromptEmbeds, st.Hidden, st.Mask, err = p.withUnconditional(frames, ti.TextEmbeds, ti.Hidden, mask); err != nil {
			return nil, err
		}
		if err := st.Hidden.Err(); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// TextDiff moves an image embedding toward a change described by two
// captions (the unCLIP paper's text diffs, §3.2): with the text
// embeddings of the captions FROM and TO, z_d = (z_to − z_from)/‖z_to −
// z_from‖ and the result is the spherical interpolation from z_i towards
// z_d by θ, on the sphere of z_i's norm: ‖z_i‖·slerp(ẑ_i, z_d, θ), with
// the textbook slerp (one angle, from the dot product). θ = 0 returns z_i
// exactly; θ = 1 returns z_d scaled to ‖z_i‖. Computed in float64,
// rounded to float32.
func TextDiff(image, from, to []float32, theta float32) ([]float32, error) {
	n := len(image)
	if n == 0 || len(from) != n || len(to) != n {
		return nil, fmt.Errorf("text diff between an image embedding of %d values and text embeddings of %d and %d", n, len(from), len(to))
	}
	if theta == 0 {
		return append([]float32(nil), image...), nil
	}
	d := make([]float64, n)
	var nd, ni float64
	for i := range d {
		d[i] = float64(to[i]) - float64(from[i])
		nd += d[i] * d[i]
		ni += float64(image[i]) * float64(image[i])
	}
	nd, ni = math.Sqrt(nd), math.Sqrt(ni)
	if nd == 0 {
		return nil, fmt.Errorf("text diff: the two captions have the same embedding")
	}
	if ni == 0 {
		return nil, fmt.Errorf("text diff: the image embedding is zero")
	}
	var dot float64
	for i := range d {
		d[i] /= nd
		dot += float64(image[i]) / ni * d[i]
	}
	omega := math.Acos(max(-1, min(1, dot)))
	th := float64(theta)
	a, b := 1-th, th // parallel ends: linear interpolation
	if so := math.Sin(omega); so > 1e-12 {
		a, b = math.Sin((1-th)*omega)/so, math.Sin(th*omega)/so
	}
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(a*float64(image[i]) + b*ni*d[i])
	}
	return out, nil
}

func firstError(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// EncodeCaptions returns the CLIP text embeddings (text_embeds, the
// projected pooled output, without an attention mask as the pipelines
// encode prompts) of texts, one row of projection_dim values each.
func (p *Pipeline) EncodeCaptions(ctx context.Context, req *Request, texts []string) ([]float32, error) {
	if p.Tokenizer == nil || p.Text == nil {
		return nil, fmt.Errorf("pipeline: the tokenizer and text encoder are not loaded")
	}
	if err := p.Acquire("text"); err != nil {
		return nil, err
	}
	defer p.Release("text")
	ids, _, err := p.tokenize(req, "text", texts)
	if err != nil {
		return nil, err
	}
	out, err := p.Text.Forward(ids)
	if err != nil {
		return nil, err
	}
	v, err := out.TextEmbeds.Float32s()
	freeAll(out.TextEmbeds, out.LastHidden)
	if err != nil {
		return nil, err
	}
	return v, ctx.Err()
}
