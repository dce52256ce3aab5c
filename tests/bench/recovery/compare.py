#!/usr/bin/env python3
"""LibTorch C++ (recovery_bench) against PyTorch from Python (pytorch_step.py):
the same distillation training step and the same batched generation, with
the same torch thread count, in interleaved rounds (this class of machine
drifts by tens of percent between minutes), medians and their ratios.

PyTorch runs twice per round: as a Python user would run it (the process's
default environment) and in the environment lifeline-recover runs in
(OMP_WAIT_POLICY=PASSIVE, set by `lifeline` before it starts lifeline-recover,
and the malloc thresholds lifeline-recover sets: recovery/model/allocator.hpp),
so the ratio to the second is the code's, not the environment's.

  /usr/bin/python3 tests/bench/recovery/compare.py [--bench build/tests/bench/recovery/recovery_bench]
      [--threads 1,2] [--rounds 3]

Needs python3-torch (LIFELINE_PYTHON_REFERENCE=1 scripts/setup.sh) and the shared stories260K.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SAME_ENV = {"OMP_WAIT_POLICY": "PASSIVE",
            "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=268435456"}


def run_ours(bench, threads):
    env = dict(os.environ, LIFELINE_BENCH_THREADS=str(threads))
    out = subprocess.run([bench, "--benchmark_min_time=3", "--benchmark_format=json"], env=env, check=True,
                         capture_output=True, text=True).stdout
    res = {}
    for b in json.loads(out)["benchmarks"]:
        if b["name"].startswith("BM_DistillStep"):
            res["train_tokens_per_s"] = b["tokens_per_s"]
        elif b["name"].startswith("BM_Generate"):
            res["generate_positions_per_s"] = b["positions_per_s"]
    return res


def run_python(threads, extra_env):
    env = dict(os.environ)
    for k in SAME_ENV:
        env.pop(k, None)
    env.update(extra_env)
    out = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "pytorch_step.py"), "--threads", str(threads),
                          "--json"], env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default="build/tests/bench/recovery/recovery_bench")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    runs = {}  # (threads, side) -> list of results
    for rnd in range(args.rounds):
        for t in [int(x) for x in args.threads.split(",")]:
            for side, fn in (("lifeline", lambda: run_ours(args.bench, t)),
                             ("pytorch_default_env", lambda: run_python(t, {})),
                             ("pytorch_same_env", lambda: run_python(t, SAME_ENV))):
                r = fn()
                runs.setdefault((t, side), []).append(r)
                print(f"round {rnd + 1} threads {t} {side}: train {r['train_tokens_per_s']:.0f} tokens/s, "
                      f"generate {r['generate_positions_per_s']:.0f} positions/s", file=sys.stderr, flush=True)
    print("| threads | side | train tokens/s (median) | generate positions/s (median) | train ratio | generate ratio |")
    print("|---:|---|---:|---:|---:|---:|")
    for t in sorted({k[0] for k in runs}):
        ours = {m: statistics.median(r[m] for r in runs[(t, "lifeline")])
                for m in ("train_tokens_per_s", "generate_positions_per_s")}
        for side in ("lifeline", "pytorch_default_env", "pytorch_same_env"):
            med = {m: statistics.median(r[m] for r in runs[(t, side)]) for m in ours}
            ratio = "" if side == "lifeline" else \
                f"{ours['train_tokens_per_s'] / med['train_tokens_per_s']:.2f}"
            gratio = "" if side == "lifeline" else \
                f"{ours['generate_positions_per_s'] / med['generate_positions_per_s']:.2f}"
            print(f"| {t} | {side} | {med['train_tokens_per_s']:.0f} | {med['generate_positions_per_s']:.0f} | "
                  f"{ratio} | {gratio} |")
    print(f"\nratio = lifeline / PyTorch (above 1: lifeline is faster); medians of {args.rounds} interleaved rounds.")


if __name__ == "__main__":
    main()
