#version 450
// OpAttention as one flash-attention kernel: out[b,h,i,:] =
// softmax_j(q[b,h,i,:]·key[j,:]·scale + bias[b,h,i,j], j ≤ i when
// causal)·value[j,:], where the keys and values are the prefix ones
// (kp, vp: diffusers' added-KV context, Lp of them) followed by k, v. The
// Lq×(Lp+Lk) score matrix is never written: a workgroup takes BQ queries of
// one (b, h), walks the keys BKV at a time and keeps an online softmax
// (running max and sum per query, the output rescaled when the max grows).
//
// Per key block: S = Q·Kᵀ (BQ×BKV, 4×4 scores per invocation, from shared
// memory), bias and masks added; one invocation per query row turns its
// scores into probabilities and updates the row's max and sum; then
// O += P·V (4 rows × OC columns of O per invocation, in registers).
// q, k, v, kp, vp are views of dtype SDT with a unit stride along d and
// any other strides (k and v share theirs, as do kp and vp); the result,
// dtype DDT, is written with strides too (so heads can be merged in the
// store); bias is F32 with strides (0 where broadcast), over all keys or
// over the prefix keys alone. Scores, softmax and sums are float32. D and
// Dv are at most MD (specialization constant: 32, 64 or 128, at least BKV). A row
// whose keys are all masked gives zeros.
#include "common.glsl"
//!variant flash16 STORAGE16

layout(constant_id = 0) const uint BQ = 32;  // queries per workgroup
layout(constant_id = 1) const uint BKV = 32; // keys per block
layout(constant_id = 2) const uint MD = 64;  // head size bound (D, Dv ≤ MD)
layout(local_size_x_id = 3) in;              // (BQ/4)·(BKV/4) invocations

DST_BUFFER(O, storeO)
SRC_BUFFER(1, SQ, ldQ, SDT)
SRC_BUFFER(2, SK, ldK, SDT)
SRC_BUFFER(3, SV, ldV, SDT)
layout(std430, binding = 4) readonly buffer Bias { float SBias[]; };
SRC_BUFFER(5, SKP, ldKP, SDT)
SRC_BUFFER(6, SVP, ldVP, SDT)

layout(push_constant) uniform P {
    uint H, Lq, Lk, Lp;
    uint D, Dv, flags; // flags: 1 causal, 2 bias, 4 bias over the prefix keys only
    float scale;
    uint ooff, qoff, koff, voff;
    uint kpoff, vpoff, biasoff, pad_;
    uint qs[3];   // q strides over (b, h, i)
    uint kvs[3];  // k and v strides
    uint kvps[3]; // kp and vp strides
    uint os[3];   // result strides
    uint bs[4];   // bias strides over (b, h, i, j)
} p;


const uint NT = (BQ / 4u) * (BKV / 4u);
const uint OC = 4u * MD / BKV; // output columns per invocation (MD ≥ BKV: a multiple of 4)
const uint NQ = BQ / 4u, NK = BKV / 4u;

// vec4 layouts, so that each invocation reads its 4 rows (columns) at once:
// Qs[d][g] holds queries 4g..4g+3 of dimension d; Ks likewise for keys;
// Vs[u][g] dimensions 4g..4g+3 of value u; St[u][g] the scores of key u for
// queries 4g..4g+3.
shared vec4 Qs[MD][NQ];
shared vec4 Ks[MD][NK];
shared vec4 Vs[BKV][MD / 4u];
shared vec4 St[BKV][NQ];
shared float rowM[BQ], rowL[BQ], rowC[BQ];

