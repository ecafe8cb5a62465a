package vulkan

import (
	"encoding/binary"
	"fmt"
	"reflect"
)

// Push constants: every shader's push-constant block (its
// "layout(push_constant) uniform P") has a Go struct here with the same
// members in the same order: uint32 for uint, int32 for int, float32 for
// float, fixed arrays for arrays, a blank field for a pad_ member. Field
// names are the GLSL names with a capital first letter (a trailing _
// dropped). pushBlocks maps every compiled shader, variants included, to
// its struct; TestPushBlocks checks each struct's field offsets, types and
// array lengths, and its size, against the Offset and ArrayStride
// decorations of the shader's SPIR-V, and the field names against the
// GLSL names, so a Go/GLSL mismatch fails a test instead of computing
// garbage. Ops fill these structs in their launch's push function
// (launch.go); encodePush turns one into the bytes a dispatch pushes.

// pushSize is the size of every pipeline layout's push-constant range: the
// minimum that every Vulkan device guarantees.
const pushSize = 128

// copy.comp
type copyPush struct {
	N, Rank, Ddt, Sdt, Doff, Soff uint32
	Shape, Dstr, Sstr             [6]uint32
}

// unary.comp
type unaryPush struct {
	N, Kind, Doff, Soff uint32
	F0, F1              float32
}

// binary.comp
type binaryPush struct {
	N, Kind, Rank, Doff, Aoff, Boff uint32
	Shape, Astr, Bstr               [6]uint32
}

// layernorm.comp
type layernormPush struct {
	Rows, C, HasBias       uint32
	Eps                    float32
	Doff, Xoff, Woff, Boff uint32
}

// groupnorm.comp
type groupnormPush struct {
	Total, G, CG, HW, Silu    uint32 // Total: samples·G
	Eps                       float32
	Doff, Xoff, Woff, Boff    uint32
	Mod, Soff, Toff, Msn, Msc uint32 // scale and shift (GroupNormScaleShift)
}

// softmax.comp
type softmaxPush struct {
	Rows, C, Doff, Xoff uint32
}

// attention.comp
type attentionPush struct {
	Rows, H, Lq, Lk, D, Dv          uint32 // Rows: B·H·Lq
	Scale                           float32
	Causal, HasBias                 uint32
	Ooff, Qoff, Koff, Voff, Biasoff uint32
	Bst                             [4]uint32 // bias strides over (b, h, i, j)
}

// attention_tile.comp
type attentionTilePush struct {
	H, Lq, Lk, D, Dv                uint32
	Scale                           float32
	Causal, HasBias                 uint32
	Ooff, Qoff, Koff, Voff, Biasoff uint32
	Bst                             [4]uint32
}

// flash.comp
type flashPush struct {
	H, Lq, Lk, Lp            uint32
	D, Dv, Flags             uint32 // Flags: 1 causal, 2 bias, 4 bias over the prefix keys only
	Scale                    float32
	Ooff, Qoff, Koff, Voff   uint32
	Kpoff, Vpoff, Biasoff, _ uint32
	Qs, Kvs, Kvps, Os        [3]uint32
	Bs                       [4]uint32
}

// gemm.comp (and gemm_coopmat.comp, which shares its block)
type gemmPush struct {
	M, N, K, Flags            uint32
	Doff, Aoff, Boff, Biasoff uint32
	Resoff, Lda, Ldb, _       uint32
	Bdim, Abs, Bbs            [3]uint32 // batch shape (outermost first), a's and b's batch strides
}

// gemm.comp with CONV defined (gemmconv): the convolution as an implicit
// GEMM.
type gemmConvPush struct {
	M, N, K, Flags            uint32 // O, OH·OW, C·KH·KW; epilogue flags
	Doff, Aoff, Boff, Biasoff uint32
	Resoff, Lda, C, H         uint32
	W, OW, Sy, Sx             uint32
	Py, Px                    uint32
}

// conv2d.comp
type conv2dPush struct {
	O, R, Q, Flags            uint32
	C, H, W, OW               uint32
	Sy, Sx, Py, Px            uint32
	Doff, Xoff, Woff, Biasoff uint32
	Wdt                       uint32
	Resoff                    uint32
}

// matmul.comp
type matmulPush struct {
	M, N, K, Flags            uint32
	Doff, Aoff, Boff, Biasoff uint32
	Asm, Ask, Bsk, Bsn        uint32
	Bdim, Abs, Bbs            [3]uint32
	Adt, Bdt                  uint32
	Resoff                    uint32
}

