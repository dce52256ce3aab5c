#!/usr/bin/env python3
"""A plain Python roofline walk over the same operator list, for comparison
with roofline_bench (LLM-Viewer-style tools evaluate per operator in Python).

Reads the per-operator FLOPs and bytes of one model/plan from
`lifeline explain --per-layer --format json` at two contexts (so FLOPs and
bytes are linear in the context), then evaluates time = sum over operators of
max(compute, memory) for a grid of (device, context) points and reports
points per second. Usage: python3 python_roofline.py build/lifeline [model]
"""
import json
import subprocess
import sys
import time


def ops_at(binary, model, ctx):
    out = subprocess.run([binary, "explain", "--model", model, "--plan", "w4w2-gateup", "--per-layer",
                          "--format", "json", "--context", str(ctx)], check=True, capture_output=True, text=True)
    rows = json.loads(out.stdout)["rows"]
    return [(r["flops"], r["weight_bytes"] + r["act_bytes"] + r["kv_bytes"]) for r in rows]


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "build/lifeline"
    model = sys.argv[2] if len(sys.argv) > 2 else "qwen3-4b"
    a, b = ops_at(binary, model, 1024), ops_at(binary, model, 2048)
    ops = [(fa, (fb - fa) / 1024, ba, (bb - ba) / 1024) for (fa, ba), (fb, bb) in zip(a, b)]
    devices = [((25 + 25 * j) * 1e12 * 0.5, (50 + 25 * i) * 1e9 * 0.786) for i in range(8) for j in range(8)]
    contexts = [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536]
    points = 0
    sink = 0.0
    start = time.perf_counter()
    while time.perf_counter() - start < 2.0:
        for ops_per_s, bytes_per_s in devices:
            for c in contexts:
                t = 0.0
                for f0, f1, b0, b1 in ops:
                    tc = (f0 + f1 * c) / ops_per_s
                    tm = (b0 + b1 * c) / bytes_per_s
                    t += tc if tc > tm else tm
                sink += t
                points += 1
    elapsed = time.perf_counter() - start
    print(f"python roofline walk: {model}, {len(ops)} operators, {points / elapsed:,.0f} points/s "
          f"({points} points in {elapsed:.2f} s)")


if __name__ == "__main__":
    main()
