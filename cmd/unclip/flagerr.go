package main

import (
	"flag"
	"strings"
)

// flagError rewords a flag parsing error, adding the nearest defined flag
// when the flag is unknown.
func flagError(fs *flag.FlagSet, err error) string {
	msg := err.Error()
	const undefined = "flag provided but not defined: "
	if !strings.HasPrefix(msg, undefined) {
		return msg
	}
	name := strings.TrimLeft(strings.TrimPrefix(msg, undefined), "-")
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	out := "unknown flag " + flagSpelling(name)
	if s := suggest(name, names); s != "" {
		out += "; did you mean " + flagSpelling(s) + "?"
	}
	return out
}

// flagSpelling writes a flag as the usage text does: -m, --decoder-steps.
func flagSpelling(name string) string {
	if len([]rune(name)) == 1 {
		return "-" + name
	}
	return "--" + name
}

// suggest returns the candidate nearest to s, or "" when none is close
// enough to be a likely typo: within a third of the length in edits, or a
// candidate that s is a prefix of (--decoder for --decoder-steps).
func suggest(s string, candidates []string) string {
	best, bestD := "", -1
	for _, c := range candidates {
		d := editDistance(strings.ToLower(s), strings.ToLower(c))
		if bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	if bestD >= 0 && bestD <= max(1, len(s)/3) {
		return best
	}
	if len(s) >= 3 {
		for _, c := range candidates {
			if strings.HasPrefix(c, s) {
				return c
			}
		}
	}
	return ""
}

// editDistance is the Damerau–Levenshtein (optimal string alignment)
// distance between a and b, counting a swap of neighbours as one edit.
func editDistance(a, b string) int {
	x, y := []rune(a), []rune(b)
	d := make([][]int, len(x)+1)
	for i := range d {
		d[i] = make([]int, len(y)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(x); i++ {
		for j := 1; j <= len(y); j++ {
			cost := 1
			if x[i-1] == y[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && x[i-1] == y[j-2] && x[i-2] == y[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(x)][len(y)]
}
