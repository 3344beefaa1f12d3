"""The hook's feed under gdb (replayer/forward.py `feed_observed`, replayer/session.py
`_run_batch`, tracee/fastloop.c `held_in_hook`): a `continue` with no watchpoint runs the
buffered calls between two stops without a stop each, and gdb sees what a replay with a
stop per call shows: the same breakpoint stops with the same values, the same reverse
stops, a watchpoint on a buffer a buffered read fills reported where the read is made, the
end of the program (a fed run never goes past the last event of its batch under gdb).

The run is made with a CPU-timer tick every millisecond (RELIVE_MID_PERIOD_MS=1: the
checkpoints of a continue), most of which land in the hook while it copies a 64 KiB read
out of the feed: such a tick is held back until the task is out of the hook (without
that, the replay diverged in every run tried)."""
from __future__ import annotations

import re

import pytest
from conftest import describe, record
from gdbhelpers import END_OF_HISTORY, ReplayServer, gdb_batch, requires_gdb

from tracee import fastloop, sysbuf

pytestmark = [pytest.mark.skipif(sysbuf.hook() is None or fastloop.load() is None,
                                 reason="the hook or the fast path could not be built (no gcc?)"),
              pytest.mark.usefixtures("syscallbuf_on")]

ROUNDS = 6000
SIZE = 65536
SESSION = """\
break mark if i == 5900
continue
printf "MARK %ld %ld %ld\\n", i, ns, got
delete
break mark
reverse-continue
printf "BACK %ld %ld %ld\\n", i, ns, got
reverse-continue
printf "BACK %ld %ld %ld\\n", i, ns, got
continue
printf "MARK %ld %ld %ld %lu\\n", i, ns, got, total
finish
watch -l 'fed_marks.c'::buf[5]
continue
printf "WATCH %d\\n", 'fed_marks.c'::buf[5]
continue
printf "WATCH %d\\n", 'fed_marks.c'::buf[5]
delete
continue
"""
SEEN = re.compile(r"^(MARK|BACK|WATCH) .*$|^(Old|New) value = .*$|^0x[0-9a-f]+ in \S+ \(.*$",
                  re.M)
COUNTS = re.compile(r"replay: (\d+) events, (\d+) ptrace stops, (\d+) buffered calls "
                    r"without a stop")


@pytest.fixture(scope="module")
def marks(programs, tmp_path_factory):
    where = tmp_path_factory.mktemp("fedgdb")
    data = where / "data"
    data.write_bytes(bytes(b"abcdefgh\n"[(i * 7 + i // 13) % 9] for i in range(SIZE + 512)))
    trace = where / "t"
    rec = record(trace, programs["fed_marks"], ROUNDS, data, SIZE)
    assert rec.returncode == 0, describe(rec)
    return trace


def _session(trace, programs, tmp_path, env: dict[str, str]) -> tuple[list[str], int]:
    """The gdb session against a replay server: what it showed, and the buffered calls the
    server replayed without a stop."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    script = tmp_path / "session.gdb"
    script.write_text(SESSION)
    server = ReplayServer(trace, tmp_path / "servers", options=["--log", "debug"],
                          env={"RELIVE_MID_PERIOD_MS": "1", **env})
    try:
        run = gdb_batch(connect=server.address, script=script, program=programs["fed_marks"],
                        timeout=240)
    finally:
        server.close()
    counts = COUNTS.findall(server.stderr())
    assert counts, server.describe()
    seen = [m.group(0) for m in SEEN.finditer(run.output)]
    # the last continue runs to the end of the program, which gdb is shown
    assert END_OF_HISTORY in run.output, str(run)
    assert "diverged" not in run.output and "Error" not in run.output, str(run)
    return seen, int(counts[-1][2])


@requires_gdb
def test_a_gdb_continue_feeds_buffered_calls_and_shows_what_stops_show(marks, programs,
                                                                        tmp_path):
    fed, fed_calls = _session(marks, programs, tmp_path / "fed", {})
    stopped, stopped_fed = _session(marks, programs, tmp_path / "stops",
                                    {"RELIVE_FASTPATH": "0"})
    assert stopped_fed == 0
    # 2 buffered calls a round: the continues to round 5900 and on to 5800 again
    assert fed_calls > ROUNDS, fed
    assert fed == stopped
    tagged = [line for line in fed if line.startswith(("MARK", "BACK", "WATCH"))]
    assert [line.split()[:2] for line in tagged[:4]] == [
        ["MARK", "5900"], ["BACK", "5800"], ["BACK", "5700"], ["MARK", "5800"]], fed
    assert tagged[1].split()[2:] == tagged[3].split()[2:4], fed  # the same round, again
    assert [line.split()[0] for line in tagged[4:]] == ["WATCH", "WATCH"], fed
    # the watchpoint stops at the buffered pread that fills the buffer
    assert sum("in __libc_pread64 (" in line or "in pread" in line for line in fed) >= 1, fed
    assert any(line.startswith("Old value") for line in fed), fed
