// Package golden reads recorded diffusers runs (the parity oracle in
// ../shared/fixtures: golden.safetensors beside golden.json) and compares
// tensors against them with the statistics the tolerances are stated in.
package golden

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/unclip-go/unclip/models/golden/fixtures"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/unclip-go/unclip/nn"
	"github.com/unclip-go/unclip/tensor"
	"github.com/unclip-go/unclip/tensor/safetensors"
)

// Settings are the pipeline arguments of the recorded run.
type Settings struct {
	Prompts         []string `json:"prompts"`
	Seed            uint64   `json:"seed"`
	PriorSteps      int      `json:"prior_steps"`
	DecoderSteps    int      `json:"decoder_steps"`
	SuperResSteps   int      `json:"super_res_steps"`
	PriorGuidance   float32  `json:"prior_guidance"`
	DecoderGuidance float32  `json:"decoder_guidance"`
}

// TokenizerCase is one recorded tokenizer input and its exact output.
type TokenizerCase struct {
	Text          string  `json:"text"`
	InputIDs      []int64 `json:"input_ids"`
	AttentionMask []int64 `json:"attention_mask"`
}

// Meta is golden.json.
type Meta struct {
	Scenario       string          `json:"scenario"`
	Settings       Settings        `json:"settings"`
	TokenizerCases []TokenizerCase `json:"tokenizer_cases"`
	NoiseShapes    [][]int         `json:"noise_shapes"`
	Calls          map[string]int  `json:"calls"`
	// The variation recordings' input images, resampler cases and runs
	// (variation, variation_n2, interp_image, interp_text), each run's
	// tensors under its name as a prefix.
	Images          []ImageInput   `json:"images"`
	PILBicubicCases []BicubicCase  `json:"pil_bicubic_cases"`
	Runs            map[string]Run `json:"runs"`
}

// ImageInput is one input image of a variation recording.
type ImageInput struct {
	File          string `json:"file"` // relative to the golden file's folder
	Width, Height int
	ResizedHW     [2]int `json:"resized_hw"`
	CropTopLeft   [2]int `json:"crop_top_left"`
}

// BicubicCase is one recorded PIL.Image.resize(BICUBIC) of an input.
type BicubicCase struct {
	Case          int    `json:"case"`
	Input         string `json:"input"` // inputs.imageN
	Width, Height int
}

// Run is one recorded pipeline run of a variation recording.
type Run struct {
	Pipeline    string         `json:"pipeline"`
	Settings    RunSettings    `json:"settings"`
	NoiseShapes [][]int        `json:"noise_shapes"`
	Calls       map[string]int `json:"calls"`
}

// RunSettings are a run's call arguments.
type RunSettings struct {
	Seed uint64 `json:"seed"`
	// Images lists the input images by index; a single index (not a
	// list) means one PIL image was passed.
	Images          json.RawMessage `json:"images"`
	ImagesPerPrompt int             `json:"num_images_per_prompt"`
	Steps           int             `json:"steps"` // interpolation frames
	PriorSteps      int             `json:"prior_steps"`
	DecoderSteps    int             `json:"decoder_steps"`
	SuperResSteps   int             `json:"super_res_steps"`
	PriorGuidance   float32         `json:"prior_guidance"`
	DecoderGuidance float32         `json:"decoder_guidance"`
	StartPrompt     string          `json:"start_prompt"`
	EndPrompt       string          `json:"end_prompt"`
}

// ImageList returns the run's input image indexes.
func (s RunSettings) ImageList() ([]int, error) {
	if len(s.Images) == 0 {
		return nil, nil
	}
	var list []int
	if err := json.Unmarshal(s.Images, &list); err == nil {
		return list, nil
	}
	var one int
	if err := json.Unmarshal(s.Images, &one); err != nil {
		return nil, fmt.Errorf("golden: run images %s: want an index or a list of them", s.Images)
	}
	return []int{one}, nil
}

