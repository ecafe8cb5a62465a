#!/usr/bin/env python3
"""Assembles gpu-run.json from the step logs of bench/device/gpu-run.sh (standard library only).

    collect.py --work DIR --out gpu-run.json [--root REPO] [--set full|quick] [--started EPOCH]
               [--budget S] [--loader TEXT] [--table vk-tuning.json]

DIR holds steps.tsv (name, status, seconds, exit status, note per step) and NAME.out/.err of each
step; see bench/device/README.md for the fields of the result. Exits 0 when the JSON was written.
"""
import argparse
import datetime
import json
import os
import platform
import re
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the checkout
sys.path.insert(0, HERE)
import sweep as sweepmod  # noqa: E402  (device_info)

STEPS = ["devices", "conformance", "verify_fp32", "verify_fp16", "sweep", "table_check",
         "pipeline_fp32", "pipeline_fp16", "torch"]


def read(work, name, limit=None):
    try:
        with open(os.path.join(work, name), errors="replace") as f:
            s = f.read()
    except OSError:
        return None
    return s[-limit:] if limit and len(s) > limit else s


def tail(text, n):
    if not text:
        return []
    return [l for l in text.rstrip("\n").splitlines()][-n:]


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run(cmd, timeout=20):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return p.stdout.strip() if p.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def host_info():
    h = {"hostname": socket.gethostname(), "kernel": " ".join(platform.uname()[i] for i in (0, 2, 4)),
         "cores": os.cpu_count(), "python": platform.python_version()}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                h["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                h["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    smi = run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"])
    if smi:
        h["nvidia_smi"] = smi.splitlines()
    return h


def git_info(root):
    info = {"commit": "unknown", "source": "none"}
    c = run(["git", "-C", root, "rev-parse", "HEAD"])
    if c:
        info.update(commit=c, source="git")
        st = run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"])
        info["dirty"] = bool(st)
    try:
        b = json.load(open(os.path.join(root, ".gpu", "build-info.json")))
        if info["source"] == "none" and b.get("commit"):
            info.update(commit=b["commit"], source=".gpu/build-info.json", dirty=b.get("dirty"))
    except (OSError, ValueError):
        pass
    return info


def conformance(work):
    out = (read(work, "conformance.out") or "") + (read(work, "conformance.err") or "")
    r = {"tests": {"passed": 0, "failed": 0, "skipped": 0},
         "subtests": {"passed": 0, "failed": 0, "skipped": 0}, "failed_tests": []}
    for m in re.finditer(r"^(\s*)--- (PASS|FAIL|SKIP): (\S+)", out, re.M):
        kind = "tests" if not m.group(1) else "subtests"
        key = {"PASS": "passed", "FAIL": "failed", "SKIP": "skipped"}[m.group(2)]
        r[kind][key] += 1
        if key == "failed":
            r["failed_tests"].append(m.group(3))
    m = re.search(r"^panic: test timed out after (\S+)", out, re.M)
    if m:
        r["timed_out_after"] = m.group(1)
        run_ = re.findall(r"^\s+(Test\S+) \(", out[m.end():], re.M)
        r["running_at_timeout"] = sorted(set(run_))[:20]
    m = re.search(r"^\S+: (\d+) fixture test\(s\) skipped: (.*)$", out, re.M)
    if m:
        r["fixture_skips"] = m.group(0)
    if r["tests"]["failed"] or "timed_out_after" in r or not any(r["tests"].values()):
        r["log_tail"] = tail(out, 40)
    return r


def verify(work, name):
    out = (read(work, name + ".out") or "") + "\n" + (read(work, name + ".err") or "")
    r = {"passed": None, "failed": None, "failures": []}
    m = re.findall(r"^(\d+) passed, (\d+) failed", out, re.M)
    if m:
        r["passed"], r["failed"] = int(m[-1][0]), int(m[-1][1])
    r["failures"] = [l for l in out.splitlines() if l.startswith("FAIL")][:40]
    if r["passed"] is None:
        r["log_tail"] = tail(out, 20)
    return r


STAGE = re.compile(r"^(\w+)\s+(\d+) steps\s+([\d.]+) s\s+([\d.]+) s/step(.*)$")


def pipeline(work, name):
    out, err = read(work, name + ".out") or "", read(work, name + ".err") or ""
    r = {"result": None}
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                o = json.loads(line)
            except ValueError:
                continue
            if "stages" in o:
                r["result"] = o
            elif "error" in o:
                r["error"] = o["error"]
    if r["result"] is None:
        # Cut short (timeout, error): the stages it finished, from its progress lines.
        stages = []
        for line in err.splitlines():
            m = STAGE.match(line.strip())
            if m:
                s = {"stage": m.group(1), "steps": int(m.group(2)), "seconds": float(m.group(3)),
                     "seconds_per_step": float(m.group(4))}
                d = re.search(r"([\d.]+) dispatches/step", m.group(5))
                if d:
                    s["dispatches_per_step"] = float(d.group(1))
                stages.append(s)
        r["partial_stages"] = stages
        r["log_tail"] = tail(err, 15)
    b = re.search(r"^built in (\S+)", err, re.M)
    if b:
        r["built_in"] = b.group(1)
    return r


def torch(work):
    res = []
    for line in (read(work, "torch.out") or "").splitlines():
        if line.startswith("{"):
            try:
                res.append(json.loads(line))
            except ValueError:
                pass
    r = {"results": res}
    if not res:
        r["log_tail"] = tail(read(work, "torch.err"), 15)
    return r


def comparison(sw, th):
    """Our f32 kernels (built-in tile, best tile) beside PyTorch fp32 and fp16, per shape."""
    if not sw:
        return []
    tor = {}
    for t in th.get("results", []):
        g = t.get("gflops") or (t.get("tflops", 0) * 1e3)
        tor[(t.get("op"), t.get("shape"), t.get("dtype"))] = g
    rows = []
    for w in sw.get("winners", []):
        k = (w["op"], w["shape"])
        row = {"op": w["op"], "shape": w["shape"], "ours_default_gflops": w.get("default_gflops"),
               "ours_best_tile": w.get("best_tile"), "ours_best_gflops": w.get("best_gflops"),
               "torch_fp32_gflops": tor.get(k + ("fp32",)), "torch_fp16_gflops": tor.get(k + ("fp16",))}
        ours = row["ours_best_gflops"] or row["ours_default_gflops"]
        if ours and row["torch_fp32_gflops"]:
            row["ours_vs_torch_fp32"] = round(ours / row["torch_fp32_gflops"], 4)
        rows.append(row)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--root", default=os.getcwd())
    ap.add_argument("--set", default="full")
    ap.add_argument("--started", type=float, default=time.time())
    ap.add_argument("--budget", type=float)
    ap.add_argument("--loader", default="")
    ap.add_argument("--table")
    a = ap.parse_args()
    w = a.work

    steps = {}
    for line in (read(w, "steps.tsv") or "").splitlines():
        f = line.split("\t")
        if len(f) < 5:
            continue
        name, status, secs, rc, note = f[:5]
        st = {"status": status, "seconds": float(secs) if secs else 0.0}
        if rc != "":
            st["exit_status"] = int(rc)
        if note:
            st["note" if status != "skipped" else "reason"] = note
        steps[name] = st
    for name in STEPS:
        steps.setdefault(name, {"status": "skipped", "seconds": 0.0, "reason": "not reached"})

    def ran(name):
        return steps[name]["status"] != "skipped"

    if ran("devices"):
        steps["devices"]["text"] = (read(w, "devices.out") or "") + (read(w, "devices.err") or "")
    if ran("conformance"):
        steps["conformance"].update(conformance(w))
    for p in ("verify_fp32", "verify_fp16"):
        if ran(p):
            steps[p].update(verify(w, p))
    sw = None
    if ran("sweep"):
        try:
            sw = json.load(open(os.path.join(w, "sweep.json")))
            steps["sweep"].update({k: v for k, v in sw.items() if k != "table"})
        except (OSError, ValueError):
            steps["sweep"]["log_tail"] = tail(read(w, "sweep.err"), 20)
        steps["sweep"]["progress"] = tail(read(w, "sweep.err"), 200)
    if ran("table_check"):
        steps["table_check"]["output"] = tail((read(w, "table_check.out") or "") + (read(w, "table_check.err") or ""), 5)
    for p in ("pipeline_fp32", "pipeline_fp16"):
        if ran(p):
            steps[p].update(pipeline(w, p))
    th = torch(w) if ran("torch") else {}
    if ran("torch"):
        steps["torch"].update(th)

    table = None
    if a.table and os.path.exists(a.table):
        try:
            table = json.load(open(a.table))
        except (OSError, ValueError):
            table = None
    now = time.time()
    doc = {
        "schema": "unclip-gpu-run/1",
        "set": a.set, "quick": a.set == "quick",
        "started": iso(a.started), "finished": iso(now), "wall_seconds": round(now - a.started, 1),
        "budget_seconds": a.budget,
        "host": host_info(),
        "git": git_info(a.root),
        "vulkan_loader": a.loader,
        "device": sweepmod.device_info(os.path.join(w, "devices.out")),
        "summary": {n: steps[n]["status"] for n in STEPS},
        "steps": {n: steps[n] for n in STEPS},
        "tuning_table_file": os.path.basename(a.table) if table else None,
        "tuning_table": table,
        "comparison": comparison(sw, th),
    }
    try:
        doc["build"] = json.load(open(os.path.join(a.root, ".gpu", "build-info.json")))
    except (OSError, ValueError):
        doc["build"] = None
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    os.replace(tmp, a.out)
    print("summary: " + ", ".join(f"{n} {steps[n]['status']}" for n in STEPS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
