"""Per-hit cost of a conditional breakpoint whose condition is false: `break step if i == N`
in tests/programs/cond_loop.c, a function called CALLS times (a syscall every 4 calls), and
one `continue` that passes N hits before the one that stops.

Side by side in one run: relive with the condition evaluated in the stub (gdb's default when
the stub offers it), relive with gdb evaluating it (`set breakpoint condition-evaluation
host`: a stop, a reply and a resume per hit, what relive did before), and gdbserver on the
live program (which evaluates target-side too). The time is that of the `continue` alone,
measured in gdb's Python.

    python3 bench/bench_conditions.py [--calls 20000] [--markdown]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time

from benchlib import REPO_ROOT, host_description, print_cells, relive_cmd, relive_env

OUT = REPO_ROOT / "bench" / "out" / "conditions"
SOURCE = REPO_ROOT / "tests" / "programs" / "cond_loop.c"
TIMED = ("python import time; t0 = time.monotonic(); gdb.execute('continue'); "
         "print('CONTINUE_SECONDS %f' % (time.monotonic() - t0))")


def gdb_continue(connect: str, mode: str, stop_at: int) -> tuple[float, str]:
    argv = ["gdb", "-nx", "-batch", "-iex", "set pagination off", "-iex",
            "set remotetimeout 600", "-ex", f"target remote {connect}",
            "-ex", f"set breakpoint condition-evaluation {mode}",
            "-ex", f"break cond_loop.c:step if i == {stop_at}", "-ex", TIMED, "-ex", "print i",
            "-ex", "kill"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=3600,
                          env=dict(os.environ, LC_ALL="C"))
    m = re.search(r"CONTINUE_SECONDS (\S+)", proc.stdout)
    value = re.search(r"^\$1 = (\d+)$", proc.stdout, re.MULTILINE)
    if m is None or value is None or int(value.group(1)) != stop_at:
        raise RuntimeError(f"gdb did not stop at i == {stop_at}:\n{proc.stdout[-2000:]}"
                           f"{proc.stderr[-2000:]}")
    return float(m.group(1)), proc.stdout


def start(argv: list[str], pattern: str, env: dict[str, str] | None = None
          ) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        m = re.search(pattern, line)
        if m:
            return proc, m.group(1)
    proc.kill()
    raise RuntimeError(f"{argv[0]} did not start")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    binary = OUT / "cond_loop"
    subprocess.run(["gcc", "-O0", "-g", "-o", str(binary), str(SOURCE)], check=True)
    env = relive_env()
    trace = OUT / "trace"
    subprocess.run(relive_cmd(sys.executable, "record", "-o", trace, "--force", binary,
                              args.calls), check=True, env=env, capture_output=True)
    stop_at = args.calls - 1
    rows = []
    for mode, label in (("target", "relive, condition in the stub"),
                        ("host", "relive, condition in gdb")):
        server, port = start(relive_cmd(sys.executable, "replay", "--port", "0", trace),
                             r"on 127\.0\.0\.1:(\d+)", env)
        try:
            seconds, _ = gdb_continue(f"127.0.0.1:{port}", mode, stop_at)
            rows.append((label, seconds))
        finally:
            server.kill()
            server.wait()
    if shutil.which("gdbserver"):
        live, port = start(["gdbserver", "--once", "127.0.0.1:0", str(binary), str(args.calls)],
                           r"Listening on port (\d+)")
        try:
            seconds, _ = gdb_continue(f"127.0.0.1:{port}", "target", stop_at)
            rows.append(("gdbserver (live), condition in the stub", seconds))
        finally:
            live.kill()
            live.wait()
    if args.markdown:
        print(host_description())
        print()
    cells = [[label, f"{seconds:.2f} s", f"{seconds / stop_at * 1e3:.3f} ms"]
             for label, seconds in rows]
    print_cells(["`continue` past " + f"{stop_at:,} false hits", "time", "per hit"], cells,
                args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
