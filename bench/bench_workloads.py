#!/usr/bin/env python3
"""Record and replay of real workloads against native runs and the C ptrace floor, with trace
sizes, checked against issue 18's targets: one command, every workload side by side.

Workloads (issue 18's classes):
  pytest    python3 -m pytest -q tests/test_more.py of the more-itertools 11.2.1 sdist
            (`pip download --no-binary :all: --no-deps` into bench/out/cache; skipped, with a
            line saying why, if it cannot be had or pytest is missing)
  pingpong  bench_pingpong.c in `cond` mode: a pthread mutex + 2 condition variables,
            100,000 round trips (--quick: 10,000)
  go        bench_go.go (goroutines, channels, timers, GC, TCP loopback), built once with
            /usr/bin/go into bench/out/cache (skipped if go is missing)
  tar       tar -cf OUT -C /usr/lib/python3.11 .
  find      sh -c 'find /usr -type f -size +100k | wc -l'
plus `startup`: relive record and replay of /bin/true, the start-up the replay target allows.

Each round runs, for every workload in turn: native (as a user runs it, all CPUs), the floor
(bench/ptrace_floor.c -f: every task stopped at every syscall entry and exit, pinned to the
CPU relive pins to), `relive record`, `relive replay -a` of that recording. Medians of
--repeat rounds. Every replay must print what its recording printed (else: FAILED). Trace:
events, trace.db bytes, copied files (files/), bytes per event of trace.db and of the whole
trace. The load average before and after is printed: the machine may be shared.

Usage: python3 bench/bench_workloads.py [--only pytest,pingpong,go,tar,find] [--repeat 3]
       [--quick] [--markdown]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time

from benchlib import (BENCH_DIR, describe_failure, host_description, print_cells, relive_cmd,
                      relive_env, trace_sizes)

OUT = BENCH_DIR / "out" / "workloads"
CACHE = BENCH_DIR / "out" / "cache"
MORE_ITERTOOLS = "more-itertools==11.2.1"
NAMES = ("pytest", "pingpong", "go", "tar", "find")

# Issue 18's targets: workload -> [(what, limit, how it is measured)].
TARGETS = {
    "tar": [("record", 2.0, "x native"), ("replay", 1.0, "x native + start-up")],
    "find": [("record", 2.0, "x native"), ("replay", 1.0, "x native + start-up"),
             ("bytes/event", 64, "B/event (trace.db)")],
    "pytest": [("record", 3.0, "x native"), ("trace", 100e6, "bytes")],
    "pingpong": [("record", 5.0, "x native")],
}


class Skip(Exception):
    pass


def build(src, binary, cmd):
    if binary.exists() and binary.stat().st_mtime >= src.stat().st_mtime:
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise Skip(f"building {src.name} failed: {proc.stderr.strip()[-300:]}")
    return binary


def more_itertools_dir():
    """The unpacked more-itertools sdist, downloaded once into CACHE."""
    try:
        import pytest  # noqa: F401  (the suite runs with this interpreter's pytest)
    except ImportError:
        raise Skip("pytest is not installed for this python3") from None
    CACHE.mkdir(parents=True, exist_ok=True)
    archives = sorted(CACHE.glob("more_itertools-11.2.1.tar.gz"))
    if not archives:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:",
                               "--no-deps", MORE_ITERTOOLS, "-d", str(CACHE)],
                              capture_output=True, text=True, timeout=300)
        archives = sorted(CACHE.glob("more_itertools-11.2.1.tar.gz"))
        if proc.returncode != 0 or not archives:
            last = (proc.stderr.strip().splitlines() or ["?"])[-1]
            raise Skip(f"cannot download {MORE_ITERTOOLS} ({last})")
    tree = CACHE / "more_itertools-11.2.1"
    if not (tree / "tests" / "test_more.py").is_file():
        with tarfile.open(archives[0]) as tf:
            tf.extractall(CACHE, filter="data")
    if not (tree / "tests" / "test_more.py").is_file():
        raise Skip(f"{archives[0].name} has no tests/test_more.py")
    return tree


def workloads(selected, quick):
    """name -> (argv, working directory); Skip reasons for those that cannot run."""
    out, skipped = {}, {}
    for name in selected:
        try:
            if name == "pytest":
                tree = more_itertools_dir()
                out[name] = ([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              "tests/test_more.py"], tree)
            elif name == "pingpong":
                binary = build(BENCH_DIR / "bench_pingpong.c", OUT / "bench_pingpong",
                               ["gcc", "-O2", "-pthread", "-o", str(OUT / "bench_pingpong"),
                                str(BENCH_DIR / "bench_pingpong.c")])
                out[name] = ([str(binary), "10000" if quick else "100000", "cond"], OUT)
            elif name == "go":
                go = shutil.which("go")
                if go is None:
                    raise Skip("go is not installed")
                binary = build(BENCH_DIR / "bench_go.go", CACHE / "bench_go",
                               [go, "build", "-o", str(CACHE / "bench_go"),
                                str(BENCH_DIR / "bench_go.go")])
                out[name] = ([str(binary), "-scale", "2" if quick else "5"], OUT)
            elif name == "tar":
                out[name] = (["tar", "-cf", str(OUT / "out.tar"), "-C", "/usr/lib/python3.11",
                              "."], OUT)
            elif name == "find":
                out[name] = (["sh", "-c", "find /usr -type f -size +100k | wc -l"], OUT)
        except (Skip, OSError, subprocess.SubprocessError) as e:
            skipped[name] = str(e)
    return out, skipped


def timed(cmd, env, cwd, timeout):
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, timeout
    return proc, time.monotonic() - start


def one_round(name, argv, cwd, env, floor, cpu, got, errors, timeout):
    """native, floor, record, replay of one workload; False once something failed."""
    trace = OUT / "traces" / name
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    runs = [("native", argv, None), ("floor", [*pin, str(floor), "-f", *argv], None),
            ("record", relive_cmd(sys.executable, "record", "-o", trace, "--force", *argv), env),
            ("replay", relive_cmd(sys.executable, "replay", "-a", trace), env)]
    if name == "startup":
        runs = runs[2:]
    recorded = None
    for key, cmd, run_env in runs:
        proc, secs = timed(cmd, run_env, cwd, timeout)
        if proc is None:
            errors.append(f"{name} / {key}: no end after {timeout:.0f} s")
            return False
        if proc.returncode != 0 and not (key == "floor" and proc.returncode == got.get("rc")):
            errors.append(f"{name} / {key}: {describe_failure(cmd, proc)}")
            return False
        if key == "native":
            got["rc"] = proc.returncode
        if key == "record":
            recorded = proc.stdout
            got["sizes"] = trace_sizes(trace)
        if key == "replay" and proc.stdout != recorded:
            errors.append(f"{name} / replay: REPLAY NOT FAITHFUL: stdout differs from its "
                          f"recording ({len(proc.stdout)} vs {len(recorded or b'')} bytes)")
            return False
        got.setdefault(key, []).append(secs)
    return True


def verdicts(name, med, sizes, startup):
    """'met' / 'NOT met' lines for the workload's targets."""
    out = []
    for what, limit, unit in TARGETS.get(name, []):
        if what == "record" and med.get("record") and med.get("native"):
            v = med["record"] / med["native"]
            out.append(f"record {v:.2f}x native (target <= {limit:g}x): "
                       + ("met" if v <= limit else "NOT met"))
        elif what == "replay" and med.get("replay") and med.get("native"):
            allowed = med["native"] * limit + (startup or 0.0)
            out.append(f"replay {med['replay']:.2f} s vs native {med['native']:.2f} s + start-up "
                       f"{startup or 0:.2f} s = {allowed:.2f} s: "
                       + ("met" if med["replay"] <= allowed else "NOT met")
                       + f" ({med['replay'] / med['native']:.2f}x native)")
        elif what == "bytes/event" and sizes:
            events, db, _ = sizes
            v = db / events
            out.append(f"{v:.0f} B/event in trace.db (target <= {limit:g}): "
                       + ("met" if v <= limit else "NOT met"))
        elif what == "trace" and sizes:
            total = sizes[1] + sizes[2]
            out.append(f"trace {total / 1e6:.0f} MB (target <= {limit / 1e6:.0f} MB): "
                       + ("met" if total <= limit else "NOT met"))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="comma-separated: " + ",".join(NAMES))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true",
                    help="smaller ping-pong (10,000 round trips) and Go program")
    ap.add_argument("--timeout", type=float, default=1200, help="per run, seconds")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    selected = [n for n in args.only.split(",") if n] or list(NAMES)
    unknown = set(selected) - set(NAMES)
    if unknown or args.repeat < 1:
        ap.error(f"unknown workload {sorted(unknown)}" if unknown else "--repeat must be >= 1")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "traces").mkdir(exist_ok=True)
    floor = build(BENCH_DIR / "ptrace_floor.c", OUT / "ptrace_floor",
                  ["gcc", "-O2", "-o", str(OUT / "ptrace_floor"),
                   str(BENCH_DIR / "ptrace_floor.c")])
    found, skipped = workloads(selected, args.quick)
    found = {"startup": (["/bin/true"], OUT), **found}
    env = relive_env()
    cpu = None if env["RELIVE_CPU"] == "none" else int(env["RELIVE_CPU"])
    load_before = os.getloadavg()
    got = {name: {} for name in found}
    errors, failed = [], set()
    for r in range(args.repeat):  # every workload in each round: side by side
        for name, (argv, cwd) in found.items():
            if name in failed:
                continue
            print(f"... round {r + 1}/{args.repeat}: {name}", file=sys.stderr, flush=True)
            if not one_round(name, argv, cwd, env, floor, cpu, got[name], errors, args.timeout):
                failed.add(name)
    load_after = os.getloadavg()

    med = {name: {k: statistics.median(v) for k, v in g.items() if isinstance(v, list)}
           for name, g in got.items()}
    startup = med["startup"].get("replay")
    cells, notes = [], []
    for name in found:
        m, sizes = med[name], got[name].get("sizes")
        if name in failed:
            cells.append([name] + ["n/a"] * 10)
            continue

        def t(key, m=m):
            return f"{m[key]:.2f} s" if key in m else "-"

        def x(key, base, m=m):
            return f"{m[key] / m[base]:.2f}x" if key in m and m.get(base) else "-"
        events, db, files = sizes
        cells.append([name, t("native"), t("floor"), t("record"), t("replay"),
                      x("floor", "native"), x("record", "native"), x("replay", "native"),
                      x("record", "floor"), f"{events:,}",
                      f"{(db + files) / 1e6:.1f} MB ({db / events:.0f} / "
                      f"{(db + files) / events:.0f} B/event)"])
        notes += [f"{name}: {v}" for v in verdicts(name, m, sizes, startup)]
    la = "/".join(f"{v:.1f}" for v in load_before), "/".join(f"{v:.1f}" for v in load_after)
    header = (f"Medians of {args.repeat} round(s), every workload in each round; host: "
              f"{host_description()}; load average (1/5/15 min) {la[0]} before, {la[1]} after; "
              f"floor = bench/ptrace_floor -f under `taskset -c {cpu}`.")
    print(header + ("\n" if args.markdown else ""))
    print_cells(["workload", "native", "floor", "record", "replay", "floor/native",
                 "rec/native", "rep/native", "rec/floor", "events",
                 "trace (B/event: trace.db / all)"], cells, args.markdown)
    print()
    for n in notes:
        print(f"- {n}")
    for name, why in skipped.items():
        print(f"- {name}: SKIPPED ({why})")
    for e in errors:
        print(f"- FAILED: {e}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
