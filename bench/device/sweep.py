#!/usr/bin/env python3
"""Kernel tile sweep of bench/device/gpu-run.sh (Python standard library only).

For every op, shape and candidate tile of bench/device/tiles.txt (one set: full or quick) it
times `unclip bench kernels --device vulkan --op OP --tile TILE --shape S... --json --no-peak`,
keeps the fastest tile per (op, shape) and writes the tuning table that UNCLIP_VK_TUNING reads:

    {"device": NAME, "tiles": [{"op": "matmul", "shape": "162x2048x2048", "tile": "...",
                                "gflops": 123.4, ...}, ...]}

One process per (op, tile) runs all of that tile's shapes (a device open and the pipeline
compilations are paid once); the op's built-in choice (no --tile) is timed the same way, as
the baseline. A tile the binary rejects (non-zero exit) is recorded with its error and skipped;
when a process fails part-way, its remaining shapes are retried one by one. Work is ordered
round-robin over the ops so that a spent --budget leaves every op some results.

    sweep.py --list-shapes --set full                    # "op shape" lines (for torch_gpu.py)
    sweep.py --unclip .gpu/unclip --set quick --devices devices.txt \\
             --json sweep.json --table vk-tuning.json [--reps 3] [--budget 150]
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OPS = ("matmul", "conv2d", "attention")


def parse_tiles(path, want):
    """Returns (candidates {op: [tile]}, shapes [(op, shape, [tile])]) of set want."""
    cands, shapes, cur = {}, [], None
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            m = re.fullmatch(r"\[(\w+)\]", line)
            if m:
                cur = m.group(1)
                continue
            w = line.split()
            if cur != want:
                continue
            if w[0] == "candidates" and len(w) >= 3 and w[1] in OPS:
                cands[w[1]] = w[2:]
            elif w[0] in OPS and len(w) >= 2:
                shapes.append((w[0], w[1], w[2:]))
            else:
                raise SystemExit(f"{path}:{n}: cannot read {line!r}")
    if not shapes:
        raise SystemExit(f"{path}: no shapes in set [{want}]")
    return cands, [(op, s, t or cands.get(op, [])) for op, s, t in shapes]


def device_info(path):
    """Name, shared memory bytes and max workgroup size of vulkan:0 from `unclip devices`."""
    info = {"name": None, "index": "vulkan:0", "shared_memory_bytes": None, "max_workgroup": None}
    if not path or not os.path.exists(path):
        return info
    text = open(path, errors="replace").read()
    m = re.search(r"^--device vulkan picks (vulkan:\d+) \((.*)\)\s*$", text, re.M)
    if m:
        info["index"], info["name"] = m.group(1), m.group(2)
    block = re.search(r"^vulkan:0\s+(.*?)$(.*?)(?=^vulkan:|^--device|\Z)", text, re.M | re.S)
    if block:
        if not info["name"]:
            info["name"] = re.sub(r"\s+\([^()]*\)$", "", block.group(1).strip())
        s = re.search(r"shared memory (\d+) KiB", block.group(2))
        w = re.search(r"workgroup ≤ (\d+)", block.group(2))
        info["shared_memory_bytes"] = int(s.group(1)) * 1024 if s else None
        info["max_workgroup"] = int(w.group(1)) if w else None
    return info


def attn_fit(tile, shape, dev):
    """None when flash.comp can run tile at shape on dev, else why not (kernels/vulkan/tiles.go)."""
    try:
        bq, bkv = (int(x) for x in tile.split("x"))
        hd = int(shape.split(":")[0].split("x")[-1])
    except ValueError:
        return None  # let the binary judge it
    md = 16
    while md < hd:
        md *= 2
    m = max(md, bkv)
    shared = 4 * (bq * m + 2 * bkv * m + bq * bkv + 3 * bq)
    threads = (bq // 4) * (bkv // 4)
    lim, wg = dev.get("shared_memory_bytes"), dev.get("max_workgroup")
    if lim and shared > lim:
        return f"needs {shared} B of shared memory, the device has {lim} B (the kernel would fall back to 32x32)"
    if wg and threads > wg:
        return f"needs {threads} invocations, the device allows {wg}"
    return None


def default_gemm_tile(m, n, batch, dev):
    """kernels/vulkan/tiles.go defaultGEMMTile, and the halving that makes it fit the device."""
    work = m * n * batch
    if m >= 128 and n >= 128 and work >= 1 << 19:
        t = [128, 128, 16, 8, 8]
    elif m >= 64 and n >= 64:
        t = [64, 64, 16, 8, 8]
    elif m < 64 and n >= 64:
        t = [32, 64, 16, 4, 4]
    elif n < 64 and m >= 64:
        t = [64, 32, 16, 4, 4]
    else:
        t = [32, 32, 8, 4, 4]
    lim, wg = dev.get("shared_memory_bytes") or 1 << 30, dev.get("max_workgroup") or 1 << 30

    def fits(t):
        return (t[0] // t[3]) * (t[1] // t[4]) <= wg and t[2] * (t[0] + t[1]) * 4 <= lim
    while not fits(t) and t[0] > 16:
        t = [t[0] // 2, t[1] // 2, t[2], 4, 4]
    return "x".join(map(str, t))


def default_tile(op, shape, raw, dev):
    """The tile the engine uses without --tile or a table: the bench JSON's "tile" when it
    reports one, else kernels/vulkan's rule replicated here. Returns (tile, how it is known)."""
    if isinstance(raw.get("tile"), str) and raw["tile"]:
        return raw["tile"], "bench JSON"
    try:
        base = shape.split("/", 1)[0].split(":")
        d = [int(x) for x in base[0].split("x")]
        if op == "matmul":      # gemmTileFor("matmul", m=M, n=N, k, batch 1)
            return default_gemm_tile(d[0], d[2], 1, dev), "rule of kernels/vulkan/tiles.go"
        if op == "conv2d":      # gemmTileFor("conv2d", m=O, n=H*W, k, batch N)
            o = int(base[1]) if len(base) > 1 else d[1]
            return default_gemm_tile(o, d[2] * d[3], d[0], dev), "rule of kernels/vulkan/tiles.go"
        if op == "attention" and d[-1] <= 128 and not attn_fit("32x32", shape, dev):
            return "32x32", "rule of kernels/vulkan/nnops.go flashTile"
    except (ValueError, IndexError):
        pass
    return None, "unknown"