// embedding.comp
type embeddingPush struct {
	N, Dm, V, Is64, Half uint32
	Doff, Toff, Ioff     uint32
	Lo, Hi               uint32 // the table rows bound (Toff is row Lo)
}

// pool.comp
type poolPush struct {
	N, Mode, K, H, W, OH, OW, Doff, Xoff uint32
}

// resample.comp
type resamplePush struct {
	N, Vertical, K, H, W, OH, OW, Doff, Xoff, Toff uint32
}

// schedstep.comp
type schedstepPush struct {
	N, Per, Flags                                   uint32
	ClipRange, SqrtAlphaProd, SqrtOneMinusAlphaProd float32
	Cx0, Cxt, Stdev, MinLog, MaxLog                 float32
	Doff, Moff, Xoff, Zoff, Poff                    uint32
}

// pushBlocks maps every compiled shader (shaders/*.spv, variants
// included) to its push-constant struct.
var pushBlocks = map[string]reflect.Type{
	"copy":             reflect.TypeFor[copyPush](),
	"unary":            reflect.TypeFor[unaryPush](),
	"unary16":          reflect.TypeFor[unaryPush](),
	"binary":           reflect.TypeFor[binaryPush](),
	"binary16":         reflect.TypeFor[binaryPush](),
	"layernorm":        reflect.TypeFor[layernormPush](),
	"layernorm16":      reflect.TypeFor[layernormPush](),
	"groupnorm":        reflect.TypeFor[groupnormPush](),
	"groupnorm16":      reflect.TypeFor[groupnormPush](),
	"softmax":          reflect.TypeFor[softmaxPush](),
	"softmax16":        reflect.TypeFor[softmaxPush](),
	"attention":        reflect.TypeFor[attentionPush](),
	"attention16":      reflect.TypeFor[attentionPush](),
	"attention_tile":   reflect.TypeFor[attentionTilePush](),
	"attention_tile16": reflect.TypeFor[attentionTilePush](),
	"flash":            reflect.TypeFor[flashPush](),
	"flash16":          reflect.TypeFor[flashPush](),
	"gemm":             reflect.TypeFor[gemmPush](),
	"gemm16":           reflect.TypeFor[gemmPush](),
	"gemm_coopmat":     reflect.TypeFor[gemmPush](),
	"gemm_coopmat_khr": reflect.TypeFor[gemmPush](),
	"gemmconv":         reflect.TypeFor[gemmConvPush](),
	"gemmconv16":       reflect.TypeFor[gemmConvPush](),
	"conv2d":           reflect.TypeFor[conv2dPush](),
	"conv2d16":         reflect.TypeFor[conv2dPush](),
	"matmul":           reflect.TypeFor[matmulPush](),
	"matmul16":         reflect.TypeFor[matmulPush](),
	"embedding":        reflect.TypeFor[embeddingPush](),
	"pool":             reflect.TypeFor[poolPush](),
	"pool16":           reflect.TypeFor[poolPush](),
	"resample":         reflect.TypeFor[resamplePush](),
	"resample16":       reflect.TypeFor[resamplePush](),
	"schedstep":        reflect.TypeFor[schedstepPush](),
}

// encodePush returns the bytes of push-constant block pc (a struct of
// pushBlocks[shader]), little-endian as the shaders read them.
func encodePush(shader string, pc any) ([]byte, error) {
	want, ok := pushBlocks[shader]
	if !ok {
		return nil, fmt.Errorf("shader %s: no push-constant struct registered (push.go)", shader)
	}
	if got := reflect.TypeOf(pc); got != want {
		return nil, fmt.Errorf("shader %s: push constants of type %v, want %v", shader, got, want)
	}
	buf, err := binary.Append(make([]byte, 0, pushSize), binary.LittleEndian, pc)
	if err != nil {
		return nil, fmt.Errorf("shader %s: %w", shader, err)
	}
	if len(buf) > pushSize {
		return nil, fmt.Errorf("shader %s: %d bytes of push constants, more than %d", shader, len(buf), pushSize)
	}
	return buf, nil
}

// setInts stores vs in ws as 32-bit words (two's complement for negative
// values, as the shaders' uint members read them).
func setInts(ws []uint32, vs []int) {
	for i, v := range vs {
		ws[i] = uint32(v)
	}
}
