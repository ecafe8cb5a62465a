package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/unclip-go/unclip/models/clip"
	"github.com/unclip-go/unclip/models/prior"
	"github.com/unclip-go/unclip/models/scheduler"
	"github.com/unclip-go/unclip/models/textproj"
	"github.com/unclip-go/unclip/models/unclip"
	"github.com/unclip-go/unclip/models/unet"
	"github.com/unclip-go/unclip/tensor/safetensors"
)

func runInspect(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("inspect", flag.ContinueOnError)
	model := fs.String("m", "", `model: a diffusers unCLIP folder, a cached Hugging Face repo id, or "demo" (required)`)
	variant := fs.String("variant", "", "weight file variant, e.g. fp16")
	setUsage(fs, "unclip inspect -m DIR|REPO|demo [--variant fp16]")
	pos, err := parseFlags(fs, args, stderr)
	if err != nil {
		return err
	}
	if *model == "" || len(pos) > 0 {
		fmt.Fprintln(stderr, "usage: unclip inspect -m DIR|REPO|demo [--variant fp16]")
		return errUsage
	}
	if *model == "demo" {
		return inspectDemo(stdout)
	}
	dir, err := resolveModel(*model, "", stderr)
	if err != nil {
		return err
	}
	idx, err := unclip.ModelIndex(dir)
	if err != nil {
		return err
	}
	// Check the folder as generate would — every config against its
	// weights' headers (no weight is read: the binding checks shapes and
	// types) — before printing anything.
	if err := unclip.Check(dir, *variant); err != nil {
		return err
	}
	var buf bytes.Buffer // printed only when every component could be read
	fmt.Fprintf(&buf, "model %s (%s)\n\n", dir, idx.Kind)
	tw := tabwriter.NewWriter(&buf, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "COMPONENT\tCLASS\tPARAMETERS\tDTYPES\tCONFIG")
	var total int64
	for _, c := range unclip.ComponentsOf(idx.Kind) {
		d := filepath.Join(dir, c.Name)
		params, dtypes, err := weightStats(d, *variant)
		if err != nil {
			return fmt.Errorf("%s: %w", c.Name, err)
		}
		total += params
		summary, err := configSummary(c.Name, d)
		if err != nil {
			return err
		}
		ps := "-"
		if dtypes != "" {
			ps = commas(params)
		} else {
			dtypes = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Name, idx.Classes[c.Name][1], ps, dtypes, summary)
	}
	fmt.Fprintf(tw, "total\t\t%s\t\t\n", commas(total))
	tw.Flush()
	_, err = buf.WriteTo(stdout)
	return err
}

// inspectDemo describes the built-in demo model: its architecture (the
// tiny one of diffusers' unCLIP tests) and parameter counts.
func inspectDemo(stdout io.Writer) error {
	arch := unclip.Tiny()
	p, err := unclip.NewRandom(arch, unclip.RandomOptions{Seed: 0})
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(stdout, "model demo: built in, untrained (deterministic random weights), float32")
	fmt.Fprintln(stdout)
	summary := map[string]string{
		unclip.TextEncoder: fmt.Sprintf("hidden %d, %d layers, %d heads", arch.Text.HiddenSize, arch.Text.NumHiddenLayers, arch.Text.NumAttentionHeads),
		unclip.Prior:       fmt.Sprintf("%d layers, %d heads × %d", arch.Prior.NumLayers, arch.Prior.NumAttentionHeads, arch.Prior.AttentionHeadDim),
		unclip.TextProj:    fmt.Sprintf("clip %d, %d extra tokens", arch.TextProj.ClipEmbeddingsDim, arch.TextProj.ClipExtraContextTokens),
		unclip.Decoder:     fmt.Sprintf("sample %v, channels %v", arch.Decoder.SampleSize, arch.Decoder.BlockOutChannels),
	}
	sr := fmt.Sprintf("sample %v, channels %v", arch.SuperRes.SampleSize, arch.SuperRes.BlockOutChannels)
	summary[unclip.SuperResFirst], summary[unclip.SuperResLast] = sr, sr
	fmt.Fprintln(tw, "COMPONENT\tPARAMETERS\tCONFIG")
	var total int64
	for _, c := range p.ParameterCounts() {
		total += c.Params
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Component, commas(c.Params), summary[c.Component])
	}
	fmt.Fprintf(tw, "total\t%s\t\n", commas(total))
	return tw.Flush()
}

