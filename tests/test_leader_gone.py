"""A process whose leader thread has left (pthread_exit) while other threads run on: the
kernel then shows no descriptors under /proc/PID/fd (the zombie leader's files are gone),
only under each live thread's /proc/TID/fd. The recorder asks the thread making the call:
asked the leader, a pipe read looked like a call on a closed descriptor ("never waits"),
so the recorder waited for it while the writer could not run (a hang), and a write to
stdout was not known as output, so the replay printed nothing of it."""
from __future__ import annotations

from conftest import assert_faithful, describe, record, replay


def test_a_pipe_between_threads_after_the_leader_left_records_and_replays(programs, tmp_path):
    trace = tmp_path / "t"
    rec = record(trace, programs["leader_gone_pipe"], timeout=60)
    assert rec.returncode == 0, describe(rec)
    assert rec.stdout == b"".join(b"read %c\n" % c for c in b"abcde"), describe(rec)
    assert_faithful(rec, replay(trace))
