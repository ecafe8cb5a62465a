//go:build !linux

package main

// physicalMemory is unknown off Linux.
func physicalMemory() uint64 { return 0 }
