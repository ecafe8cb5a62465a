package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/unclip-go/unclip/models/verify"
)

func runVerify(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	model := fs.String("m", "", "model: a diffusers unCLIP folder (required)")
	gold := fs.String("g", "", "golden recording (golden.safetensors with golden.json beside it); default: golden.safetensors beside the model folder")
	only := fs.String("only", "", "comma-separated checks to run (default all): "+strings.Join(verify.Checks, ",")+"; for a variation recording "+strings.Join(verify.VariationChecks, ","))
	device := fs.String("device", "cpu", deviceFlagHelp)
	threads := fs.Int("threads", 0, threadsFlagHelp)
	var mem memoryFlags
	mem.register(fs)
	pos, err := parseFlags(fs, args, stderr)
	if err != nil {
		return err
	}
	if *model == "" || len(pos) > 0 {
		fmt.Fprintln(stderr, "usage: unclip verify -m DIR [-g GOLDEN.safetensors] [--only LIST] [--device NAME]")
		return errUsage
	}
	if *model == "demo" {
		return fmt.Errorf("verify compares a model folder with a recorded diffusers run of it, and the built-in demo model has none; " +
			"run it on the fixture: unclip verify -m ../shared/fixtures/unclip-tiny/model")
	}
	dir, err := resolveModel(*model, "", stderr)
	if err != nil {
		return err
	}
	if *gold == "" {
		*gold = verify.DefaultGolden(dir)
	}
	if err := mem.prepare(*device); err != nil {
		return err
	}
	dev, err := openDevice(*device, *threads, stderr)
	if err != nil {
		return err
	}
	res := mem.residency()
	rep, err := verify.Run(verify.Options{Model: dir, Golden: *gold, Only: splitList(*only), Device: dev, Residency: res, Out: stdout})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", rep.Passed, rep.Failed)
	if rep.Failed > 0 {
		return exitError{1}
	}
	return nil
}
