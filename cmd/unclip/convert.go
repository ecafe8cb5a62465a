package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/unclip-go/unclip/tensor"
	"github.com/unclip-go/unclip/tensor/safetensors"
	"github.com/unclip-go/unclip/tensor/torchbin"
)

// convertFlags are the flags of unclip convert.
type convertFlags struct {
	model, revision, variant string
	dtype, out               string
	force, quiet             bool
}

const convertSynopsis = "unclip convert -m DIR|REPO --dtype fp16|bf16|fp32 -o DIR [--variant V] [--force] [--quiet]"

// runConvert writes a copy of a diffusers model folder whose weights are
// safetensors files of one float type: every weight file (safetensors or
// PyTorch .bin, safetensors preferred) becomes BASE.DTYPE.safetensors
// (BASE.safetensors for fp32), floating-point tensors rounded to nearest
// even, other tensors unchanged; every other file is copied as is.
func runConvert(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("convert", flag.ContinueOnError)
	var f convertFlags
	fs.StringVar(&f.model, "m", "", "model to convert: a diffusers unCLIP folder or a Hugging Face repo id in the local cache (kakaobrain/karlo-v1-alpha)")
	fs.StringVar(&f.model, "model", "", "same as -m")
	fs.StringVar(&f.revision, "revision", "main", "revision of a Hugging Face cached model")
	fs.StringVar(&f.variant, "variant", "", "weight variant to read, e.g. fp16 (*.fp16.safetensors); default the files without one")
	fs.StringVar(&f.dtype, "dtype", "", "weight type to write: fp16, bf16 or fp32 (fp16 and bf16 write *.fp16.safetensors, *.bf16.safetensors: load them with --variant)")
	fs.StringVar(&f.out, "o", "", "output folder (must not exist, or be empty, unless --force)")
	fs.StringVar(&f.out, "output", "", "same as -o")
	fs.BoolVar(&f.force, "force", false, "replace an output folder that is not empty")
	fs.BoolVar(&f.quiet, "quiet", false, "no progress lines on stderr")
	setUsage(fs, convertSynopsis)
	pos, err := parseFlags(fs, args, stderr)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("unexpected argument %q", pos[0])
	}
	if f.model == "" || f.dtype == "" || f.out == "" {
		fmt.Fprintf(stderr, "usage: %s   (unclip convert -h lists the flags)\n", convertSynopsis)
		return errUsage
	}
	dt, suffix, err := parseConvertDType(f.dtype)
	if err != nil {
		return err
	}
	if f.model == "demo" {
		return errors.New("the demo model is built in (random weights, no files): there is nothing to convert")
	}
	src, err := resolveModel(f.model, f.revision, stderr)
	if err != nil {
		return err
	}
	if !fileExists(filepath.Join(src, "model_index.json")) {
		return fmt.Errorf("%s is not a diffusers model folder (no model_index.json)", src)
	}
	if err := checkConvertOutput(src, f.out, f.force); err != nil {
		return err
	}
	plan, err := planConvert(src, f.variant, suffix)
	if err != nil {
		return err
	}
	progress := stderr
	if f.quiet {
		progress = io.Discard
	}
	ctx, done := cancellable()
	defer done()
	stop := func() error {
		if ctx.Err() != nil {
			return errors.New("interrupted; nothing was written")
		}
		return nil
	}
	return writeConverted(src, f.out, plan, dt, progress, stdout, stop)
}

// parseConvertDType maps a --dtype value to the weight type and the
// variant suffix of the files written ("" for fp32).
func parseConvertDType(s string) (safetensors.DType, string, error) {
	switch strings.ToLower(s) {
	case "fp16", "f16", "float16", "half":
		return safetensors.F16, "fp16", nil
	case "bf16", "bfloat16":
		return safetensors.BF16, "bf16", nil
	case "fp32", "f32", "float32", "float":
		return safetensors.F32, "", nil
	}
	return "", "", fmt.Errorf("unknown --dtype %q: fp16, bf16 or fp32", s)
}

