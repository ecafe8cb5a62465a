//go:build cgo && !novulkan

package vulkan

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

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
	words, err := spirvWords(name)
	if err != nil {
		return nil, err
	}
	h, err := b.dev.createPipeline(b.pcache, words, nbuf, pushSize, spec)
	if err != nil {
		return nil, fmt.Errorf("shader %s: creating its pipeline: %w", name, err)
	}
	p := &pipeline{name: name, nbuf: nbuf, h: h}
	b.pipelines[key] = p
	b.cacheDirty = true
	b.created.inline++
	return p, nil
}

// spirvWords returns a shader's SPIR-V as words.
func spirvWords(name string) ([]uint32, error) {
	code, err := shaders.SPIRV(name)
	if err != nil {
		return nil, err
	}
	words := make([]uint32, len(code)/4)
	for i := range words {
		words[i] = binary.LittleEndian.Uint32(code[4*i:])
	}
	return words, nil
}

// warmer creates pipelines concurrently. Creating a pipeline compiles its
// shader for the device, which takes milliseconds to a tenth of a second
// each (lavapipe's LLVM, a GPU driver's compiler) and happens on the
// calling thread; a step graph needs a few dozen, first met one after the
// other while it is recorded. Record therefore walks the graph once in
// warm mode (Backend.warm set: dispatches and copies record nothing, each
// missing pipeline is handed to a worker), waits, and then records for
// real with every pipeline in place.
type warmer struct {
	sem     chan struct{} // bounds the compilations running at once
	wg      sync.WaitGroup
	pending map[pipelineKey]bool // started (guarded by the Backend's mu)
	mu      sync.Mutex
	done    map[pipelineKey]*pipeline
}

func newWarmer() *warmer {
	return &warmer{sem: make(chan struct{}, max(runtime.NumCPU(), 1)), pending: map[pipelineKey]bool{}, done: map[pipelineKey]*pipeline{}}
}

// warmPipeline starts creating the pipeline getPipeline would return,
// unless it exists or is under way. The caller holds b.mu. A failure is
// not reported here: the recording pass creates the pipeline again and
// reports it.
func (b *Backend) warmPipeline(name string, nbuf int, spec []uint32) {
	key := pipelineKey{name: name, nbuf: nbuf}
	copy(key.spec[:], spec)
	w := b.warm
	if _, ok := b.pipelines[key]; ok || w.pending[key] {
		return
	}
	w.pending[key] = true
	words, err := spirvWords(name)
	if err != nil {
		return
	}
	spec = append([]uint32(nil), spec...)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		w.sem <- struct{}{}
		h, err := b.dev.createPipeline(b.pcache, words, nbuf, pushSize, spec)
		<-w.sem
		if err != nil {
			return
		}
		w.mu.Lock()
		w.done[key] = &pipeline{name: name, nbuf: nbuf, h: h}
		w.mu.Unlock()
	}()
}

// finishWarm waits for the warm pass's pipelines and adds them to the
// backend's (b.mu not held).
func (b *Backend) finishWarm(w *warmer) {
	w.wg.Wait()
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, p := range w.done {
		if _, dup := b.pipelines[k]; dup {
			b.dev.destroyPipeline(p.h)
			continue
		}
		b.pipelines[k] = p
		b.cacheDirty = true
		b.created.warm++
	}
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
