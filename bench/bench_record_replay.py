#!/usr/bin/env python3
"""Benchmark relive record/replay against native runs and the ptrace floor.

For each workload, measures the median wall time over --repeat runs of:
  native    the program on its own
  floor     the program under bench/ptrace_floor (PTRACE_SYSCALL + GETREGS
            at every stop: the least any syscall-stopping tracer can cost)
  record    python3 -m relive record -o DIR --force PROGRAM ARGS
  replay    python3 -m relive replay --autopilot DIR
and prints absolute times, ratios, the syscall count seen by `ptrace_floor -c`
and trace bytes per syscall (size of DIR/trace.db* divided by the `events: N`
line of `python3 -m relive info DIR`; the event count is shown next to it).
The four run in turn within each of the --repeat rounds. `true` (/bin/true) shows the fixed
cost alone; cpu_loop and cpu_loop_5x the same loop-only program at ~1 s and ~5 s natively;
prof_timer a profiling timer's signals arriving while the program computes (gcc -pg's case);
tar a real program reading files and writing an archive (/usr/share/doc, into --out).

Cells whose command fails (e.g. the relive CLI does not exist yet) are shown
as n/a and the error is listed under the table.

Usage: python3 bench/bench_record_replay.py [--repeat 5] [--markdown]
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import (BENCH_DIR, REPO_ROOT, describe_failure, fmt_ratio, fmt_time, host_description,
                      print_cells, relive_cmd, relive_env)

PROGRAMS_DIR = REPO_ROOT / "tests" / "programs"

# ~1 s of work at -O0 (cpu_loop.c runs ~400M iterations per second here).
CPU_LOOP_ITERS = 400_000_000
MANY_SYSCALLS_N = 20_000


class Failed(Exception):
    pass


def compile_all(out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    builds = {
        "cpu_loop": (["gcc", "-O0", "-g", f"-DCPU_LOOP_ITERS={CPU_LOOP_ITERS}UL"],
                     PROGRAMS_DIR / "cpu_loop.c"),
        "cpu_loop_5x": (["gcc", "-O0", "-g", f"-DCPU_LOOP_ITERS={5 * CPU_LOOP_ITERS}UL"],
                        PROGRAMS_DIR / "cpu_loop.c"),
        "many_syscalls": (["gcc", "-O0", "-g"], PROGRAMS_DIR / "many_syscalls.c"),
        "prof_timer": (["gcc", "-O0", "-g"], PROGRAMS_DIR / "prof_timer.c"),
        "ptrace_floor": (["gcc", "-O2"], BENCH_DIR / "ptrace_floor.c"),
    }
    bins = {}
    for name, (cc, src) in builds.items():
        binary = out_dir / name
        proc = subprocess.run([*cc, "-o", str(binary), str(src)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"compiling {src} failed:\n{proc.stderr}")
        bins[name] = binary
    return bins


def run_once(cmd, expect_rc, env=None, timeout=600):
    """Run cmd once; return (seconds, stdout bytes). Raise Failed on error."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                              env=env, timeout=timeout, cwd=REPO_ROOT)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Failed(f"`{' '.join(map(str, cmd))}`: {e}") from None
    elapsed = time.perf_counter() - start
    if expect_rc is not None and proc.returncode != expect_rc:
        raise Failed(describe_failure(cmd, proc))
    return elapsed, proc.stdout


def trace_bytes_per_syscall(python, trace_dir, env):
    files = list(trace_dir.glob("trace.db*"))
    if not files:
        raise Failed(f"no trace.db* files in {trace_dir}")
    size = sum(f.stat().st_size for f in files if f.is_file())
    cmd = relive_cmd(python, "info", trace_dir)
    try:
        proc = subprocess.run(cmd, capture_output=True, env=env, timeout=120,
                              cwd=REPO_ROOT)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Failed(f"relive info: {e}") from None
    if proc.returncode != 0:
        raise Failed(describe_failure(cmd, proc))
    m = re.search(rb"^\s*events:\s*(\d+)", proc.stdout, re.MULTILINE)
    if not m:
        raise Failed("relive info printed no `events: N` line")
    events = int(m.group(1))
    if events == 0:
        raise Failed("relive info reports 0 events")
    return size / events, events, size


def count_syscalls(bins, argv):
    """Syscall entries seen by `ptrace_floor -c` (a cross-check for events)."""
    proc = subprocess.run([str(bins["ptrace_floor"]), "-c", *argv],
                          capture_output=True, stdin=subprocess.DEVNULL)
    m = re.search(rb"ptrace_floor: syscalls=(\d+)", proc.stderr)
    if not m:
        raise Failed("ptrace_floor -c printed no syscall count")
    return int(m.group(1))