// weightStats counts the floating-point parameters of a component's
// safetensors files (headers only) and lists their dtypes.
func weightStats(dir, variant string) (int64, string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	if err != nil {
		return 0, "", err
	}
	var pick []string
	for _, f := range files {
		base := strings.TrimSuffix(filepath.Base(f), ".safetensors")
		v := ""
		if i := strings.IndexByte(base, '.'); i >= 0 {
			v = base[i+1:]
		}
		if v == variant {
			pick = append(pick, f)
		}
	}
	var n int64
	types := map[string]bool{}
	for _, f := range pick {
		st, err := safetensors.Open(f)
		if err != nil {
			return 0, "", err
		}
		for _, k := range st.Keys() {
			info, _ := st.Get(k)
			switch info.DType {
			case safetensors.F32, safetensors.F16, safetensors.BF16, safetensors.F64:
				n += int64(info.NumElements())
				types[string(info.DType)] = true
			}
		}
		st.Close()
	}
	var ts []string
	for t := range types {
		ts = append(ts, t)
	}
	sort.Strings(ts)
	return n, strings.Join(ts, ","), nil
}

func configSummary(name, dir string) (string, error) {
	if _, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("%s: component folder %q is missing", filepath.Dir(dir), name)
	}
	cfgPath := filepath.Join(dir, "config.json")
	switch name {
	case unclip.Tokenizer:
		t, err := clip.LoadTokenizer(dir)
		if err != nil {
			return "", err
		}
		pad := t.Token(t.PadID())
		return fmt.Sprintf("vocab %d, max length %d, pad %q (id %d)", t.VocabSize(), t.MaxLength(), pad, t.PadID()), nil
	case unclip.TextEncoder:
		c, err := clip.LoadTextConfig(cfgPath)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("hidden %d, %d layers, %d heads, mlp %d, projection %d, %s, eos_token_id %d",
			c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.IntermediateSize, c.ProjectionDim, c.HiddenAct, c.EOSTokenID), nil
	case unclip.Prior:
		c, err := prior.LoadConfig(cfgPath)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%d layers, %d heads × %d, embedding %d, %d+%d tokens",
			c.NumLayers, c.NumAttentionHeads, c.AttentionHeadDim, c.EmbeddingDim, c.NumEmbeddings, c.AdditionalEmbeddings), nil
	case unclip.TextProj:
		c, err := textproj.LoadConfig(cfgPath)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("clip %d, %d extra tokens, cross %d, time %d", c.ClipEmbeddingsDim, c.ClipExtraContextTokens, c.CrossAttentionDim, c.TimeEmbedDim), nil
	case unclip.ImageEncoder:
		c, err := clip.LoadVisionConfig(cfgPath)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("image %d, patch %d, hidden %d, %d layers, %d heads, mlp %d, projection %d, %s",
			c.ImageSize, c.PatchSize, c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.IntermediateSize, c.ProjectionDim, c.HiddenAct), nil
	case unclip.FeatureExtractor:
		f, err := clip.LoadImageProcessor(dir)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("shortest edge %d, crop %d×%d, bicubic", f.ShortestEdge, f.CropW, f.CropH), nil
	case unclip.Decoder, unclip.SuperResFirst, unclip.SuperResLast:
		c, err := unet.LoadConfig(cfgPath)
		if err != nil {
			return "", err
		}
		s := fmt.Sprintf("sample %v, in %d, out %d, channels %v, %v layers/block, %s",
			c.SampleSize, c.InChannels, c.OutChannels, c.BlockOutChannels, c.LayersPerBlock, c.ResnetTimeScaleShift)
		if c.Conditional {
			s += fmt.Sprintf(", head dim %v, cross %v", c.AttentionHeadDim, c.CrossAttentionDim)
		}
		return s, nil
	default:
		c, err := scheduler.LoadConfig(filepath.Join(dir, "scheduler_config.json"))
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s, predicts %s, clip ±%g, %d train steps", c.VarianceType, c.PredictionType, c.ClipSampleRange, c.NumTrainTimesteps), nil
	}
}

// commas formats 1234567 as 1,234,567.
func commas(n int64) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}
