package main

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

// TestGenerateVulkanMatchesCPU writes the fixture image on the CPU and on
// the first Vulkan device (lavapipe in CI) and compares the PNG pixels:
// they may differ by one level in isolated pixels. Without a Vulkan device
// the test skips, except in CI, where it fails.
func TestGenerateVulkanMatchesCPU(t *testing.T) {
	if _, err := openVulkan(-1); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI needs a Vulkan device (lavapipe): %v", err)
		}
		t.Skipf("no Vulkan device: %v", err)
	}
	model, _ := tinyModel(t)
	dir := t.TempDir()
	pixels := map[string][]byte{}
	for _, dev := range []string{"cpu", "vulkan"} {
		out := filepath.Join(dir, dev+".png")
		code, _, stderr := runCLI("generate", "-m", model, "-p", "a red cube", "--seed", "0", "-o", out, "--device", dev, "--quiet",
			"--prior-steps", "2", "--decoder-steps", "2", "--sr-steps", "2")
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", dev, code, stderr)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		b := img.Bounds()
		var px []byte
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				r, g, bl, _ := img.At(x, y).RGBA()
				px = append(px, byte(r>>8), byte(g>>8), byte(bl>>8))
			}
		}
		pixels[dev] = px
	}
	a, b := pixels["cpu"], pixels["vulkan"]
	if len(a) != len(b) {
		t.Fatalf("sizes differ: %d and %d values", len(a), len(b))
	}
	diff := 0
	for i := range a {
		d := int(a[i]) - int(b[i])
		if d > 1 || d < -1 {
			t.Fatalf("value %d differs by %d levels (cpu %d, vulkan %d)", i, d, a[i], b[i])
		}
		if d != 0 {
			diff++
		}
	}
	t.Logf("%d of %d values differ by one level", diff, len(a))
	if diff*200 > len(a) {
		t.Errorf("%d of %d values differ: not isolated pixels", diff, len(a))
	}
}