// checkConvertOutput refuses an output folder that would overwrite the
// source or, without force, anything already there.
func checkConvertOutput(src, out string, force bool) error {
	absSrc, err1 := filepath.Abs(src)
	absOut, err2 := filepath.Abs(out)
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	if s, err := filepath.EvalSymlinks(absSrc); err == nil {
		absSrc = s
	}
	if o, err := filepath.EvalSymlinks(absOut); err == nil {
		absOut = o
	} else if p, err := filepath.EvalSymlinks(filepath.Dir(absOut)); err == nil {
		absOut = filepath.Join(p, filepath.Base(absOut))
	}
	if within(absOut, absSrc) || within(absSrc, absOut) {
		return fmt.Errorf("output folder %s overlaps the model folder %s: write the converted model elsewhere", out, src)
	}
	st, err := os.Stat(out)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if !isDir(filepath.Dir(absOut)) {
			return fmt.Errorf("output folder %s: its parent folder does not exist", out)
		}
		return nil
	case err != nil:
		return fmt.Errorf("output folder: %w", err)
	case !st.IsDir():
		return fmt.Errorf("output %s exists and is not a folder", out)
	}
	entries, err := os.ReadDir(out)
	if err != nil {
		return fmt.Errorf("output folder: %w", err)
	}
	if len(entries) > 0 && !force {
		return fmt.Errorf("output folder %s exists and is not empty (--force replaces it)", out)
	}
	return nil
}

// within reports whether path p is dir or inside it.
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// convertPlan is what convert does, decided before anything is written.
type convertPlan struct {
	dirs    []string     // folders to make, relative, parents first
	copies  []string     // files copied as they are, relative
	weights []weightFile // weight files converted
}

// weightFile is one weight file to convert.
type weightFile struct {
	src, dst string // relative paths
}

// maxModelDepth bounds the folder nesting convert follows (diffusers
// folders are one level deep).
const maxModelDepth = 8

// planConvert lists the model folder's files: hidden files and folders
// (.git, .cache) are left out; weight files of the chosen variant are
// converted (one per base name, safetensors preferred to .bin); weight
// files of other variants are left out; everything else is copied.
func planConvert(src, variant, suffix string) (*convertPlan, error) {
	p := &convertPlan{}
	if err := p.walk(src, "", variant, suffix, 0); err != nil {
		return nil, err
	}
	if len(p.weights) == 0 {
		v := ""
		if variant != "" {
			v = fmt.Sprintf(" of variant %q", variant)
		}
		return nil, fmt.Errorf("%s has no weight files%s (*.safetensors or *.bin) to convert", src, v)
	}
	return p, nil
}

// weightName splits a weight file name into its base, variant and format:
// "diffusion_pytorch_model.fp16.safetensors" is (diffusion_pytorch_model,
// fp16, .safetensors).
func weightName(name string) (base, variant, ext string, ok bool) {
	ext = filepath.Ext(name)
	if ext != ".safetensors" && ext != ".bin" {
		return "", "", "", false
	}
	stem := strings.TrimSuffix(name, ext)
	base, variant, _ = strings.Cut(stem, ".")
	return base, variant, ext, base != ""
}

