//go:build !linux

package main

// memAvailable returns 0 (unknown) outside Linux.
func memAvailable() uint64 { return 0 }
