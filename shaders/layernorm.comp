#version 450
// OpLayerNorm over rows of C dense values (x of dtype SDT,
// weights WDT, result DDT; statistics in float32), one workgroup per row:
// mean, then the biased variance of (x − mean) (two passes, as the CPU
// reference), then (x − mean)/√(var + eps)·w (+ b).
#include "common.glsl"
//!variant layernorm16 STORAGE16
// The workgroup size is specialization constant 0 (a power of two ≤ 256),
// picked by the host from the row length.
layout(local_size_x = 256, local_size_x_id = 0) in;
DST_BUFFER(D, storeD)
SRC_BUFFER(1, SXw, SX, SDT)
SRC_BUFFER(2, SWw, SW, WDT)
SRC_BUFFER(3, SBw, SB, WDT)
layout(push_constant) uniform P {
    uint rows, C, hasBias;
    float eps;
    uint doff, xoff, woff, boff;
} p;

const uint WG = gl_WorkGroupSize.x;
shared float red[256];

float reduceSum(float v) {
    uint t = gl_LocalInvocationID.x;
    red[t] = v;
    barrier();
    for (uint s = WG / 2u; s > 0u; s >>= 1) {
        if (t < s) red[t] += red[t + s];
        barrier();
    }
    float r = red[0];
    barrier();
    return r;
}

void main() {
    uint row = groupIndex();
    if (row >= p.rows) return;
    uint t = gl_LocalInvocationID.x;
    uint base = p.xoff + row * p.C;
    float s = 0.0;
    for (uint i = t; i < p.C; i += WG) s += SX(base + i);
    float mean = reduceSum(s) / float(p.C);
    float q = 0.0;
    for (uint i = t; i < p.C; i += WG) {
        float d = SX(base + i) - mean;
        q += d * d;
    }
    float inv = inversesqrt(reduceSum(q) / float(p.C) + p.eps);
    uint obase = p.doff + row * p.C;
    for (uint i = t; i < p.C; i += WG) {
        float o = (SX(base + i) - mean) * inv * SW(p.woff + i);
        if (p.hasBias != 0u) o += SB(p.boff + i);
        storeD(obase + i, o);
    }
}
