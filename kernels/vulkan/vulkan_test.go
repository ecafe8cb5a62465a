//go:build cgo && !novulkan

package vulkan

import (
	"errors"
	"os"
	"testing"

	_ "github.com/unclip-go/unclip/kernels/cpu"
	"github.com/unclip-go/unclip/tensor"
	"github.com/unclip-go/unclip/tensor/tensortest"
)

// openTest opens the best Vulkan device, skipping the test when there is
// none, except in CI (CI=true), where a missing device fails it.
func openTest(t *testing.T) *Backend {
	t.Helper()
	b, err := Open(-1)
	if err != nil {
		if errors.Is(err, ErrUnavailable) && os.Getenv("CI") != "true" {
			t.Skipf("no Vulkan device: %v (install libvulkan1 and mesa-vulkan-drivers for lavapipe)", err)
		}
		t.Fatalf("opening a Vulkan device: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Sync(); err != nil {
			t.Errorf("sync: %v", err)
		}
		checkValidation(t)
	})
	return b.(*Backend)
}

// checkValidation fails the test when the validation layer reported
// anything (UNCLIP_VK_VALIDATION=1).
func checkValidation(t *testing.T) {
	t.Helper()
	if n, last := ValidationMessages(); n > 0 {
		t.Errorf("%d validation messages; last: %s", n, last)
	}
}

func TestConformance(t *testing.T) {
	b := openTest(t)
	t.Logf("device: %s (%s, %s)", b.Info().Name, b.Info().Type, b.Info().Driver)
	t.Logf("validation layer: %v", b.in.validation)
	tensortest.Conformance(t, b, 1e-4)
}

// TestConformanceGraph replays every op case from a captured graph in a
// planned arena (one device buffer shared by every value).
func TestConformanceGraph(t *testing.T) {
	tensortest.ConformanceGraph(t, openTest(t), 1e-4)
}

func TestDevices(t *testing.T) {
	openTest(t)
	ds, err := Devices()
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) == 0 {
		t.Fatal("no devices listed")
	}
	for _, d := range ds {
		if d.Name == "" || d.APIVersion == "" || len(d.Heaps) == 0 {
			t.Errorf("incomplete info: %+v", d)
		}
		t.Logf("\n%s", d)
	}
}

func TestRegistered(t *testing.T) {
	b := openTest(t)
	if got, ok := tensor.Lookup(b.Name()); !ok || got != tensor.Backend(b) {
		t.Fatalf("%s not registered", b.Name())
	}
	again, err := Open(0)
	if err != nil || again != tensor.Backend(b) {
		t.Fatalf("Open(0) = %v, %v; want the same backend", again, err)
	}
}
