package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/unclip-go/unclip/models/clip"
	"github.com/unclip-go/unclip/models/unclip"
)

func runTokenize(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tokenize", flag.ContinueOnError)
	model := fs.String("m", "", `model: a diffusers unCLIP folder, a tokenizer folder, a cached Hugging Face repo id, or "demo" (required)`)
	asJSON := fs.Bool("json", false, "print JSON")
	setUsage(fs, "unclip tokenize -m DIR|REPO|demo [--json] TEXT")
	pos, err := parseFlags(fs, args, stderr)
	if err != nil {
		return err
	}
	if *model == "" || len(pos) != 1 {
		fmt.Fprintln(stderr, "usage: unclip tokenize -m DIR|REPO|demo [--json] TEXT")
		return errUsage
	}
	var tok *clip.Tokenizer
	if *model == "demo" {
		// The demo model's tokenizer: byte-level, no vocabulary files.
		tok, err = clip.ByteLevelTokenizer(unclip.Tiny().Text.MaxPositionEmbeddings)
	} else {
		var dir string
		if dir, err = resolveModel(*model, "", stderr); err != nil {
			return err
		}
		tdir := filepath.Join(dir, "tokenizer")
		if isDir(dir) && !isDir(tdir) && fileExists(filepath.Join(dir, "vocab.json")) {
			tdir = dir
		}
		tok, err = clip.LoadTokenizer(tdir)
	}
	if err != nil {
		return err
	}
	enc, err := tok.Encode(pos[0])
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(map[string]any{
			"input_ids": enc.IDs, "attention_mask": enc.Mask, "tokens": enc.Tokens, "length": enc.Len, "truncated": enc.Truncated,
		})
	}
	for i := 0; i < enc.Len; i++ {
		fmt.Fprintf(stdout, "%d\t%s\n", enc.IDs[i], enc.Tokens[i])
	}
	fmt.Fprintf(stdout, "# %d tokens, padded to %d with id %d", enc.Len, tok.MaxLength(), tok.PadID())
	if enc.Truncated {
		fmt.Fprint(stdout, "; the text was truncated")
	}
	fmt.Fprintln(stdout)
	return nil
}
