#version 450
// OpEmbedding: dst[r, :] = table[ids[r], :] for dense ids (I64 or I32)
// and a dense table of 32-bit (F32) or 16-bit (F16, BF16) elements, copied
// bit for bit. The table may be bound in windows of rows [lo, hi) (tables
// larger than the device's maxStorageBufferRange take several dispatches):
// each dispatch writes the rows whose ids fall in its window. An id out of
// [0, V) writes zeros and sets status[0], so the host reports the error
// when it next waits.
#include "common.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) buffer Dst { uint D[]; };
layout(std430, binding = 1) readonly buffer Table { uint S[]; };
layout(std430, binding = 2) readonly buffer Ids { uint I[]; };
layout(std430, binding = 3) buffer Status { uint status[]; };
layout(push_constant) uniform P {
    uint n, Dm, V, is64, half_;
    uint doff, toff, ioff;
    uint lo, hi; // the table rows bound (toff is row lo)
} p;

SUBWORD_STORE(d, D)
SUBWORD_LOAD(s, S)

void main() {
    uint e = groupIndex() * 256u + gl_LocalInvocationID.x;
    if (e >= p.n) return;
    uint r = e / p.Dm, c = e % p.Dm;
    uint id;
    bool ok;
    if (p.is64 != 0u) {
        uint w0 = I[2u * (p.ioff + r)], w1 = I[2u * (p.ioff + r) + 1u];
        ok = w1 == 0u && w0 < p.V;
        id = w0;
    } else {
        id = I[p.ioff + r];
        ok = int(id) >= 0 && id < p.V;
    }
    if (!ok) {
        atomicMax(status[0], 1u);
        if (p.lo != 0u) return;
        if (p.half_ != 0u) d_store16(p.doff + e, 0u);
        else D[p.doff + e] = 0u;
        return;
    }
    if (id < p.lo || id >= p.hi) return;
    uint si = p.toff + (id - p.lo) * p.Dm + c, di = p.doff + e;
    if (p.half_ != 0u) {
        d_store16(di, s_load16(si));
    } else {
        D[di] = S[si];
    }
}