void main() {
    uint t = gl_LocalInvocationID.x;
    uint tr = t / NK, tc = t % NK; // this invocation's query group and key group
    uint bh = gl_WorkGroupID.y, b = bh / p.H, h = bh % p.H;
    uint i0 = gl_WorkGroupID.x * BQ;
    bool causal = (p.flags & 1u) != 0u, hasBias = (p.flags & 2u) != 0u, prefixBias = (p.flags & 4u) != 0u;
    uint qbase = p.qoff + b * p.qs[0] + h * p.qs[1];
    uint kbase = b * p.kvs[0] + h * p.kvs[1];
    uint kpbase = b * p.kvps[0] + h * p.kvps[1];
    uint bbase = p.biasoff + b * p.bs[0] + h * p.bs[1];

    // The query block, scaled, zero beyond Lq and D; consecutive
    // invocations read consecutive d.
    for (uint e = t; e < BQ * MD; e += NT) {
        uint r = e / MD, d = e % MD, i = i0 + r;
        Qs[d][r >> 2][r & 3u] = (i < p.Lq && d < p.D) ? ldQ(qbase + i * p.qs[2] + d) * p.scale : 0.0;
    }
    if (t < BQ) {
        rowM[t] = NEG_INF;
        rowL[t] = 0.0;
    }
    float acc[4][OC];
    [[unroll]] for (uint r = 0u; r < 4u; r++) {
        [[unroll]] for (uint c = 0u; c < OC; c++) acc[r][c] = 0.0;
    }
    uint nk = p.Lp + p.Lk;
    uint kend = nk;
    if (causal) kend = min(nk, min(i0 + BQ, p.Lq)); // causal: no prefix keys (the host checks)
    for (uint j0 = 0u; j0 < kend; j0 += BKV) {
        barrier(); // the previous block is consumed
        for (uint e = t; e < BKV * MD; e += NT) {
            uint u = e / MD, d = e % MD, j = j0 + u;
            float kv = 0.0, vv = 0.0;
            if (j < p.Lp) {
                uint o = kpbase + j * p.kvps[2] + d;
                if (d < p.D) kv = ldKP(p.kpoff + o);
                if (d < p.Dv) vv = ldVP(p.vpoff + o);
            } else if (j < nk) {
                uint o = kbase + (j - p.Lp) * p.kvs[2] + d;
                if (d < p.D) kv = ldK(p.koff + o);
                if (d < p.Dv) vv = ldV(p.voff + o);
            }
            Ks[d][u >> 2][u & 3u] = kv;
            Vs[u][d >> 2][d & 3u] = vv;
        }
        barrier();
        // S = Q·Kᵀ for queries 4·tr.. and keys 4·tc..
        vec4 s[4];
        [[unroll]] for (uint c = 0u; c < 4u; c++) s[c] = vec4(0.0);
        for (uint d = 0u; d < MD; d++) {
            vec4 qv = Qs[d][tr], kv = Ks[d][tc];
            [[unroll]] for (uint c = 0u; c < 4u; c++) s[c] = fma(qv, vec4(kv[c]), s[c]);
        }
        [[unroll]] for (uint c = 0u; c < 4u; c++) {
            uint j = j0 + 4u * tc + c;
            vec4 v = s[c];
            [[unroll]] for (uint r = 0u; r < 4u; r++) {
                uint i = i0 + 4u * tr + r;
                if (j >= nk || (causal && j > i)) {
                    v[r] = NEG_INF;
                } else if (hasBias && i < p.Lq && (!prefixBias || j < p.Lp)) {
                    v[r] += SBias[bbase + i * p.bs[2] + j * p.bs[3]];
                }
            }
            St[4u * tc + c][tr] = v;
        }
        barrier();
        // Online softmax, one invocation per query.
        if (t < BQ) {
            uint g = t >> 2, x = t & 3u;
            float m = rowM[t], mx = m;
            for (uint u = 0u; u < BKV; u++) mx = max(mx, St[u][g][x]);
            float corr = 1.0, sum = 0.0;
            if (isinf(mx) && mx < 0.0) {
                // Every key so far is masked: probabilities 0.
                for (uint u = 0u; u < BKV; u++) St[u][g][x] = 0.0;
            } else {
                corr = (isinf(m) && m < 0.0) ? 0.0 : exp(m - mx);
                for (uint u = 0u; u < BKV; u++) {
                    float sc = St[u][g][x];
                    float e = (isinf(sc) && sc < 0.0) ? 0.0 : exp(sc - mx);
                    St[u][g][x] = e;
                    sum += e;
                }
            }
            rowM[t] = mx;
            rowL[t] = rowL[t] * corr + sum;
            rowC[t] = corr;
        }
        barrier();
        // O = O·corr + P·V: queries 4·tr.., dimensions 4·(tc + NK·g)..
        [[unroll]] for (uint r = 0u; r < 4u; r++) {
            float corr = rowC[4u * tr + r];
            [[unroll]] for (uint c = 0u; c < OC; c++) acc[r][c] *= corr;
        }
        // The block's P·V on its own, then added (a two-level sum, as the
        // softmax sums).
        float part[4][OC];
        [[unroll]] for (uint r = 0u; r < 4u; r++) {
            [[unroll]] for (uint c = 0u; c < OC; c++) part[r][c] = 0.0;
        }
        for (uint u = 0u; u < BKV; u++) {
            vec4 pr = St[u][tr];
            [[unroll]] for (uint g = 0u; g < OC / 4u; g++) {
                vec4 vv = Vs[u][tc + NK * g];
                [[unroll]] for (uint r = 0u; r < 4u; r++) {
                    [[unroll]] for (uint e = 0u; e < 4u; e++) part[r][4u * g + e] = fma(pr[r], vv[e], part[r][4u * g + e]);
                }
            }
        }
        [[unroll]] for (uint r = 0u; r < 4u; r++) {
            [[unroll]] for (uint c = 0u; c < OC; c++) acc[r][c] += part[r][c];
        }
    }
    barrier();
    [[unroll]] for (uint r = 0u; r < 4u; r++) {
        uint row = 4u * tr + r, i = i0 + row;
        if (i >= p.Lq) continue;
        float l = rowL[row];
        float inv = l > 0.0 ? 1.0 / l : 0.0;
        uint obase = p.ooff + b * p.os[0] + h * p.os[1] + i * p.os[2];
        [[unroll]] for (uint g = 0u; g < OC / 4u; g++) {
            [[unroll]] for (uint e = 0u; e < 4u; e++) {
                uint d = 4u * (tc + NK * g) + e;
                if (d < p.Dv) storeO(obase + d, acc[r][4u * g + e] * inv);
            }
        }
    }
}