def bench_workload(name, argv, bins, args, env, errors):
    """Return a dict of results (None = n/a) for one workload. The four configurations run
    in turn within each round, so load from other work spreads over all of them."""
    res = {"workload": name}
    # Untimed warm-up native run (page cache); its exit status is what every
    # other run must reproduce.
    try:
        rc = subprocess.run(argv, capture_output=True,
                            stdin=subprocess.DEVNULL).returncode
    except OSError as e:
        errors.append(f"{name} / native: {e}")
        return res
    trace_dir = args.out / "traces" / name
    trace_dir.parent.mkdir(parents=True, exist_ok=True)
    # relive pins tracer and tracee to one CPU (see tracee/spawn.py); the floor gets the same
    # treatment so both pay the same-CPU ptrace round trip.
    commands = {
        "native": (argv, None),
        "floor": (["taskset", "-c", str(min(os.sched_getaffinity(0))),
                   str(bins["ptrace_floor"]), *argv], None),
        "record": (relive_cmd(args.python, "record", "-o", trace_dir, "--force", *argv), env),
        "replay": (relive_cmd(args.python, "replay", "--autopilot", trace_dir), env),
    }
    times = {key: [] for key in commands}
    outputs = {}
    for _ in range(args.repeat):
        for key, (cmd, cmd_env) in commands.items():
            if times[key] is None or (key == "replay" and times["record"] is None):
                continue
            try:
                elapsed, outputs[key] = run_once(cmd, rc, cmd_env, args.timeout)
                times[key].append(elapsed)
            except Failed as e:
                errors.append(f"{name} / {key}: {e}")
                times[key] = None
    for key, values in times.items():
        res[key] = statistics.median(values) if values else None
    if outputs.get("replay") not in (None, outputs.get("record")):
        errors.append(f"{name} / replay: stdout differs from the recording "
                      f"({len(outputs['replay'])} vs {len(outputs['record'])} bytes)")
    try:
        res["syscalls"] = count_syscalls(bins, argv)
        if res["record"] is not None:
            res["bytes_per_syscall"], res["events"], res["trace_bytes"] = \
                trace_bytes_per_syscall(args.python, trace_dir, env)
    except Failed as e:
        errors.append(f"{name} / counts: {e}")
    return res


COLUMNS = ["workload", "native", "floor", "record", "replay", "rec/native",
           "rec/floor", "rep/native", "rep/floor", "syscalls", "bytes/syscall"]


def row_cells(r):
    g = r.get
    bps = g("bytes_per_syscall")
    return [
        r["workload"], fmt_time(g("native")), fmt_time(g("floor")),
        fmt_time(g("record")), fmt_time(g("replay")),
        fmt_ratio(g("record"), g("native")), fmt_ratio(g("record"), g("floor")),
        fmt_ratio(g("replay"), g("native")), fmt_ratio(g("replay"), g("floor")),
        "n/a" if g("syscalls") is None else str(g("syscalls")),
        "n/a" if bps is None else f"{bps:.1f} ({g('events')} ev)",
    ]


def print_table(rows, markdown):
    print_cells(COLUMNS, [row_cells(r) for r in rows], markdown)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5,
                    help="runs per measurement; the median is reported (default 5)")
    ap.add_argument("--markdown", action="store_true",
                    help="print a Markdown table (for docs/performance.md)")
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter used for `python3 -m relive` (default: this one)")
    ap.add_argument("--out", type=Path, default=BENCH_DIR / "out",
                    help="build and trace directory (default bench/out)")
    ap.add_argument("--timeout", type=float, default=600,
                    help="per-run timeout for record/replay, seconds (default 600)")
    ap.add_argument("--workload", action="append", choices=[
        "true", "cpu_loop", "cpu_loop_5x", "many_syscalls", "prof_timer", "python3_startup",
        "tar"],
                    help="run only this workload (repeatable)")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    args.out = args.out.resolve()

    bins = compile_all(args.out)
    workloads = {
        "true": ["/bin/true"],
        "cpu_loop": [str(bins["cpu_loop"])],
        "cpu_loop_5x": [str(bins["cpu_loop_5x"])],
        "many_syscalls": [str(bins["many_syscalls"]), str(MANY_SYSCALLS_N)],
        "prof_timer": [str(bins["prof_timer"])],
        "python3_startup": ["/usr/bin/python3", "-c", "pass"],
        "tar": ["tar", "cf", str(args.out / "doc.tar"), "-C", "/usr/share", "doc"],
    }
    selected = args.workload or list(workloads)
    env = relive_env()
    errors, rows = [], []
    for name in selected:
        print(f"... {name}", file=sys.stderr, flush=True)
        rows.append(bench_workload(name, workloads[name], bins, args, env, errors))

    descr = {
        "true": "/bin/true: the fixed cost (start-up and end) alone",
        "cpu_loop": f"cpu_loop.c, {CPU_LOOP_ITERS:,} iterations, no syscalls",
        "cpu_loop_5x": f"cpu_loop.c, {5 * CPU_LOOP_ITERS:,} iterations, no syscalls",
        "many_syscalls": f"many_syscalls.c, {MANY_SYSCALLS_N:,} getppid()",
        "prof_timer": "prof_timer.c: SIGPROF every 10 ms of CPU time during ~1 s of calls",
        "python3_startup": "/usr/bin/python3 -c pass",
        "tar": "tar cf OUT/doc.tar -C /usr/share doc (files read, an archive written)",
    }
    header = (f"Median wall time of {args.repeat} run(s); host: "
              f"{host_description()}.")
    if args.markdown:
        print(header + "\n")
        for name in selected:
            print(f"- `{name}`: {descr[name]}")
        print()
    else:
        print(header)
    print_table(rows, args.markdown)
    if errors:
        print("\nn/a cells:" if not args.markdown else "\nn/a cells:\n")
        for e in errors:
            print(f"- {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
