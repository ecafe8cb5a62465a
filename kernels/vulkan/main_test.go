//go:build cgo && !novulkan

package vulkan

import (
	"fmt"
	"os"
	"testing"

	"github.com/unclip-go/unclip/models/golden/fixtures"
)

// TestMain turns on VK_LAYER_KHRONOS_validation for the tests when it is
// installed (and UNCLIP_VK_VALIDATION is not set otherwise), so that CI
// runs every test under validation; openTest fails a test on any message.
func TestMain(m *testing.M) {
	if _, set := os.LookupEnv("UNCLIP_VK_VALIDATION"); !set {
		if loadLibrary() == nil && hasInstanceLayer("VK_LAYER_KHRONOS_validation") {
			os.Setenv("UNCLIP_VK_VALIDATION", "1")
		} else if os.Getenv("CI") == "true" {
			fmt.Fprintln(os.Stderr, "vulkan tests: VK_LAYER_KHRONOS_validation not installed (Debian: vulkan-validationlayers)")
			os.Exit(1)
		}
	}
	fixtures.Main(m) // one line when fixture tests skipped
}
