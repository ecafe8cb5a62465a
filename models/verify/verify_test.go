package verify_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/unclip-go/unclip/kernels/cpu"
	"github.com/unclip-go/unclip/models/golden"
	"github.com/unclip-go/unclip/models/golden/fixtures"
	"github.com/unclip-go/unclip/models/verify"
	"github.com/unclip-go/unclip/tensor/safetensors"
)

func TestVerifyPasses(t *testing.T) {
	fixtures.Require(t)
	model, gpath, err := golden.Tiny()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rep, err := verify.Run(verify.Options{Model: model, Golden: gpath, Only: []string{"tokenizer", "noise", "scheduler", "text_encoder"}, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed != 0 || rep.Passed < 16+6+9+4 {
		t.Errorf("%+v\n%s", rep, out.String())
	}
	if _, err := verify.Run(verify.Options{Model: model, Golden: gpath, Only: []string{"bogus"}, Out: &out}); err == nil {
		t.Error("unknown check accepted")
	}
}

// TestVerifyCatchesAWrongWeight perturbs one text-encoder weight and
// expects the text_encoder checks to fail.
func TestVerifyCatchesAWrongWeight(t *testing.T) {
	fixtures.Require(t)
	model, gpath, err := golden.Tiny()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "text_encoder"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"model_index.json", "text_encoder/config.json"} {
		b, err := os.ReadFile(filepath.Join(model, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f), b, 0o644)
	}
	st, err := safetensors.Open(filepath.Join(model, "text_encoder", "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var ts []safetensors.TensorInfo
	for _, k := range st.Keys() {
		info, _ := st.Get(k)
		info.Data = append([]byte(nil), info.Data...)
		if k == "text_model.final_layer_norm.bias" {
			info.Data[3] ^= 0x80 // flip the sign of one bias value
		}
		ts = append(ts, info)
	}
	if err := safetensors.WriteFile(filepath.Join(dir, "text_encoder", "model.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rep, err := verify.Run(verify.Options{Model: dir, Golden: gpath, Only: []string{"text_encoder"}, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed == 0 || !strings.Contains(out.String(), "FAIL text_encoder.call0.last_hidden_state") {
		t.Errorf("a wrong weight passed: %+v\n%s", rep, out.String())
	}
}
