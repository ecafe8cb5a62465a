package main

import (
	"errors"
	"io"
)

func runGenerate(args []string, stdout, stderr io.Writer) error {
	return errors.New("not yet")
}
