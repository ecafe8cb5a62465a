package scheduler

import (
	"path/filepath"
	"testing"

	"github.com/unclip-go/unclip/models/golden"
	"github.com/unclip-go/unclip/models/golden/fixtures"
)

// fixtureDir returns the unclip-tiny fixture folder ($UNCLIP_FIXTURES or
// ../shared/fixtures beside the repository). A missing fixture fails the
// test: the fixture is part of the acceptance bar.
func fixtureDir(t *testing.T) string {
	t.Helper()
	fixtures.Require(t)
	root, err := golden.FixturesDir()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "unclip-tiny")
}

// loadGolden reads the F32 and I64 tensors of the tiny fixture's recording.
func loadGolden(t *testing.T) map[string]golden.Raw {
	t.Helper()
	g, err := golden.LoadRaw(filepath.Join(fixtureDir(t), "golden.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	return g
}
