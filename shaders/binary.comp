#version 450
// OpBinary: dense dst[i] = a[i] ∘ b[i] in float32; a and b are views (both
// of dtype SDT, dst DDT) of rank
// ≤ 6 with any strides (broadcast: stride 0).
#include "common.glsl"
//!variant binary16 STORAGE16
layout(local_size_x = 256) in;
DST_BUFFER(D, storeD)
SRC_BUFFER(1, SA, loadA, SDT)
SRC_BUFFER(2, SB, loadB, SDT)
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
    float x = loadA(ai), y = loadB(bi), z;
    switch (p.kind) {
    case 1u: z = x + y; break;
    case 2u: z = x - y; break;
    case 3u: z = x * y; break;
    default: z = x / y; break;
    }
    storeD(p.doff + i, z);
}
