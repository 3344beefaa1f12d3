"""A replay of a trace recorded with CPUID faulting is pinned to the CPU it starts on, and
moves off it when other jobs pinned there crowd it (replayer.cpu_pin): every ptrace stop would
wait its turn behind them. The program sees what it saw recorded all the same (cpuid's APIC
id, getcpu)."""
from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from conftest import describe, record
from gdbhelpers import gdb_batch, requires_gdb, serve
from test_cpus import CPUS, _env, needs_faulting, needs_two_cpus

__all__ = ["serve"]  # the fixture, imported for pytest

HOGS = 4  # busy loops pinned to the replay's CPU: other jobs there


def _tracee_cpu(server_pid: int, timeout: float = 20.0) -> int:
    """The one CPU the replay's tracee is allowed on, once it exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for children in Path(f"/proc/{server_pid}/task").glob("*/children"):
            for pid in children.read_text().split():
                status = Path(f"/proc/{pid}/status").read_text()
                m = re.search(r"^Cpus_allowed_list:\s*(\d+)$", status, re.M)
                if m:
                    return int(m[1])
        time.sleep(0.05)
    raise AssertionError("the replay's tracee did not appear pinned to one CPU")


@needs_two_cpus
@needs_faulting
@requires_gdb
def test_a_replay_moves_off_a_crowded_cpu(programs, tmp_path, serve):
    """Busy loops pinned to the replay's CPU after it started: after a gdb command that
    waited for that CPU, `monitor info` shows the replay on another one, and the replay goes
    on to print exactly what the recording printed."""
    trace = tmp_path / "t"
    rec = record(trace, programs["cpuid_apic"], env=_env())
    assert rec.returncode == 0, describe(rec)
    server = serve(trace)
    cpu = _tracee_cpu(server.proc.pid)
    hogs = [subprocess.Popen(["taskset", "-c", str(cpu), "sh", "-c", "while :; do :; done"])
            for _ in range(HOGS)]
    try:
        steps = ["reverse-stepi"] * 4 + ["stepi"] * 4
        run = gdb_batch("break *cpuid_here", "continue", *steps, *steps, "monitor info",
                        "continue", connect=server.address, program=programs["cpuid_apic"],
                        timeout=180)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    m = re.search(r"^cpu: (\d+) \(moved (\d+) times off a crowded CPU\)$", run.output, re.M)
    assert m, f"started on CPU {cpu}, never moved:\n{run}\n{server.describe()}"
    assert int(m[1]) != cpu and int(m[1]) in CPUS
    out = server.wait_for_stdout(rec.stdout.decode())
    assert out == rec.stdout.decode(), server.describe()
    assert rec.stdout.startswith(b"apic id "), describe(rec)
