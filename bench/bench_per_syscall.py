#!/usr/bin/env python3
"""Marginal cost of one syscall: record and replay, compiled fast path on and off, vs the floor.

Each configuration runs tests/programs/many_syscalls.c with N getppid calls and with none;
(median time with N - median time with 0) / N is the cost of one syscall, free of the fixed
start-up costs (Python, imports, spawning, the trace database) that dominate short runs. The
configurations alternate within each round so that load from other work spreads over all of
them. The floor is bench/ptrace_floor.c pinned to the same CPU as relive; `floor -t` makes
rdtsc fault in the program as relive does (PR_SET_TSC), which costs on every context switch.

Usage: python3 bench/bench_per_syscall.py [--repeat 5] [--calls 20000]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import BENCH_DIR, REPO_ROOT, relive_cmd, relive_env

PROGRAM = REPO_ROOT / "tests" / "programs" / "many_syscalls.c"


def build(out: Path) -> tuple[Path, Path]:
    prog, floor = out / "many_syscalls", out / "ptrace_floor"
    for cc, src, binary in ((["gcc", "-O0"], PROGRAM, prog),
                            (["gcc", "-O2"], BENCH_DIR / "ptrace_floor.c", floor)):
        subprocess.run([*cc, "-o", str(binary), str(src)], check=True)
    return prog, floor


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          cwd=REPO_ROOT)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"`{' '.join(cmd)}` failed: {proc.stderr.decode(errors='replace')[-500:]}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--calls", type=int, default=20000)
    args = ap.parse_args()
    python = sys.executable
    cpu = str(min(os.sched_getaffinity(0)))
    with tempfile.TemporaryDirectory(prefix="relive-bench-") as tmp:
        work = Path(tmp)
        prog, floor = build(work)
        times: dict[tuple[str, int], list[float]] = {}
        for _ in range(args.repeat):
            for n in (0, args.calls):
                argv = [str(prog), str(n)]
                times.setdefault(("floor", n), []).append(
                    timed(["taskset", "-c", cpu, str(floor), *argv], relive_env()))
                times.setdefault(("floor -t", n), []).append(
                    timed(["taskset", "-c", cpu, str(floor), "-t", *argv], relive_env()))
                for fast in ("1", "0"):
                    env = dict(relive_env(), RELIVE_FASTPATH=fast)
                    trace = work / f"t{fast}-{n}"
                    rec = relive_cmd(python, "record", "-o", trace, "--force", *argv)
                    times.setdefault((f"record fast={fast}", n), []).append(timed(rec, env))
                    rep = relive_cmd(python, "replay", "--autopilot", trace)
                    times.setdefault((f"replay fast={fast}", n), []).append(timed(rep, env))
    per = {}
    for what in ("floor", "floor -t", "record fast=1", "record fast=0", "replay fast=1",
                 "replay fast=0"):
        hi = statistics.median(times[what, args.calls])
        lo = statistics.median(times[what, 0])
        per[what] = (hi - lo) / args.calls * 1e6
    print(f"Median of {args.repeat} round(s), {args.calls} getppid, CPU {cpu}; load average "
          f"{os.getloadavg()[0]:.2f} at the end.\n")
    print("| | µs per syscall | / floor | / floor -t |")
    print("|---|---:|---:|---:|")
    for what, us in per.items():
        print(f"| {what} | {us:.1f} | {us / per['floor']:.2f}x | {us / per['floor -t']:.2f}x |")


if __name__ == "__main__":
    main()
