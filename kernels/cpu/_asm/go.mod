module github.com/unclip-go/unclip/kernels/cpu/_asm

go 1.26.0
