// Shared definitions of the unclip compute shaders (included, not compiled
// on its own). Element indices are 32-bit; buffers are bound at computed
// ranges and every shader gets its operands' element offsets as push
// constants.
#extension GL_EXT_control_flow_attributes : require
#ifdef STORAGE16
// The 16-bit-storage variant of a shader (a "//!variant NAME STORAGE16"
// line), used where the device has storageBuffer16BitAccess: 16-bit
// elements are loaded and stored as uint16_t, without atomics.
#extension GL_EXT_shader_16bit_storage : require
#endif

// Linear workgroup index when the x dimension was folded into y (large
// dispatches): the host sets gl_NumWorkGroups.x to the fold width.
uint groupIndex() { return gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x; }

#define NEG_INF uintBitsToFloat(0xff800000u)

// ---- exact float conversions (round to nearest even), matching
// tensor.F32ToF16 / F16ToF32 / F32ToBF16 bit for bit.

uint f32ToF16(float f) {
    // Three cases, each a few integer operations (F. Giesen's
    // float_to_half_fast3_rtne): overflow, Inf and NaN; results that are
    // subnormal in binary16, rounded by one float32 addition (round to
    // nearest even, exact whether or not the device flushes float32
    // denormals, which all round to ±0 anyway); and normal results, rounded
    // with integer arithmetic.
    uint x = floatBitsToUint(f);
    uint sign = (x >> 16) & 0x8000u;
    x &= 0x7fffffffu;
    uint o;
    if (x >= 0x47800000u) {
        o = x > 0x7f800000u ? (0x7e00u | ((x & 0x7fffffu) >> 13)) : 0x7c00u;
    } else if (x < 0x38800000u) {
        o = floatBitsToUint(uintBitsToFloat(x) + 0.5) - 0x3f000000u;
    } else {
        o = (x + 0xc8000fffu + ((x >> 13) & 1u)) >> 13;
    }
    return sign | o;
}

// f16ToF32 widens with a few integer operations and selects (F. Giesen's
// half_to_float; lavapipe's unpackHalf2x16 is several times slower than a
// float32 load): the exponent is rebiased, ±Inf and NaN get the full
// exponent and keep their payload, and subnormal values are made normal by
// one exact float32 subtraction (no denormal arithmetic is involved).
float f16ToF32(uint h) {
    uint o = (h & 0x7fffu) << 13;
    uint e = o & 0x0f800000u;
    o += e == 0x0f800000u ? 0x70000000u : (e == 0u ? 0x38800000u : 0x38000000u);
    float f = uintBitsToFloat(o);
    f = e == 0u ? f - 6.103515625e-05 : f;
    return uintBitsToFloat(floatBitsToUint(f) | ((h & 0x8000u) << 16));
}

uint f32ToBF16(float f) {
    uint b = floatBitsToUint(f);
    if ((b & 0x7fffffffu) > 0x7f800000u) return (b >> 16) | 0x40u;
    b += 0x7fffu + ((b >> 16) & 1u);
    return b >> 16;
}

float bf16ToF32(uint h) { return uintBitsToFloat(h << 16); }

// dtype codes shared with the host (kernels/vulkan).
const uint DT_F32 = 0u;
const uint DT_F16 = 1u;
const uint DT_BF16 = 2u;
const uint DT_U32 = 3u; // I32: raw 32-bit copy
const uint DT_U64 = 4u; // I64: raw 64-bit copy
const uint DT_U8 = 5u;  // Bool: raw byte copy

// Sub-word element access on a uint buffer (16-bit and 8-bit elements).
// Writes use atomics so that neighbouring elements written by other
// invocations survive.
#define SUBWORD_LOAD(NAME, BUF)                                                          \
    uint NAME##_load16(uint i) { return (BUF[i >> 1] >> ((i & 1u) * 16u)) & 0xffffu; }   \
    uint NAME##_load8(uint i) { return (BUF[i >> 2] >> ((i & 3u) * 8u)) & 0xffu; }
#define SUBWORD_STORE(NAME, BUF)                                                         \
    void NAME##_store16(uint i, uint v) {                                                \
        uint sh = (i & 1u) * 16u;                                                        \
        atomicAnd(BUF[i >> 1], ~(0xffffu << sh));                                        \
        atomicOr(BUF[i >> 1], (v & 0xffffu) << sh);                                      \
    }                                                                                    \
    void NAME##_store8(uint i, uint v) {                                                 \
        uint sh = (i & 3u) * 8u;                                                         \
        atomicAnd(BUF[i >> 2], ~(0xffu << sh));                                          \
        atomicOr(BUF[i >> 2], (v & 0xffu) << sh);                                        \
    }

// LOAD_FLOAT(NAME, BUF) defines float NAME(uint dt, uint i): element i of
// a uint buffer holding F32 (dt 0), F16 (1) or BF16 (2) values, so that
// 16-bit weights are converted inside the kernels.
#define LOAD_FLOAT(NAME, BUF)                                            \
    float NAME(uint dt, uint i) {                                        \
        if (dt == DT_F32) return uintBitsToFloat(BUF[i]);                \
        uint h = (BUF[i >> 1] >> ((i & 1u) * 16u)) & 0xffffu;            \
        return dt == DT_F16 ? f16ToF32(h) : bf16ToF32(h);                \
    }

