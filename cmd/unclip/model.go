package main

import (
	"io"
	"os"
)

// resolveModel turns a -m value into a model folder.
func resolveModel(m, revision string, stderr io.Writer) (string, error) {
	return m, nil
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}
