#version 450
// The GEMM of gemm.comp (same push constants and epilogue) on cooperative
// matrices, for 16-bit (fp16) a and b with float32 accumulation: a
// workgroup of four subgroups computes a 64×64 tile of dst, each subgroup
// a 32×32 quarter as 2×2 fragments of 16×16×16 multiply-adds, through
// 32-deep slices of a and b staged in shared memory as fp16. The
// accumulators go through shared memory to the epilogue (bias per column
// or per row, activation, residual, store as DDT).
//
// Two builds of one source: gemm_coopmat.spv uses VK_NV_cooperative_matrix
// (Debian's glslc compiles it); gemm_coopmat_khr.spv uses
// VK_KHR_cooperative_matrix, which needs glslang 13 or newer — see
// shaders.go for how it is built. The host selects either only where the
// device reports the feature and the fp16 16×16×16 subgroup shape; no CPU
// driver does, so these run only on GPUs.
//!variant gemm_coopmat_khr KHR @glslang
#define STORAGE16
#ifdef KHR
#extension GL_GOOGLE_include_directive : require // implied by glslc, not by glslangValidator
#endif
#include "common.glsl"
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#ifdef KHR
#extension GL_KHR_cooperative_matrix : require
#define MATA coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA>
#define MATB coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB>
#define MATC coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>
#define LOADM(m, buf, off, stride) coopMatLoad(m, buf, off, stride, gl_CooperativeMatrixLayoutRowMajor)
#define STOREM(m, buf, off, stride) coopMatStore(m, buf, off, stride, gl_CooperativeMatrixLayoutRowMajor)
#define MULADD(a, b, c) coopMatMulAdd(a, b, c)
#else
#extension GL_NV_cooperative_matrix : require
#define MATA fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define MATB fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define MATC fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>
#define LOADM(m, buf, off, stride) coopMatLoadNV(m, buf, off, stride, false)
#define STOREM(m, buf, off, stride) coopMatStoreNV(m, buf, off, stride, false)
#define MULADD(a, b, c) coopMatMulAddNV(a, b, c)
#endif

layout(constant_id = 10) const uint AKC = 0; // a is contiguous along k (else along m)
layout(constant_id = 11) const uint BKC = 0; // b is contiguous along k (else along n)
layout(constant_id = 13) const uint NT = 128; // 4 subgroups
layout(local_size_x_id = 13) in;

DST_BUFFER(D, storeD)
layout(std430, binding = 1) readonly buffer A16 { float16_t SA[]; };
layout(std430, binding = 2) readonly buffer B16 { float16_t SB[]; };
SRC_BUFFER(3, SBiasw, loadBias, WDT) // bias of dtype WDT
SRC_BUFFER(4, SResw, loadRes, DDT)   // residual, dense, of the result's dtype

layout(push_constant) uniform P {
    uint M, N, K, flags; // epilogue flags (common.glsl); EP_BIAS_ROW: bias per m
    uint doff, aoff, boff, biasoff;
    uint resoff, lda, ldb, pad_;
    uint bdim[3]; // batch shape (outermost first), 1 where unused
    uint abs_[3]; // a's batch strides
    uint bbs[3];  // b's batch strides
} p;

const uint EP_BIAS_ROW = 4u;
const uint BM = 64u, BN = 64u, BK = 32u;
shared float16_t As[BM * BK]; // (m, k), row-major
shared float16_t Bs[BK * BN]; // (k, n), row-major
shared float Cs[BM * BN];

void main() {
    uint t = gl_LocalInvocationID.x;
    uint sg = gl_SubgroupID; // 0..3: the 32×32 quarter
    uint sm = sg >> 1, sn = sg & 1u;
    uint n0 = gl_WorkGroupID.x * BN, m0 = gl_WorkGroupID.y * BM;
    uint z = gl_WorkGroupID.z;
    uint z2 = z % p.bdim[2], z1 = (z / p.bdim[2]) % p.bdim[1], z0 = z / (p.bdim[2] * p.bdim[1]);
    uint abase = p.aoff + z0 * p.abs_[0] + z1 * p.abs_[1] + z2 * p.abs_[2];
    uint bbase = p.boff + z0 * p.bbs[0] + z1 * p.bbs[1] + z2 * p.bbs[2];

    MATC c00 = MATC(0.0), c01 = MATC(0.0), c10 = MATC(0.0), c11 = MATC(0.0);
    for (uint k0 = 0u; k0 < p.K; k0 += BK) {
        for (uint e = t; e < BM * BK; e += NT) {
            uint am, ak;
            if (AKC != 0u) { am = e / BK; ak = e % BK; } else { am = e % BM; ak = e / BM; }
            uint gm = m0 + am, gk = k0 + ak;
            float16_t v = float16_t(0.0);
            if (gm < p.M && gk < p.K) v = SA[abase + (AKC != 0u ? gm * p.lda + gk : gk * p.lda + gm)];
            As[am * BK + ak] = v;
        }
        for (uint e = t; e < BK * BN; e += NT) {
            uint bk, bn;
            if (BKC != 0u) { bn = e / BK; bk = e % BK; } else { bn = e % BN; bk = e / BN; }
            uint gn = n0 + bn, gk = k0 + bk;
            float16_t v = float16_t(0.0);
            if (gn < p.N && gk < p.K) v = SB[bbase + (BKC != 0u ? gn * p.ldb + gk : gk * p.ldb + gn)];
            Bs[bk * BN + bn] = v;
        }
        barrier();
        [[unroll]] for (uint kk = 0u; kk < BK; kk += 16u) {
            MATA a0, a1;
            MATB b0, b1;
            LOADM(a0, As, (sm * 32u) * BK + kk, BK);
            LOADM(a1, As, (sm * 32u + 16u) * BK + kk, BK);
            LOADM(b0, Bs, kk * BN + sn * 32u, BN);
            LOADM(b1, Bs, kk * BN + sn * 32u + 16u, BN);
            c00 = MULADD(a0, b0, c00);
            c01 = MULADD(a0, b1, c01);
            c10 = MULADD(a1, b0, c10);
            c11 = MULADD(a1, b1, c11);
        }
        barrier();
    }
    STOREM(c00, Cs, (sm * 32u) * BN + sn * 32u, BN);
    STOREM(c01, Cs, (sm * 32u) * BN + sn * 32u + 16u, BN);
    STOREM(c10, Cs, (sm * 32u + 16u) * BN + sn * 32u, BN);
    STOREM(c11, Cs, (sm * 32u + 16u) * BN + sn * 32u + 16u, BN);
    barrier();

    uint act = epAct(p.flags);
    uint zbase = z * p.M * p.N;
    for (uint e = t; e < BM * BN; e += NT) {
        uint gm = m0 + e / BN, gn = n0 + e % BN;
        if (gm >= p.M || gn >= p.N) continue;
        float v = Cs[e];
        if ((p.flags & EP_BIAS_ROW) != 0u) v += loadBias(p.biasoff + gm);
        if ((p.flags & EP_BIAS) != 0u) v += loadBias(p.biasoff + gn);
        v = activate(act, v);
        uint o = zbase + gm * p.N + gn;
        if ((p.flags & EP_RESIDUAL) != 0u) v += loadRes(p.resoff + o);
        storeD(p.doff + o, v);
    }
}