float sigmoid(float x) { return 1.0 / (1.0 + exp(-x)); }

// erfc with relative error below ~1.2e-7 everywhere (Chebyshev fit, as
// published in Numerical Recipes' erfcc); used by the exact GELU.
float erfc_(float x) {
    float z = abs(x);
    float t = 1.0 / (1.0 + 0.5 * z);
    float r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
        t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
        t * (-0.82215223 + t * 0.17087277)))))))));
    return x >= 0.0 ? r : 2.0 - r;
}

// gelu is x·Φ(x) = 0.5·x·erfc(−x/√2).
float gelu(float x) { return 0.5 * x * erfc_(-x * 0.70710678118654752); }

// activate applies the activation of tensor.UnaryKind kind: SiLU (1),
// GELU (2) or QuickGELU (3); any other kind leaves x as it is.
float activate(uint kind, float x) {
    switch (kind) {
    case 1u: return x * sigmoid(x);
    case 2u: return gelu(x);
    case 3u: return x * sigmoid(1.702 * x);
    }
    return x;
}

// The epilogue of matmul.comp and conv2d.comp (tensor.EpilogueAct): a
// flags word holds the bias bit, the residual bit and the activation kind.
const uint EP_BIAS = 1u, EP_RESIDUAL = 2u;
uint epAct(uint flags) { return (flags >> 8) & 0xffu; }

// ---- 16-bit activations. Specialization constants fixed per pipeline by
// the host: DDT is the destination's dtype, SDT the main source's and WDT
// the weights' (norm affine parameters), each DT_F32, DT_F16 or DT_BF16.
// Arithmetic stays float32: 16-bit values are widened on load and the
// float32 result is rounded once on store (round to nearest even, as the
// CPU reference's F32ToF16/F32ToBF16).
layout(constant_id = 5) const uint WDT = 0u;
layout(constant_id = 6) const uint SDT = 0u;
layout(constant_id = 7) const uint DDT = 0u;

// DST_BUFFER(BUF, STORE) declares the destination, binding 0, as the uint
// buffer BUF and defines void STORE(uint i, float v), which stores v as
// element i in dtype DDT. Without 16-bit storage a 16-bit element shares
// its 32-bit word with a neighbour that another invocation may write, so it
// is merged in with two atomics (clear own half, set own half); the
// STORAGE16 variant stores it through a uint16_t alias of the buffer.
#ifdef STORAGE16
#define DST_BUFFER(BUF, STORE)                                            \
    layout(std430, binding = 0) buffer BUF##_Block { uint BUF[]; };       \
    layout(std430, binding = 0) buffer BUF##_Block16 { uint16_t BUF##16[]; }; \
    void STORE(uint i, float v) {                                         \
        if (DDT == DT_F32) BUF[i] = floatBitsToUint(v);                   \
        else BUF##16[i] = uint16_t(DDT == DT_F16 ? f32ToF16(v) : f32ToBF16(v)); \
    }
#else
#define DST_BUFFER(BUF, STORE)                                            \
    layout(std430, binding = 0) buffer BUF##_Block { uint BUF[]; };       \
    void STORE(uint i, float v) {                                         \
        if (DDT == DT_F32) {                                              \
            BUF[i] = floatBitsToUint(v);                                  \
            return;                                                       \
        }                                                                 \
        uint h = DDT == DT_F16 ? f32ToF16(v) : f32ToBF16(v);              \
        uint sh = (i & 1u) * 16u;                                         \
        atomicAnd(BUF[i >> 1], ~(0xffffu << sh));                         \
        atomicOr(BUF[i >> 1], h << sh);                                   \
    }
#endif

// SRC_BUFFER(BINDING, BUF, LOAD, DT) declares a read-only source as the
// uint buffer BUF and defines float LOAD(uint i): element i, of dtype DT
// (a specialization constant), widened to float32.
#ifdef STORAGE16
#define SRC_BUFFER(BINDING, BUF, LOAD, DT)                                \
    layout(std430, binding = BINDING) readonly buffer BUF##_Block { uint BUF[]; }; \
    layout(std430, binding = BINDING) readonly buffer BUF##_Block16 { uint16_t BUF##16[]; }; \
    float LOAD(uint i) {                                                  \
        if (DT == DT_F32) return uintBitsToFloat(BUF[i]);                 \
        uint h = uint(BUF##16[i]);                                        \
        return DT == DT_F16 ? f16ToF32(h) : bf16ToF32(h);                 \
    }
#else
#define SRC_BUFFER(BINDING, BUF, LOAD, DT)                                \
    layout(std430, binding = BINDING) readonly buffer BUF##_Block { uint BUF[]; }; \
    float LOAD(uint i) {                                                  \
        if (DT == DT_F32) return uintBitsToFloat(BUF[i]);                 \
        uint h = (BUF[i >> 1] >> ((i & 1u) * 16u)) & 0xffffu;             \
        return DT == DT_F16 ? f16ToF32(h) : bf16ToF32(h);                 \
    }
#endif
