#!/usr/bin/env python3
"""Benchmark relive record/replay of multi-threaded programs against native runs.

Two workloads, both built with gcc -O2 -pthread:
  threads_cpu   bench/bench_threads_cpu.c: 4 pthreads each run a pure computation (no
                syscalls in the loop, ~0.25 s per thread natively), main joins and prints
  pingpong      bench/bench_pingpong.c: two threads pass a byte back and forth --rounds
                times through two pipes (4 syscalls per round trip), main prints a checksum

For each, measures the median wall time over --repeat rounds of:
  native        the program on its own, on all CPUs
  native 1 CPU  the program under `taskset -c CPU`, CPU being the one relive pins to
  record        python3 -m relive record -o DIR --force PROGRAM ARGS
  replay        python3 -m relive replay --autopilot DIR
The four commands run one after the other in each round (so the ratios are measured side by
side), and each replay replays the trace recorded in the same round.

relive pins the recorder and the tracee to one CPU (tracee/spawn.py pin_to_one_cpu; here
$RELIVE_CPU, by default the first allowed CPU: benchlib.relive_env), and runs the recorded
threads one at a time, so a recording of threads_cpu serialises the 4 threads that run in
parallel natively; the honest comparisons are both native columns.

The trace columns come from DIR/trace.db of the last recording: events by kind (counted with
sqlite3), and the size of DIR/trace.db* (not the copies of the mapped files) divided by the
number of SYSCALL events (bytes/syscall) and by all events (bytes/event).

Replay must be faithful: the stdout of every record and replay run must be byte-identical to
the native output (both programs are deterministic), and every replay's stdout identical to
the recording it replays. If it is not, or a command fails, the script says so loudly under
the table and exits 1.

Usage: python3 bench/bench_threads.py [--repeat 5] [--markdown]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import (BENCH_DIR, REPO_ROOT, describe_failure, fmt_ratio, fmt_time, host_description,
                      print_cells, relive_cmd, relive_env)


# ~0.25 s per thread at -O2 here (the loop runs ~640M iterations per second on one CPU).
CPU_ITERS = 160_000_000
PINGPONG_ROUNDS = 5_000
NTHREADS = 4  # fixed in bench_threads_cpu.c

# Event kinds (tracefile/records.py Kind).
KIND_NAMES = {1: "exec", 2: "syscall", 3: "signal", 4: "rdtsc", 5: "exit", 6: "mapping",
              7: "enter", 8: "preempt"}
SYSCALL, ENTER, PREEMPT = 2, 7, 8


class Failed(Exception):
    pass


def compile_all(out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    bins = {}
    for name, src in (("bench_threads_cpu", BENCH_DIR / "bench_threads_cpu.c"),
                      ("bench_pingpong", BENCH_DIR / "bench_pingpong.c")):
        binary = out_dir / name
        proc = subprocess.run(["gcc", "-O2", "-pthread", "-o", str(binary), str(src)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"compiling {src} failed:\n{proc.stderr}")
        bins[name] = binary
    return bins






def relive_cpu(env):
    """The CPU relive pins to with `env` (benchlib.relive_env sets $RELIVE_CPU), or None."""
    choice = env["RELIVE_CPU"]
    if choice == "none":
        return None
    allowed = sorted(os.sched_getaffinity(0))
    return int(choice) if choice.isdigit() and int(choice) in allowed else allowed[0]




def run_once(cmd, env=None, timeout=600):
    """Run cmd once; return (seconds, stdout bytes). Raise Failed unless it exits 0."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                              env=env, timeout=timeout, cwd=REPO_ROOT)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Failed(f"`{' '.join(map(str, cmd))}`: {e}") from None
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise Failed(describe_failure(cmd, proc))
    return elapsed, proc.stdout


