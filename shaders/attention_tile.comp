#version 450
// OpAttention for head sizes D, Dv ≤ MD (specialization constant 0: 16, 32
// or 64): one invocation per query row, 64 rows per workgroup, keys and
// values staged through shared memory 32 at a time and shared by the 64
// rows; an online softmax per row (running max and sum, rescaled once per
// key tile; each tile summed on its own, then added). q, k, v dense SDT
// (B·H, L, D), result DDT, float32 arithmetic; bias an F32 view with
// strides (0 where broadcast). A row
// whose keys are all masked gives zeros. attention.comp handles larger
// heads.
#include "common.glsl"
//!variant attention_tile16 STORAGE16
layout(local_size_x = 64) in;
layout(constant_id = 0) const uint MD = 64;
DST_BUFFER(O, storeO)
SRC_BUFFER(1, SQw, SQ, SDT)
SRC_BUFFER(2, SKw, SK, SDT)
SRC_BUFFER(3, SVw, SV, SDT)
layout(std430, binding = 4) readonly buffer Bias { float SBias[]; };
layout(push_constant) uniform P {
    uint H, Lq, Lk, D, Dv;
    float scale;
    uint causal, hasBias;
    uint ooff, qoff, koff, voff, biasoff;
    uint bst[4]; // bias strides over (b, h, i, j)
} p;

const uint T = 64u, KT = 32u;
shared float Ks[KT][MD];
shared float Vs[KT][MD];
shared float Ss[KT][T]; // each invocation's scores of the tile

void main() {
    uint t = gl_LocalInvocationID.x;
    uint bh = gl_WorkGroupID.y;
    uint i0 = gl_WorkGroupID.x * T, i = i0 + t;
    bool live = i < p.Lq;
    uint bb = bh / p.H, hh = bh % p.H;
    float q[MD], acc[MD];
    [[unroll]] for (uint d = 0u; d < MD; d++) {
        q[d] = (live && d < p.D) ? SQ(p.qoff + (bh * p.Lq + i) * p.D + d) : 0.0;
        acc[d] = 0.0;
    }
    float m = NEG_INF, l = 0.0;
    uint kend = p.Lk;
    if (p.causal != 0u) kend = min(kend, min(i0 + T, p.Lq));
    uint brow = p.biasoff + bb * p.bst[0] + hh * p.bst[1] + i * p.bst[2];
    for (uint j0 = 0u; j0 < kend; j0 += KT) {
        for (uint e = t; e < KT * MD; e += T) {
            uint u = e / MD, d = e % MD, j = j0 + u;
            Ks[u][d] = (j < p.Lk && d < p.D) ? SK(p.koff + (bh * p.Lk + j) * p.D + d) : 0.0;
            Vs[u][d] = (j < p.Lk && d < p.Dv) ? SV(p.voff + (bh * p.Lk + j) * p.Dv + d) : 0.0;
        }
        barrier();
        float cm = NEG_INF;
        for (uint u = 0u; u < KT; u++) {
            uint j = j0 + u;
            float v = NEG_INF;
            if (live && j < p.Lk && !(p.causal != 0u && j > i)) {
                float dt = 0.0;
                [[unroll]] for (uint d = 0u; d < MD; d++) dt = fma(q[d], Ks[u][d], dt);
                v = dt * p.scale;
                if (p.hasBias != 0u) v += SBias[brow + j * p.bst[3]];
            }
            Ss[u][t] = v;
            cm = max(cm, v);
        }
        float mn = max(m, cm);
        if (!(isinf(mn) && mn < 0.0)) {
            float f = (isinf(m) && m < 0.0) ? 0.0 : exp(m - mn);
            float cl = 0.0;
            float part[MD];
            [[unroll]] for (uint d = 0u; d < MD; d++) part[d] = 0.0;
            for (uint u = 0u; u < KT; u++) {
                float su = Ss[u][t];
                if (isinf(su) && su < 0.0) continue;
                float pu = exp(su - mn);
                cl += pu;
                [[unroll]] for (uint d = 0u; d < MD; d++) part[d] = fma(pu, Vs[u][d], part[d]);
            }
            l = l * f + cl;
            [[unroll]] for (uint d = 0u; d < MD; d++) acc[d] = acc[d] * f + part[d];
            m = mn;
        }
        barrier();
    }
    if (!live) return;
    float inv = l > 0.0 ? 1.0 / l : 0.0;
    [[unroll]] for (uint d = 0u; d < MD; d++) {
        if (d < p.Dv) storeO(p.ooff + (bh * p.Lq + i) * p.Dv + d, acc[d] * inv);
    }
}
