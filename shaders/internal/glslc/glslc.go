// Package glslc runs the shader compiler with the flags every committed
// .spv of package shaders was made with (shared by go generate and the
// staleness test).
package glslc

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// TargetEnv is the Vulkan version the shaders are compiled for.
const TargetEnv = "vulkan1.1"

// Compile runs glslc (the executable's path) on the shader source src (a
// .comp file) and writes SPIR-V to out.
func Compile(glslc, src, out string) error {
	cmd := exec.Command(glslc, "--target-env="+TargetEnv, "-O", "-I", filepath.Dir(src), "-o", out, src)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("glslc %s: %v\n%s", filepath.Base(src), err, strings.TrimSpace(string(msg)))
	}
	return nil
}

// Sources lists the shader sources (.comp) in dir.
func Sources(dir string) ([]string, error) {
	return filepath.Glob(filepath.Join(dir, "*.comp"))
}