def count_events(trace_dir):
    """Events of DIR/trace.db by kind, and the size of DIR/trace.db* in bytes."""
    db = trace_dir / "trace.db"
    if not db.is_file():
        raise Failed(f"no {db}")
    sys.path.insert(0, str(REPO_ROOT))  # events are in compressed chunks: read them
    from collections import Counter

    from tracefile.errors import TraceError
    from tracefile.reader import TraceReader
    try:
        reader = TraceReader(trace_dir)
        try:
            kinds = dict(Counter(int(e.kind) for e in reader.events()))
        finally:
            reader.close()
    except TraceError as e:
        raise Failed(f"reading {db}: {e}") from None
    size = sum(f.stat().st_size for f in trace_dir.glob("trace.db*") if f.is_file())
    return kinds, size


def bench_workload(name, argv, args, env, cpu, errors, unfaithful):
    """Return a dict of results (None = n/a) for one workload."""
    res = {"workload": name}
    trace_dir = args.out / "traces" / name
    trace_dir.parent.mkdir(parents=True, exist_ok=True)
    pinned = ["taskset", "-c", str(cpu)] if cpu is not None else []
    commands = {
        "native": argv,
        "native1": pinned + argv,
        "record": relive_cmd(args.python, "record", "-o", trace_dir, "--force", *argv),
        "replay": relive_cmd(args.python, "replay", "--autopilot", trace_dir),
    }
    envs = {"record": env, "replay": env}

    # Untimed warm-up native run (page cache); its stdout is what every run must print.
    try:
        _, expected = run_once(argv, timeout=args.timeout)
    except Failed as e:
        errors.append(f"{name} / native: {e}")
        return res
    res["output"] = expected

    times = {key: [] for key in commands}
    broken, recorded = set(), None
    for _ in range(args.repeat):
        for key, cmd in commands.items():
            if key in broken or (key == "replay" and "record" in broken):
                continue
            try:
                t, out = run_once(cmd, envs.get(key), args.timeout)
            except Failed as e:
                errors.append(f"{name} / {key}: {e}")
                broken.add(key)
                continue
            times[key].append(t)
            if key == "record":
                recorded = out
            elif key == "replay" and out != recorded:
                unfaithful.append(f"{name} / replay: stdout differs from the recording of "
                                  f"the same round ({len(out)} vs {len(recorded)} bytes)")
            if out != expected:
                unfaithful.append(
                    f"{name} / {key}: stdout differs from the native run "
                    f"({len(out)} vs {len(expected)} bytes):\n"
                    f"    native: {expected[:200]!r}\n    {key}: {out[:200]!r}")
    for key, ts in times.items():
        res[key] = statistics.median(ts) if ts and key not in broken else None

    if "record" not in broken:
        try:
            kinds, size = count_events(trace_dir)
        except Failed as e:
            errors.append(f"{name} / trace: {e}")
        else:
            res["kinds"], res["trace_bytes"] = kinds, size
            res["events"] = sum(kinds.values())
            res["syscalls"] = kinds.get(SYSCALL, 0)
    return res






COLUMNS = ["workload", "native", "native 1 CPU", "record", "replay", "rec/native",
           "rec/1 CPU", "rep/native", "rep/1 CPU", "syscalls", "events",
           "bytes/syscall", "bytes/event"]


def row_cells(r):
    g = r.get
    kinds = g("kinds") or {}
    ev = g("events")
    events = "n/a" if ev is None else (
        f"{ev} ({kinds.get(ENTER, 0)} enter, {kinds.get(PREEMPT, 0)} preempt)")
    size = g("trace_bytes")
    def per(n):
        return "n/a" if size is None or not n else f"{size / n:.1f}"
    return [
        r["workload"], fmt_time(g("native")), fmt_time(g("native1")),
        fmt_time(g("record")), fmt_time(g("replay")),
        fmt_ratio(g("record"), g("native")), fmt_ratio(g("record"), g("native1")),
        fmt_ratio(g("replay"), g("native")), fmt_ratio(g("replay"), g("native1")),
        "n/a" if g("syscalls") is None else str(g("syscalls")),
        events, per(g("syscalls")), per(ev),
    ]


