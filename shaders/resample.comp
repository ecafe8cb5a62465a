#version 450
// One pass of the antialiased bicubic resize (OpUpsampleBicubic) over dense
// planes (SDT values in, DDT out, float32 sums): horizontal (vertical = 0) maps (P, H, W) → (P, H, OW), vertical
// maps (P, H, W) → (P, OH, W). Taps are precomputed on the host exactly as
// the CPU reference (cpu.AATaps): for output index o, taps[o·(K+2)] is the
// first input index (float bits of a uint), [+1] the tap count, then K
// weights. Sums run in the CPU's order.
#include "common.glsl"
//!variant resample16 STORAGE16
layout(local_size_x = 256) in;
DST_BUFFER(D, storeD)
SRC_BUFFER(1, SXw, SX, SDT)
layout(std430, binding = 2) readonly buffer Taps { float TP[]; };
layout(push_constant) uniform P {
    uint n, vertical, K, H, W, OH, OW, doff, xoff, toff;
} p;

void main() {
    uint e = groupIndex() * 256u + gl_LocalInvocationID.x;
    if (e >= p.n) return;
    uint ox = e % p.OW, oy = (e / p.OW) % p.OH, pl = e / (p.OW * p.OH);
    uint base = p.xoff + pl * p.H * p.W;
    uint o = p.vertical != 0u ? oy : ox;
    uint tb = p.toff + o * (p.K + 2u);
    uint first = floatBitsToUint(TP[tb]), cnt = floatBitsToUint(TP[tb + 1u]);
    float t;
    if (p.vertical != 0u) {
        t = SX(base + first * p.W + ox) * TP[tb + 2u];
        for (uint q = 1u; q < cnt; q++) t += SX(base + (first + q) * p.W + ox) * TP[tb + 2u + q];
    } else {
        t = SX(base + oy * p.W + first) * TP[tb + 2u];
        for (uint q = 1u; q < cnt; q++) t += SX(base + oy * p.W + first + q) * TP[tb + 2u + q];
    }
    storeD(p.doff + e, t);
}
