// Command gen compiles every shaders/*.comp to a .spv beside it with glslc;
// it is run by "go generate ./shaders".
package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/unclip-go/unclip/shaders/internal/glslc"
)

func main() {
	path, err := exec.LookPath("glslc")
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen: glslc not found (Debian: apt-get install glslc)")
		os.Exit(1)
	}
	srcs, err := glslc.Sources(".")
	if err != nil || len(srcs) == 0 {
		fmt.Fprintln(os.Stderr, "gen: no .comp files here", err)
		os.Exit(1)
	}
	failed := false
	for _, src := range srcs {
		if err := glslc.Compile(path, src, strings.TrimSuffix(src, ".comp")+".spv"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}
