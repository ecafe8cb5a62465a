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
	srcs, err := glslc.Sources(".")
	if err != nil || len(srcs) == 0 {
		t.Fatalf("no shader sources: %v", err)
	}
	tmp := t.TempDir()
	for _, src := range srcs {
		name := strings.TrimSuffix(filepath.Base(src), ".comp")
		out := filepath.Join(tmp, name+".spv")
		if err := glslc.Compile(glslcPath, src, out); err != nil {
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
			t.Errorf("%s.spv is stale against %s.comp: run go generate ./shaders", name, name)
		}
	}
	// No orphan .spv without a source.
	spvs, _ := filepath.Glob("*.spv")
	for _, s := range spvs {
		if _, err := os.Stat(strings.TrimSuffix(s, ".spv") + ".comp"); err != nil {
			t.Errorf("%s has no source", s)
		}
	}
}
