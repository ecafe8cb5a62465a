// Package nn holds the layers the unCLIP models are built from (Linear,
// LayerNorm, Embedding, Conv2d, GroupNorm, attention, MLP, ...) and the
// binding of their weights from a state dict by key prefix, with shape
// checks. It imports package tensor and its file-format packages
// (safetensors, torchbin) only: no backend, no model.
package nn

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/unclip-go/unclip/tensor"
	"github.com/unclip-go/unclip/tensor/safetensors"
	"github.com/unclip-go/unclip/tensor/torchbin"
)

// StateDict is a named set of weight tensors, usually the memory-mapped
// contents of one or more safetensors files.
//
// The loaders below also read PyTorch checkpoints (files named *.bin, *.pt
// or *.pth, as torch.save writes them since PyTorch 1.6) with package
// torchbin's restricted unpickler, which runs nothing: such a file is
// always read into (Go) memory, since a pickle cannot be mapped.
type StateDict struct {
	tensors map[string]*tensor.Tensor
	used    map[string]bool
	files   []*safetensors.File
	// Ignore lists keys that a checkpoint may carry but no layer reads
	// (buffers such as position_ids); they are not reported as unused.
	Ignore map[string]bool
	// random, when set, makes up every tensor a layer asks for.
	random *randomInit
	// placed are the weights bound to a device other than the CPU, with
	// the host tensors they were made from (residency).
	placed []placement
	// owned are host storages made for this state dict (random weights),
	// released with it.
	owned []*tensor.Storage
	// bound are the tensors handed to layers.
	bound []*tensor.Tensor
}

// placement is one weight on a device and the host tensor it came from.
type placement struct{ host, dev *tensor.Tensor }

// NewStateDict wraps tensors already in memory.
func NewStateDict(ts map[string]*tensor.Tensor) *StateDict {
	return &StateDict{tensors: ts, used: map[string]bool{}, Ignore: map[string]bool{}}
}

// LoadStateDict reads safetensors files into memory outside the Go heap
// (safetensors.Load: a file changed on disk during a run changes nothing)
// and exposes every tensor without a further copy. Close releases the
// memory once the weights are no longer used (or have been uploaded to a
// device).
func LoadStateDict(paths ...string) (*StateDict, error) {
	return loadStateDict(safetensors.Load, paths)
}

// isTorchBin reports whether path names a PyTorch checkpoint rather than
// a safetensors file, by its extension.
func isTorchBin(path string) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".bin", ".pt", ".pth":
		return true
	}
	return false
}

// MapStateDict maps safetensors files instead of reading them: only the
// headers are read, the data as it is touched. A file changed on disk
// changes the tensors, and a truncated one faults: for weights read only
// while binding (see LoadStateDictFor). PyTorch checkpoints are read, as
// by LoadStateDict.
func MapStateDict(paths ...string) (*StateDict, error) {
	return loadStateDict(safetensors.Open, paths)
}

