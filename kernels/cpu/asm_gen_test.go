package cpu

import (
	"bytes"
	"os"
	"os/exec"
	"testing"
)

// TestAsmUpToDate checks that gemm_amd64.s is what the generator in _asm
// writes, so that the committed assembly and its source never drift.
func TestAsmUpToDate(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	cmd := exec.Command(gobin, "run", ".")
	cmd.Dir = "_asm"
	cmd.Env = append(os.Environ(), "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	got, err := cmd.Output()
	if err != nil {
		t.Fatalf("go run ./_asm: %v\n%s", err, stderr.String())
	}
	want, err := os.ReadFile("gemm_amd64.s")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("gemm_amd64.s is stale: run 'cd kernels/cpu/_asm && go run . > ../gemm_amd64.s'")
	}
}