def run_bench(unclip, device, op, tile, shapes, reps, limit):
    """Runs one bench process; returns ({shape: result}, error or None, seconds)."""
    cmd = [unclip, "bench", "kernels", "--device", device, "--op", op, "--json", "--no-peak",
           "--reps", str(reps)]
    if tile != "default":
        cmd += ["--tile", tile]
    for s in shapes:
        cmd += ["--shape", s]
    env = dict(os.environ)
    env.pop("UNCLIP_VK_TUNING", None)  # the built-in choice is the baseline, not a table's
    t0 = time.time()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, env=env)
        out, err, rc = p.stdout, p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err, rc = f"timeout after {limit:.0f} s", None
    dt = time.time() - t0
    got, msg = {}, None
    for line in out.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            o = json.loads(line)
        except ValueError:
            continue
        if "error" in o:
            msg = str(o["error"])
        elif o.get("shape") in shapes:
            got[o["shape"]] = o
    if rc != 0:
        if rc is None:
            msg = err
        elif not msg:
            tail = [l for l in err.strip().splitlines() if l.strip()]
            msg = tail[-1] if tail else f"exit status {rc}"
        return got, msg, dt
    return got, None, dt


def seconds_of(r):
    for k in ("seconds", "ms", "median_seconds"):
        if isinstance(r.get(k), (int, float)):
            return r[k] / 1e3 if k == "ms" else r[k]
    return None


def gflops_of(r):
    g = r.get("gflops")
    if isinstance(g, (int, float)):
        return float(g)
    t = r.get("tflops")
    return float(t) * 1e3 if isinstance(t, (int, float)) else None


def table_shape(op, shape):
    """The shape as the table loader reads it: sizes only (no /linear)."""
    return shape.split("/", 1)[0] if op == "matmul" else shape


