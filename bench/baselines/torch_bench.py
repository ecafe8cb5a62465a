#!/usr/bin/env python3
"""Time single ops in PyTorch CPU with the shapes and JSON fields of
"unclip bench kernels --json" (op, shape, dtype, device, threads, seconds,
gflops, gbps). A measuring tool only (Debian: apt-get install python3-torch).

Attention runs as diffusers runs it on torch 1.13 (no fused kernel):
baddbmm(Q, Kᵀ)·scale → softmax → bmm(P, V).

Usage: torch_bench.py --threads N --reps N --op OP SHAPE...
"""
import argparse
import json
import math
import statistics
import time

import torch


def parse(shape):
    opts = shape.split(":")
    return [int(v) for v in opts[0].split("x")], [int(v) for v in opts[1:]]


def prepare(op, shape):
    g = torch.Generator().manual_seed(1)

    def rnd(*s):
        return torch.rand(*s, generator=g) * 2 - 1

    if op == "matmul":
        linear = shape.endswith("/linear")
        (m, k, n), _ = parse(shape.removesuffix("/linear"))
        a = rnd(m, k)
        if linear:
            w = rnd(n, k)
            return (lambda: torch.nn.functional.linear(a, w)), 2 * m * k * n, 4 * (m * k + k * n + m * n)
        b = rnd(k, n)
        return (lambda: torch.mm(a, b)), 2 * m * k * n, 4 * (m * k + k * n + m * n)
    if op == "conv2d":
        (n, c, h, w), opts = parse(shape)
        o = opts[0] if opts else c
        k = opts[1] if len(opts) > 1 else 3
        x, wt, b = rnd(n, c, h, w), rnd(o, c, k, k), rnd(o)
        oh, ow = h + 2 * (k // 2) - k + 1, w + 2 * (k // 2) - k + 1
        return ((lambda: torch.nn.functional.conv2d(x, wt, b, padding=k // 2)),
                2 * n * o * c * k * k * oh * ow, 4 * (n * c * h * w + o * c * k * k + n * o * oh * ow))
    if op == "attention":
        (b, h, lq, lk, d), _ = parse(shape)
        q, k, v = rnd(b * h, lq, d), rnd(b * h, lk, d), rnd(b * h, lk, d)
        scale = 1 / math.sqrt(d)

        def attn():
            s = torch.baddbmm(torch.empty(b * h, lq, lk), q, k.transpose(1, 2), beta=0, alpha=scale)
            return torch.bmm(s.softmax(dim=-1), v)
        return attn, 4 * b * h * lq * lk * d, 4 * b * h * (2 * lq * d + 2 * lk * d)
    if op == "groupnorm":
        (n, c, h, w), opts = parse(shape)
        groups = opts[0] if opts else 32
        x, wt, b = rnd(n, c, h, w), rnd(c), rnd(c)
        return (lambda: torch.nn.functional.silu(torch.nn.functional.group_norm(x, groups, wt, b, 1e-5))), 0, 8 * n * c * h * w
    if op in ("layernorm", "softmax"):
        (r, c), _ = parse(shape)
        x = rnd(r, c)
        if op == "softmax":
            return (lambda: x.softmax(dim=-1)), 0, 8 * r * c
        wt, b = rnd(c), rnd(c)
        return (lambda: torch.nn.functional.layer_norm(x, (c,), wt, b, 1e-5)), 0, 8 * r * c
    raise SystemExit(f"unknown op {op}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--op", required=True)
    ap.add_argument("shapes", nargs="+")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with torch.no_grad():
        for shape in args.shapes:
            run, flops, nbytes = prepare(args.op, shape)
            run()  # warm-up
            times = []
            for _ in range(args.reps):
                t0 = time.perf_counter()
                run()
                times.append(time.perf_counter() - t0)
            med = statistics.median(times)
            print(json.dumps({"op": args.op, "shape": shape, "dtype": "f32", "device": "torch-cpu",
                              "version": torch.__version__, "threads": args.threads, "reps": args.reps,
                              "seconds": med, "gflops": flops / med / 1e9, "gbps": nbytes / med / 1e9}), flush=True)


if __name__ == "__main__":
    main()