func (p *convertPlan) walk(root, rel, variant, suffix string, depth int) error {
	if depth > maxModelDepth {
		return fmt.Errorf("%s: folders nested more than %d deep", filepath.Join(root, rel), maxModelDepth)
	}
	entries, err := os.ReadDir(filepath.Join(root, rel))
	if err != nil {
		return err
	}
	type pick struct{ safetensors, bin string }
	picks := map[string]*pick{} // by output base name
	var others []string         // weight files of other variants
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		r := filepath.Join(rel, name)
		st, err := os.Stat(filepath.Join(root, r)) // follows the links of a Hugging Face snapshot
		if err != nil {
			return err
		}
		if st.IsDir() {
			p.dirs = append(p.dirs, r)
			if err := p.walk(root, r, variant, suffix, depth+1); err != nil {
				return err
			}
			continue
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", filepath.Join(root, r))
		}
		if strings.HasSuffix(name, ".safetensors.index.json") || strings.HasSuffix(name, ".bin.index.json") {
			return fmt.Errorf("%s: sharded checkpoints are not supported", filepath.Join(root, r))
		}
		base, v, ext, ok := weightName(name)
		if !ok {
			p.copies = append(p.copies, r)
			continue
		}
		if v != variant {
			others = append(others, name)
			continue
		}
		if ext == ".bin" && base == "pytorch_model" {
			base = "model" // transformers' safetensors name
		}
		pk := picks[base]
		if pk == nil {
			pk = &pick{}
			picks[base] = pk
		}
		if ext == ".safetensors" {
			pk.safetensors = r
		} else {
			pk.bin = r
		}
	}
	if len(picks) == 0 && len(others) > 0 {
		return fmt.Errorf("%s: no weight file of variant %q (there are %s; pick one with --variant)",
			filepath.Join(root, rel), variant, strings.Join(others, ", "))
	}
	bases := make([]string, 0, len(picks))
	for b := range picks {
		bases = append(bases, b)
	}
	slices.Sort(bases)
	for _, b := range bases {
		pk := picks[b]
		from := pk.safetensors
		if from == "" {
			from = pk.bin
		}
		name := b + ".safetensors"
		if suffix != "" {
			name = b + "." + suffix + ".safetensors"
		}
		p.weights = append(p.weights, weightFile{src: from, dst: filepath.Join(rel, name)})
	}
	return nil
}

// writeConverted carries out the plan into a temporary folder beside out
// and renames it to out at the end, replacing what was there.
func writeConverted(src, out string, plan *convertPlan, dt safetensors.DType, progress, stdout io.Writer, stop func() error) error {
	parent := filepath.Dir(filepath.Clean(out))
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(filepath.Clean(out))+".tmp*")
	if err != nil {
		return fmt.Errorf("output folder: %w", err)
	}
	tempFiles.Store(tmp, true)
	defer tempFiles.Delete(tmp)
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	for _, d := range plan.dirs {
		if err := os.Mkdir(filepath.Join(tmp, d), 0o755); err != nil {
			return err
		}
	}
	for _, c := range plan.copies {
		if err := stop(); err != nil {
			return err
		}
		if err := copyRegular(filepath.Join(src, c), filepath.Join(tmp, c)); err != nil {
			return err
		}
	}
	var before, after int64
	for _, w := range plan.weights {
		if err := stop(); err != nil {
			return err
		}
		n, in, outBytes, err := convertWeightFile(filepath.Join(src, w.src), filepath.Join(tmp, w.dst), dt)
		if err != nil {
			return err
		}
		before += in
		after += outBytes
		fmt.Fprintf(progress, "%s: %s → %s: %d tensors, %s → %s\n", componentOf(w.src), filepath.Base(w.src), filepath.Base(w.dst), n, sizeString(in), sizeString(outBytes))
	}
	if err := stop(); err != nil {
		return err
	}
	if err := replaceDir(tmp, out); err != nil {
		return err
	}
	ok = true
	fmt.Fprintf(progress, "wrote %s: %d weight files (%s → %s), %d other files\n", out, len(plan.weights), sizeString(before), sizeString(after), len(plan.copies))
	fmt.Fprintln(stdout, out)
	return nil
}

// sizeString shows a byte count in KiB, MiB or GiB.
func sizeString(n int64) string {
	switch {
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return mib(n)
	}
	return gib(n)
}

// componentOf names the component folder of a relative path ("." for the
// model folder itself).
func componentOf(rel string) string {
	if d := filepath.Dir(rel); d != "." {
		return d
	}
	return "."
}

// replaceDir renames the finished folder tmp to out: an existing out (empty,
// or replaced with --force) is moved aside first and removed after.
func replaceDir(tmp, out string) error {
	if _, err := os.Lstat(out); err == nil {
		old, err := os.MkdirTemp(filepath.Dir(filepath.Clean(out)), "."+filepath.Base(filepath.Clean(out))+".old*")
		if err != nil {
			return err
		}
		if err := os.Rename(out, filepath.Join(old, "x")); err != nil {
			os.Remove(old)
			return fmt.Errorf("replace %s: %w", out, err)
		}
		if err := os.Rename(tmp, out); err != nil {
			os.Rename(filepath.Join(old, "x"), out) // put it back
			os.Remove(old)
			return fmt.Errorf("replace %s: %w", out, err)
		}
		return os.RemoveAll(old)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("output folder: %w", err)
	}
	return nil
}

