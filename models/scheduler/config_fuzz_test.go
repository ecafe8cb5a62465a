package scheduler

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// FuzzSchedulerConfig loads a fuzzed scheduler_config.json (issue 16,
// finding 2: num_train_timesteps 2^62 used to panic in New). Loading and
// New must fail or give a scheduler whose tables have num_train_timesteps
// entries and whose schedules work, without a panic and without
// allocating more than the bounded tables.
func FuzzSchedulerConfig(f *testing.F) {
	for _, s := range []string{
		`{}`,
		`{"_class_name": "UnCLIPScheduler", "variance_type": "fixed_small_log", "prediction_type": "sample", "clip_sample_range": 5.0}`,
		`{"variance_type": "learned_range", "num_train_timesteps": 1000}`,
		`{"num_train_timesteps": 4611686018427387904}`,
		`{"num_train_timesteps": 1048576}`,
		`{"num_train_timesteps": 65536}`,
		`{"num_train_timesteps": 2}`,
		`{"num_train_timesteps": 1}`,
		`{"num_train_timesteps": -1000}`,
		`{"clip_sample": true, "clip_sample_range": -1}`,
		`{"beta_schedule": "linear"}`,
		`{"_class_name": "DDPMScheduler"}`,
		`{"num_train_timesteps": 1e3}`,
		`[]`,
	} {
		f.Add([]byte(s))
	}
	path := filepath.Join(f.TempDir(), "scheduler_config.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		cfg, err := LoadConfig(path)
		var s *Scheduler
		if err == nil {
			s, err = New(cfg)
		}
		runtime.ReadMemStats(&after)
		// Garbage included: each correctly rounded cosine churns ~3 KB of
		// big.Int (~200 MiB at the bound of 2^16 timesteps).
		if n := after.TotalAlloc - before.TotalAlloc; n > 512<<20 {
			t.Fatalf("allocated %d MiB (error: %v)", n>>20, err)
		}
		if err != nil {
			if !strings.Contains(err.Error(), "scheduler") {
				t.Fatalf("error without context: %v", err)
			}
			return
		}
		n := cfg.NumTrainTimesteps
		if len(s.Betas()) != n || len(s.AlphasCumprod()) != n {
			t.Fatalf("%d betas, %d alphas_cumprod for num_train_timesteps %d", len(s.Betas()), len(s.AlphasCumprod()), n)
		}
		for _, steps := range []int{2, 7, 25} {
			if steps > n {
				continue
			}
			cs, err := s.Schedule(steps)
			if err != nil {
				t.Fatalf("Schedule(%d): %v", steps, err)
			}
			if len(cs) != steps {
				t.Fatalf("Schedule(%d): %d steps", steps, len(cs))
			}
		}
	})
}
