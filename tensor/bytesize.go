package tensor

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseBytes reads a memory size: a number of bytes, or a number with one
// of the suffixes K, M, G, T (powers of 1024; KiB, MiB, GiB, TiB and KB,
// MB, GB, TB are read the same way), e.g. "8GiB", "512M", "1.5G".
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	u := strings.ToUpper(t)
	mult := 1.0
	for _, suf := range []struct {
		s string
		m float64
	}{{"TIB", 1 << 40}, {"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10}, {"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10},
		{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(u, suf.s) {
			u, mult = strings.TrimSpace(u[:len(u)-len(suf.s)]), suf.m
			break
		}
	}
	v, err := strconv.ParseFloat(u, 64)
	if err != nil || v < 0 || v*mult > 1<<62 {
		return 0, fmt.Errorf("bad memory size %q (want e.g. 8GiB, 512MiB or a byte count)", s)
	}
	return int64(v * mult), nil
}
