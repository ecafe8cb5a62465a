#!/usr/bin/env python3
"""Error of Winograd 3x3 convolutions with bf16 products, against the bf16
direct convolution, both measured against a float64 convolution of random
data. It backs the README's reason for keeping Winograd in float32 in bf16
mode (Devices and precision). Needs numpy.

    python3 bench/winograd_bf16_error.py [--channels 256] [--tiles 200]

For each variant F(m x m, 3 x 3) with its interpolation points (and the
point at infinity) it prints the relative RMS error of the bf16 Winograd
result, the bf16 direct result's, and their ratio. "mixed" rows keep in
float32 the products whose 2-D point touches one of the listed points.
"""

import argparse

import numpy as np


def bf16(a):
    """Rounds float32 values to bfloat16 (nearest even), returned as float64."""
    b = np.asarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    b = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) << 16
    return b.astype(np.uint32).view(np.float32).astype(np.float64)


def toom_cook(points, m, r=3):
    """Aᵀ (m×n), G (n×r) and Bᵀ (n×n) of F(m, r) on points plus infinity."""
    n = m + r - 1
    at, g, bt = np.zeros((m, n)), np.zeros((n, r)), np.zeros((n, n))
    for i, p in enumerate(points):
        at[:, i] = [p**j for j in range(m)]
        others = [q for q in points if q != p]
        g[i] = [p**j / np.prod([p - q for q in others]) for j in range(r)]
        poly = np.poly1d([1.0])
        for q in others:
            poly *= np.poly1d([1.0, -q])
        bt[i, : len(poly.c)] = poly.c[::-1]
    at[m - 1, n - 1] = g[n - 1, r - 1] = 1
    poly = np.poly1d([1.0])
    for q in points:
        poly *= np.poly1d([1.0, -q])
    bt[n - 1, : len(poly.c)] = poly.c[::-1]
    return at, g, bt


def run(rng, m, points, channels, tiles, outs=16, fp32_points=()):
    at, g, bt = toom_cook(points, m)
    n = m + 2
    d = rng.standard_normal((n, 3 + n))
    y = at @ ((g @ d[0, :3]) * (bt @ d[1, :n]))
    want = [sum(d[1, i + k] * d[0, k] for k in range(3)) for i in range(m)]
    assert np.abs(y - want).max() < 1e-9, "bad transform"

    x = rng.standard_normal((channels, n, n, tiles))
    w = rng.standard_normal((outs, channels, 3, 3)) / np.sqrt(9 * channels)

    def direct(x, w):
        y = np.zeros((outs, m, m, tiles))
        for ky in range(3):
            for kx in range(3):
                y += np.einsum("oc,cijt->oijt", w[:, :, ky, kx], x[:, ky : ky + m, kx : kx + m])
        return y

    ref = direct(x, w)
    v = np.einsum("ai,cijt,bj->cabt", bt, x, bt)
    u = np.einsum("ak,ockl,bl->ocab", g, w, g)
    keep = np.array([p in fp32_points for p in list(points) + ["inf"]])
    keep = keep[:, None] | keep[None, :]
    v = np.where(keep[None, :, :, None], v, bf16(v))
    u = np.where(keep[None, None], u, bf16(u))
    y = np.einsum("ia,oabt,jb->oijt", at, np.einsum("ocab,cabt->oabt", u, v), at)

    def rms(e):
        return np.sqrt(np.mean(e**2))

    wino, dir16 = rms(y - ref) / rms(ref), rms(direct(bf16(x), bf16(w)) - ref) / rms(ref)
    cost = keep.mean() + (1 - keep.mean()) / 2  # of float32 Winograd's products
    return wino, dir16, cost


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--channels", type=int, default=256)
    ap.add_argument("--tiles", type=int, default=200)
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    cases = [
        ("F(2x2,3x3)", 2, [0, 1, -1], ()),
        ("F(3x3,3x3)", 3, [0, 1, -1, 0.5], ()),
        ("F(4x4,3x3)", 4, [0, 1, -1, 0.5, -2], ()),
        ("F(4x4,3x3) Lavin", 4, [0, 1, -1, 2, -2], ()),
        ("F(4x4,3x3) mixed", 4, [0, 1, -1, 0.5, -2], (-2,)),
        ("F(4x4,3x3) mixed", 4, [0, 1, -1, 0.5, -2], (-2, 0.5, "inf")),
    ]
    print(f"{'variant':18s} {'points':22s} {'fp32 at':14s} {'wino rms':>9s} {'direct':>9s} {'ratio':>6s} {'cost':>5s}")
    for name, m, pts, keep in cases:
        wino, dir16, cost = run(rng, m, pts, args.channels, args.tiles, fp32_points=keep)
        print(f"{name:18s} {str(pts):22s} {str(list(keep)):14s} {wino:9.2e} {dir16:9.2e} {wino / dir16:6.2f} {cost:5.2f}")


if __name__ == "__main__":
    main()
