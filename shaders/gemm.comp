#version 450
// The specialised GEMM: dst[z, m, n] = act(Σ_k a[z, m, k]·b[z, k, n] + bias)
// + res[z, m, n] for operands with one unit stride each (a along k or m, b
// along k or n; the layout is a specialization constant, so no index
// arithmetic or dtype switch is decided per element). With CONV defined
// (the gemmconv variant) b is the implicit im2col matrix of an image batch:
// a 2-D convolution as a GEMM with no im2col buffer (m: output channel, n:
// output pixel, k: (c, ky, kx)).
//
// Tiling (specialization constants, chosen per device and shape by the
// host's tile table): a workgroup of NT = (BM/TM)·(BN/TN) invocations
// computes a BM×BN tile of dst through BK-deep slices staged in shared
// memory as vec4s; each invocation accumulates TM×TN outputs (TM, TN 4 or
// 8) in registers, its rows and columns spread in groups of 4 so that
// neighbouring invocations read neighbouring vec4s. The next slice is read
// from global memory into registers while the current one is multiplied.
// Global loads are vec4s (VEC = 1: 4 elements of the unit-stride dimension,
// the host checks that sizes, strides and offsets allow it) or scalars with
// bounds checks (VEC = 0). 16-bit operands are widened as they are loaded
// (integer operations, or a shift for bf16); accumulation is float32 fma,
// each BK-deep slice summed on its own and then added to the total.
// The result is stored as DDT, 16-bit pairs packed into one 32-bit store.
#include "common.glsl"
//!variant gemm16 STORAGE16
//!variant gemmconv CONV
//!variant gemmconv16 CONV STORAGE16
#extension GL_EXT_shader_explicit_arithmetic_types : enable

layout(constant_id = 0) const uint BM = 64;
layout(constant_id = 1) const uint BN = 64;
layout(constant_id = 2) const uint BK = 16;
layout(constant_id = 3) const uint TM = 4;
layout(constant_id = 4) const uint TN = 4;
layout(constant_id = 8) const uint ADT = 0;  // a's dtype code
layout(constant_id = 9) const uint BDT = 0;  // b's dtype code
layout(constant_id = 10) const uint AKC = 0; // a is contiguous along k (else along m)
layout(constant_id = 11) const uint BKC = 0; // b is contiguous along k (else along n)
layout(constant_id = 12) const uint VEC = 0; // vec4 global loads: bit 0 of a, bit 1 of b
layout(constant_id = 14) const uint KH = 3;  // convolution kernel size (CONV)
layout(constant_id = 15) const uint KW = 3;
layout(local_size_x_id = 13) in;

DST_BUFFER(D, storeD)
SRC_BUFFER(1, SA, lda_1, ADT) // a: scalar loads
SRC_BUFFER(2, SB, ldb_1, BDT) // b
layout(std430, binding = 1) readonly buffer A2 { uvec2 SA2[]; }; // vec4 loads of 16-bit a
layout(std430, binding = 1) readonly buffer A4 { uvec4 SA4[]; }; // and of float32 a
layout(std430, binding = 2) readonly buffer B2 { uvec2 SB2[]; };
layout(std430, binding = 2) readonly buffer B4 { uvec4 SB4[]; };
SRC_BUFFER(3, SBiasw, loadBias, WDT) // bias of dtype WDT
SRC_BUFFER(4, SResw, loadRes, DDT)   // residual, dense, of the result's dtype

#ifdef CONV
layout(push_constant) uniform P {
    uint M, N, K, flags; // O, OH·OW, C·KH·KW; epilogue flags (common.glsl)
    uint doff, aoff, boff, biasoff;
    uint resoff, lda, C, H;
    uint W, OW, sy, sx;
    uint py, px;
} p;
#else
layout(push_constant) uniform P {
    uint M, N, K, flags; // epilogue flags (common.glsl); EP_BIAS_ROW: bias per m
    uint doff, aoff, boff, biasoff;
    uint resoff, lda, ldb, pad_;
    uint bdim[3]; // batch shape (outermost first), 1 where unused
    uint abs_[3]; // a's batch strides
    uint bbs[3];  // b's batch strides
} p;
#endif

