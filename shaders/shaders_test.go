package shaders

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
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
	for _, tg := range targets {
		name := tg.Name
		names[name] = true
		out := filepath.Join(tmp, name+".spv")
		if err := glslc.Compile(glslcPath, tg.Src, out, tg.Defines...); err != nil {
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
