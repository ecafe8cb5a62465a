// Command gen compiles every shaders/*.comp to a .spv beside it with glslc,
// and each variant a source declares (a "//!variant NAME MACRO..." line)
// to NAME.spv; it is run by "go generate ./shaders".
package main

import (
	"fmt"
	"os"
	"os/exec"

	"github.com/unclip-go/unclip/shaders/internal/glslc"
)

func main() {
	path, err := exec.LookPath("glslc")
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen: glslc not found (Debian: apt-get install glslc)")
		os.Exit(1)
	}
	targets, err := glslc.Targets(".")
	if err != nil || len(targets) == 0 {
		fmt.Fprintln(os.Stderr, "gen: no .comp files here", err)
		os.Exit(1)
	}
	failed := false
	glslang := os.Getenv(glslc.GlslangEnv)
	for _, t := range targets {
		if t.Glslang {
			if glslang == "" {
				fmt.Fprintf(os.Stderr, "gen: %s.spv kept: it needs glslangValidator 13+ (set %s)\n", t.Name, glslc.GlslangEnv)
				continue
			}
			if err := glslc.CompileGlslang(glslang, t.Src, t.Name+".spv", t.Defines...); err != nil {
				fmt.Fprintln(os.Stderr, err)
				failed = true
			}
			continue
		}
		if err := glslc.Compile(path, t.Src, t.Name+".spv", t.Defines...); err != nil {
			fmt.Fprintln(os.Stderr, err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}
