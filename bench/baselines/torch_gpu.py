#!/usr/bin/env python3
"""PyTorch GPU baselines for the shapes `unclip bench kernels --device vulkan` times.

Runs on the GPU machine (PyTorch with CUDA), for measuring only; the Go module never uses it.
Prints one JSON object per line: op, shape, dtype, device, seconds (median), tflops, gflops.

    python3 bench/baselines/torch_gpu.py [--reps 20] [--dtype fp32,fp16] [--shapes FILE]

--shapes FILE times "op shape" lines instead of the built-in set (bench/device/gpu-run.sh
passes the shapes of its tile sweep: `bench/device/sweep.py --list-shapes`), with the shape
syntax of `unclip bench kernels`: matmul MxKxN[/linear], conv2d NxCxHxW[:O[:K]] (stride 1,
same padding), attention BxHxLqxLkxD.
"""
import argparse
import json
import statistics

import torch
import torch.nn.functional as F

torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32: compare like with like
torch.backends.cudnn.allow_tf32 = False
torch.backends.cudnn.benchmark = True


def timed(fn, reps):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def cases(dt):
    dev = "cuda"
    for n in (1024, 2048, 4096, 8192):
        a = torch.randn(n, n, device=dev, dtype=dt)
        b = torch.randn(n, n, device=dev, dtype=dt)
        yield "matmul", f"{n}x{n}x{n}", 2 * n**3, lambda a=a, b=b: a @ b
    for (n, c, h, w) in ((2, 320, 64, 64), (2, 640, 32, 32), (2, 1280, 8, 8), (1, 320, 256, 256)):
        x = torch.randn(n, c, h, w, device=dev, dtype=dt)
        k = torch.randn(c, c, 3, 3, device=dev, dtype=dt)
        yield "conv2d", f"{n}x{c}x{h}x{w}", 2 * n * c * c * 9 * h * w, lambda x=x, k=k: F.conv2d(x, k, padding=1)
    b, hds, lq, lk, d = 2, 10, 1024, 1105, 64
    q = torch.randn(b, hds, lq, d, device=dev, dtype=dt)
    kk = torch.randn(b, hds, lk, d, device=dev, dtype=dt)
    v = torch.randn(b, hds, lk, d, device=dev, dtype=dt)
    yield "attention", f"{b}x{hds}x{lq}x{lk}x{d}", 4 * b * hds * lq * lk * d, \
        lambda: F.scaled_dot_product_attention(q, kk, v)


def parse_shape(op, shape):
    """Sizes of an `unclip bench kernels` shape: (dims, options, linear)."""
    linear = op == "matmul" and shape.endswith("/linear")
    base = shape[:-len("/linear")] if linear else shape
    parts = base.split(":")
    return [int(x) for x in parts[0].split("x")], [int(x) for x in parts[1:]], linear


def shape_cases(dt, lines):
    """Cases of "op shape" lines (the FLOP counts of cmd/unclip/benchkernels.go)."""
    dev = "cuda"
    for op, shape in lines:
        dims, opts, linear = parse_shape(op, shape)
        if op == "matmul":
            m, k, n = dims
            a = torch.randn(m, k, device=dev, dtype=dt)
            if linear:
                w = torch.randn(n, k, device=dev, dtype=dt)
                fn = lambda a=a, w=w: F.linear(a, w)
            else:
                b = torch.randn(k, n, device=dev, dtype=dt)
                fn = lambda a=a, b=b: a @ b
            yield op, shape, 2 * m * k * n, fn
        elif op == "conv2d":
            n, c, h, w = dims
            o = opts[0] if opts else c
            ks = opts[1] if len(opts) > 1 else 3
            x = torch.randn(n, c, h, w, device=dev, dtype=dt)
            kk = torch.randn(o, c, ks, ks, device=dev, dtype=dt)
            yield op, shape, 2 * n * o * c * ks * ks * h * w, \
                lambda x=x, kk=kk, p=ks // 2: F.conv2d(x, kk, padding=p)
        elif op == "attention":
            b, hds, lq, lk, d = dims
            q = torch.randn(b, hds, lq, d, device=dev, dtype=dt)
            k = torch.randn(b, hds, lk, d, device=dev, dtype=dt)
            v = torch.randn(b, hds, lk, d, device=dev, dtype=dt)
            yield op, shape, 4 * b * hds * lq * lk * d, \
                lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v)


def read_shapes(path):
    out = []
    with open(path) as f:
        for line in f:
            w = line.split("#", 1)[0].split()
            if len(w) >= 2 and w[0] in ("matmul", "conv2d", "attention"):
                out.append((w[0], w[1]))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--dtype", default="fp32,fp16")
    ap.add_argument("--shapes", help='file of "op shape" lines to time instead of the built-in set')
    args = ap.parse_args()
    lines = read_shapes(args.shapes) if args.shapes else None
    name = torch.cuda.get_device_name()
    for dts in args.dtype.split(","):
        dt = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dts]
        for op, shape, flops, fn in (shape_cases(dt, lines) if lines else cases(dt)):
            s = timed(fn, args.reps)
            print(json.dumps({"op": op, "shape": shape, "dtype": dts, "device": name, "baseline": "torch",
                              "seconds": s, "tflops": flops / s / 1e12, "gflops": flops / s / 1e9}), flush=True)


if __name__ == "__main__":
    main()