// copyRegular copies a file's contents (following links) to a new file.
func copyRegular(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}

// convertWeightFile reads one weight file, safetensors or PyTorch
// checkpoint, and writes its tensors as a safetensors file with the float
// tensors in dt. It returns the tensor count and the bytes of tensor data
// read and written.
func convertWeightFile(src, dst string, dt safetensors.DType) (n int, in, out int64, err error) {
	var tensors []safetensors.TensorInfo
	meta := map[string]string{}
	if filepath.Ext(src) == ".bin" {
		f, err := torchbin.Open(src)
		if err != nil {
			return 0, 0, 0, err
		}
		for _, k := range f.Keys() {
			t, _ := f.Get(k)
			tensors = append(tensors, safetensors.TensorInfo(t))
		}
	} else {
		f, err := safetensors.Open(src)
		if err != nil {
			return 0, 0, 0, err
		}
		defer f.Close()
		meta = f.Metadata()
		for _, k := range f.Keys() {
			t, _ := f.Get(k)
			tensors = append(tensors, t)
		}
	}
	if meta["format"] == "" {
		meta["format"] = "pt" // transformers refuses safetensors files without it
	}
	for i, t := range tensors {
		in += int64(len(t.Data))
		if isConvertible(t.DType) && t.DType != dt {
			tensors[i].Data = convertFloats(t.Data, t.DType, dt)
			tensors[i].DType = dt
		}
		out += int64(len(tensors[i].Data))
	}
	if err := safetensors.WriteFile(dst, tensors, meta); err != nil {
		return 0, 0, 0, fmt.Errorf("%s: %w", src, err)
	}
	return len(tensors), in, out, nil
}

// isConvertible reports whether convert changes tensors of type d: the
// float types; integers, bools and 8-bit floats are copied unchanged.
func isConvertible(d safetensors.DType) bool {
	switch d {
	case safetensors.F32, safetensors.F64, safetensors.F16, safetensors.BF16:
		return true
	}
	return false
}

// convertFloats converts little-endian floats from one type to another,
// rounding to nearest even. A float64 goes to a 16-bit type through a
// float32 rounded to odd, which keeps the final rounding exact (no double
// rounding).
func convertFloats(data []byte, from, to safetensors.DType) []byte {
	n := len(data) / from.Size()
	out := make([]byte, n*to.Size())
	le := binary.LittleEndian
	for i := range n {
		var v float32
		switch from {
		case safetensors.F32:
			v = math.Float32frombits(le.Uint32(data[4*i:]))
		case safetensors.F16:
			v = tensor.F16ToF32(le.Uint16(data[2*i:]))
		case safetensors.BF16:
			v = tensor.BF16ToF32(le.Uint16(data[2*i:]))
		case safetensors.F64:
			x := math.Float64frombits(le.Uint64(data[8*i:]))
			if to == safetensors.F32 {
				v = float32(x)
			} else {
				v = roundToOdd32(x)
			}
		}
		switch to {
		case safetensors.F32:
			le.PutUint32(out[4*i:], math.Float32bits(v))
		case safetensors.F16:
			le.PutUint16(out[2*i:], tensor.F32ToF16(v))
		case safetensors.BF16:
			le.PutUint16(out[2*i:], tensor.F32ToBF16(v))
		}
	}
	return out
}

// roundToOdd32 rounds x to a float32 toward zero and, when that is
// inexact, sets the last mantissa bit: rounding the result to a narrower
// type then gives the correctly rounded value of x.
func roundToOdd32(x float64) float32 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return float32(x)
	}
	f := float32(x)
	if float64(f) == x {
		return f
	}
	if math.Abs(float64(f)) > math.Abs(x) { // rounded away from zero: step back
		f = math.Nextafter32(f, 0)
	}
	return math.Float32frombits(math.Float32bits(f) | 1)
}
