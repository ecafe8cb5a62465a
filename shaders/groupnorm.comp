#version 450
// OpGroupNorm over dense x (N, C, HW) of dtype SDT (weights
// WDT, result DDT; statistics in float32): one workgroup per (sample,
// group) normalises CG·HW values with their mean and biased variance (two
// passes), applies the per-channel affine, when mod is set the per-sample
// modulation ·(1 + scale[n, c]) + shift[n, c] (GroupNormScaleShift; scale and
// shift of dtype SDT with strides), and when silu is set, SiLU.
#include "common.glsl"
//!variant groupnorm16 STORAGE16
// The workgroup size is specialization constant 0 (a power of two ≤ 256),
// picked by the host from the row length.
layout(local_size_x = 256, local_size_x_id = 0) in;
DST_BUFFER(D, storeD)
SRC_BUFFER(1, SXw, SX, SDT)
SRC_BUFFER(2, SWw, SW, WDT)
SRC_BUFFER(3, SBw, SB, WDT)
SRC_BUFFER(4, SSw, SS, SDT) // scale
SRC_BUFFER(5, STw, ST, SDT) // shift
layout(push_constant) uniform P {
    uint total, G, CG, HW, silu; // total: samples·G
    float eps;
    uint doff, xoff, woff, boff;
    uint mod, soff, toff, msn, msc; // modulation: offsets, strides over (n, c)
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
    uint gi = groupIndex(); // sample·G + group
    if (gi >= p.total) return;
    uint g = gi % p.G;
    uint t = gl_LocalInvocationID.x;
    uint cnt = p.CG * p.HW;
    uint off = gi * cnt;
    float s = 0.0;
    for (uint i = t; i < cnt; i += WG) s += SX(p.xoff + off + i);
    float mean = reduceSum(s) / float(cnt);
    float q = 0.0;
    for (uint i = t; i < cnt; i += WG) {
        float d = SX(p.xoff + off + i) - mean;
        q += d * d;
    }
    float inv = inversesqrt(reduceSum(q) / float(cnt) + p.eps);
    uint nidx = gi / p.G;
    for (uint i = t; i < cnt; i += WG) {
        uint ch = g * p.CG + i / p.HW;
        float o = (SX(p.xoff + off + i) - mean) * inv * SW(p.woff + ch) + SB(p.boff + ch);
        if (p.mod != 0u) {
            uint m = nidx * p.msn + ch * p.msc;
            o = o * (1.0 + SS(p.soff + m)) + ST(p.toff + m);
        }
        if (p.silu != 0u) o *= sigmoid(o);
        storeD(p.doff + off + i, o);
    }
}
