#!/usr/bin/env python3
"""`relive record` of one command under several configurations that take turns (A B C A B C
...), so that a busy machine disturbs each alike: medians and minima of the wall time and of
the CPU time (user + system of relive and the program, every thread), which a shared
machine's load disturbs less than the wall time.

Usage: python3 bench/record_ab.py [--rounds 7] NAME=CHECKOUT:SYSCALLBUF ... -- COMMAND...
  e.g. python3 bench/record_ab.py on=.:1 off=.:seccomp main=/tmp/main:1 \\
           -- tar -cf /tmp/out.tar -C /usr/lib/python3.11 .
CHECKOUT is put first on PYTHONPATH (a relive source tree), SYSCALLBUF is RELIVE_SYSCALLBUF.
"""
import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import relive_env


def main():
    argv = sys.argv[1:]
    if "--" not in argv:
        sys.exit(__doc__)
    cut = argv.index("--")
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("configs", nargs="+")
    args = ap.parse_args(argv[:cut])
    command = argv[cut + 1:]
    configs = []
    for spec in args.configs:
        name, _, rest = spec.partition("=")
        checkout, _, mode = rest.rpartition(":")
        configs.append((name, os.path.abspath(checkout), mode))
    times = {name: ([], []) for name, _, _ in configs}
    out = tempfile.mkdtemp(prefix="record-ab-")
    print("load average before: %.2f %.2f %.2f" % os.getloadavg(), flush=True)
    for _ in range(args.rounds):
        for name, checkout, mode in configs:
            trace = os.path.join(out, "t")
            shutil.rmtree(trace, ignore_errors=True)
            env = relive_env()
            env["PYTHONPATH"] = checkout
            env["RELIVE_SYSCALLBUF"] = mode
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "relive", "record", "-o", trace,
                                   *command], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE)
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if proc.returncode != 0:
                sys.exit(f"{name}: relive record failed: {proc.stderr.decode()[-500:]}")
            times[name][0].append(wall)
            times[name][1].append(after.ru_utime + after.ru_stime
                                  - before.ru_utime - before.ru_stime)
    shutil.rmtree(out, ignore_errors=True)
    print(f"| configuration | wall median (min) | CPU median (min) |  ({args.rounds} rounds)")
    print("|---|---:|---:|")
    for name, (wall, cpu) in times.items():
        print(f"| {name} | {statistics.median(wall):.3f} s ({min(wall):.3f} s) | "
              f"{statistics.median(cpu):.3f} s ({min(cpu):.3f} s) |")
    print("load average after: %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()
