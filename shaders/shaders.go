// Package shaders holds the GLSL compute shaders of the Vulkan backend and
// their SPIR-V, compiled by glslc and embedded in the binary, so users need
// no shader compiler.
//
// Regenerate the .spv files after editing a .comp or common.glsl with
//
//	go generate ./shaders
//
// (Debian package glslc). A test fails when a committed .spv differs from
// what glslc makes of its source, and another runs spirv-val (Debian
// package spirv-tools) on every .spv. This package must not import any
// other package of the module.
//
// The VK_KHR_cooperative_matrix build of the cooperative-matrix GEMM
// (gemm_coopmat_khr, a variant line ending in "@glslang") needs glslang 13
// or newer, which Debian 12 does not ship (its glslc compiles only the
// VK_NV_cooperative_matrix build, gemm_coopmat). To regenerate it, build
// glslangValidator from https://github.com/KhronosGroup/glslang (cmake
// with -DENABLE_OPT=OFF -DENABLE_HLSL=OFF -DBUILD_EXTERNAL=OFF, then
// "make glslang-standalone"; the committed file was made by glslang
// 16.5.0) and run
//
//	UNCLIP_GLSLANG=/path/to/glslang go generate ./shaders
//
// Without UNCLIP_GLSLANG, go generate keeps the committed file and the
// staleness test checks only that it exists. Debian 12's spirv-val
// (SPIRV-Tools 2022.4) predates the KHR opcodes; a spirv-val built from
// https://github.com/KhronosGroup/SPIRV-Tools ("make spirv-val") validates
// it: put it first in PATH when running go test ./shaders.
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
