package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/klauspost/cpuid/v2"

	"github.com/unclip-go/unclip/models/modelfile"
)

// The FMA peak that "unclip bench peak" measures is kept in the user's
// cache folder, so that "unclip devices" can show it without measuring
// again. It is keyed by CPU model and kernel set: another machine (or a
// forced kernel set) measures its own.

// peakRecord is one measured peak.
type peakRecord struct {
	CPU     string             `json:"cpu"`
	Variant string             `json:"variant"`
	GFLOPS  map[string]float64 `json:"gflops_by_threads"` // thread count → median GFLOP/s
}

// cpuModel is the processor's brand string, with its family and model
// numbers on x86 (the Zen 4 and Zen 5 machines differ 2× in peak).
func cpuModel() string {
	name := cpuid.CPU.BrandName
	if name == "" {
		name = runtime.GOARCH + " CPU"
	}
	if cpuid.CPU.Family > 0 {
		name += fmt.Sprintf(" (family %d, model %d)", cpuid.CPU.Family, cpuid.CPU.Model)
	}
	return name
}

// cpuCaches describes the data caches cpuid reports, per core ("caches
// unknown" where it reports none, as on most non-x86 machines).
func cpuCaches() string {
	c := cpuid.CPU.Cache
	var parts []string
	for _, l := range []struct {
		name string
		size int
	}{{"L1d", c.L1D}, {"L2", c.L2}, {"L3", c.L3}} {
		if l.size > 0 {
			parts = append(parts, l.name+" "+sizeString(int64(l.size)))
		}
	}
	if len(parts) == 0 {
		return "caches unknown"
	}
	return "caches " + strings.Join(parts, ", ")
}

// peakCachePath is where measured peaks are kept ("" when the system has
// no cache folder).
func peakCachePath() string {
	if p := os.Getenv("UNCLIP_CACHE_DIR"); p != "" {
		return filepath.Join(p, "peak.json")
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "unclip", "peak.json")
}

// loadPeaks reads the cached peaks (none when the file is absent).
func loadPeaks() ([]peakRecord, error) {
	path := peakCachePath()
	if path == "" {
		return nil, nil
	}
	data, err := modelfile.Read(path, 1<<20) // a few records
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, err
	}
	var recs []peakRecord
	if err := json.Unmarshal(data, &recs); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return recs, nil
}

// cachedPeak returns the cached peak of this CPU and kernel set on the
// given threads, or 0.
func cachedPeak(variant string, threads int) float64 {
	recs, _ := loadPeaks()
	for _, r := range recs {
		if r.CPU == cpuModel() && r.Variant == variant {
			return r.GFLOPS[fmt.Sprint(threads)]
		}
	}
	return 0
}

// savePeak records a measured peak, replacing an earlier one for the same
// CPU, kernel set and thread count.
func savePeak(variant string, threads int, gflops float64) error {
	path := peakCachePath()
	if path == "" {
		return errors.New("no user cache folder")
	}
	recs, err := loadPeaks()
	if err != nil {
		recs = nil // a damaged cache is rewritten
	}
	i := 0
	for i < len(recs) && !(recs[i].CPU == cpuModel() && recs[i].Variant == variant) {
		i++
	}
	if i == len(recs) {
		recs = append(recs, peakRecord{CPU: cpuModel(), Variant: variant, GFLOPS: map[string]float64{}})
	}
	if recs[i].GFLOPS == nil {
		recs[i].GFLOPS = map[string]float64{}
	}
	recs[i].GFLOPS[fmt.Sprint(threads)] = gflops
	data, err := json.MarshalIndent(recs, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return writeFileAtomic(path, append(data, '\n'))
}
