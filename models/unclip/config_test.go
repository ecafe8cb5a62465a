package unclip_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/unclip-go/unclip/models/prior"
	"github.com/unclip-go/unclip/models/scheduler"
	"github.com/unclip-go/unclip/models/unclip"
	"github.com/unclip-go/unclip/models/unet"
)

func TestMismatchedComponents(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(a *unclip.Architecture)
		want string
	}{
		{"text vs prior width", func(a *unclip.Architecture) { a.Prior.EmbeddingDim = 48 }, "does not fit the prior"},
		{"prior vs text_proj", func(a *unclip.Architecture) { a.TextProj.ClipEmbeddingsDim = 64 }, "text_proj"},
		{"text_proj vs decoder", func(a *unclip.Architecture) { a.TextProj.CrossAttentionDim = 64 }, "does not fit the decoder"},
		{"super-res channels", func(a *unclip.Architecture) { a.SuperRes.InChannels = 8 }, "super_res_first takes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := unclip.Tiny()
			c.edit(&a)
			_, err := unclip.NewRandom(a, unclip.RandomOptions{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

func writeJSON(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBadConfigs(t *testing.T) {
	cases := []struct {
		name string
		load func(string) error
		body string
		want string
	}{
		{"prior norm_in_type", func(p string) error { _, err := prior.LoadConfig(p); return err }, `{"norm_in_type": "batch"}`, "norm_in_type"},
		{"prior added_emb_type", func(p string) error { _, err := prior.LoadConfig(p); return err }, `{"added_emb_type": "xyz"}`, "added_emb_type"},
		{"prior encoder proj", func(p string) error { _, err := prior.LoadConfig(p); return err }, `{"encoder_hid_proj_type": "mlp"}`, "encoder_hid_proj_type"},
		{"prior act", func(p string) error { _, err := prior.LoadConfig(p); return err }, `{"time_embed_act_fn": "tanh"}`, "time_embed_act_fn"},
		{"scheduler variance", func(p string) error { _, err := scheduler.LoadConfig(p); return loadSched(p, err) }, `{"variance_type": "fixed_large"}`, "fixed_large"},
		{"scheduler prediction", func(p string) error { _, err := scheduler.LoadConfig(p); return loadSched(p, err) }, `{"prediction_type": "v_prediction"}`, "v_prediction"},
		{"scheduler beta schedule", func(p string) error { _, err := scheduler.LoadConfig(p); return loadSched(p, err) }, `{"beta_schedule": "linear"}`, "linear"},
		{"unet block type", func(p string) error { _, err := unet.LoadConfig(p); return err },
			`{"_class_name": "UNet2DModel", "down_block_types": ["AttnDownBlock2D"], "up_block_types": ["ResnetUpsampleBlock2D"], "block_out_channels": [32]}`, "AttnDownBlock2D"},
		{"unet class", func(p string) error { _, err := unet.LoadConfig(p); return err }, `{"_class_name": "UNet3DConditionModel"}`, "UNet3DConditionModel"},
		{"unet time shift", func(p string) error { _, err := unet.LoadConfig(p); return err },
			`{"_class_name": "UNet2DModel", "down_block_types": ["ResnetDownsampleBlock2D"], "up_block_types": ["ResnetUpsampleBlock2D"], "block_out_channels": [32], "resnet_time_scale_shift": "ada_group"}`, "ada_group"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.load(writeJSON(t, c.body))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one naming %q", err, c.want)
			}
		})
	}
}

// loadSched also builds the scheduler, where some options are checked.
func loadSched(path string, err error) error {
	if err != nil {
		return err
	}
	cfg, _ := scheduler.LoadConfig(path)
	_, err = scheduler.New(cfg)
	return err
}