def sweep(a):
    cands, shapes = parse_tiles(a.tiles, a.set)
    dev = device_info(a.devices)
    deadline = time.time() + a.budget
    results = []   # one row per (op, shape, tile)
    # Work: per op, the baseline then each candidate tile (with the shapes that list it).
    work = {}
    for op in OPS:
        items = [("default", [s for o, s, _ in shapes if o == op])]
        tiles = []
        for o, s, ts in shapes:
            if o == op:
                for t in ts:
                    if t not in tiles:
                        tiles.append(t)
        for t in tiles:
            items.append((t, [s for o, s, ts in shapes if o == op and t in ts]))
        work[op] = [(t, ss) for t, ss in items if ss]
    order = []
    for i in range(max(len(v) for v in work.values())):
        for op in OPS:
            if i < len(work[op]):
                order.append((op,) + work[op][i])
    calls = 0
    for op, tile, ss in order:
        run = []
        for s in ss:
            why = attn_fit(tile, s, dev) if op == "attention" and tile != "default" else None
            if why:
                results.append({"op": op, "shape": s, "tile": tile, "status": "skipped", "error": why})
            else:
                run.append(s)
        pending = [run]
        while pending:
            batch = pending.pop(0)
            if not batch:
                continue
            left = deadline - time.time()
            if left < 3:
                for s in batch:
                    results.append({"op": op, "shape": s, "tile": tile, "status": "skipped",
                                    "error": f"sweep budget of {a.budget:.0f} s spent"})
                continue
            got, err, dt = run_bench(a.unclip, a.device, op, tile, batch, a.reps, min(a.per_call, left))
            calls += 1
            print(f"sweep: {op:9s} {tile:15s} {len(got)}/{len(batch)} shapes in {dt:5.1f} s"
                  + (f"  ({err})" if err else ""), file=sys.stderr, flush=True)
            rest = [s for s in batch if s not in got]
            for s in batch:
                if s in got:
                    r = got[s]
                    results.append({"op": op, "shape": s, "tile": tile, "status": "ok",
                                    "seconds": seconds_of(r), "gflops": gflops_of(r), "raw": r})
            if rest and err and got and len(rest) > 1 and "timeout" not in err:
                # Failed part-way on a tile that works: isolate the failing shape.
                pending = [[s] for s in rest] + pending
            elif rest:
                # A tile the binary refuses ("--tile: ...") is rejected, not a failure.
                st = "rejected" if (err or "").startswith("--tile:") else "failed"
                for s in rest:
                    results.append({"op": op, "shape": s, "tile": tile, "status": st,
                                    "error": err or "no result printed"})
    # Winners: the fastest tile per (op, shape), the built-in choice (timed without --tile, its
    # tile resolved as the engine picks it) included, so that a table entry is never a tile
    # slower than what the engine would use without the table.
    best, base = {}, {}
    for r in results:
        if r["status"] != "ok" or r.get("gflops") is None:
            continue
        k = (r["op"], r["shape"])
        if r["tile"] == "default":
            base[k] = r
            t, src = default_tile(r["op"], r["shape"], r.get("raw", {}), dev)
            r["resolved_tile"], r["resolved_by"] = t, src
            if not t:
                continue
            r = dict(r, tile=t, from_default=True)
        if k not in best or r["gflops"] > best[k]["gflops"]:
            best[k] = r
    winners = []
    for op, s, _ in shapes:
        k = (op, s)
        w = {"op": op, "shape": s, "best_tile": None, "best_gflops": None,
             "default_tile": base[k].get("resolved_tile") if k in base else None,
             "default_gflops": base[k]["gflops"] if k in base else None, "speedup_vs_default": None}
        if k in best:
            w["best_tile"], w["best_gflops"] = best[k]["tile"], best[k]["gflops"]
            w["best_from"] = "built-in" if best[k].get("from_default") else "--tile"
            if w["default_gflops"]:
                w["speedup_vs_default"] = round(w["best_gflops"] / w["default_gflops"], 3)
        winners.append(w)
    entries = []
    for w in winners:
        if w["best_tile"]:
            e = {"op": w["op"], "shape": table_shape(w["op"], w["shape"]), "tile": w["best_tile"],
                 "gflops": round(w["best_gflops"], 3)}
            if e["shape"] != w["shape"]:
                e["bench_shape"] = w["shape"]
            if w["default_gflops"]:
                e["default_tile"] = w["default_tile"]
                e["default_gflops"] = round(w["default_gflops"], 3)
            entries.append(e)
    table = {"device": dev["name"] or "unknown", "tiles": entries}
    n_ok = sum(r["status"] == "ok" for r in results)
    n_fail = sum(r["status"] == "failed" for r in results)
    n_skip = sum(r["status"] == "skipped" for r in results)
    n_rej = sum(r["status"] == "rejected" for r in results)
    summary = {"set": a.set, "tiles_file": os.path.relpath(a.tiles), "reps": a.reps,
               "budget_seconds": a.budget, "processes": calls, "device": dev,
               "measured": n_ok, "failed": n_fail, "rejected": n_rej, "skipped": n_skip,
               "results": [{k: v for k, v in r.items() if k != "raw"} for r in results],
               "winners": winners, "table": table}
    with open(a.json, "w") as f:
        json.dump(summary, f, indent=1)
    if a.table:
        with open(a.table, "w") as f:
            json.dump(table, f, indent=1)
            f.write("\n")
    print(f"sweep: {n_ok} measured, {n_fail} failed, {n_rej} rejected, {n_skip} skipped in {calls} processes; "
          f"{len(entries)} table entries for {table['device']!r}", file=sys.stderr)
    # Fail (for gpu-run.sh's step status) only when nothing at all was measured.
    return 0 if n_ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiles", default=os.path.join(HERE, "tiles.txt"))
    ap.add_argument("--set", default="full", help="set of tiles.txt: full or quick")
    ap.add_argument("--list-shapes", action="store_true", help='print "op shape" lines and exit')
    ap.add_argument("--unclip", default=".gpu/unclip")
    ap.add_argument("--device", default="vulkan")
    ap.add_argument("--devices", help="output of `unclip devices` (device name and limits)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--budget", type=float, default=150, help="seconds for the whole sweep")
    ap.add_argument("--per-call", type=float, default=60, help="seconds for one bench process")
    ap.add_argument("--json", default="sweep.json", help="all results (for collect.py)")
    ap.add_argument("--table", help="write the tuning table here")
    a = ap.parse_args()
    if a.list_shapes:
        _, shapes = parse_tiles(a.tiles, a.set)
        for op, s, _ in shapes:
            print(op, s)
        return 0
    return sweep(a)


if __name__ == "__main__":
    sys.exit(main())
