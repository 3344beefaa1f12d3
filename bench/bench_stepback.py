#!/usr/bin/env python3
"""Benchmark the first step back after continuing into a long computation (issue 23).

The workload is bench/bench_stepback.c: --phases phases (default 9), each a hash loop of
--iters iterations (default 400,000,000: ~0.5-1 s natively here) with no system call, then
one getppid(). At three positions -- the end of the computation of the first phase, of the
middle one and of the last one (start, middle, end of the trace) -- gdb runs `continue` to a
conditional breakpoint on compute()'s `return` line (the line after the loop), then times
(time.perf_counter() around gdb.execute() in gdb's embedded Python):

  first rsi       the first reverse-stepi after that continue (target: <= 200 ms)
  median rsi      the median of the next --steps reverse-stepi (target: <= 50 ms)
  first rnext     in a fresh session at the same place: the first reverse-next
  median rnext    the median of the next --steps reverse-next, back through the loop
                  (target: <= 50 ms)
  first rc        in a third session: `break` on the loop's last body line, then the
                  first reverse-continue (back to the last iteration)
  next rc         the median of 2 more (one iteration back each)

Each position gets its own replay server and gdb (so every "first" follows a continue through
a whole computation). `monitor info checkpoints` is printed at the end of each session.

With --threads the phases run in a second thread while main waits in pthread_join, so the
replay is a multi-threaded one (its backward commands search every thread);
the reverse-continue session is left out there (`--rc` puts it back: it searches the whole
stretch among threads). With --procs they run in a forked child while the parent waits in
waitpid (a process tree, as a server and its clients), and gdb debugs the child
(`relive replay -p CHILD`).

Usage: python3 bench/bench_stepback.py [--phases 9] [--iters 400000000] [--steps 20]
       [--threads [--rc] | --procs] [--timeout 1800] [--markdown]
"""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gdb import (
    BENCH_DIR,
    GDB,
    RELIVE_SERVING,
    Failed,
    Server,
    compile_c,
    gdb_env,
    host_description,
    relive_env,
    relive_record,
    relive_server,
)
from benchlib import fmt_time, print_cells

SCRIPT = r"""
set pagination off
set confirm off
set remotetimeout 600
break bench_stepback.c:{line} if phase == {phase}
python
import time
def timed(name, cmd):
    t = time.perf_counter()
    gdb.execute(cmd, to_string=True)
    took = time.perf_counter() - t
    said = gdb.execute("monitor info reverse", to_string=True)
    print("T %s %.6f %s" % (name, took, (said.split() or ["?"])[3 if "command:" in said else 0]),
          flush=True)
timed("continue", "continue")
gdb.execute("delete")
{extra}
timed("first", "{cmd}")
for _ in range({steps}):
    timed("next", "{cmd}")
print("C " + gdb.execute("monitor info checkpoints", to_string=True).splitlines()[0])
end
"""


TIMEOUT = 1800.0  # seconds per gdb session (--timeout)
SLOW = 0.2  # a backward command slower than this is reported with its stops (on stderr)
PID: int | None = None  # --procs: the recorded pid of the child gdb debugs


def server_for(python: str, trace: Path, workdir: Path) -> Server:
    if PID is None:
        return relive_server(python, trace, workdir)
    return Server("relive", [python, "-m", "relive", "replay", "--port", "0", "-p", str(PID),
                             str(trace)], RELIVE_SERVING, workdir, env=relive_env())


def child_pid(python: str, trace: Path) -> int:
    """The second process of the recorded tree (`relive ps`)."""
    out = subprocess.run([python, "-m", "relive", "ps", str(trace)], capture_output=True,
                         text=True, env=relive_env(), timeout=120, check=True).stdout
    rows = [line.split("\t") for line in out.splitlines()[1:] if line.strip()]
    if len(rows) != 2:
        raise Failed(f"expected two processes in {trace}: {out}")
    return int(rows[1][0])


