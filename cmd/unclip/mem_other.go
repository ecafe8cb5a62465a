//go:build !linux

package main

// physicalMemory is unknown off Linux.
func physicalMemory() uint64 { return 0 }

// memAvailable returns 0 (unknown) outside Linux.
func memAvailable() uint64 { return 0 }
