package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/unclip-go/unclip/tensor/safetensors"
)

// TestSignalExit sends SIGINT or SIGTERM to a running generate (the built
// binary, in its decoder stage) and checks that it stops within a step,
// says so, exits 130 or 143 as a shell would report, and leaves no image
// nor temporary file behind.
func TestSignalExit(t *testing.T) {
	bin := buildBinary(t)
	for _, c := range []struct {
		sig  syscall.Signal
		code int
	}{
		{syscall.SIGINT, 130},
		{syscall.SIGTERM, 143},
	} {
		t.Run(c.sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			interruptRun(t, bin, []string{"generate", "-m", "demo", "-p", "x", "-o", filepath.Join(dir, "img.png"), "--device", "cpu",
				"--prior-steps", "2", "--decoder-steps", "1000"}, "decoder ", 0, c.sig, c.code,
				"stopping after the current operation", "interrupted; no image written")
			wantEmpty(t, dir)
		})
	}
}

// buildBinary builds the command into a temporary folder (the tests that
// send it signals need a process of its own).
func buildBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "unclip")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// interruptRun starts bin with args, waits until its stderr shows ready
// and then for settle, sends sig, and checks that the process stops
// within 10 s with exit status code and says each of want.
func interruptRun(t *testing.T, bin string, args []string, ready string, settle time.Duration, sig os.Signal, code int, want ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(stderr.String(), ready) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(settle)
	sent := time.Now()
	cmd.Process.Signal(sig)
	stuck := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	defer stuck.Stop()
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != code {
		t.Fatalf("exit %v, want status %d; stderr: %s", err, code, stderr.String())
	}
	if d := time.Since(sent); d > 10*time.Second {
		t.Errorf("took %s to stop", d)
	}
	for _, w := range want {
		if !strings.Contains(stderr.String(), w) {
			t.Errorf("stderr %q does not say %q", stderr.String(), w)
		}
	}
}

// syncBuffer is a bytes.Buffer safe to read while a process writes it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestInterruptRules checks the signal bookkeeping: the first signal in a
// cancellable phase cancels it, a second one exits; outside a phase the
// first one exits; the exit status follows the first signal.
func TestInterruptRules(t *testing.T) {
	var in interrupts
	ctx, cancel := context.WithCancel(context.Background())
	in.cancel = cancel
	if in.receive(syscall.SIGTERM) {
		t.Fatal("the first signal in a cancellable phase exits at once")
	}
	if ctx.Err() == nil {
		t.Fatal("the first signal did not cancel the phase")
	}
	if !in.receive(os.Interrupt) {
		t.Fatal("a second signal does not exit")
	}
	if got := signalStatus(in.first()); got != 143 {
		t.Fatalf("status %d after SIGTERM then SIGINT, want 143", got)
	}
	var outside interrupts
	if !outside.receive(os.Interrupt) || signalStatus(outside.first()) != 130 {
		t.Fatal("a signal outside a cancellable phase does not exit 130")
	}
}

// TestGenerateNaNWeights poisons one decoder weight with NaN and checks
// that generate fails naming the decoder instead of writing a black image.
func TestGenerateNaNWeights(t *testing.T) {
	model := copyWholeModel(t)
	matches, _ := filepath.Glob(filepath.Join(model, "decoder", "*.safetensors"))
	if len(matches) != 1 {
		t.Fatalf("decoder weight files: %v", matches)
	}
	poisoned := false
	rewriteTensors(t, matches[0], func(ts []safetensors.TensorInfo) []safetensors.TensorInfo {
		for i := range ts {
			if ts[i].Name == "conv_out.bias" && ts[i].DType == safetensors.F32 {
				d := append([]byte(nil), ts[i].Data...)
				for j := 0; j+4 <= len(d); j += 4 {
					binary.LittleEndian.PutUint32(d[j:], math.Float32bits(float32(math.NaN())))
				}
				ts[i].Data, poisoned = d, true
			}
		}
		return ts
	})
	if !poisoned {
		t.Fatal("no F32 conv_out.bias in the decoder")
	}
	dir := t.TempDir()
	code, _, stderr := cli(t, "generate", "-m", model, "-p", "x", "-o", filepath.Join(dir, "x.png"), "--device", "cpu",
		"--prior-steps", "2", "--decoder-steps", "2", "--sr-steps", "2")
	wantFail(t, code, stderr, "decoder")
	if !strings.Contains(stderr, "non-finite") {
		t.Errorf("stderr %q does not name the non-finite values", stderr)
	}
	wantEmpty(t, dir)
}