// HeaderStateDict describes the tensors of safetensors files from their
// validated headers alone: each tensor has the declared type and shape and
// no memory (ops on it fail), and no file stays open or mapped. It is what
// a build binds to check a model folder against its configs
// (Target.HeadersOnly) without reading, mapping or copying any weight,
// whatever sizes the headers declare. Of a PyTorch checkpoint it reads the
// pickle and checks it against the archive's directory, reading no
// storage.
func HeaderStateDict(paths ...string) (*StateDict, error) {
	sd := NewStateDict(map[string]*tensor.Tensor{})
	for _, p := range paths {
		if isTorchBin(p) {
			f, err := torchbin.OpenHeaders(p)
			if err != nil {
				return nil, err
			}
			for _, k := range f.Keys() {
				info, _ := f.Get(k)
				if err := sd.addHeader(p, k, info.DType, info.Shape); err != nil {
					return nil, err
				}
			}
			continue
		}
		f, err := safetensors.Open(p)
		if err != nil {
			return nil, err
		}
		for _, k := range f.Keys() {
			info, _ := f.Get(k)
			if err := sd.addHeader(p, k, info.DType, info.Shape); err != nil {
				f.Close()
				return nil, err
			}
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
	}
	return sd, nil
}

// addHeader records tensor k of file p, declared with dtype and shape, as
// a tensor with no memory; a tensor name seen in an earlier file is an
// error.
func (sd *StateDict) addHeader(p, k string, dtype safetensors.DType, shape []int) error {
	dt, err := tensor.ParseDType(string(dtype))
	if err != nil {
		return fmt.Errorf("%s: tensor %q: %w", p, k, err)
	}
	if _, dup := sd.tensors[k]; dup {
		return fmt.Errorf("%s: tensor %q appears in two files", p, k)
	}
	sd.tensors[k] = tensor.NewReleased(tensor.CPU(), dt, shape...)
	return nil
}

// LoadStateDictFor loads the files for binding with t: read into memory
// (LoadStateDict) when the run reads the file's data after loading — on
// the CPU, or on a device with Offload (each stage uploads its weights
// again) — and mapped (MapStateDict) when it is read only while binding:
// all-resident device weights are uploaded then, and the mapping is never
// touched again, so a host copy would only cost memory. HeadersOnly reads
// the headers alone (HeaderStateDict).
func LoadStateDictFor(t Target, paths ...string) (*StateDict, error) {
	if t.HeadersOnly {
		return HeaderStateDict(paths...)
	}
	onDevice := t.Device != nil && t.Device != tensor.CPU()
	if onDevice && !t.Offload {
		return MapStateDict(paths...)
	}
	return LoadStateDict(paths...)
}

func loadStateDict(open func(string) (*safetensors.File, error), paths []string) (*StateDict, error) {
	sd := NewStateDict(map[string]*tensor.Tensor{})
	for _, p := range paths {
		if isTorchBin(p) {
			if err := sd.addTorchBin(p); err != nil {
				sd.Close()
				return nil, err
			}
			continue
		}
		f, err := open(p)
		if err != nil {
			sd.Close()
			return nil, err
		}
		sd.files = append(sd.files, f)
		for _, k := range f.Keys() {
			info, _ := f.Get(k)
			t, err := fromFile(info)
			if err != nil {
				sd.Close()
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			if _, dup := sd.tensors[k]; dup {
				sd.Close()
				return nil, fmt.Errorf("%s: tensor %q appears in two files", p, k)
			}
			sd.tensors[k] = t
		}
	}
	return sd, nil
}

// addTorchBin reads a PyTorch checkpoint into sd.
func (sd *StateDict) addTorchBin(p string) error {
	f, err := torchbin.Open(p)
	if err != nil {
		return err
	}
	for _, k := range f.Keys() {
		info, _ := f.Get(k)
		t, err := FromSafetensors(safetensors.TensorInfo(info))
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if _, dup := sd.tensors[k]; dup {
			return fmt.Errorf("%s: tensor %q appears in two files", p, k)
		}
		sd.tensors[k] = t
	}
	return nil
}

// DiffusersWeights returns the weight file of a diffusers model folder:
// diffusion_pytorch_model.safetensors (diffusion_pytorch_model.VARIANT.safetensors
// for a variant) or, when only that exists, the PyTorch checkpoint
// diffusion_pytorch_model[.VARIANT].bin. When neither exists it returns the
// safetensors name.
func DiffusersWeights(dir, variant string) string {
	name, bin := diffusersNames(variant)
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); os.IsNotExist(err) {
		if b := filepath.Join(dir, bin); fileExists(b) {
			return b
		}
	}
	return p
}

// diffusersNames are the safetensors and PyTorch weight file names of a
// diffusers component.
func diffusersNames(variant string) (safetensorsName, binName string) {
	if variant != "" {
		return "diffusion_pytorch_model." + variant + ".safetensors", "diffusion_pytorch_model." + variant + ".bin"
	}
	return "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"
}

// fileExists reports whether something is at p (what it is, the loader
// checks).
func fileExists(p string) bool {
	_, err := os.Stat(p)
	return !os.IsNotExist(err)
}

// FromSafetensors wraps a safetensors entry as a CPU tensor (no copy when
// the data is aligned).
func FromSafetensors(info safetensors.TensorInfo) (*tensor.Tensor, error) {
	return wrapInfo(info, tensor.FromBytes)
}

// fromFile is FromSafetensors for an entry of a file the state dict owns
// and reads through its tensors alone: a packed weight gives its pages
// back (tensor.FromMapping).
func fromFile(info safetensors.TensorInfo) (*tensor.Tensor, error) {
	return wrapInfo(info, tensor.FromMapping)
}

func wrapInfo(info safetensors.TensorInfo, wrap func(tensor.DType, []byte, ...int) *tensor.Tensor) (*tensor.Tensor, error) {
	dt, err := tensor.ParseDType(string(info.DType))
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", info.Name, err)
	}
	return wrap(dt, info.Data, info.Shape...), nil
}

