#version 450
// OpAttention: out[b,h,i,:] = softmax_j(q[b,h,i,:]·k[b,h,j,:]·scale +
// bias[b,h,i,j], j ≤ i when causal)·v[b,h,j,:], one workgroup of 64
// invocations per query row, keys in chunks of 64 with an online softmax
// (running max and sum; nothing of size Lk is materialised). q, k, v are
// dense (B·H, L, D) of dtype SDT, the result DDT (scores, softmax and
// sums in float32); bias is an F32 view with strides (0 where
// broadcast). D and Dv are at most 256. A row whose keys are all masked
// gives zeros.
#include "common.glsl"
//!variant attention16 STORAGE16
layout(local_size_x = 64) in;
DST_BUFFER(O, storeO)
SRC_BUFFER(1, SQw, SQ, SDT)
SRC_BUFFER(2, SKw, SK, SDT)
SRC_BUFFER(3, SVw, SV, SDT)
layout(std430, binding = 4) readonly buffer Bias { float SBias[]; };
layout(push_constant) uniform P {
    uint rows, H, Lq, Lk, D, Dv; // rows: B·H·Lq
    float scale;
    uint causal, hasBias;
    uint ooff, qoff, koff, voff, biasoff;
    uint bst[4]; // bias strides over (b, h, i, j)
} p;

const uint T = 64u, MAXD = 256u, PER = MAXD / T;
shared float qs[MAXD];
shared float sc[T];

void main() {
    uint row = groupIndex(); // (b·H + h)·Lq + i
    if (row >= p.rows) return;
    uint t = gl_LocalInvocationID.x;
    uint bh = row / p.Lq, i = row % p.Lq;
    uint bb = bh / p.H, hh = bh % p.H;
    for (uint d = t; d < p.D; d += T) qs[d] = SQ(p.qoff + row * p.D + d);
    barrier();
    float m = NEG_INF, l = 0.0;
    float acc[PER];
    [[unroll]] for (uint r = 0u; r < PER; r++) acc[r] = 0.0;
    uint kend = p.Lk;
    if (p.causal != 0u) kend = min(kend, i + 1u);
    uint brow = p.biasoff + bb * p.bst[0] + hh * p.bst[1] + i * p.bst[2];
    for (uint j0 = 0u; j0 < kend; j0 += T) {
        uint j = j0 + t;
        float s = NEG_INF;
        if (j < kend) {
            uint kb = p.koff + (bh * p.Lk + j) * p.D;
            float dot_ = 0.0;
            for (uint d = 0u; d < p.D; d++) dot_ = fma(qs[d], SK(kb + d), dot_);
            s = dot_ * p.scale;
            if (p.hasBias != 0u) s += SBias[brow + j * p.bst[3]];
        }
        sc[t] = s;
        barrier();
        float cm = NEG_INF;
        uint cnt = min(T, kend - j0);
        for (uint u = 0u; u < cnt; u++) cm = max(cm, sc[u]);
        float mn = max(m, cm);
        if (!(isinf(mn) && mn < 0.0)) {
            float f = (isinf(m) && m < 0.0) ? 0.0 : exp(m - mn);
            // The chunk is summed on its own, then added (two-level sums).
            float cl = 0.0;
            float part[PER];
            [[unroll]] for (uint r = 0u; r < PER; r++) part[r] = 0.0;
            for (uint u = 0u; u < cnt; u++) {
                float su = sc[u];
                if (isinf(su) && su < 0.0) continue;
                float pu = exp(su - mn);
                cl += pu;
                uint vb = p.voff + (bh * p.Lk + j0 + u) * p.Dv;
                [[unroll]] for (uint r = 0u; r < PER; r++) {
                    uint c = t + r * T;
                    if (c < p.Dv) part[r] = fma(pu, SV(vb + c), part[r]);
                }
            }
            l = l * f + cl;
            [[unroll]] for (uint r = 0u; r < PER; r++) acc[r] = acc[r] * f + part[r];
            m = mn;
        }
        barrier();
    }
    float inv = l > 0.0 ? 1.0 / l : 0.0;
    [[unroll]] for (uint r = 0u; r < PER; r++) {
        uint c = t + r * T;
        if (c < p.Dv) storeO(p.ooff + row * p.Dv + c, acc[r] * inv);
    }
}
