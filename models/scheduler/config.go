package scheduler

import (
	"encoding/json"
	"fmt"

	"github.com/unclip-go/unclip/models/modelfile"
)

// Config is the subset of a diffusers scheduler_config.json that UnCLIPScheduler reads.
// The JSON tags are diffusers' key names.
type Config struct {
	// NumTrainTimesteps is the length of the training schedule (1000 for Karlo).
	NumTrainTimesteps int `json:"num_train_timesteps"`
	// BetaSchedule must be "squaredcos_cap_v2", the only schedule UnCLIPScheduler supports.
	BetaSchedule string `json:"beta_schedule"`
	// VarianceType is "fixed_small_log" (prior, super-res) or "learned_range" (decoder).
	VarianceType string `json:"variance_type"`
	// PredictionType is "epsilon" (the model predicts noise) or "sample" (it predicts x0).
	PredictionType string `json:"prediction_type"`
	// ClipSample clamps the predicted x0 to [-ClipSampleRange, ClipSampleRange].
	ClipSample bool `json:"clip_sample"`
	// ClipSampleRange is the clamp bound used when ClipSample is set (prior 5.0, others 1.0).
	// The bound is applied as a float32, as torch.clamp does on a float32 tensor.
	ClipSampleRange float32 `json:"clip_sample_range"`
}

// DefaultConfig returns the defaults of diffusers' UnCLIPScheduler constructor:
// 1000 steps, squaredcos_cap_v2, fixed_small_log, clip_sample true with range 1.0, epsilon.
func DefaultConfig() Config {
	return Config{
		NumTrainTimesteps: 1000,
		BetaSchedule:      "squaredcos_cap_v2",
		VarianceType:      "fixed_small_log",
		PredictionType:    "epsilon",
		ClipSample:        true,
		ClipSampleRange:   1.0,
	}
}

// className is the value "_class_name" must have when a config names its class.
const className = "UnCLIPScheduler"

// ParseConfig decodes a scheduler_config.json document. Keys it does not know are ignored,
// keys that are absent (or null) keep their DefaultConfig value, and a "_class_name", when
// present, must be "UnCLIPScheduler". The result is not validated beyond that; New does.
func ParseConfig(data []byte) (Config, error) {
	var head struct {
		ClassName *string `json:"_class_name"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return Config{}, fmt.Errorf("scheduler config: %w", err)
	}
	if head.ClassName != nil && *head.ClassName != className {
		return Config{}, fmt.Errorf("scheduler config: _class_name is %q, want %q", *head.ClassName, className)
	}
	cfg := DefaultConfig()
	if err := json.Unmarshal(data, &cfg); err != nil {
		return Config{}, fmt.Errorf("scheduler config: %w", err)
	}
	return cfg, nil
}

// LoadConfig reads and parses a scheduler_config.json file (see ParseConfig).
func LoadConfig(path string) (Config, error) {
	data, err := modelfile.Read(path, modelfile.ConfigLimit)
	if err != nil {
		return Config{}, fmt.Errorf("scheduler config: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// maxTrainTimesteps bounds num_train_timesteps: published unCLIP schedulers
// use 1000, and New evaluates one correctly rounded cosine (about 10 µs)
// per timestep, so that one edited number cannot stall loading for long.
const maxTrainTimesteps = 1 << 16

// validate reports the first setting New cannot honour.
func (c Config) validate() error {
	if c.BetaSchedule != "squaredcos_cap_v2" {
		return fmt.Errorf("scheduler: beta_schedule %q is not supported (UnCLIPScheduler only supports \"squaredcos_cap_v2\")", c.BetaSchedule)
	}
	if c.VarianceType != "fixed_small_log" && c.VarianceType != "learned_range" {
		return fmt.Errorf("scheduler: variance_type %q is not supported (want \"fixed_small_log\" or \"learned_range\")", c.VarianceType)
	}
	if c.PredictionType != "epsilon" && c.PredictionType != "sample" {
		return fmt.Errorf("scheduler: prediction_type %q is not supported (want \"epsilon\" or \"sample\")", c.PredictionType)
	}
	if c.NumTrainTimesteps < 2 || c.NumTrainTimesteps > maxTrainTimesteps {
		return fmt.Errorf("scheduler: num_train_timesteps %d is out of range [2, %d]", c.NumTrainTimesteps, maxTrainTimesteps)
	}
	if c.ClipSample && !(c.ClipSampleRange >= 0) {
		return fmt.Errorf("scheduler: clip_sample_range %v must be a non-negative number when clip_sample is set", c.ClipSampleRange)
	}
	return nil
}
