#version 450
// OpAvgPool2d (mode 0: mean of k×k windows with stride k) and
// OpUpsampleNearest (mode 1: each pixel repeated k×k times) over dense planes
// (SDT values in, DDT out, float32 arithmetic) (N·C, H, W) → (N·C, OH, OW), one invocation per output.
#include "common.glsl"
//!variant pool16 STORAGE16
layout(local_size_x = 256) in;
DST_BUFFER(D, storeD)
SRC_BUFFER(1, SXw, SX, SDT)
layout(push_constant) uniform P {
    uint n, mode, k, H, W, OH, OW, doff, xoff;
} p;

void main() {
    uint e = groupIndex() * 256u + gl_LocalInvocationID.x;
    if (e >= p.n) return;
    uint ox = e % p.OW, oy = (e / p.OW) % p.OH, pl = e / (p.OW * p.OH);
    uint base = p.xoff + pl * p.H * p.W;
    float v;
    if (p.mode == 0u) {
        float s = 0.0;
        for (uint a = 0u; a < p.k; a++) {
            for (uint b = 0u; b < p.k; b++) s += SX(base + (oy * p.k + a) * p.W + ox * p.k + b);
        }
        v = s * (1.0 / float(p.k * p.k));
    } else {
        v = SX(base + (oy / p.k) * p.W + ox / p.k);
    }
    storeD(p.doff + e, v);
}
