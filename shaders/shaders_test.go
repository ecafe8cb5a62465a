package shaders

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/unclip-go/unclip/shaders/internal/glslc"
)

// TestSPIRVUpToDate recompiles every shader and fails when a committed
// .spv differs (run "go generate ./shaders"). Without glslc it skips, except
// in CI (CI=true), where glslc must be installed.
func TestSPIRVUpToDate(t *testing.T) {
	glslcPath, err := exec.LookPath("glslc")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("glslc not found; CI must install it (Debian package glslc)")
		}
		t.Skip("glslc not found (Debian package glslc); cannot check the .spv files")
	}
	targets, err := glslc.Targets(".")
	if err != nil || len(targets) == 0 {
		t.Fatalf("no shader sources: %v", err)
	}
	tmp := t.TempDir()
	names := map[string]bool{}
	glslang := os.Getenv(glslc.GlslangEnv)
	for _, tg := range targets {
		name := tg.Name
		names[name] = true
		out := filepath.Join(tmp, name+".spv")
		if tg.Glslang {
			if glslang == "" {
				// Checked only where the newer compiler is at hand; spirv-val
				// still checks the committed file (TestSPIRVValid).
				t.Logf("%s.spv: not recompiled (needs glslangValidator 13+ in %s)", name, glslc.GlslangEnv)
				if _, err := SPIRV(name); err != nil {
					t.Errorf("%s: %v", name, err)
				}
				continue
			}
			if err := glslc.CompileGlslang(glslang, tg.Src, out, tg.Defines...); err != nil {
				t.Errorf("%v", err)
				continue
			}
		} else if err := glslc.Compile(glslcPath, tg.Src, out, tg.Defines...); err != nil {
			t.Errorf("%v", err)
			continue
		}
		fresh, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		committed, err := SPIRV(name)
		if err != nil {
			t.Errorf("%s: %v (run go generate ./shaders)", name, err)
			continue
		}
		if !bytes.Equal(fresh, committed) {
			t.Errorf("%s.spv is stale against %s: run go generate ./shaders", name, filepath.Base(tg.Src))
		}
	}
	// No orphan .spv without a source or variant line.
	spvs, _ := filepath.Glob("*.spv")
	for _, s := range spvs {
		if !names[strings.TrimSuffix(s, ".spv")] {
			t.Errorf("%s has no source", s)
		}
	}
}

// TestSPIRVValid runs spirv-val (Debian package spirv-tools) on every
// committed .spv for the Vulkan version it was compiled for. Without
// spirv-val it skips, except in CI. A spirv-val older than an @glslang
// variant's opcodes (Debian 12's does not know VK_KHR_cooperative_matrix)
// cannot judge that file: the test says so in its log instead of passing
// it silently.
func TestSPIRVValid(t *testing.T) {
	val, err := exec.LookPath("spirv-val")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("spirv-val not found; CI must install it (Debian package spirv-tools)")
		}
		t.Skip("spirv-val not found (Debian package spirv-tools)")
	}
	targets, err := glslc.Targets(".")
	if err != nil || len(targets) == 0 {
		t.Fatalf("no shader sources: %v", err)
	}
	for _, tg := range targets {
		env := glslc.TargetEnv
		if tg.Glslang {
			env = glslc.GlslangTargetEnv
		}
		msg, err := exec.Command(val, "--target-env", env, tg.Name+".spv").CombinedOutput()
		if err == nil {
			continue
		}
		out := strings.TrimSpace(string(msg))
		if tg.Glslang && unknownToValidator.MatchString(out) {
			t.Logf("%s.spv: not validated: this spirv-val does not know its opcodes (%s)", tg.Name, firstLine(out))
			continue
		}
		t.Errorf("%s.spv: spirv-val --target-env %s: %v\n%s", tg.Name, env, err, out)
	}
}

// unknownToValidator matches spirv-val's complaints about capabilities,
// opcodes or enumerants newer than itself.
var unknownToValidator = regexp.MustCompile(`Invalid (capability operand|opcode|extension)|(?i)unknown (opcode|capability)|has not been (enabled|declared)|Operand \d+ of \w+ has invalid`)

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