const uint EP_BIAS_ROW = 4u;
const uint NTM = BM / TM, NTN = BN / TN; // invocations along m and n
const uint NT = NTM * NTN;
const uint GM = TM / 4u, GN = TN / 4u;   // groups of 4 rows (columns) per invocation

shared vec4 As[BK][BM / 4u];
shared vec4 Bs[BK][BN / 4u];

// vec4 loads of elements i..i+3 (i a multiple of 4) of a buffer of dtype
// DT.
#define VEC4_LOADER(X, S2, S4, DT)                                                   \
    vec4 X##4(uint i) {                                                              \
        if (DT == DT_F32) return uintBitsToFloat(S4[i >> 2]);                        \
        uvec2 w = S2[i >> 2];                                                        \
        if (DT == DT_F16) return vec4(f16ToF32(w.x & 0xffffu), f16ToF32(w.x >> 16), f16ToF32(w.y & 0xffffu), f16ToF32(w.y >> 16));     \
        return uintBitsToFloat(uvec4(w.x << 16, w.x & 0xffff0000u, w.y << 16, w.y & 0xffff0000u)); \
    }
VEC4_LOADER(lda_, SA2, SA4, ADT)
VEC4_LOADER(ldb_, SB2, SB4, BDT)

// Items per invocation of a slice of a (BM×BK) and of b (BK×BN).
const uint AV = (VEC & 1u) != 0u ? 4u : 1u;
const uint NA = (BM * BK / AV + NT - 1u) / NT;
#ifdef CONV
const uint BV = 1u;
#else
const uint BV = (VEC & 2u) != 0u ? 4u : 1u;
#endif
const uint NB = (BK * BN / BV + NT - 1u) / NT;

