#!/usr/bin/env python3
"""Trace size, record and replay time of real workloads, for this checkout and (side by side,
in the same run) another relive tree, e.g. main before a change of the trace format.

Workloads (issue 18):
  find    sh -c 'find /usr -type f -size +100k | wc -l'
  tar     tar -cf OUT/out.tar -C /usr/lib/python3.11 .
  pytest  (--pytest) python3 -m pytest -q on more-itertools' tests/test_more.py (--pytest DIR:
          the more-itertools checkout; skipped if not given)

For each workload, --repeat rounds, each running `relive record` then `relive replay -a` (the
replay must print what the recording printed) with each tree in turn. Shown: events, trace.db
bytes, bytes of copied files (files/: mapped files, on disk once when the file cache links
them), bytes per event (trace.db alone, and all of the trace), bytes of trace.db per MB the
program reads (its rchar, measured natively through a shell's /proc/PID/io, which counts the
children it waited for; getdents is not counted), and the medians of wall and CPU time (user
+ sys of relive and the program) of record and replay. The machine may be shared: CPU times
are the steadier figures.

Usage: python3 bench/bench_trace_size.py [--before DIR] [--repeat 3] [--pytest DIR]
       [--only find,tar] [--markdown]
"""

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import (BENCH_DIR, REPO_ROOT, describe_failure, print_cells, relive_cmd,
                      relive_env, trace_sizes)

OUT = BENCH_DIR / "out" / "trace_size"


def workloads(pytest_dir):
    out = {
        "find": ["sh", "-c", "find /usr -type f -size +100k | wc -l"],
        "tar": ["tar", "-cf", str(OUT / "out.tar"), "-C", "/usr/lib/python3.11", "."],
    }
    if pytest_dir:
        out["pytest"] = ["sh", "-c", f"cd {pytest_dir} && python3 -m pytest -q -p no:cacheprovider "
                                     "tests/test_more.py"]
    return out


def tree_env(tree):
    env = relive_env()
    if tree != REPO_ROOT:
        env["PYTHONPATH"] = str(tree)
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree)], check=True,
                       stdout=subprocess.DEVNULL)
    return env


def timed(cmd, env):
    """(completed process, wall seconds, CPU seconds of the children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    # (not in a checkout: `python3 -m` looks in the working directory first)
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          cwd=OUT)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return proc, wall, cpu


def bytes_read(cmd):
    """What the workload reads (rchar), run natively once, through a shell reading its own
    /proc/PID/io at the end (rchar counts its children once they are waited for)."""
    script = '"$@" >/dev/null; grep rchar /proc/$$/io'
    proc = subprocess.run(["sh", "-c", script, "sh", *cmd], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL)
    for line in proc.stdout.decode(errors="replace").splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return None


def one_round(tree, env, name, cmd, got, errors):
    """Record and replay once with `tree`'s relive, adding the figures to `got`."""
    trace = OUT / f"{name}-{tree.name}"
    rcmd = relive_cmd(sys.executable, "record", "-o", trace, "--force", *cmd)
    proc, rec_wall, rec_cpu = timed(rcmd, env)
    if proc.returncode != 0:
        errors.append(describe_failure(rcmd, proc))
        return False
    got["sizes"] = trace_sizes(trace)
    pcmd = relive_cmd(sys.executable, "replay", "-a", trace)
    rep, rep_wall, rep_cpu = timed(pcmd, env)
    if rep.returncode != 0 or rep.stdout != proc.stdout:
        errors.append(describe_failure(pcmd, rep) + " (or output differs)")
        return False
    for key, v in (("rec_wall", rec_wall), ("rec_cpu", rec_cpu), ("rep_wall", rep_wall),
                   ("rep_cpu", rep_cpu)):
        got.setdefault(key, []).append(v)
    shutil.rmtree(trace, ignore_errors=True)
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", type=Path, help="another relive tree to compare with")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pytest", type=Path, help="a more-itertools checkout")
    ap.add_argument("--only", default="", help="comma-separated workload names")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    trees = ([args.before.resolve()] if args.before else []) + [REPO_ROOT]
    cells, errors = [], []
    envs = {tree: tree_env(tree) for tree in trees}
    for name, cmd in workloads(args.pytest).items():
        if args.only and name not in args.only.split(","):
            continue
        read = bytes_read(cmd)
        got = {tree: {} for tree in trees}
        failed = set()
        for _ in range(args.repeat):  # the trees in turn within each round
            for tree in trees:
                if tree not in failed and not one_round(tree, envs[tree], name, cmd,
                                                        got[tree], errors):
                    failed.add(tree)
        med = statistics.median
        for tree in trees:
            label = "this checkout" if tree == REPO_ROOT else str(tree)
            g = got[tree]
            if tree in failed:
                cells.append([name, label] + ["n/a"] * 9)
                continue
            events, db, files = g["sizes"]
            cells.append([
                name, label, f"{events:,}", f"{db / 1e6:.1f} MB", f"{files / 1e6:.1f} MB",
                f"{db / events:.0f}", f"{(db + files) / events:.0f}",
                "n/a" if not read or read < 1e6 else f"{db / (read / 1e6) / 1e3:.0f} kB",
                f"{med(g['rec_wall']):.2f} s / {med(g['rec_cpu']):.2f} s",
                f"{med(g['rep_wall']):.2f} s / {med(g['rep_cpu']):.2f} s",
                f"{read / 1e6:.1f} MB" if read else "n/a"])
    print_cells(["workload", "relive", "events", "trace.db", "files/", "B/event (db)",
                 "B/event (all)", "db per MB read", "record wall / CPU",
                 "replay wall / CPU", "read"], cells, args.markdown)
    for e in errors:
        print(f"error: {e}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