// File is an open recording.
type File struct {
	st   *safetensors.File
	Meta Meta
	// HasMeta is false when no golden.json was found beside the tensors.
	HasMeta bool
}

// Open reads a golden safetensors file and the golden.json beside it.
func Open(path string) (*File, error) {
	st, err := safetensors.Open(path)
	if err != nil {
		return nil, fmt.Errorf("golden: %w", err)
	}
	f := &File{st: st}
	mp := filepath.Join(filepath.Dir(path), "golden.json")
	data, err := os.ReadFile(mp)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		st.Close()
		return nil, fmt.Errorf("golden: %w", err)
	default:
		if err := json.Unmarshal(data, &f.Meta); err != nil {
			st.Close()
			return nil, fmt.Errorf("golden: %s: %w", mp, err)
		}
		f.HasMeta = true
	}
	return f, nil
}

// Close unmaps the file.
func (f *File) Close() error { return f.st.Close() }

// Has reports whether the recording holds key.
func (f *File) Has(key string) bool {
	_, ok := f.st.Get(key)
	return ok
}

// Keys lists the recorded tensor names with the given prefix, sorted.
func (f *File) Keys(prefix string) []string {
	var out []string
	for _, k := range f.st.Keys() {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Tensor returns a recorded tensor as a CPU tensor (zero-copy).
func (f *File) Tensor(key string) (*tensor.Tensor, error) {
	info, ok := f.st.Get(key)
	if !ok {
		return nil, fmt.Errorf("golden: no tensor %q in %s", key, f.st.Path())
	}
	return nn.FromSafetensors(info)
}

// Float32s returns a recorded F32 tensor's values and shape.
func (f *File) Float32s(key string) ([]float32, []int, error) {
	t, err := f.Tensor(key)
	if err != nil {
		return nil, nil, err
	}
	v, err := t.Float32s()
	return v, t.Shape(), err
}

// Int64s returns a recorded I64 tensor's values.
func (f *File) Int64s(key string) ([]int64, error) {
	t, err := f.Tensor(key)
	if err != nil {
		return nil, err
	}
	return t.Int64s()
}

// Int returns a recorded I64 scalar (a timestep, say).
func (f *File) Int(key string) (int, error) {
	v, err := f.Int64s(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 1 {
		return 0, fmt.Errorf("golden: %q holds %d values, want a scalar", key, len(v))
	}
	return int(v[0]), nil
}

// Bools returns a recorded BOOL tensor's values and shape; an I64 0/1 mask
// (what torch.cat of a bool and an int64 mask makes) reads as its truth.
func (f *File) Bools(key string) ([]bool, []int, error) {
	t, err := f.Tensor(key)
	if err != nil {
		return nil, nil, err
	}
	if t.DType() == tensor.I64 {
		iv, err := t.Int64s()
		if err != nil {
			return nil, nil, err
		}
		v := make([]bool, len(iv))
		for i, x := range iv {
			v[i] = x != 0
		}
		return v, t.Shape(), nil
	}
	v, err := t.Bools()
	return v, t.Shape(), err
}

// Uint8s returns a recorded U8 tensor's values and shape.
func (f *File) Uint8s(key string) ([]uint8, []int, error) {
	info, ok := f.st.Get(key)
	if !ok {
		return nil, nil, fmt.Errorf("golden: no tensor %q in %s", key, f.st.Path())
	}
	if info.DType != safetensors.U8 {
		return nil, nil, fmt.Errorf("golden: %q is %s, want U8", key, info.DType)
	}
	return info.Data, info.Shape, nil
}

// Noise returns every recorded standard-normal draw (noise.000, noise.001,
// ...) in draw order, with the shapes golden.json lists for them.
func (f *File) Noise() (draws [][]float32, shapes [][]int, err error) {
	if !f.HasMeta {
		return nil, nil, fmt.Errorf("golden: golden.json (noise shapes) not found")
	}
	return f.NoiseOf("", f.Meta.NoiseShapes)
}

// NoiseOf returns the draws prefix+noise.NNN of the given shapes.
func (f *File) NoiseOf(prefix string, shapes [][]int) (draws [][]float32, _ [][]int, err error) {
	for i := range shapes {
		v, _, err := f.Float32s(fmt.Sprintf("%snoise.%03d", prefix, i))
		if err != nil {
			return nil, nil, err
		}
		draws = append(draws, v)
	}
	return draws, shapes, nil
}

// Stats summarises the difference between two arrays.
type Stats struct {
	MaxAbs  float64
	MeanAbs float64
	P999    float64 // 99.9th percentile of |got − want|
	MaxRef  float64 // max |want|
	N       int
}

// Compare computes difference statistics; lengths must match. A NaN on
// either side counts as an infinite difference.
func Compare(got, want []float32) (Stats, error) {
	if len(got) != len(want) {
		return Stats{}, fmt.Errorf("golden: %d values, want %d", len(got), len(want))
	}
	s := Stats{N: len(got)}
	d := make([]float64, len(got))
	var sum float64
	for i := range got {
		e := math.Abs(float64(got[i]) - float64(want[i]))
		if math.IsNaN(e) {
			e = math.Inf(1)
		}
		d[i] = e
		sum += e
		s.MaxAbs = math.Max(s.MaxAbs, e)
		s.MaxRef = math.Max(s.MaxRef, math.Abs(float64(want[i])))
	}
	if len(d) > 0 {
		s.MeanAbs = sum / float64(len(d))
		sort.Float64s(d)
		s.P999 = d[min(len(d)-1, int(math.Ceil(0.999*float64(len(d))))-1)]
	}
	return s, nil
}

// FixturesDir locates the shared fixtures (see fixtures.Dir).
func FixturesDir() (string, error) { return fixtures.Dir() }

// Tiny returns the paths of the unclip-tiny fixture: its model folder and
// golden.safetensors.
func Tiny() (model, golden string, err error) {
	d, err := FixturesDir()
	if err != nil {
		return "", "", err
	}
	return filepath.Join(d, "unclip-tiny", "model"), filepath.Join(d, "unclip-tiny", "golden.safetensors"), nil
}

// Variation returns the variation fixture's model folder and golden file
// (unclip-tiny-variation).
func Variation() (model, golden string, err error) {
	d, err := FixturesDir()
	if err != nil {
		return "", "", err
	}
	return filepath.Join(d, "unclip-tiny-variation", "model"), filepath.Join(d, "unclip-tiny-variation", "golden.safetensors"), nil
}

// Raw is a recorded tensor decoded on the host, without a backend: F32 and
// I64 tensors fill the field of their type.
type Raw struct {
	DType string
	Shape []int
	F32   []float32
	I64   []int64
}

// LoadRaw reads every F32 and I64 tensor of a recording (other types are
// skipped). It needs no tensor backend, so low-level packages can test
// against the recording.
func LoadRaw(path string) (map[string]Raw, error) {
	st, err := safetensors.Open(path)
	if err != nil {
		return nil, fmt.Errorf("golden: %w", err)
	}
	defer st.Close()
	out := map[string]Raw{}
	for _, k := range st.Keys() {
		info, _ := st.Get(k)
		r := Raw{DType: string(info.DType), Shape: info.Shape}
		switch info.DType {
		case safetensors.F32:
			v, err := info.Float32s()
			if err != nil {
				return nil, fmt.Errorf("golden: %s: %w", k, err)
			}
			r.F32 = append([]float32(nil), v...)
		case safetensors.I64:
			v, err := info.Int64s()
			if err != nil {
				return nil, fmt.Errorf("golden: %s: %w", k, err)
			}
			r.I64 = append([]int64(nil), v...)
		default:
			continue
		}
		out[k] = r
	}
	return out, nil
}

// OpenTiny opens the unclip-tiny recording and returns its model folder.
func OpenTiny() (model string, f *File, err error) {
	model, path, err := Tiny()
	if err != nil {
		return "", nil, err
	}
	f, err = Open(path)
	return model, f, err
}
