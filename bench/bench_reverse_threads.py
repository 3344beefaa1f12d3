#!/usr/bin/env python3
"""Reverse execution in a multi-threaded replay, this checkout against another (before/after).

Workload: tests/programs/threads_mutex.c (4 workers each add 1 to a shared `counter` 20,000
times under a mutex; each worker's loop is one long stretch without system calls), built with
gcc -O0 -g and recorded once. Each relive tree (this checkout, then --baseline DIR if given,
e.g. `git archive main | tar -x -C DIR`) serves the same trace, and the same gdb script runs
against each, timing every command with time.monotonic() in gdb's Python:

  break threads_mutex.c:LINE (after the loop), continue x2   -> end of worker 1's loop
  watch counter, reverse-continue   (rc 1: back to the write of 40000)
  reverse-continue                  (rc 2: the write of 39999)
  delete, reverse-stepi x3          (in the worker)

The values gdb reports (Old/New, pcs) must be the same for both trees, else the script says
so and exits 1. Usage: python3 bench/bench_reverse_threads.py [--baseline DIR] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import BENCH_DIR, REPO_ROOT, host_description, print_cells

PROGRAM = REPO_ROOT / "tests" / "programs" / "threads_mutex.c"
TIMER = '''
import json, time, gdb
def T(key, cmd):
    t = time.monotonic()
    out = gdb.execute(cmd, to_string=True)
    # relive's progress lines (a long search) come and go with the machine's speed
    out = "\\n".join(l for l in out.splitlines() if not l.startswith("relive: "))
    pc = int(gdb.parse_and_eval("$pc"))
    print("BENCH " + json.dumps({"key": key, "s": time.monotonic() - t, "pc": pc,
                                 "out": " ".join(out.split())[-120:]}))
'''
COMMANDS = [("to worker 1 end", None), ("rc 1", "reverse-continue"),
            ("rc 2", "reverse-continue"), ("rsi 1", "reverse-stepi"),
            ("rsi 2", "reverse-stepi"), ("rsi 3", "reverse-stepi")]


def serve(tree: Path, trace: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.Popen([sys.executable, "-m", "relive", "replay", "--port", "0",
                             str(trace)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env, cwd=tree)
    assert proc.stderr is not None
    for line in proc.stderr:
        m = re.search(rb"on (127\.0\.0\.1:\d+)", line)
        if m:
            return proc, m.group(1).decode()
    raise SystemExit(f"relive from {tree} did not start serving")


def session(tree: Path, trace: Path, line: int, out: Path) -> dict[str, dict]:
    proc, address = serve(tree, trace)
    try:
        script = out / "timer.py"
        script.write_text(TIMER)
        ex = ["set pagination off", "set confirm off", f"target remote {address}",
              f"source {script}", f"break threads_mutex.c:{line}", "continue", "continue",
              "python T('to worker 1 end', 'print counter')", "delete", "watch counter"]
        for key, cmd in COMMANDS[1:]:
            if key == "rsi 1":
                ex.append("delete")
            ex.append(f"python T('{key}', '{cmd}')")
        argv = ["gdb", "-nx", "-batch"] + [a for e in ex for a in ("-ex", e)]
        run = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
        results = {}
        for m in re.finditer(r"^BENCH (.*)$", run.stdout, re.MULTILINE):
            r = json.loads(m.group(1))
            results[r["key"]] = r
        if len(results) != len(COMMANDS):
            raise SystemExit(f"gdb against {tree} failed:\n{run.stdout[-2000:]}{run.stderr}")
        return results
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", type=Path, help="another relive tree to compare with")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--out", type=Path, default=BENCH_DIR / "out")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    binary, trace = args.out / "threads_mutex", args.out / "threads_mutex.trace"
    subprocess.run(["gcc", "-O0", "-g", "-pthread", "-o", str(binary), str(PROGRAM)],
                   check=True)
    subprocess.run([sys.executable, "-m", "relive", "record", "-o", str(trace), "--force",
                    str(binary)], check=True, capture_output=True, cwd=REPO_ROOT)
    line = next(n for n, text in enumerate(PROGRAM.read_text().splitlines(), 1)
                if "tls_result[idx] = tls_count" in text)
    trees = [("this checkout", REPO_ROOT)]
    if args.baseline:
        trees.append((f"baseline {args.baseline}", args.baseline.resolve()))
    times: dict[str, dict[str, list[float]]] = {name: {} for name, _ in trees}
    seen: dict[str, list] = {}
    for _ in range(args.repeat):
        for name, tree in trees:  # side by side in each round
            started = time.monotonic()
            for key, r in session(tree, trace, line, args.out).items():
                times[name].setdefault(key, []).append(r["s"])
                seen.setdefault(key, []).append((r["pc"], re.sub(r"0x[0-9a-f]+", "", r["out"])))
            print(f"# {name}: {time.monotonic() - started:.1f} s", file=sys.stderr)
    print(f"host: {host_description()}")
    columns = ["command"] + [name for name, _ in trees]
    cells = [[key] + [f"{statistics.median(times[name][key]):.2f} s" for name, _ in trees]
             for key, _ in COMMANDS[1:]]
    print_cells(columns, cells, args.markdown)
    differ = [key for key, values in seen.items() if len(set(values)) != 1]
    if differ:
        print(f"\nUNFAITHFUL: the trees stopped at different places for {differ}: {seen}")
        sys.exit(1)


if __name__ == "__main__":
    main()