void main() {
    uint t = gl_LocalInvocationID.x;
    uint tm = t / NTN, tn = t % NTN;
    uint n0 = gl_WorkGroupID.x * BN, m0 = gl_WorkGroupID.y * BM;
    uint z = gl_WorkGroupID.z;
#ifdef CONV
    uint abase = p.aoff;
    uint xbase = p.boff + z * p.C * p.H * p.W;
    const uint khw = KH * KW;
    const bool PIXFIXED = NT % BN == 0u;
    int piy0 = 0, pix0 = 0;
    if (PIXFIXED) {
        uint q = n0 + t % BN, oy = q / p.OW, ox = q - oy * p.OW;
        piy0 = int(oy * p.sy) - int(p.py);
        pix0 = int(ox * p.sx) - int(p.px);
    }
#else
    uint z2 = z % p.bdim[2], z1 = (z / p.bdim[2]) % p.bdim[1], z0 = z / (p.bdim[2] * p.bdim[1]);
    uint abase = p.aoff + z0 * p.abs_[0] + z1 * p.abs_[1] + z2 * p.abs_[2];
    uint bbase = p.boff + z0 * p.bbs[0] + z1 * p.bbs[1] + z2 * p.bbs[2];
#endif

    vec4 ra[NA], rb[NB]; // the next slice, staged in registers

    float acc[TM][TN];
    [[unroll]] for (uint i = 0u; i < TM; i++) {
        [[unroll]] for (uint j = 0u; j < TN; j++) acc[i][j] = 0.0;
    }

    for (uint k0 = 0u; k0 < p.K; k0 += BK) {
        // Global → registers.
        [[unroll]] for (uint r = 0u; r < NA; r++) {
            uint e = t + r * NT;
            vec4 v = vec4(0.0);
            if (e < BM * BK / AV) {
                if (AKC != 0u) {
                    uint am = e / (BK / AV), ak = (e % (BK / AV)) * AV;
                    uint gm = m0 + am, gk = k0 + ak;
                    if (AV == 4u) {
                        if (gm < p.M && gk < p.K) v = lda_4(abase + gm * p.lda + gk);
                    } else if (gm < p.M && gk < p.K) {
                        v.x = lda_1(abase + gm * p.lda + gk);
                    }
                } else {
                    uint ak = e / (BM / AV), am = (e % (BM / AV)) * AV;
                    uint gm = m0 + am, gk = k0 + ak;
                    if (AV == 4u) {
                        if (gm < p.M && gk < p.K) v = lda_4(abase + gk * p.lda + gm);
                    } else if (gm < p.M && gk < p.K) {
                        v.x = lda_1(abase + gk * p.lda + gm);
                    }
                }
            }
            ra[r] = v;
        }
        [[unroll]] for (uint r = 0u; r < NB; r++) {
            uint e = t + r * NT;
            vec4 v = vec4(0.0);
            if (e < BK * BN / BV) {
#ifdef CONV
                // Consecutive invocations walk output pixels; when NT is a
                // multiple of BN each invocation keeps one pixel.
                uint bk = e / BN, bn = e % BN;
                uint gk = k0 + bk, gq = n0 + bn;
                int iy0 = piy0, ix0 = pix0;
                if (!PIXFIXED) {
                    uint oy = gq / p.OW, ox = gq - oy * p.OW;
                    iy0 = int(oy * p.sy) - int(p.py);
                    ix0 = int(ox * p.sx) - int(p.px);
                }
                if (gq < p.N && gk < p.K) {
                    uint c = gk / khw, kk = gk - c * khw;
                    uint ky = kk / KW, kx = kk - ky * KW;
                    int iy = iy0 + int(ky), ix = ix0 + int(kx);
                    if (uint(iy) < p.H && uint(ix) < p.W) {
                        v.x = ldb_1(xbase + (c * p.H + uint(iy)) * p.W + uint(ix));
                    }
                }
#else
                if (BKC != 0u) {
                    uint bn = e / (BK / BV), bk = (e % (BK / BV)) * BV;
                    uint gn = n0 + bn, gk = k0 + bk;
                    if (BV == 4u) {
                        if (gn < p.N && gk < p.K) v = ldb_4(bbase + gn * p.ldb + gk);
                    } else if (gn < p.N && gk < p.K) {
                        v.x = ldb_1(bbase + gn * p.ldb + gk);
                    }
                } else {
                    uint bk = e / (BN / BV), bn = (e % (BN / BV)) * BV;
                    uint gn = n0 + bn, gk = k0 + bk;
                    if (BV == 4u) {
                        if (gn < p.N && gk < p.K) v = ldb_4(bbase + gk * p.ldb + gn);
                    } else if (gn < p.N && gk < p.K) {
                        v.x = ldb_1(bbase + gk * p.ldb + gn);
                    }
                }
#endif
            }
            rb[r] = v;
        }
        barrier(); // the previous slice has been consumed
        // Registers → shared.
        [[unroll]] for (uint r = 0u; r < NA; r++) {
            uint e = t + r * NT;
            if (e >= BM * BK / AV) break;
            if (AKC != 0u) {
                uint am = e / (BK / AV), ak = (e % (BK / AV)) * AV;
                [[unroll]] for (uint c = 0u; c < AV; c++) As[ak + c][am >> 2][am & 3u] = ra[r][c];
            } else {
                uint ak = e / (BM / AV), am = (e % (BM / AV)) * AV;
                if (AV == 4u) {
                    As[ak][am >> 2] = ra[r];
                } else {
                    As[ak][am >> 2][am & 3u] = ra[r].x;
                }
            }
        }
        [[unroll]] for (uint r = 0u; r < NB; r++) {
            uint e = t + r * NT;
            if (e >= BK * BN / BV) break;
#ifdef CONV
            uint bk = e / BN, bn = e % BN;
            Bs[bk][bn >> 2][bn & 3u] = rb[r].x;
#else
            if (BKC != 0u) {
                uint bn = e / (BK / BV), bk = (e % (BK / BV)) * BV;
                [[unroll]] for (uint c = 0u; c < BV; c++) Bs[bk + c][bn >> 2][bn & 3u] = rb[r][c];
            } else {
                uint bk = e / (BN / BV), bn = (e % (BN / BV)) * BV;
                if (BV == 4u) {
                    Bs[bk][bn >> 2] = rb[r];
                } else {
                    Bs[bk][bn >> 2][bn & 3u] = rb[r].x;
                }
            }
#endif
        }
        barrier();
        // Two-level sum: each slice is summed on its own, then added to
        // the total, so float32 rounding error grows with the slice depth
        // and the number of slices rather than with K (the CPU kernels'
        // KC blocks do the same).
        float part[TM][TN];
        [[unroll]] for (uint i = 0u; i < TM; i++) {
            [[unroll]] for (uint j = 0u; j < TN; j++) part[i][j] = 0.0;
        }
        [[unroll]] for (uint k = 0u; k < BK; k++) {
            vec4 av[GM], bv[GN];
            [[unroll]] for (uint g = 0u; g < GM; g++) av[g] = As[k][g * NTM + tm];
            [[unroll]] for (uint g = 0u; g < GN; g++) bv[g] = Bs[k][g * NTN + tn];
            [[unroll]] for (uint i = 0u; i < TM; i++) {
                [[unroll]] for (uint j = 0u; j < TN; j++) {
                    part[i][j] = fma(av[i >> 2][i & 3u], bv[j >> 2][j & 3u], part[i][j]);
                }
            }
        }
        [[unroll]] for (uint i = 0u; i < TM; i++) {
            [[unroll]] for (uint j = 0u; j < TN; j++) acc[i][j] += part[i][j];
        }
    }

    // Epilogue. Row i of the invocation is m0 + (i/4)·4·NTM + 4·tm + i%4,
    // column j likewise.
    uint act = epAct(p.flags);
    uint zbase = z * p.M * p.N;
    bool pack = DDT != DT_F32 && ((p.doff | p.N) & 1u) == 0u;
    [[unroll]] for (uint i = 0u; i < TM; i++) {
        uint gm = m0 + (i >> 2) * 4u * NTM + 4u * tm + (i & 3u);
        if (gm >= p.M) continue;
        float brow = (p.flags & EP_BIAS_ROW) != 0u ? loadBias(p.biasoff + gm) : 0.0;
        [[unroll]] for (uint j = 0u; j < TN; j += 2u) {
            uint gn = n0 + (j >> 2) * 4u * NTN + 4u * tn + (j & 3u);
            if (gn >= p.N) continue;
            float v[2];
            [[unroll]] for (uint c = 0u; c < 2u; c++) {
                float x = acc[i][j + c] + brow;
                if ((p.flags & EP_BIAS) != 0u && gn + c < p.N) x += loadBias(p.biasoff + gn + c);
                x = activate(act, x);
                uint e = zbase + gm * p.N + gn + c;
                if ((p.flags & EP_RESIDUAL) != 0u && gn + c < p.N) x += loadRes(p.resoff + e);
                v[c] = x;
            }
            uint e = p.doff + zbase + gm * p.N + gn;
            if (pack && gn + 1u < p.N) {
                // Two 16-bit results in one aligned word: no atomics.
                uint lo = DDT == DT_F16 ? f32ToF16(v[0]) : f32ToBF16(v[0]);
                uint hi = DDT == DT_F16 ? f32ToF16(v[1]) : f32ToBF16(v[1]);
                D[e >> 1] = lo | (hi << 16);
            } else {
                storeD(e, v[0]);
                if (gn + 1u < p.N) storeD(e + 1u, v[1]);
            }
        }
    }
}
