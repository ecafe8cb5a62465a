#version 450
// OpSchedulerStep: one UnCLIP scheduler step per element, in float32 and in
// diffusers' order of operations (tensor.StepParams.Element): every product
// is rounded before it is added ("precise" forbids fused multiply-adds).
// mo is (B, C·(1 or 2), ...) dense; with learned_range its second half of
// channels holds the variance values. mo may be F16 or BF16 (SDT: packed
// halves, widened on load); sample, noise and the result are F32. With the
// DYNAMIC flag the per-step scalars are read from PV (tensor.StepVector:
// clipRange … maxLog, then 1 when noise is added), so that a step recorded
// once serves every step of a stage.
#include "common.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) writeonly buffer Dst { float D[]; };
SRC_BUFFER(1, SMw, SM, SDT)
layout(std430, binding = 2) readonly buffer Xs { float SX[]; };
layout(std430, binding = 3) readonly buffer Z { float SZ[]; };
layout(std430, binding = 4) readonly buffer Pv { float PV[]; };
layout(push_constant) uniform P {
    uint n, per, flags;
    float clipRange, sqrtAlphaProd, sqrtOneMinusAlphaProd, cx0, cxt, stdev, minLog, maxLog;
    uint doff, moff, xoff, zoff, poff;
} p;

const uint EPSILON = 1u, LEARNED = 2u, CLIP = 4u, ADDNOISE = 8u, DYNAMIC = 16u;

void main() {
    uint e = groupIndex() * 256u + gl_LocalInvocationID.x;
    if (e >= p.n) return;
    float clipRange = p.clipRange, sqrtAlphaProd = p.sqrtAlphaProd, sqrtOneMinusAlphaProd = p.sqrtOneMinusAlphaProd;
    float cx0 = p.cx0, cxt = p.cxt, stdev = p.stdev, minLog = p.minLog, maxLog = p.maxLog;
    bool addNoise = (p.flags & ADDNOISE) != 0u;
    if ((p.flags & DYNAMIC) != 0u) {
        clipRange = PV[p.poff]; sqrtAlphaProd = PV[p.poff + 1u]; sqrtOneMinusAlphaProd = PV[p.poff + 2u];
        cx0 = PV[p.poff + 3u]; cxt = PV[p.poff + 4u]; stdev = PV[p.poff + 5u];
        minLog = PV[p.poff + 6u]; maxLog = PV[p.poff + 7u];
        addNoise = PV[p.poff + 8u] != 0.0;
    }
    uint bi = e / p.per, i = e % p.per;
    uint stride = (p.flags & LEARNED) != 0u ? 2u * p.per : p.per;
    precise float pred = SM(p.moff + bi * stride + i);
    precise float x = SX[p.xoff + e];
    precise float x0 = pred;
    if ((p.flags & EPSILON) != 0u) {
        precise float t = sqrtOneMinusAlphaProd * pred;
        x0 = (x - t) / sqrtAlphaProd;
    }
    if ((p.flags & CLIP) != 0u) {
        if (x0 < -clipRange) x0 = -clipRange;
        else if (x0 > clipRange) x0 = clipRange;
    }
    precise float a = cx0 * x0;
    precise float b = cxt * x;
    precise float mean = a + b;
    if (addNoise) {
        precise float sd = stdev;
        if ((p.flags & LEARNED) != 0u) {
            precise float v = SM(p.moff + bi * stride + p.per + i);
            precise float frac = (v + 1.0) / 2.0;
            precise float l1 = frac * maxLog;
            precise float l2 = (1.0 - frac) * minLog;
            precise float logvar = l1 + l2;
            precise float h = 0.5 * logvar;
            sd = exp(h);
        }
        precise float noise = sd * SZ[p.zoff + e];
        mean += noise;
    }
    D[p.doff + e] = mean;
}
