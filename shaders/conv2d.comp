#version 450
// OpConv2d as an implicit GEMM: for image z, dst[z, o, q] = act(Σ_r w[o, r]·
// x̂[r, q] + bias[o]) + res[z, o, q] (the epilogue: bias, activation and
// residual each optional), where r runs over (c, ky, kx), q over output
// pixels (oy, ox), and x̂ reads x at (oy·sy + ky − py, ox·sx + kx − px),
// zero outside. x dense of dtype SDT, result DDT (float32 accumulation); w dense F32, F16 or BF16 (converted as
// loaded). Tiled like matmul.comp: 64×64 outputs per
// workgroup of 16×16 invocations, 4×4 each, 16-deep shared slices.
#include "common.glsl"
//!variant conv2d16 STORAGE16
layout(local_size_x = 16, local_size_y = 16) in;
// The kernel size is specialization constants 0 and 1, so that the
// im2col index arithmetic divides by constants.
layout(constant_id = 0) const uint KH = 3;
layout(constant_id = 1) const uint KW = 3;
DST_BUFFER(D, storeD)
SRC_BUFFER(1, SXw, SX, SDT)
layout(std430, binding = 2) readonly buffer W { uint SW[]; };
SRC_BUFFER(3, SBiasw, loadBias, WDT) // bias of dtype WDT
SRC_BUFFER(4, SResw, loadRes, DDT)   // residual, dense, of the result's dtype
layout(push_constant) uniform P {
    uint O, R, Q, flags;       // output channels, C·KH·KW, OH·OW; EP_BIAS, EP_RESIDUAL, activation
    uint C, H, W, OW;
    uint sy, sx, py, px;
    uint doff, xoff, woff, biasoff;
    uint wdt; // dtype code of w (F32, F16, BF16)
    uint resoff;
} p;

LOAD_FLOAT(loadW, SW)

const uint TM = 4, TN = 4, BM = 64, BN = 64, BK = 16;
shared float As[BK][BM + 1];
shared float Bs[BK][BN + 1];

void main() {
    uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
    uint tid = ty * 16u + tx;
    uint n0 = gl_WorkGroupID.x * BN, m0 = gl_WorkGroupID.y * BM;
    uint z = gl_WorkGroupID.z;
    uint xbase = p.xoff + z * p.C * p.H * p.W;
    const uint khw = KH * KW;
    // Each invocation loads the same output pixel column of every b slice
    // (element e = tid + 256·r: column e % 64 = tid % 64, row tid / 64 + 4r).
    uint bn = tid % BN, gq = n0 + bn;
    bool qok = gq < p.Q;
    uint oy = gq / p.OW, ox = gq % p.OW;
    int iy0 = int(oy * p.sy) - int(p.py), ix0 = int(ox * p.sx) - int(p.px);
    float acc[TM][TN], comp[TM][TN];
    [[unroll]] for (uint i = 0u; i < TM; i++) {
        [[unroll]] for (uint j = 0u; j < TN; j++) {
            acc[i][j] = 0.0;
            comp[i][j] = 0.0;
        }
    }
    for (uint k0 = 0u; k0 < p.R; k0 += BK) {
        [[unroll]] for (uint r = 0u; r < 4u; r++) {
            uint e = tid + r * 256u;
            uint am = e / BK, ak = e % BK;
            uint gm = m0 + am, gk = k0 + ak;
            As[ak][am] = (gm < p.O && gk < p.R) ? loadW(p.wdt, p.woff + gm * p.R + gk) : 0.0;
            uint bk = e / BN;
            uint gk2 = k0 + bk;
            float v = 0.0;
            if (qok && gk2 < p.R) {
                uint c = gk2 / khw, kk = gk2 - c * khw;
                uint ky = kk / KW, kx = kk - ky * KW;
                int iy = iy0 + int(ky), ix = ix0 + int(kx);
                if (iy >= 0 && iy < int(p.H) && ix >= 0 && ix < int(p.W)) {
                    v = SX(xbase + (c * p.H + uint(iy)) * p.W + uint(ix));
                }
            }
            Bs[bk][bn] = v;
        }
        barrier();
        // Two-level sum: each 16-deep slice is summed on its own, then
        // added to the total with Kahan compensation, so float32 rounding
        // error grows with the slice depth, not with K.
        float part[TM][TN];
        [[unroll]] for (uint i = 0u; i < TM; i++) {
            [[unroll]] for (uint j = 0u; j < TN; j++) part[i][j] = 0.0;
        }
        [[unroll]] for (uint k = 0u; k < BK; k++) {
            float av[TM], bv[TN];
            [[unroll]] for (uint i = 0u; i < TM; i++) av[i] = As[k][ty + 16u * i];
            [[unroll]] for (uint j = 0u; j < TN; j++) bv[j] = Bs[k][tx + 16u * j];
            [[unroll]] for (uint i = 0u; i < TM; i++) {
                [[unroll]] for (uint j = 0u; j < TN; j++) part[i][j] = fma(av[i], bv[j], part[i][j]);
            }
        }
        // Kahan-compensated across slices.
        [[unroll]] for (uint i = 0u; i < TM; i++) {
            [[unroll]] for (uint j = 0u; j < TN; j++) {
                precise float y = part[i][j] - comp[i][j];
                precise float s = acc[i][j] + y;
                comp[i][j] = (s - acc[i][j]) - y;
                acc[i][j] = s;
            }
        }
        barrier();
    }
    uint zbase = z * p.O * p.Q;
    uint act = epAct(p.flags);
    [[unroll]] for (uint i = 0u; i < TM; i++) {
        uint gm = m0 + ty + 16u * i;
        if (gm >= p.O) continue;
        float bv = (p.flags & EP_BIAS) != 0u ? loadBias(p.biasoff + gm) : 0.0;
        [[unroll]] for (uint j = 0u; j < TN; j++) {
            uint gq = n0 + tx + 16u * j;
            if (gq >= p.Q) continue;
            float v = activate(act, acc[i][j] + bv);
            uint e = zbase + gm * p.Q + gq;
            if ((p.flags & EP_RESIDUAL) != 0u) v += loadRes(p.resoff + e);
            storeD(p.doff + e, v);
        }
    }
}
