#version 450
// OpMatMul: dst[z, m, n] = act(Σ_k a[z, m, k]·b[z, k, n] + bias[n]) +
// res[z, m, n] (the epilogue: bias, activation and residual each optional) for a
// batch z of up to three dimensions; a and b are F32, F16 or BF16 views with
// any strides (16-bit values are converted as they are loaded), bias of dtype WDT;
// the result is stored as DDT (rounded once). Register-tiled: a workgroup of 16×16 invocations computes a
// 64×64 tile, each invocation a 4×4 block, through 16-deep shared-memory
// slices of a and b. Accumulates in float32.
#include "common.glsl"
//!variant matmul16 STORAGE16
layout(local_size_x = 16, local_size_y = 16) in;
DST_BUFFER(D, storeD)
layout(std430, binding = 1) readonly buffer A { uint SA[]; };
layout(std430, binding = 2) readonly buffer B { uint SB[]; };
SRC_BUFFER(3, SBiasw, loadBias, WDT) // bias of dtype WDT
SRC_BUFFER(4, SResw, loadRes, DDT)   // residual, dense, of the result's dtype
layout(push_constant) uniform P {
    uint M, N, K, flags; // flags: EP_BIAS, EP_RESIDUAL, activation (common.glsl)
    uint doff, aoff, boff, biasoff;
    uint asm_, ask, bsk, bsn;
    uint bdim[3];  // batch shape (outermost first), 1 where unused
    uint abs_[3];  // a's batch strides
    uint bbs[3];   // b's batch strides
    uint adt, bdt; // dtype codes of a and b (F32, F16, BF16)
    uint resoff;
} p;

LOAD_FLOAT(loadA, SA)
LOAD_FLOAT(loadB, SB)

const uint TM = 4, TN = 4, BM = 64, BN = 64, BK = 16;
shared float As[BK][BM + 1];
shared float Bs[BK][BN + 1];

void main() {
    uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
    uint tid = ty * 16u + tx;
    uint n0 = gl_WorkGroupID.x * BN, m0 = gl_WorkGroupID.y * BM;
    uint z = gl_WorkGroupID.z;
    uint z2 = z % p.bdim[2], z1 = (z / p.bdim[2]) % p.bdim[1], z0 = z / (p.bdim[2] * p.bdim[1]);
    uint abase = p.aoff + z0 * p.abs_[0] + z1 * p.abs_[1] + z2 * p.abs_[2];
    uint bbase = p.boff + z0 * p.bbs[0] + z1 * p.bbs[1] + z2 * p.bbs[2];
    float acc[TM][TN], comp[TM][TN];
    [[unroll]] for (uint i = 0u; i < TM; i++) {
        [[unroll]] for (uint j = 0u; j < TN; j++) {
            acc[i][j] = 0.0;
            comp[i][j] = 0.0;
        }
    }
    for (uint k0 = 0u; k0 < p.K; k0 += BK) {
        // 1024 elements of each slice, 4 per invocation.
        [[unroll]] for (uint r = 0u; r < 4u; r++) {
            uint e = tid + r * 256u;
            // a slice: BM rows × BK columns; consecutive invocations walk k
            // when a is contiguous along k, m otherwise.
            uint am, ak;
            if (p.ask == 1u) { am = e / BK; ak = e % BK; } else { am = e % BM; ak = e / BM; }
            uint gm = m0 + am, gk = k0 + ak;
            As[ak][am] = (gm < p.M && gk < p.K) ? loadA(p.adt, abase + gm * p.asm_ + gk * p.ask) : 0.0;
            uint bk, bn;
            if (p.bsn == 1u) { bk = e / BN; bn = e % BN; } else { bk = e % BK; bn = e / BK; }
            uint gk2 = k0 + bk, gn = n0 + bn;
            Bs[bk][bn] = (gk2 < p.K && gn < p.N) ? loadB(p.bdt, bbase + gk2 * p.bsk + gn * p.bsn) : 0.0;
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
    uint zbase = z * p.M * p.N;
    uint act = epAct(p.flags);
    [[unroll]] for (uint i = 0u; i < TM; i++) {
        uint gm = m0 + ty + 16u * i;
        if (gm >= p.M) continue;
        [[unroll]] for (uint j = 0u; j < TN; j++) {
            uint gn = n0 + tx + 16u * j;
            if (gn >= p.N) continue;
            float v = acc[i][j];
            if ((p.flags & EP_BIAS) != 0u) v += loadBias(p.biasoff + gn);
            v = activate(act, v);
            uint e = zbase + gm * p.N + gn;
            if ((p.flags & EP_RESIDUAL) != 0u) v += loadRes(p.resoff + e);
            storeD(p.doff + e, v);
        }
    }
}
