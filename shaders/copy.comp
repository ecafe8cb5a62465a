#version 450
// OpCopy: dst[i] = convert(src[i]) over a shared shape of rank ≤ 6 with
// arbitrary strides on both sides (broadcast source: stride 0), converting
// among F32, F16 and BF16 exactly as the CPU does, or copying I32, I64 and
// Bool elements unchanged.
#include "common.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) buffer Dst { uint D[]; };
layout(std430, binding = 1) readonly buffer Src { uint S[]; };
layout(push_constant) uniform P {
    uint n, rank, ddt, sdt, doff, soff;
    uint shape[6];
    uint dstr[6];
    uint sstr[6];
} p;

SUBWORD_STORE(d, D)
SUBWORD_LOAD(s, S)

void main() {
    uint i = groupIndex() * 256u + gl_LocalInvocationID.x;
    if (i >= p.n) return;
    uint di = p.doff, si = p.soff, r = i;
    for (int k = int(p.rank) - 1; k >= 0; k--) {
        uint c = r % p.shape[k];
        r /= p.shape[k];
        di += c * p.dstr[k];
        si += c * p.sstr[k];
    }
    if (p.sdt >= DT_U32) {
        if (p.sdt == DT_U32) {
            D[di] = S[si];
        } else if (p.sdt == DT_U64) {
            D[2u * di] = S[2u * si];
            D[2u * di + 1u] = S[2u * si + 1u];
        } else {
            d_store8(di, s_load8(si));
        }
        return;
    }
    float v;
    if (p.sdt == DT_F32) v = uintBitsToFloat(S[si]);
    else if (p.sdt == DT_F16) v = f16ToF32(s_load16(si));
    else v = bf16ToF32(s_load16(si));
    if (p.ddt == DT_F32) D[di] = floatBitsToUint(v);
    else if (p.ddt == DT_F16) d_store16(di, f32ToF16(v));
    else d_store16(di, f32ToBF16(v));
}
