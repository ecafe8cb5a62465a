package tensor

import (
	"errors"
	"fmt"
	"sort"
	"sync"
)

// Backend executes ops on the tensors whose storage it owns. The CPU
// reference backend runs each op at once; a GPU backend may record ops and
// run them in batches, synchronising only in Download and Sync.
type Backend interface {
	// Name identifies the backend ("cpu", "vulkan:0", ...).
	Name() string
	// Alloc returns storage for n bytes (zeroed on the CPU) for an eager
	// op's result: it is released once unreachable, or by Free.
	Alloc(n int) (*Storage, error)
	// Reserve returns storage for n bytes (zeroed on the CPU) whose
	// lifetime the caller manages: it stays until Free, however it is
	// referenced (graph arenas, resident weights). Running out is an error
	// naming what was asked for and what the device holds.
	Reserve(n int) (*Storage, error)
	// Free releases s once the work already recorded on it has finished.
	// Views of s must not be used again (ops on them fail).
	Free(s *Storage)
	// Upload copies host bytes into new storage.
	Upload(src []byte) (*Storage, error)
	// Write copies host bytes into s at byte offset off. s must not be in
	// use by unfinished work (fresh storage from Reserve, say).
	Write(s *Storage, off int, src []byte) error
	// Download copies len(dst) bytes from byte offset off of s into dst,
	// after all work writing s has finished.
	Download(s *Storage, dst []byte, off int) error
	// Run executes or records one op. Every tensor in n lives on this backend.
	Run(n *Node) error
	// Sync waits for all recorded work.
	Sync() error
}

// Counters is implemented by backends that record work and submit it in
// batches (Vulkan): how many submissions, how many host waits (the host
// blocking until the device finished something) and how many kernel
// dispatches (each replay of a recorded graph counting all of its own)
// happened so far.
type Counters interface {
	Counters() (submits, waits, dispatches int64)
}

// MemoryReporter is implemented by backends with a memory of their own:
// limit is what the engine may use (a budget, or the device's memory),
// inUse what it holds now.
type MemoryReporter interface {
	Memory() (limit, inUse int64)
}

// Recorder is implemented by backends that can record a sequence of nodes
// once and submit the recording again and again (Vulkan command buffers):
// Exec.Record uses it. A recording binds the operands' memory as it is
// when recorded; record again after any operand's storage moves (a
// weight evicted and restored).
type Recorder interface {
	Record(nodes []Node) (Recording, error)
}

// ErrNoRecording is returned (wrapped) by a Recorder that cannot record
// right now (for instance while it times its kernels); the nodes then run
// one by one.
var ErrNoRecording = errors.New("recording unavailable")

// Recording is a recorded node sequence.
type Recording interface {
	// Submit queues one run of the recording after the work recorded so
	// far, without waiting for it.
	Submit() error
	// Free releases the recording once its runs have finished.
	Free()
}

// Flusher is implemented by backends that record work: after Hold, work is
// recorded without being submitted in pieces until Flush submits it as one
// batch, without waiting for it (a replayed step is one submission).
type Flusher interface {
	Hold()
	Flush() error
}

// Op names one operation of the op set.
type Op uint16

// The op set. Each op's operands and parameters are documented at the
// function that builds it (ops.go); backends switch on Node.Op.
const (
	OpCopy            Op = iota + 1 // Dst = Src[0], any strides, dtype conversion
	OpUnary                         // Dst = f(Src[0]); Int[0] is the UnaryKind, Float the parameters
	OpBinary                        // Dst = Src[0] ∘ Src[1] (same shape as Dst, any strides); Int[0] is the BinaryKind
	OpMatMul                        // Dst[...,M,N] = Src[0][...,M,K] · Src[1][...,K,N] (+ Src[2][N]), then the epilogue
	OpLayerNorm                     // over the last dim; Src[1] weight, Src[2] bias (optional); Float[0] eps
	OpGroupNorm                     // Src[0] (N,C,*): Int[0] groups, Int[1] 1 = apply SiLU after; Float[0] eps; Src[3], Src[4] (N,C) scale, shift: ·(1+scale)+shift before SiLU (GroupNormScaleShift)
	OpSoftmax                       // over the last dim
	OpAttention                     // Dst(B,H,Lq,Dv) = softmax(Q·Kᵀ·Float[0] + Src[3]) · V; Int[0] 1 = causal; Src[4], Src[5] prefix K, V; Int[1] 1 = Dst (B,Lq,H·Dv) (MultiHeadAttention)
	OpEmbedding                     // Dst[..., D] = Src[0][Src[1][...], :]
	OpConv2d                        // Src[0] (N,C,H,W), Src[1] (O,C,KH,KW), Src[2] bias; Int[0..1] stride, Int[2..3] padding; then the epilogue
	OpAvgPool2d                     // Int[0] kernel = stride
	OpUpsampleNearest               // Int[0] integer factor
	OpUpsampleBicubic               // antialiased bicubic (torch antialias=True) to Dst's H, W
	OpSchedulerStep                 // one UnCLIP scheduler step: Src model output, sample, noise (or nil); see StepParams
)

