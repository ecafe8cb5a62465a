//go:build cgo && !novulkan

package vulkan

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/unclip-go/unclip/models/golden"
	"github.com/unclip-go/unclip/models/golden/fixtures"
	"github.com/unclip-go/unclip/models/verify"
)

// TestVerifyTiny runs every check of the recorded diffusers run of the tiny
// fixture on the Vulkan backend: the main acceptance point. The
// fixture must exist (a missing one fails, as everywhere in this project).
// UNCLIP_VERIFY_ONLY=decoder,super_res (say) limits the checks.
func TestVerifyTiny(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end verification in -short mode")
	}
	b := openTest(t)
	fixtures.Require(t)
	model, gold, err := golden.Tiny()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	start := time.Now()
	var only []string
	if s := os.Getenv("UNCLIP_VERIFY_ONLY"); s != "" {
		only = strings.Split(s, ",")
	}
	rep, err := verify.Run(verify.Options{Model: model, Golden: gold, Only: only, Device: b, Out: &out})
	if err != nil {
		t.Fatalf("verify: %v\n%s", err, out.String())
	}
	t.Logf("%d passed, %d failed in %v on %s (%s)", rep.Passed, rep.Failed, time.Since(start).Round(time.Millisecond), b.Name(), b.Info().Name)
	if testing.Verbose() {
		t.Logf("\n%s", out.String())
	}
	if rep.Failed > 0 || rep.Passed == 0 {
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.HasPrefix(l, "FAIL") {
				t.Error(l)
			}
		}
		t.Fatalf("%d checks failed, %d passed", rep.Failed, rep.Passed)
	}
}
