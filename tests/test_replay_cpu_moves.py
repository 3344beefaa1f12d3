"""A replay of a trace recorded with CPUID faulting is pinned to the CPU it starts on, and
moves off it when other jobs pinned there crowd it (replayer.cpu_pin): every ptrace stop and
every instruction replayed would wait its turn behind them. (That the program sees the same
CPUs on any CPU is tests/test_cpus.py's.)"""
from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from conftest import describe, record
from gdbhelpers import gdb_batch, requires_gdb, serve
from test_cpus import CPUS, _env, needs_faulting, needs_two_cpus

__all__ = ["serve"]  # the fixture, imported for pytest

HOGS = 8  # busy loops pinned to the replay's CPU: other jobs there (more than another CPU has)


def _replay_cpu(server_pid: int, timeout: float = 20.0) -> int:
    """The one CPU the replay's engine thread pinned itself to (its other threads keep the
    CPUs it was allowed), once it has."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for status in Path(f"/proc/{server_pid}/task").glob("*/status"):
            try:
                m = re.search(r"^Cpus_allowed_list:\s*(\d+)$", status.read_text(), re.M)
            except OSError:
                continue
            if m:
                return int(m[1])
        time.sleep(0.05)
    raise AssertionError("the replay did not pin itself to one CPU")


@needs_two_cpus
@needs_faulting
@requires_gdb
def test_a_replay_moves_off_a_crowded_cpu(programs, tmp_path, serve):
    """Busy loops pinned to the replay's CPU after it started: after a gdb command that
    waited for that CPU (stepping back over a buffered futex wait replays the stretch
    several times), `monitor info` shows the replay on another one, and the replay goes on
    to print exactly what the recording printed."""
    trace = tmp_path / "t"
    rec = record(trace, programs["futex_waits"], 3, env=_env(RELIVE_SYSCALLBUF="1"))
    assert rec.returncode == 0, describe(rec)
    server = serve(trace)
    cpu = _replay_cpu(server.proc.pid)
    hogs = [subprocess.Popen(["taskset", "-c", str(cpu), "sh", "-c", "while :; do :; done"])
            for _ in range(HOGS)]
    try:
        run = gdb_batch("break wait_result", "continue", "next", *["reverse-stepi"] * 12,
                        "monitor info", "delete", "continue", connect=server.address,
                        program=programs["futex_waits"], timeout=180)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    m = re.search(r"^cpu: (\d+) \(moved (\d+) times off a crowded CPU\)$", run.output, re.M)
    assert m, f"started on CPU {cpu}, never moved:\n{run}\n{server.describe()}"
    assert int(m[1]) != cpu and int(m[1]) in CPUS
    out = server.wait_for_stdout(rec.stdout.decode())
    assert out == rec.stdout.decode(), server.describe()
