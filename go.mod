module github.com/unclip-go/unclip

go 1.26.0

require (
	github.com/klauspost/cpuid/v2 v2.4.2
	github.com/vulkan-go/vulkan v0.0.0-20210402152248-956e3850d8f9
	golang.org/x/sys v0.50.0
	golang.org/x/text v0.44.0
)
