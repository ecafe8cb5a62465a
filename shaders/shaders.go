// Package shaders holds the GLSL compute shaders of the Vulkan backend and
// their SPIR-V, compiled by glslc and embedded in the binary, so users need
// no shader compiler.
//
// Regenerate the .spv files after editing a .comp or common.glsl with
//
//	go generate ./shaders
//
// (Debian package glslc). A test fails when a committed .spv differs from
// what glslc makes of its source. This package must not import any other
// package of the module.
package shaders

//go:generate go run ./gen

import (
	"embed"
	"fmt"
)

//go:embed *.spv
var spv embed.FS

// SPIRV returns the compiled shader name (the .comp file's base name).
func SPIRV(name string) ([]byte, error) {
	b, err := spv.ReadFile(name + ".spv")
	if err != nil {
		return nil, fmt.Errorf("shaders: no compiled shader %q: %w", name, err)
	}
	if len(b)%4 != 0 || len(b) < 20 {
		return nil, fmt.Errorf("shaders: %s.spv is not SPIR-V (%d bytes)", name, len(b))
	}
	return b, nil
}
