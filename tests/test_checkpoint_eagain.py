"""Checkpoints when the machine is out of processes (the kernel's fork says EAGAIN).

A checkpoint is a fork made inside the replayed process (tracee.fork), and going back
restores one by forking again. Out of processes, that fork fails: the remote call's
registers must be given back, the thread stay stopped and known, and the user read one
`relive: cannot ...: out of processes` line; the replay is left where it was and works
again once processes are free. (Before, the injected call was retried until it gave up,
left the thread at the relive page with the call's registers, and a step back killed the
live replay before finding it could not fork its copy: gdb lost every thread.)

The shortage is real: the replay server and its processes are put in a pids cgroup whose
limit is then set to the tasks it holds. Needs a writable cgroup v1 pids hierarchy (root).
"""
import contextlib
import os
import uuid
from pathlib import Path

import pytest

from conftest import describe, record
from relive.api import Replay, ScriptError

PIDS = Path("/sys/fs/cgroup/pids")
OUT_OF_PROCESSES = "out of processes"


@pytest.fixture
def pids_cgroup():
    group = PIDS / f"relive-test-{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir()
    except OSError as e:
        pytest.skip(f"no writable pids cgroup at {PIDS}: {e}")
    try:
        yield group
    finally:
        (group / "pids.max").write_text("max")
        for pid in (group / "cgroup.procs").read_text().split():  # back to where we are
            with contextlib.suppress(OSError):
                (PIDS / "cgroup.procs").write_text(pid)
        with contextlib.suppress(OSError):
            group.rmdir()


def _confine(group: Path, session: int) -> None:
    """Every process of the replay server's session into `group`, then no new task there."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.getsid(int(entry)) == session:
                    (group / "cgroup.procs").write_text(entry)
    (group / "pids.max").write_text((group / "pids.current").read_text().strip())


def test_out_of_processes_leaves_the_replay_as_it_was(programs, tmp_path, pids_cgroup):
    trace = tmp_path / "t"
    rec = record(trace, programs["threads_mutex"])
    assert rec.returncode == 0, describe(rec)
    with Replay(trace) as r:
        r.break_at("worker")
        r.cont()
        r.goto_event(r.when())  # an event boundary: where a checkpoint can be taken
        before = r.frame()
        threads = r._console("info threads")
        assert threads.count("Thread ") == 5, threads
        _confine(pids_cgroup, r._server.pid)

        with pytest.raises(ScriptError, match=f"cannot make a checkpoint: {OUT_OF_PROCESSES}"):
            r.checkpoint()
        with pytest.raises(ScriptError, match=OUT_OF_PROCESSES):
            r.step_back()
        with pytest.raises(ScriptError):  # a call runs in a copy of the process: a fork
            r.eval("(int) getpid()")
        assert r.frame() == before
        assert r._console("info threads") == threads  # every thread still there, unmoved
        log = r.server_log()
        assert "Traceback" not in log, log
        assert f"relive: cannot go back to a checkpoint: {OUT_OF_PROCESSES}" in log, log
        after = r.next().frame  # going forward needs no fork, nor to the end
        assert after != before
        r.delete_breakpoints()
        assert r.cont().end_of_history
        assert r.program_output() == rec.stdout.decode(), r.server_log()
        assert "Traceback" not in r.server_log(), r.server_log()

        (pids_cgroup / "pids.max").write_text("max")  # processes again: it all works
        r.goto_event(r.when())
        assert r.checkpoint() >= 1
        r.break_at("worker")
        assert r.cont_back().frame.function == "worker"