def session(python: str, trace: Path, workdir: Path, line: int, phase: int, cmd: str,
            steps: int, extra: str = "") -> tuple[float, list[float], str]:
    script = workdir / "stepback.gdb"
    script.write_text(SCRIPT.format(line=line, phase=phase, cmd=cmd, steps=steps,
                                    extra=extra))
    with server_for(python, trace, workdir) as server:
        proc = subprocess.run([GDB, "-nx", "-batch", "-ex", f"target remote {server.address}",
                               "-x", str(script)], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, env=gdb_env(), timeout=TIMEOUT,
                              check=False)
    times: dict[str, list[float]] = {}
    for m in re.finditer(r"^T (\S+) ([0-9.]+) (\S+)$", proc.stdout, re.MULTILINE):
        times.setdefault(m[1], []).append(float(m[2]))
        if m[1] != "continue" and float(m[2]) > SLOW:  # load, or re-executing much?
            print(f"slow: {cmd} ({m[1]}) took {float(m[2]) * 1000:.0f} ms, {m[3]} stops "
                  "in its last backward packet (`monitor info reverse`)", file=sys.stderr)
    if "first" not in times or len(times.get("next", [])) != steps:
        raise Failed(f"gdb session failed: {proc.stdout[-800:]} {proc.stderr[-800:]}")
    cps = re.search(r"^C (.*)$", proc.stdout, re.MULTILINE)
    return times["first"][0], times["next"], cps[1] if cps else "n/a"


def rc_cells(python: str, trace: Path, out: Path, line: int, body: int, phase: int,
             label: str) -> list[str]:
    """Back to a breakpoint in the loop's body: the last iteration, then 2 more."""
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        try:
            first, rest, _ = session(python, trace, Path(tmp), line, phase, "reverse-continue",
                                     2, f'gdb.execute("break bench_stepback.c:{body}")')
            return [fmt_time(first), fmt_time(statistics.median(rest))]
        except (Failed, subprocess.TimeoutExpired) as e:
            print(f"{label} reverse-continue: {e}", file=sys.stderr)
            return ["n/a"] * 2


def main() -> int:
    global TIMEOUT, PID
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phases", type=int, default=9)
    ap.add_argument("--iters", type=int, default=400_000_000)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", action="store_true",
                    help="compute in a second thread (a multi-threaded replay)")
    ap.add_argument("--rc", action="store_true",
                    help="with --threads: time reverse-continue too")
    ap.add_argument("--procs", action="store_true",
                    help="compute in a forked child, which gdb debugs (a process tree)")
    ap.add_argument("--timeout", type=float, default=TIMEOUT,
                    help="seconds a gdb session may take (then its cells are n/a)")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    TIMEOUT = args.timeout
    python = sys.executable
    out = BENCH_DIR / "out"
    src = BENCH_DIR / "bench_stepback.c"
    binary = compile_c(src, out / "bench_stepback", "-pthread")
    lines = src.read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "end of computation" in text)
    body = next(i for i, text in enumerate(lines, 1) if "x = (x << 13)" in text)
    kind = "procs" if args.procs else "threads" if args.threads else ""
    trace = out / f"bench_stepback{'_' + kind if kind else ''}.trace"
    argv = [str(binary), str(args.phases), str(args.iters)] + (
        ["2"] if args.procs else ["1"] if args.threads else [])
    took = relive_record(python, trace, argv, 3600)
    if args.procs:
        PID = child_pid(python, trace)
    where = {"procs": f"in a forked child (pid {PID})", "threads": "in a second thread",
             "": "one thread"}[kind]
    print(f"{host_description()}\nrecorded {args.phases} x {args.iters} iterations "
          f"({where}) in {took:.1f} s\n")
    rows = []
    for label, phase in (("start", 0), ("middle", args.phases // 2),
                         ("end", args.phases - 1)):
        cells = [f"{label} (phase {phase})"]
        notes = []
        for cmd in ("reverse-stepi", "reverse-next"):
            with tempfile.TemporaryDirectory(dir=out) as tmp:
                try:
                    first, rest, cps = session(python, trace, Path(tmp), line, phase, cmd,
                                               args.steps)
                    cells += [fmt_time(first), fmt_time(statistics.median(rest)),
                              fmt_time(max(rest))]
                    notes.append(cps)
                except (Failed, subprocess.TimeoutExpired) as e:
                    print(f"{label} {cmd}: {e}", file=sys.stderr)
                    cells += ["n/a"] * 3
        if args.threads and not args.rc:
            cells += ["n/a"] * 2
        else:
            cells += rc_cells(python, trace, out, line, body, phase, label)
        cells.append(notes[-1].rstrip(":") if notes else "n/a")
        rows.append(cells)
    print_cells(["position", "first rsi", "median rsi", "max rsi", "first rnext",
                 "median rnext", "max rnext", "first rc", "next rc", "checkpoints after"],
                rows, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
