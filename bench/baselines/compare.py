#!/usr/bin/env python3
"""Run our kernels and the baselines alternately and print the ratios.

For every (op, shape, threads) it runs, round after round, "unclip bench
kernels --json", then OpenBLAS (matmul) or PyTorch CPU (conv2d, attention,
norms), so that both sides see the same machine load; it reports the median
over rounds of each side's per-round median and the ratio ours/theirs.

Needs: go, cc with Debian's libopenblas-dev, /usr/bin/python3 with Debian's
python3-torch. Measuring only; the Go module never links either.

Usage (from the repository root):
  python3 bench/baselines/compare.py [--threads 1,2] [--rounds 3] [--reps 5]
      [--ops matmul,conv2d,attention] [--json OUT.jsonl] [--unclip BIN]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

SHAPES = {
    "matmul": ["1024x1024x1024", "2048x2048x2048", "4096x4096x4096",
               "162x2048x2048/linear", "162x2048x8192/linear"],
    "conv2d": ["2x320x64x64", "2x640x32x32", "2x1280x8x8"],
    "attention": ["2x10x1024x1105x64"],
    "groupnorm": ["2x320x64x64"],
    "layernorm": ["162x2048"],
    "softmax": ["20480x1105"],
}


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--ops", default="matmul,conv2d,attention")
    ap.add_argument("--json", help="also write every measurement here (JSON lines)")
    ap.add_argument("--python", default="/usr/bin/python3", help="the Python that has torch")
    ap.add_argument("--unclip", help="a prebuilt unclip binary (default: go build ./cmd/unclip)")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    unclip = args.unclip or os.path.join(tmp, "unclip")
    blas = os.path.join(tmp, "openblas_sgemm")
    if not args.unclip:
        subprocess.run(["go", "build", "-o", unclip, "./cmd/unclip"], check=True, cwd=ROOT)
    subprocess.run(["cc", "-O2", "-o", blas, os.path.join(HERE, "openblas_sgemm.c"), "-lopenblas"], check=True)
    rows = []
    log = open(args.json, "w") if args.json else None
    for threads in [int(t) for t in args.threads.split(",")]:
        for op in args.ops.split(","):
            for shape in SHAPES[op]:
                ours, theirs = [], []
                reps = args.reps if not shape.startswith("4096") else max(3, args.reps // 2)
                for _ in range(args.rounds):
                    o = run_json([unclip, "bench", "kernels", "--json", "--no-peak", "--op", op, "--shape", shape,
                                  "--threads", str(threads), "--reps", str(reps)])[0]
                    if op == "matmul":
                        t = run_json([blas, str(threads), str(reps), shape])[0]
                    else:
                        t = run_json([args.python, os.path.join(HERE, "torch_bench.py"), "--threads", str(threads),
                                      "--reps", str(reps), "--op", op, shape])[0]
                    ours.append(o)
                    theirs.append(t)
                    if log:
                        log.write(json.dumps(o) + "\n" + json.dumps(t) + "\n")
                        log.flush()
                key = "gflops" if op in ("matmul", "conv2d", "attention") else "gbps"
                a = statistics.median(r[key] for r in ours)
                b = statistics.median(r[key] for r in theirs)
                rows.append((op, shape, threads, theirs[0]["device"], a, b, a / b))
                print(f"{op:10s} {shape:22s} {threads} thr  ours {a:7.1f}  {theirs[0]['device']:9s} {b:7.1f}"
                      f"  {'GFLOP/s' if key == 'gflops' else 'GB/s   '}  ratio {a / b:5.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