var opNames = map[Op]string{
	OpCopy: "copy", OpUnary: "unary", OpBinary: "binary", OpMatMul: "matmul", OpLayerNorm: "layernorm",
	OpGroupNorm: "groupnorm", OpSoftmax: "softmax", OpAttention: "attention", OpEmbedding: "embedding",
	OpConv2d: "conv2d", OpAvgPool2d: "avgpool2d", OpUpsampleNearest: "upsample_nearest",
	OpUpsampleBicubic: "upsample_bicubic", OpSchedulerStep: "scheduler_step",
}

func (o Op) String() string {
	if s, ok := opNames[o]; ok {
		return s
	}
	return fmt.Sprintf("Op(%d)", uint16(o))
}

// The epilogue of OpMatMul and OpConv2d, which fusion (fuse.go) sets and
// eager ops never do: Int[EpilogueAct], when not 0, is an activation (a
// UnaryKind: SiLU, GELU or QuickGELU) applied to product + bias, and
// Src[3], when present, a residual of Dst's shape and dtype (dense) added
// after it:
//
//	Dst = act(A·B + bias) + residual
//
// Src[2] (the bias) may be nil when a residual is present. The residual
// never overlaps Dst (the plan keeps every operand of a node apart from
// its result).
const EpilogueAct = 7

// Activation returns the epilogue activation of an OpMatMul or OpConv2d
// node (0 for none).
func (n *Node) Activation() UnaryKind { return UnaryKind(n.Int[EpilogueAct]) }

// Bias returns the bias operand of an OpMatMul or OpConv2d node, or nil.
func (n *Node) Bias() *Tensor {
	if len(n.Src) > 2 {
		return n.Src[2]
	}
	return nil
}

// Residual returns the epilogue residual of an OpMatMul or OpConv2d node,
// or nil.
func (n *Node) Residual() *Tensor {
	if len(n.Src) > 3 {
		return n.Src[3]
	}
	return nil
}

// EpilogueActivation reports whether k may be an epilogue activation.
func EpilogueActivation(k UnaryKind) bool {
	return k == UnarySiLU || k == UnaryGELU || k == UnaryQuickGELU
}

// UnaryKind selects the function of an OpUnary node.
type UnaryKind int

// Unary functions. Float parameters are in Node.Float.
const (
	UnarySiLU      UnaryKind = iota + 1 // x·σ(x)
	UnaryGELU                           // exact: x·Φ(x) = 0.5·x·(1+erf(x/√2))
	UnaryQuickGELU                      // x·σ(1.702·x)
	UnaryExp
	UnaryNeg
	UnaryAffine // x·Float[0] + Float[1]
	UnaryClamp  // min(max(x, Float[0]), Float[1])
	UnarySigmoid
)

// BinaryKind selects the function of an OpBinary node.
type BinaryKind int

// Binary functions.
const (
	BinaryAdd BinaryKind = iota + 1
	BinarySub
	BinaryMul
	BinaryDiv
)

// Node is one op with its operands: what a backend executes or records.
// Dst is always contiguous; sources may be any strided view (a backend may
// call Contiguous itself where a kernel needs dense input).
type Node struct {
	Op    Op
	Dst   *Tensor
	Src   []*Tensor
	Int   [8]int
	Float [8]float32
}

// Name describes the node for errors and profiles, e.g. "matmul F32[2 77 32]".
func (n *Node) Name() string { return fmt.Sprintf("%v %v%v", n.Op, n.Dst.dtype, n.Dst.shape) }

var (
	regMu    sync.Mutex
	registry = map[string]Backend{}
	cpu      Backend
)

// Register makes a backend available under its name. The CPU reference
// backend registers itself as "cpu" and becomes the host backend.
func Register(b Backend) {
	regMu.Lock()
	defer regMu.Unlock()
	registry[b.Name()] = b
	if b.Name() == "cpu" {
		cpu = b
	}
}

// Lookup returns the backend registered under name.
func Lookup(name string) (Backend, bool) {
	regMu.Lock()
	defer regMu.Unlock()
	b, ok := registry[name]
	return b, ok
}

// Backends lists the registered backend names, sorted.
func Backends() []string {
	regMu.Lock()
	defer regMu.Unlock()
	var names []string
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// CPU returns the host backend. It panics when no CPU backend is linked in
// (import _ "github.com/unclip-go/unclip/kernels/cpu").
func CPU() Backend {
	regMu.Lock()
	defer regMu.Unlock()
	if cpu == nil {
		panic("tensor: no CPU backend registered; import github.com/unclip-go/unclip/kernels/cpu")
	}
	return cpu
}
