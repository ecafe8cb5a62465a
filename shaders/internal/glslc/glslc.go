// Package glslc runs the shader compiler with the flags every committed
// .spv of package shaders was made with (shared by go generate and the
// staleness test).
package glslc

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// TargetEnv is the Vulkan version the shaders are compiled for.
const TargetEnv = "vulkan1.1"

// Compile runs glslc (the executable's path) on the shader source src (a
// .comp file) and writes SPIR-V to out; defines are macros set with -D.
func Compile(glslc, src, out string, defines ...string) error {
	args := []string{"--target-env=" + TargetEnv, "-O", "-I", filepath.Dir(src)}
	for _, d := range defines {
		args = append(args, "-D"+d)
	}
	args = append(args, "-o", out, src)
	cmd := exec.Command(glslc, args...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("glslc %s %v: %v\n%s", filepath.Base(src), defines, err, strings.TrimSpace(string(msg)))
	}
	return nil
}

// Sources lists the shader sources (.comp) in dir.
func Sources(dir string) ([]string, error) {
	return filepath.Glob(filepath.Join(dir, "*.comp"))
}

// Target is one SPIR-V file: Name.spv, compiled from Src with Defines.
type Target struct {
	Src     string
	Name    string
	Defines []string
}

// VariantPrefix starts a line of a .comp that declares another SPIR-V
// file made from it: "//!variant NAME MACRO..." compiles the source with
// each MACRO defined into NAME.spv (e.g. the 16-bit-storage variant).
const VariantPrefix = "//!variant "

// Targets lists the SPIR-V files of the sources in dir: one per .comp,
// named after it, plus its declared variants.
func Targets(dir string) ([]Target, error) {
	srcs, err := Sources(dir)
	if err != nil {
		return nil, err
	}
	var ts []Target
	for _, src := range srcs {
		ts = append(ts, Target{Src: src, Name: strings.TrimSuffix(filepath.Base(src), ".comp")})
		f, err := os.Open(src)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if !strings.HasPrefix(line, VariantPrefix) {
				continue
			}
			fs := strings.Fields(strings.TrimPrefix(line, VariantPrefix))
			if len(fs) < 1 {
				f.Close()
				return nil, fmt.Errorf("%s: empty variant line", src)
			}
			ts = append(ts, Target{Src: src, Name: fs[0], Defines: fs[1:]})
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	return ts, nil
}
