#version 450
// OpSoftmax over rows of C dense values (SDT in, DDT out,
// float32 max, sum and exp), one workgroup per row. A row
// of only −Inf gives zeros (as the CPU reference).
#include "common.glsl"
//!variant softmax16 STORAGE16
// The workgroup size is specialization constant 0 (a power of two ≤ 256),
// picked by the host from the row length.
layout(local_size_x = 256, local_size_x_id = 0) in;
DST_BUFFER(D, storeD)
SRC_BUFFER(1, SXw, SX, SDT)
layout(push_constant) uniform P {
    uint rows, C, doff, xoff;
} p;

const uint WG = gl_WorkGroupSize.x;
shared float red[256];

void main() {
    uint row = groupIndex();
    if (row >= p.rows) return;
    uint t = gl_LocalInvocationID.x;
    uint base = p.xoff + row * p.C, obase = p.doff + row * p.C;
    float m = NEG_INF;
    for (uint i = t; i < p.C; i += WG) m = max(m, SX(base + i));
    red[t] = m;
    barrier();
    for (uint s = WG / 2u; s > 0u; s >>= 1) {
        if (t < s) red[t] = max(red[t], red[t + s]);
        barrier();
    }
    m = red[0];
    barrier();
    if (isinf(m) && m < 0.0) {
        for (uint i = t; i < p.C; i += WG) storeD(obase + i, 0.0);
        return;
    }
    float s = 0.0;
    for (uint i = t; i < p.C; i += WG) s += exp(SX(base + i) - m);
    red[t] = s;
    barrier();
    for (uint k = WG / 2u; k > 0u; k >>= 1) {
        if (t < k) red[t] += red[t + k];
        barrier();
    }
    float inv = 1.0 / red[0];
    for (uint i = t; i < p.C; i += WG) storeD(obase + i, exp(SX(base + i) - m) * inv);
}
