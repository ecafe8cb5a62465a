package cpu

import (
	"bytes"
	"os"
	"os/exec"
	"testing"
)

// TestAsmUpToDate checks that the committed assembly files are what the
// generator in _asm writes, so that they and their source never drift.
func TestAsmUpToDate(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	for _, tc := range []struct{ file, arch string }{
		{"gemm_amd64.s", "amd64"},
		{"gemm_arm64.s", "arm64"},
	} {
		t.Run(tc.arch, func(t *testing.T) {
			cmd := exec.Command(gobin, "run", ".", "-arch", tc.arch)
			cmd.Dir = "_asm"
			// The generator runs on the host: drop a cross-compiling
			// GOOS/GOARCH (tests run under an emulator with -exec).
			cmd.Env = append(os.Environ(), "GOWORK=off", "GOOS=", "GOARCH=")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			got, err := cmd.Output()
			if err != nil {
				t.Fatalf("go run ./_asm -arch %s: %v\n%s", tc.arch, err, stderr.String())
			}
			want, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s is stale: run 'cd kernels/cpu/_asm && go run . -arch %s > ../%s'", tc.file, tc.arch, tc.file)
			}
		})
	}
}
