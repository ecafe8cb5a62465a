//go:build cgo && !novulkan

package vulkan

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"

	"github.com/unclip-go/unclip/shaders"
)

// pipeline is one compute shader with its layouts.
type pipeline struct {
	name string
	nbuf int
	h    [4]uint64 // shader module, descriptor-set layout, pipeline layout, pipeline
}

// pipelineKey names a shader and its specialization constants.
type pipelineKey struct {
	name string
	nbuf int
	spec [16]uint32
}

// getPipeline returns the pipeline of a shader with nbuf storage buffers,
// creating it on first use. spec holds the values of specialization
// constants 0..len(spec)-1 (0 keeps the shader's default). The caller holds
// b.mu.
func (b *Backend) getPipeline(name string, nbuf int, spec ...uint32) (*pipeline, error) {
	key := pipelineKey{name: name, nbuf: nbuf}
	copy(key.spec[:], spec)
	if p, ok := b.pipelines[key]; ok {
		return p, nil
	}
	code, err := shaders.SPIRV(name)
	if err != nil {
		return nil, err
	}
	words := make([]uint32, len(code)/4)
	for i := range words {
		words[i] = binary.LittleEndian.Uint32(code[4*i:])
	}
	h, err := b.dev.createPipeline(b.pcache, words, nbuf, pushSize, spec)
	if err != nil {
		return nil, fmt.Errorf("shader %s: creating its pipeline: %w", name, err)
	}
	p := &pipeline{name: name, nbuf: nbuf, h: h}
	b.pipelines[key] = p
	b.cacheDirty = true
	return p, nil
}

func (b *Backend) destroyPipelines() {
	for _, p := range b.pipelines {
		b.dev.destroyPipeline(p.h)
	}
	b.pipelines = map[pipelineKey]*pipeline{}
}

// cachePath is the pipeline-cache file of this device, or "" when there is
// no user cache directory.
func (b *Backend) cachePath() string {
	dir, err := os.UserCacheDir()
	if err != nil || dir == "" {
		return ""
	}
	p := &b.phys.props
	return filepath.Join(dir, "unclip", fmt.Sprintf("vulkan-%04x-%04x-%x.pipelines", p.VendorID, p.DeviceID, p.PipelineCacheUUID[:]))
}

// openPipelineCache creates the VkPipelineCache, seeded from the saved
// file when there is one (the driver ignores data it does not recognise).
func (b *Backend) openPipelineCache() error {
	var data []byte
	if path := b.cachePath(); path != "" {
		data, _ = os.ReadFile(path)
	}
	c, err := b.dev.createCache(data)
	if err != nil && len(data) > 0 {
		// A corrupt cache file must not stop the backend: retry empty.
		c, err = b.dev.createCache(nil)
	}
	if err != nil {
		return fmt.Errorf("vkCreatePipelineCache: %w", err)
	}
	b.pcache = c
	return nil
}

// savePipelineCache writes the cache when pipelines were added. Failures
// are ignored: the cache only saves start-up time.
func (b *Backend) savePipelineCache() {
	if !b.cacheDirty {
		return
	}
	b.cacheDirty = false
	path := b.cachePath()
	if path == "" {
		return
	}
	data := b.dev.cacheData(b.pcache)
	if len(data) == 0 {
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".pipelines-*")
	if err != nil {
		return
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if werr != nil || cerr != nil || os.Rename(tmp.Name(), path) != nil {
		os.Remove(tmp.Name())
	}
}