// Weight residency. A model keeps its StateDict (Weights): its weights on
// a device can be evicted (device memory released, host copies kept) and
// restored in place, so that a pipeline holds on the device only the
// running stage's weights; Release drops everything, host memory too, once
// a model is no longer needed.

// DeviceBytes is the size of the weights bound to a device, resident or
// not.
func (sd *StateDict) DeviceBytes() int64 {
	var n int64
	for _, p := range sd.placed {
		n += int64(p.dev.Storage().Bytes)
	}
	return n
}

// Restore uploads every evicted device weight again, in place (the
// layers' tensors become usable again). It stops at the first failure
// (out of device memory, say), leaving the rest evicted.
func (sd *StateDict) Restore() error {
	for _, p := range sd.placed {
		st := p.dev.Storage()
		if !st.Freed() {
			continue
		}
		if err := upload(p.host, p.dev); err != nil {
			return err
		}
	}
	return nil
}

// upload places host's bytes into dev's released storage.
func upload(host, dev *tensor.Tensor) error {
	data := host.HostView() // no copy of a dense host weight
	if data == nil {
		var err error
		if data, err = host.Bytes(); err != nil {
			return err
		}
	}
	b := dev.Backend()
	st, err := b.Reserve(len(data))
	if err != nil {
		return err
	}
	if err := b.Write(st, 0, data); err != nil {
		st.Free()
		return err
	}
	return dev.Storage().Adopt(st)
}

// Evict releases the device memory of every device weight; the host
// copies stay for Restore.
func (sd *StateDict) Evict() {
	for _, p := range sd.placed {
		p.dev.Storage().Free()
	}
}

// Release evicts the device weights and releases the host memory the
// state dict owns (random weights, file mappings). The model cannot run
// again.
func (sd *StateDict) Release() error {
	sd.Evict()
	for _, st := range sd.owned {
		st.Free()
	}
	// Every tensor a layer holds, and every file view, is marked released
	// before the files are unmapped: a later op fails instead of reading
	// unmapped memory.
	for _, t := range sd.bound {
		t.Storage().Free()
	}
	for _, t := range sd.tensors {
		t.Storage().Free()
	}
	sd.owned, sd.placed, sd.bound = nil, nil, nil
	clear(sd.tensors)
	return sd.Close()
}

// Close unmaps the files behind the state dict.
func (sd *StateDict) Close() error {
	var errs []error
	for _, f := range sd.files {
		errs = append(errs, f.Close())
	}
	sd.files = nil
	return errors.Join(errs...)
}

