#version 450
// OpAvgPool2d (mode 0: mean of k×k windows with stride k) and
// OpUpsampleNearest (mode 1: each pixel repeated k×k times) over dense F32
// planes (N·C, H, W) → (N·C, OH, OW), one invocation per output.
#include "common.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) writeonly buffer Dst { float D[]; };
layout(std430, binding = 1) readonly buffer X { float SX[]; };
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
            for (uint b = 0u; b < p.k; b++) s += SX[base + (oy * p.k + a) * p.W + ox * p.k + b];
        }
        v = s * (1.0 / float(p.k * p.k));
    } else {
        v = SX[base + (oy / p.k) * p.W + ox / p.k];
    }
    D[p.doff + e] = v;
}