def print_table(rows, markdown):
    print_cells(COLUMNS, [row_cells(r) for r in rows], markdown)


def per_syscall_lines(rows):
    """Time above the 1-CPU native run per SYSCALL event, for syscall-bound rows."""
    out = []
    for r in rows:
        if r["workload"] != "pingpong":
            continue
        n, base = r.get("syscalls"), r.get("native1")
        for key in ("record", "replay"):
            if n and base is not None and r.get(key) is not None:
                out.append(f"{r['workload']} {key}: {(r[key] - base) / n * 1e6:.1f} µs per "
                           f"syscall above native on 1 CPU (start-up included)")
    return out




def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5,
                    help="rounds per measurement; the median is reported (default 5)")
    ap.add_argument("--markdown", action="store_true",
                    help="print a Markdown table (for docs/performance.md)")
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter used for `python3 -m relive` (default: this one)")
    ap.add_argument("--out", type=Path, default=BENCH_DIR / "out",
                    help="build and trace directory (default bench/out)")
    ap.add_argument("--timeout", type=float, default=600,
                    help="per-run timeout, seconds (default 600)")
    ap.add_argument("--cpu-iters", type=int, default=CPU_ITERS,
                    help=f"loop iterations per thread of threads_cpu (default {CPU_ITERS:,})")
    ap.add_argument("--rounds", type=int, default=PINGPONG_ROUNDS,
                    help=f"round trips of pingpong (default {PINGPONG_ROUNDS:,})")
    ap.add_argument("--workload", action="append", choices=["threads_cpu", "pingpong"],
                    help="run only this workload (repeatable)")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    args.out = args.out.resolve()

    bins = compile_all(args.out)
    workloads = {
        "threads_cpu": [str(bins["bench_threads_cpu"]), str(args.cpu_iters)],
        "pingpong": [str(bins["bench_pingpong"]), str(args.rounds)],
    }
    selected = args.workload or list(workloads)
    env = relive_env()
    cpu = relive_cpu(env)
    errors, unfaithful, rows = [], [], []
    for name in selected:
        print(f"... {name}", file=sys.stderr, flush=True)
        rows.append(bench_workload(name, workloads[name], args, env, cpu, errors, unfaithful))

    descr = {
        "threads_cpu": (f"bench_threads_cpu.c, {NTHREADS} threads x {args.cpu_iters:,} "
                        "iterations, no syscalls in the loop"),
        "pingpong": (f"bench_pingpong.c, {args.rounds:,} round trips of one byte between "
                     "2 threads over 2 pipes"),
    }
    pin = ("native 1 CPU = `taskset -c {0}`, the CPU relive pins to".format(cpu)
           if cpu is not None else "RELIVE_CPU=none: relive does not pin, nor does native 1 CPU")
    header = (f"Median wall time of {args.repeat} round(s); host: "
              f"{host_description()}; {pin}.")
    if args.markdown:
        print(header + "\n")
        for name in selected:
            print(f"- `{name}`: {descr[name]}")
        print()
    else:
        print(header)
    print_table(rows, args.markdown)
    notes = per_syscall_lines(rows)
    if notes:
        print()
        for n in notes:
            print(f"- {n}" if args.markdown else n)
    if errors:
        print("\nn/a cells:" if not args.markdown else "\nn/a cells:\n")
        for e in errors:
            print(f"- {e}")
    if unfaithful:
        print("\nREPLAY NOT FAITHFUL:" if not args.markdown else "\nREPLAY NOT FAITHFUL:\n")
        for u in unfaithful:
            print(f"- {u}")
    elif not errors:
        print("\nFaithful: the stdout of every record and replay run was identical to the "
              "native run's.")
    if unfaithful or errors:
        print("bench_threads: FAILED (see above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