// Keys lists every tensor name, sorted.
func (sd *StateDict) Keys() []string {
	keys := make([]string, 0, len(sd.tensors))
	for k := range sd.tensors {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Unused lists the keys no layer has bound (excluding Ignore).
func (sd *StateDict) Unused() []string {
	var out []string
	for _, k := range sd.Keys() {
		if !sd.used[k] && !sd.Ignore[k] {
			out = append(out, k)
		}
	}
	return out
}

// Binder hands out weights under a key prefix, checking shapes. Errors are
// collected rather than returned one by one, so a model constructor reads
// as a list of layers; Err reports them all at the end. After an error a
// placeholder of the expected shape is returned so construction can go on:
// it holds no memory (ops on it fail), so a configuration that declares
// sizes the checkpoint does not have costs nothing before it is reported.
type Binder struct {
	sd     *StateDict
	prefix string
	target Target
	errs   *[]error
}

// Target says where bound weights go: a device (nil: stay on the CPU) and
// a float type (Invalid: keep the checkpoint's type; F32, F16 or BF16:
// convert on the CPU before the upload).
type Target struct {
	Device tensor.Backend
	DType  tensor.DType
	// Offload leaves device weights on the host when they are bound: they
	// are uploaded by StateDict.Restore (stage residency).
	Offload bool
	// HeadersOnly binds weights known from the file headers alone
	// (HeaderStateDict), to check a model folder cheaply: names, shapes
	// and types are checked, and every bound weight is a memory-less
	// tensor of the target type, on no device.
	HeadersOnly bool
}

// Compute is the activation type of a model bound with t: DType when it is
// a float type, else F32.
func (t Target) Compute() tensor.DType {
	if t.DType.IsFloat() {
		return t.DType
	}
	return tensor.F32
}

// As returns x converted to dt (x itself when it already has that type).
func As(x *tensor.Tensor, dt tensor.DType) *tensor.Tensor {
	if x == nil || x.DType() == dt {
		return x
	}
	return x.Cast(dt)
}

// NewBinder binds weights from sd, placing each one as t says.
func NewBinder(sd *StateDict, t Target) Binder {
	return Binder{sd: sd, target: t, errs: new([]error)}
}

// Sub returns a binder for the keys under prefix + name + ".".
func (b Binder) Sub(name string) Binder {
	b.prefix += name + "."
	return b
}

// Subf is Sub with a formatted name ("layers.%d").
func (b Binder) Subf(format string, args ...any) Binder { return b.Sub(fmt.Sprintf(format, args...)) }

// Prefix is the binder's key prefix.
func (b Binder) Prefix() string { return b.prefix }

// Has reports whether the key prefix+name exists.
func (b Binder) Has(name string) bool {
	_, ok := b.sd.tensors[b.prefix+name]
	return ok
}

// Errorf records a construction error (an unsupported option, say).
func (b Binder) Errorf(format string, args ...any) {
	*b.errs = append(*b.errs, fmt.Errorf(format, args...))
}

// Tensor returns the weight prefix+name, which must have the given shape.
func (b Binder) Tensor(name string, shape ...int) *tensor.Tensor {
	key := b.prefix + name
	t, ok := b.sd.tensors[key]
	if !ok && b.sd.random != nil {
		t, ok = b.sd.random.make(b.sd, key, shape), true
		b.sd.tensors[key] = t
	}
	if !ok {
		b.Errorf("missing tensor %q (expected shape %v)", key, shape)
		return placeholder(shape)
	}
	b.sd.used[key] = true
	if !tensor.SameShape(t.Shape(), shape) {
		b.Errorf("tensor %q has shape %v, expected %v", key, t.Shape(), shape)
		return placeholder(shape)
	}
	if !t.DType().IsFloat() {
		b.Errorf("tensor %q has type %v, expected a float type", key, t.DType())
		return placeholder(shape)
	}
	if b.target.HeadersOnly {
		dt := t.DType()
		if b.target.DType.IsFloat() {
			dt = b.target.DType
		}
		return tensor.NewReleased(tensor.CPU(), dt, shape...)
	}
	if dt := b.target.DType; dt.IsFloat() && t.DType() != dt {
		t = t.Cast(dt)
	}
	if t.Backend() == tensor.CPU() && t.Err() == nil {
		t.Storage().MarkWeight() // the CPU kernels may keep it packed
	}
	if dev := b.target.Device; dev != nil && dev != t.Backend() {
		host := t
		t = tensor.NewReleased(dev, host.DType(), host.Shape()...)
		b.sd.placed = append(b.sd.placed, placement{host: host, dev: t})
		if !b.target.Offload {
			if err := upload(host, t); err != nil {
				b.Errorf("tensor %q: upload to %s: %v", key, dev.Name(), err)
				return t
			}
		}
	}
	if err := t.Err(); err != nil {
		b.Errorf("tensor %q: %v", key, err)
	}
	b.sd.bound = append(b.sd.bound, t)
	return t
}

// placeholder stands for a weight that could not be bound: the expected
// shape (negative sizes as 0) without memory.
func placeholder(shape []int) *tensor.Tensor {
	dims := make([]int, len(shape))
	for i, d := range shape {
		dims[i] = max(d, 0)
	}
	return tensor.NewReleased(tensor.CPU(), tensor.F32, dims...)
}

// Err reports the first error recorded, with the number of further ones
// (a config that does not fit its checkpoint usually misfits every layer
// after the first), or nil.
func (b Binder) Err() error {
	errs := *b.errs
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	return fmt.Errorf("%w (and %d more problems like it)", errs[0], len(errs)-1)
}

// CheckUnused records an error naming the keys no layer has bound.
func (b Binder) CheckUnused() {
	if u := b.sd.Unused(); len(u) > 0 {
		if len(u) > 10 {
			u = append(u[:10:10], fmt.Sprintf("... (%d in all)", len(u)))
		}
		b.Errorf("unused tensors in checkpoint: %s", strings.Join(u, ", "))
	}
}

// LoadDiffusers loads a diffusers model folder: loadConfig reads
// dir/config.json, the weights are dir's diffusion_pytorch_model
// safetensors file, or PyTorch checkpoint, of the given variant
// (DiffusersWeights), and build binds them. Errors name the component.
func LoadDiffusers[C, M any](name, dir, variant string, t Target, loadConfig func(string) (C, error),
	build func(C, *StateDict, Target) (M, error)) (M, error) {
	var zero M
	cfg, err := loadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return zero, err
	}
	w := DiffusersWeights(dir, variant)
	if !fileExists(w) {
		st, bin := diffusersNames(variant)
		return zero, fmt.Errorf("%s: %s has no weights: neither %s nor %s: %w", name, dir, st, bin, os.ErrNotExist)
	}
	sd, err := LoadStateDictFor(t, w)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", name, err)
	}
	m, err := build(cfg, sd, t)
	if err != nil {
		return zero, fmt.Errorf("%s: %s: %w", name, dir, err)
	}
	return m, nil
}

// Bounds on what a model configuration may declare: far past any published
// checkpoint (Karlo's widest layer is 6144), near enough that one edited
// number cannot make a loader loop or allocate without end.
const (
	MaxWidth  = 1 << 16 // any hidden size, channel count or embedding width
	MaxLayers = 1024    // layers of a transformer or a U-Net block
	MaxTokens = 1 << 16 // sequence lengths and vocabulary-sized tables are checked by their weights
)

// Range is one configuration value and the interval it must lie in.
type Range struct {
	Key     string
	Value   int
	Min     int
	Max     int
	Context string // optional: why the bound
}

// CheckRanges reports the first value outside its interval, naming its
// config key.
func CheckRanges(rs ...Range) error {
	for _, r := range rs {
		if r.Value < r.Min || r.Value > r.Max {
			return fmt.Errorf("%s %d is out of range [%d, %d]", r.Key, r.Value, r.Min, r.Max)
		}
	}
	return nil
}

// NumParams counts the elements of the state dict's float tensors.
func (sd *StateDict) NumParams() int64 {
	var n int64
	for _, t := range sd.tensors {
		if t.DType().IsFloat() {
			n += int64(t.Numel())
		}
	}
	return n
}
