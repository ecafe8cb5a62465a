package unclip_test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/unclip-go/unclip/models/clip"
	"github.com/unclip-go/unclip/models/prior"
	"github.com/unclip-go/unclip/models/textproj"
	"github.com/unclip-go/unclip/models/unclip"
	"github.com/unclip-go/unclip/models/unet"
	"github.com/unclip-go/unclip/nn"
	"github.com/unclip-go/unclip/tensor"
)

// Model kinds FuzzBuild builds, chosen by its first argument (mod 4).
const (
	buildText = iota
	buildPrior
	buildTextProj
	buildUNet
	numBuildKinds
)

// buildAllocLimit bounds what building a model from a config and a weight
// header may allocate: the weights are memory-less, so only the model's
// bookkeeping (and the error messages) should cost anything.
const buildAllocLimit = 256 << 20

// headersOnly binds as unclip.Check does: shapes and types only.
var headersOnly = nn.Target{HeadersOnly: true}

// buildModel loads the config file of the given kind and builds the model
// against sd.
func buildModel(kind int, cfgPath string, sd *nn.StateDict) error {
	switch kind {
	case buildText:
		cfg, err := clip.LoadTextConfig(cfgPath)
		if err != nil {
			return err
		}
		_, err = clip.NewTextModel(cfg, sd, headersOnly)
		return err
	case buildPrior:
		cfg, err := prior.LoadConfig(cfgPath)
		if err != nil {
			return err
		}
		_, err = prior.New(cfg, sd, headersOnly)
		return err
	case buildTextProj:
		cfg, err := textproj.LoadConfig(cfgPath)
		if err != nil {
			return err
		}
		_, err = textproj.New(cfg, sd, headersOnly)
		return err
	default:
		cfg, err := unet.LoadConfig(cfgPath)
		if err != nil {
			return err
		}
		_, err = unet.New(cfg, sd, headersOnly)
		return err
	}
}

// declaredDataSize is the end of the last tensor a header declares (0 when
// the header is not a JSON object of tensor entries): the size of the data
// section a file with that header needs.
func declaredDataSize(header []byte) uint64 {
	var entries map[string]json.RawMessage
	if json.Unmarshal(header, &entries) != nil {
		return 0
	}
	var end uint64
	for k, raw := range entries {
		if k == "__metadata__" {
			continue
		}
		var e struct {
			Offsets []uint64 `json:"data_offsets"`
		}
		if json.Unmarshal(raw, &e) == nil && len(e.Offsets) == 2 {
			end = max(end, e.Offsets[1])
		}
	}
	return end
}

// writeHeaderFile writes a safetensors file made of header and as many
// (sparse, zero) data bytes as the header declares. It reports false when
// the declared data is too large for a sparse file.
func writeHeaderFile(path string, header []byte) (bool, error) {
	size := declaredDataSize(header)
	if size > 1<<40 {
		return false, nil
	}
	prefix := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	if err := os.WriteFile(path, append(prefix, header...), 0o644); err != nil {
		return false, err
	}
	return true, os.Truncate(path, int64(8+len(header))+int64(size))
}

// FuzzBuild builds a text encoder, prior, text_proj or U-Net from a
// config.json and a safetensors header (issue 16, finding 2): the build
// must return an error or a model, never panic, and never allocate more
// than buildAllocLimit, whatever sizes the config declares.
func FuzzBuild(f *testing.F) {
	arch := unclip.Tiny()
	for kind, cfg := range map[int]any{buildText: arch.Text, buildPrior: arch.Prior, buildTextProj: arch.TextProj, buildUNet: arch.Decoder} {
		config, err := json.Marshal(cfg)
		if err != nil {
			f.Fatal(err)
		}
		header, err := headerFor(kind, config)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(kind), config, header)
		f.Add(uint8(kind), config, []byte("{}"))
	}
	sr, _ := json.Marshal(arch.SuperRes)
	f.Add(uint8(buildUNet), sr, []byte("{}"))

	dir := f.TempDir()
	cfgPath := filepath.Join(dir, "config.json")
	weights := filepath.Join(dir, "diffusion_pytorch_model.safetensors")
	f.Fuzz(func(t *testing.T, kind uint8, config, header []byte) {
		if err := os.WriteFile(cfgPath, config, 0o644); err != nil {
			t.Fatal(err)
		}
		ok, err := writeHeaderFile(weights, header)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		// As unclip.Check binds: the weights known from the header alone.
		sd, err := nn.LoadStateDictFor(headersOnly, weights)
		if err == nil {
			err = buildModel(int(kind)%numBuildKinds, cfgPath, sd)
		}
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > buildAllocLimit {
			t.Fatalf("build allocated %d MiB (error: %v)", n>>20, err)
		}
		if err != nil && err.Error() == "" {
			t.Fatal("empty error")
		}
	})
}

// missingRE matches the binder's report of a missing weight.
var missingRE = regexp.MustCompile(`^missing tensor "([^"]+)" \(expected shape \[([0-9 ]*)\]\)`)

// headerFor returns a safetensors header holding, as float32, exactly the
// weights the config of the given kind needs. It learns them from the
// builder itself: each failed build names the first missing weight and its
// shape.
func headerFor(kind int, config []byte) ([]byte, error) {
	dir, err := os.MkdirTemp("", "fuzzbuild")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cfgPath := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfgPath, config, 0o644); err != nil {
		return nil, err
	}
	shapes := map[string][]int{}
	for range 10000 {
		ts := map[string]*tensor.Tensor{}
		for k, s := range shapes {
			ts[k] = tensor.NewReleased(tensor.CPU(), tensor.F32, s...)
		}
		err := buildModel(kind, cfgPath, nn.NewStateDict(ts))
		if err == nil {
			return encodeHeader(shapes), nil
		}
		m := missingRE.FindStringSubmatch(err.Error())
		if m == nil {
			return nil, err
		}
		var shape []int
		for _, d := range strings.Fields(m[2]) {
			v, _ := strconv.Atoi(d)
			shape = append(shape, v)
		}
		shapes[m[1]] = shape
	}
	return nil, fmt.Errorf("no header found for kind %d", kind)
}

// encodeHeader writes the JSON header of float32 tensors of the given
// shapes, laid out one after the other in key order.
func encodeHeader(shapes map[string][]int) []byte {
	keys := make([]string, 0, len(shapes))
	for k := range shapes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteString("{")
	off := 0
	for i, k := range keys {
		n := 4
		for _, d := range shapes[k] {
			n *= d
		}
		dims := make([]string, len(shapes[k]))
		for j, d := range shapes[k] {
			dims[j] = strconv.Itoa(d)
		}
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "%q:{\"dtype\":\"F32\",\"shape\":[%s],\"data_offsets\":[%d,%d]}", k, strings.Join(dims, ","), off, off+n)
		off += n
	}
	b.WriteString("}")
	return []byte(b.String())
}
