#version 450
// OpUnary on dense F32, F16 or BF16 (SDT → DDT, computed in float32): dst[i] = f(src[i]), f chosen by kind (the
// tensor.UnaryKind numbering).
#include "common.glsl"
//!variant unary16 STORAGE16
layout(local_size_x = 256) in;
DST_BUFFER(D, storeD)
SRC_BUFFER(1, S, loadS, SDT)
layout(push_constant) uniform P {
    uint n, kind, doff, soff;
    float f0, f1;
} p;

void main() {
    uint i = groupIndex() * 256u + gl_LocalInvocationID.x;
    if (i >= p.n) return;
    float x = loadS(p.soff + i);
    float y;
    switch (p.kind) {
    case 1u: case 2u: case 3u: y = activate(p.kind, x); break; // SiLU, GELU (erf), QuickGELU
    case 4u: y = exp(x); break;                      // Exp
    case 5u: y = -x; break;                          // Neg
    case 6u: y = x * p.f0 + p.f1; break;             // Affine
    case 7u: y = min(max(x, p.f0), p.f1); break;     // Clamp
    default: y = sigmoid(x); break;                  // Sigmoid
    }
    storeD(p.doff + i, y);
}
