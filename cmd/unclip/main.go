// Command unclip generates images from text with the unCLIP (Karlo) model
// and inspects, verifies and benchmarks the engine.
//
// Usage:
//
//	unclip generate -m DIR -p PROMPT -o OUT.png   text to image
//	unclip vary -m DIR -i IMAGE -o OUT.png        variations of an image
//	unclip interpolate -m DIR --image A --image B  frames between two images (or -p A -p B)
//	unclip inspect  -m DIR                        components, configs, parameter counts
//	unclip tokenize -m DIR TEXT                   CLIP token ids
//	unclip verify   -m DIR -g GOLDEN              parity against a recorded diffusers run
//	unclip bench pipeline --random-weights        stage timings without a checkpoint
//	unclip devices                                the CPU and every Vulkan device
//	unclip convert  -m DIR --dtype fp16 -o OUT    copy a model with fp16/bf16/fp32 safetensors weights
//	unclip serve    -m DIR [--addr HOST:PORT]     HTTP server (OpenAI and A1111 APIs), model loaded once
//
// Run "unclip help COMMAND" for a command's flags.
package main

import (
	"bytes"
	"encoding/json"
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
		{"vary", "variations of images, and text diffs (image-variations model)", runVary},
		{"interpolate", "frames between two images or two prompts", runInterpolate},
		{"inspect", "show a model folder's components, configs and parameter counts", runInspect},
		{"tokenize", "print the CLIP token ids of a text", runTokenize},
		{"verify", "check every component against a recorded diffusers run", runVerify},
		{"bench", "time the pipeline stage by stage (bench pipeline) and the kernels", runBench},
		{"devices", "list the compute devices (CPU and every Vulkan device)", runDevices},
		{"convert", "write a copy of a model with fp16, bf16 or fp32 safetensors weights", runConvert},
		{"serve", "HTTP server with the model loaded once (OpenAI and AUTOMATIC1111 image APIs)", runServe},
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
	watchSignals(os.Stderr)
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
	if name == "version" || name == "-version" || name == "--version" {
		fmt.Fprintln(stdout, versionString())
		return 0
	}
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
		code := 1
		var ee exitError
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &ee):
			return ee.code
		case errors.Is(err, errUsage):
			code = 2
		default:
			fmt.Fprintf(stderr, "unclip %s: %v\n", name, err)
		}
		if s := interrupted(); s != nil {
			code = signalStatus(s)
		}
		if wantsJSON(args[1:]) {
			msg := err.Error()
			if errors.Is(err, errUsage) {
				msg = "usage error (see stderr)"
			}
			json.NewEncoder(stdout).Encode(map[string]any{"event": "error", "command": name, "error": msg, "exit_status": code})
		}
		return code
	}
	fmt.Fprintf(stderr, "unclip: unknown command %q\n", name)
	if s := suggest(name, commandNames()); s != "" {
		fmt.Fprintf(stderr, "did you mean %q?\n", s)
	}
	fmt.Fprintln(stderr)
	usage(stderr)
	return 2
}

func commandNames() []string {
	names := make([]string, len(commands))
	for i, c := range commands {
		names[i] = c.name
	}
	return names
}

// wantsJSON reports whether a command line asks for JSON output, so that
// its error is a JSON line on stdout too.
func wantsJSON(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-json", "--json", "-json=true", "--json=true", "-json=1", "--json=1":
			return true
		}
	}
	return false
}

// versionString is the module version and VCS revision the binary was
// built from.
func versionString() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unclip (no build information)"
	}
	v := info.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, when, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = ", modified"
			}
		}
	}
	out := "unclip " + v
	if rev != "" {
		out += fmt.Sprintf(" (revision %s", rev)
		if when != "" {
			out += ", " + when
		}
		out += dirty + ")"
	}
	return out + ", " + info.GoVersion
}

var errUsage = errors.New("usage")

// parseFlags parses flags that may be interleaved with positional
// arguments and returns the positional ones.
//
// -h prints the command's flags; a bad flag prints one line saying what is
// wrong, the nearest flag name when there is one, and where the flags are
// listed, instead of the whole list.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) ([]string, error) {
	var help bytes.Buffer
	fs.SetOutput(&help)
	defer fs.SetOutput(stderr)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				stderr.Write(help.Bytes())
				return nil, err
			}
			fmt.Fprintf(stderr, "unclip %s: %s\n", fs.Name(), flagError(fs, err))
			fmt.Fprintf(stderr, "run 'unclip %s -h' for its flags\n", fs.Name())
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

// setUsage makes -h print the command's synopsis before its flags.
func setUsage(fs *flag.FlagSet, synopsis string) {
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s\n\nflags:\n", synopsis)
		fs.PrintDefaults()
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
