// Command unclip generates images from text with the unCLIP (Karlo) model
// and inspects, verifies and benchmarks the engine.
//
// Usage:
//
//	unclip generate -m DIR -p PROMPT -o OUT.png   text to image
//	unclip inspect  -m DIR                        components, configs, parameter counts
//	unclip tokenize -m DIR TEXT                   CLIP token ids
//	unclip verify   -m DIR -g GOLDEN              parity against a recorded diffusers run
//	unclip bench pipeline --random-weights        stage timings without a checkpoint
//	unclip devices                                the CPU and every Vulkan device
//
// Run "unclip help COMMAND" for a command's flags.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	_ "github.com/unclip-go/unclip/kernels/cpu"
)

// command is one subcommand.
type command struct {
	name, summary string
	run           func(args []string, stdout, stderr io.Writer) error
}

var commands []command

func init() {
	commands = []command{
		{"generate", "generate images from prompts", runGenerate},
		{"inspect", "show a model folder's components, configs and parameter counts", runInspect},
		{"tokenize", "print the CLIP token ids of a text", runTokenize},
		{"verify", "check every component against a recorded diffusers run", runVerify},
		{"bench", "time the pipeline stage by stage (bench pipeline) and the kernels", runBench},
		{"devices", "list the compute devices (CPU and every Vulkan device)", runDevices},
	}
}

// exitError carries an exit status without an extra message (the command
// has already reported, e.g. failed verification checks).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: unclip COMMAND [flags]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'unclip COMMAND -h' for a command's flags.")
}

func main() {
	limitMemory()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// limitMemory sets the garbage collector's soft memory limit to 85% of RAM
// (unless GOMEMLIMIT is set). Full-size weights are most of the heap; with
// the default GOGC alone the heap may grow to twice the live data before a
// collection, which is past the RAM of a 24 GB machine.
func limitMemory() {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	if m := physicalMemory(); m > 0 {
		debug.SetMemoryLimit(int64(m / 100 * 85))
	}
}

// run executes a command line and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	name := args[0]
	if name == "help" || name == "-h" || name == "--help" {
		if len(args) > 1 {
			return run([]string{args[1], "-h"}, stdout, stderr)
		}
		usage(stdout)
		return 0
	}
	for _, c := range commands {
		if c.name != name {
			continue
		}
		err := c.run(args[1:], stdout, stderr)
		var ee exitError
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &ee):
			return ee.code
		case errors.Is(err, errUsage):
			return 2
		}
		fmt.Fprintf(stderr, "unclip %s: %v\n", name, err)
		return 1
	}
	fmt.Fprintf(stderr, "unclip: unknown command %q\n\n", name)
	usage(stderr)
	return 2
}

var errUsage = errors.New("usage")

// parseFlags parses flags that may be interleaved with positional
// arguments and returns the positional ones.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) ([]string, error) {
	fs.SetOutput(stderr)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errUsage
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
