package torchrand

import (
	"testing"

	"github.com/unclip-go/unclip/models/golden/fixtures"
)

// TestMain prints one line when tests skipped for want of the shared
// fixtures (see package fixtures).
func TestMain(m *testing.M) { fixtures.Main(m) }
