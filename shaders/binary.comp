#version 450
// OpBinary: dense F32 dst[i] = a[i] ∘ b[i]; a and b are F32 views of rank
// ≤ 6 with any strides (broadcast: stride 0).
#include "common.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) writeonly buffer Dst { float D[]; };
layout(std430, binding = 1) readonly buffer A { float SA[]; };
layout(std430, binding = 2) readonly buffer B { float SB[]; };
layout(push_constant) uniform P {
    uint n, kind, rank, doff, aoff, boff;
    uint shape[6];
    uint astr[6];
    uint bstr[6];
} p;

void main() {
    uint i = groupIndex() * 256u + gl_LocalInvocationID.x;
    if (i >= p.n) return;
    uint ai = p.aoff, bi = p.boff, r = i;
    for (int k = int(p.rank) - 1; k >= 0; k--) {
        uint c = r % p.shape[k];
        r /= p.shape[k];
        ai += c * p.astr[k];
        bi += c * p.bstr[k];
    }
    float x = SA[ai], y = SB[bi], z;
    switch (p.kind) {
    case 1u: z = x + y; break;
    case 2u: z = x - y; break;
    case 3u: z = x * y; break;
    default: z = x / y; break;
    }
    D[p.doff + i] = z;
}
