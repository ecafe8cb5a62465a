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
// Glslang marks a variant that Debian's glslc cannot compile (a variant
// line ending in "@glslang", such as the VK_KHR_cooperative_matrix build):
// it is compiled by a newer glslangValidator, named by the environment
// variable UNCLIP_GLSLANG (see CompileGlslang).
type Target struct {
	Src     string
	Name    string
	Defines []string
	Glslang bool
}

// GlslangEnv names the glslangValidator (version 13 or newer, built from
// https://github.com/KhronosGroup/glslang) that compiles @glslang variants.
const GlslangEnv = "UNCLIP_GLSLANG"

// GlslangTargetEnv is the Vulkan version @glslang variants are compiled
// for (cooperative matrices need SPIR-V 1.6 types).
const GlslangTargetEnv = "vulkan1.3"

// CompileGlslang compiles an @glslang variant with glslangValidator (the
// executable's path); it is not optimised (glslang alone has no optimiser).
func CompileGlslang(glslang, src, out string, defines ...string) error {
	args := []string{"-V", "--target-env", GlslangTargetEnv, "-I" + filepath.Dir(src)}
	for _, d := range defines {
		args = append(args, "-D"+d)
	}
	args = append(args, "-o", out, src)
	cmd := exec.Command(glslang, args...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("glslangValidator %s %v: %v\n%s", filepath.Base(src), defines, err, strings.TrimSpace(string(msg)))
	}
	return nil
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
			t := Target{Src: src, Name: fs[0], Defines: fs[1:]}
			if n := len(t.Defines); n > 0 && t.Defines[n-1] == "@glslang" {
				t.Defines, t.Glslang = t.Defines[:n-1], true
			}
			ts = append(ts, t)
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	return ts, nil
}
