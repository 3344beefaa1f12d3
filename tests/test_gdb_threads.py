"""Stock gdb on replays of multi-threaded programs and of one process of a process tree.

What a user would notice: `info threads` lists every thread with the name the program gave it
(pthread_setname_np, on its own thread or on another), a breakpoint in a worker stops in that
worker, backtraces and thread-local variables are per thread, `next` in one thread runs the
other threads' recorded events meanwhile, reverse execution stays in the right thread, and
`relive replay -p PID` debugs only that process of a tree. Where the schedule does not matter
(thread names, TLS values, the lines `next` visits) the replay must print what gdb prints on
the live program.
"""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PROGRAMS_DIR, describe, record, requires_gcc
from gdbhelpers import (
    END_OF_HISTORY,
    ReplayServer,
    frame_names,
    gdb_batch,
    normalise,
    relive_env,
    requires_gdb,
    section,
    serve,
)

from tracefile.reader import TraceReader

__all__ = ["serve"]  # the fixture, imported for pytest
pytestmark = [requires_gdb, pytest.mark.slow]

WORKER_NAMES = {"worker-0", "worker-1", "worker-2", "worker-3"}
# What threads_barrier_tls.c leaves in each worker's __thread array (it prints them too).
FINAL_TLS = {"worker-0": "{0, 1, 30}", "worker-1": "{1, 2, 1}", "worker-2": "{2, 3, 12}",
             "worker-3": "{3, 0, 23}", "threads_barrier": "{0, 0, 0}"}

# `info threads` rows, live (`Thread 0x... (LWP n) "name"`) or remote (`Thread P.T "name"`).
_THREAD_ROW = re.compile(r'^(?P<cur>\*)?\s+(?P<num>\d+)\s+Thread (?P<id>\S+)(?: \(LWP \d+\))?'
                         r' "(?P<name>[^"]*)"\s+(?P<frame>.*)$', re.MULTILINE)
# `thread apply all print X`: a header per thread, then its value.
_APPLY = re.compile(r'^Thread \d+ \(Thread \S+(?: \(LWP \d+\))? "(?P<name>[^"]*)"\):\n'
                    r'\$\d+ = (?P<value>.*)$', re.MULTILINE)


def _record(trace: Path, *argv: object, status: int = 0) -> Path:
    rec = record(trace, "--force", *argv)
    assert rec.returncode == status, describe(rec)
    return trace


@pytest.fixture(scope="module")
def barrier_trace(programs, tmp_path_factory) -> Path:
    return _record(tmp_path_factory.mktemp("gdb-threads") / "barrier",
                   programs["threads_barrier_tls"])


def _line(text: str) -> int:
    """The line of threads_barrier_tls.c holding `text`."""
    lines = (PROGRAMS_DIR / "threads_barrier_tls.c").read_text().splitlines()
    found = [n for n, line in enumerate(lines, 1) if text in line]
    assert len(found) == 1, f"{text!r} occurs {len(found)} times"
    return found[0]


def _threads(text: str) -> list[dict[str, str]]:
    return [m.groupdict() for m in _THREAD_ROW.finditer(text)]


def _comparable(text: str) -> list[str]:
    """normalise(), also without what only a live target prints (thread exits), the
    connection line and the `finish` value of a barrier wait (which thread is the barrier's
    "serial" one depends on the schedule), and with gdb's thread numbers (gdb numbers threads
    in the order it learns of them)."""
    return [re.sub(r'^Thread \d+ "', 'Thread N "', line) for line in normalise(text)
            if not re.match(r"^\[Thread .* exited\]$|^0xADDR in _start \(\)|^Value returned",
                            line)]


def _live(program: Path, *commands: str) -> str:
    run = gdb_batch(*commands, program=program)
    assert run.returncode == 0, run
    return run.output


def _replay(server: ReplayServer, *commands: str) -> str:
    run = gdb_batch(*commands, connect=server.address)
    assert run.returncode == 0 and "Remote failure reply" not in run.output, \
        f"{run}\n{server.describe()}"
    return run.output


# -- threads: names, stops, backtraces, TLS -----------------------------------------------------

def test_breakpoint_in_workers_reports_each_worker_with_its_backtrace(barrier_trace, serve):
    out = _replay(serve(barrier_trace),
                  "break worker", "continue",
                  "echo ===THREADS===\\n", "info threads",
                  "echo ===BT===\\n", "bt",
                  "echo ===MAIN===\\n", "thread 1", "bt", "echo ===END===\\n",
                  "continue", "continue", "continue", "delete", "continue")
    stops = re.findall(r'^Thread (\d+) "[^"]*" hit Breakpoint 1, worker \(arg=0x(\d)\)', out,
                       re.MULTILINE)
    assert len(stops) == 4, out
    assert {arg for _, arg in stops} == {"0", "1", "2", "3"}, out  # each worker once...
    assert len({num for num, _ in stops}) == 4, out  # ...each reported as its own thread
    rows = _threads(section(out, "===THREADS===", "===BT==="))
    current = [r for r in rows if r["cur"]]
    assert len(rows) >= 2 and len(current) == 1, out
    assert current[0]["frame"].startswith("worker (arg=0x"), out
    assert rows[0]["num"] == "1" and rows[0]["name"] == "threads_barrier", out
    assert not rows[0]["frame"].startswith("worker"), out
    assert frame_names(section(out, "===BT===", "===MAIN==="))[:2] == ["worker", "start_thread"]
    main_frames = frame_names(section(out, "===MAIN===", "===END==="))
    assert "main" in main_frames, out
    assert any("barrier_wait" in f or "join" in f or "clone" in f for f in main_frames), out
    assert END_OF_HISTORY in out.split("===END===")[1], out


def test_thread_names_and_tls_per_thread_match_the_live_program(programs, barrier_trace,
                                                                serve):
    commands = (f"break threads_barrier_tls.c:{_line('memcpy(tls_copy[idx]')}",)
    inspect = ("echo ===THREADS===\\n", "info threads", "echo ===TLS===\\n",
               "thread apply all print tls_vals", "echo ===BT===\\n", "bt",
               "echo ===END===\\n")
    replay = _replay(serve(barrier_trace), *commands, "continue", *inspect)
    live = _live(programs["threads_barrier_tls"], *commands, "run", *inspect)
    for out in (replay, live):
        rows = _threads(section(out, "===THREADS===", "===TLS==="))
        assert {r["name"] for r in rows} == WORKER_NAMES | {"threads_barrier"}, out
        (current,) = [r for r in rows if r["cur"]]
        assert current["name"] in WORKER_NAMES, out
        # the stop is reported for the thread that hit the breakpoint, worker-K = arg K
        k = current["name"][-1]
        assert re.search(rf'^Thread \d+ "worker-{k}" hit Breakpoint 1, worker \(arg=0x{k}\)',
                         out, re.MULTILINE), out
        tls = {m["name"]: m["value"] for m in
               _APPLY.finditer(section(out, "===TLS===", "===BT==="))}
        assert tls == FINAL_TLS, out
        assert frame_names(section(out, "===BT===", "===END==="))[:2] == ["worker",
                                                                          "start_thread"]


NAMING_PROGRAM = r"""
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
static pthread_barrier_t barrier;
static void *worker(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&barrier);  /* main names this thread meanwhile */
    pthread_barrier_wait(&barrier);
    return NULL;
}
void names_are_set(void) {}
int main(void)
{
    pthread_t t;
    pthread_barrier_init(&barrier, NULL, 2);
    pthread_create(&t, NULL, worker, NULL);
    pthread_setname_np(t, "set-by-main");     /* writes /proc/self/task/TID/comm */
    pthread_setname_np(pthread_self(), "main-self");  /* prctl(PR_SET_NAME) */
    pthread_barrier_wait(&barrier);
    names_are_set();
    pthread_barrier_wait(&barrier);
    pthread_join(t, NULL);
    puts("done");
    return 0;
}
"""


@requires_gcc
def test_names_set_on_another_thread_through_proc_comm(tmp_path, serve):
    source = tmp_path / "thread_names.c"
    source.write_text(NAMING_PROGRAM)
    binary = tmp_path / "thread_names"
    subprocess.run(["gcc", "-O0", "-g", "-pthread", "-o", str(binary), str(source)],
                   check=True)
    trace = _record(tmp_path / "names-trace", binary)
    inspect = ("echo ===THREADS===\\n", "info threads", "echo ===END===\\n")
    replay = _replay(serve(trace), "break names_are_set", "continue", *inspect)
    live = _live(binary, "break names_are_set", "run", *inspect)
    for out in (replay, live):
        rows = _threads(section(out, "===THREADS===", "===END==="))
        assert sorted(r["name"] for r in rows) == ["main-self", "set-by-main"], out


# -- stepping -------------------------------------------------------------------------------

def test_next_over_pthread_create_and_join_in_main_matches_live(programs, barrier_trace,
                                                               serve):
    # 26 lines: the creation loop, the barrier loop, the join loop, then print_array's line
    commands = ("break main", "RUN", *["next"] * 26, "info threads")
    replay = _replay(serve(barrier_trace), *[c.replace("RUN", "continue") for c in commands])
    live = _live(programs["threads_barrier_tls"], *[c.replace("RUN", "run") for c in commands])
    body = [line for line in _comparable(replay) if not line.startswith(("Breakpoint 1 at",))]
    expected = [line for line in _comparable(live) if not line.startswith(("Breakpoint 1 at",))]
    threads_at = next(i for i, line in enumerate(body) if line.startswith("Id "))
    assert body[:threads_at] == expected[:threads_at], f"{replay}\n--- live ---\n{live}"
    print_line = _line('print_array("shared1"')
    assert body[threads_at - 1].startswith(f"{print_line} "), replay
    # after the joins only main is left (gdb notices the workers' exit when it asks)
    assert [r["name"] for r in _threads(replay)] == ["threads_barrier"], replay


def test_next_and_step_in_a_worker_while_others_run_matches_live(programs, barrier_trace,
                                                                 serve):
    commands = ("break worker", "RUN", "delete", *["next"] * 10, "print tls_vals[0]",
                "step", "bt 1", "finish")
    replay = _replay(serve(barrier_trace), *[c.replace("RUN", "continue") for c in commands])
    live = _live(programs["threads_barrier_tls"], *[c.replace("RUN", "run") for c in commands])

    def lines(text: str) -> list[str]:  # which worker stops first is the schedule's choice
        return [re.sub(r"arg=0x\d", "arg=K", re.sub(r"^\$1 = \d$", "$1 = K", line))
                for line in _comparable(text) if not line.startswith("Breakpoint 1 at")]
    assert lines(replay) == lines(live), f"{replay}\n--- live ---\n{live}"
    assert "Value returned is" in replay, replay


# -- reverse --------------------------------------------------------------------------------

def test_reverse_execution_stays_in_the_stopped_thread(barrier_trace, serve):
    memcpy = _line("memcpy(tls_copy[idx]")
    out = _replay(serve(barrier_trace), f"break threads_barrier_tls.c:{memcpy}", "continue",
                  "echo THREAD=\n", "output $_thread", "echo \n", "print tls_vals",
                  "echo ===BACK===\n", "reverse-next", "reverse-next", "print tls_vals",
                  "stepi", "reverse-stepi", "echo THREAD=\n", "output $_thread", "echo \n",
                  "echo ===WATCH===\n", "delete", "watch shared2[1]", "reverse-continue",
                  "echo ===FWD===\n", "continue", "echo ===END===\n")
    back = section(out, "===BACK===", "===WATCH===")
    # back over the barrier wait (a call other threads return from too), then one more line
    assert re.findall(r"^(\d+)\t", back, re.MULTILINE)[:2] == [
        str(memcpy - 2), str(_line("shared3[idx] ="))], out
    tls = re.findall(r"^\$\d+ = (\{.*\})$", out, re.MULTILINE)
    assert len(tls) == 2 and tls[0] == tls[1] and tls[0] in FINAL_TLS.values(), out
    threads = re.findall(r"^THREAD=\n(\d+)$", out, re.MULTILINE)
    assert len(threads) == 2 and threads[0] == threads[1], out  # still the same thread
    watch = section(out, "===WATCH===", "===FWD===")
    assert re.search(r'Thread \d+ "worker-1" hit Hardware watchpoint 2: shared2\[1\]\s+'
                     r"Old value = 12\s+New value = 0", watch), out
    fwd = section(out, "===FWD===", "===END===")
    assert re.search(r"Old value = 0\s+New value = 12", fwd), out


# -- one process of a tree ------------------------------------------------------------------

class _ProcessServer(ReplayServer):
    """`relive replay --port 0 -p PID TRACE`."""

    def __init__(self, trace: Path, workdir: Path, pid: int) -> None:
        self.trace = Path(trace)
        workdir.mkdir(parents=True, exist_ok=True)
        stem = f"server-{time.monotonic_ns()}"
        self.stdout_path = workdir / f"{stem}.out"
        self.stderr_path = workdir / f"{stem}.err"
        self.argv = [sys.executable, "-m", "relive", "replay", "--port", "0", "-p", str(pid),
                     str(self.trace)]
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err, env=relive_env(), start_new_session=True)
        try:
            self.host, self.port = self._wait_until_listening(60.0)
        except BaseException:
            self.close()
            raise


def test_replay_p_debugs_one_child_of_a_process_tree(programs, tmp_path):
    source = (PROGRAMS_DIR / "fork_tree.c").read_text().splitlines()
    grandchild, child1, child2 = (
        next(n for n, line in enumerate(source, 1) if text in line)
        for text in ('printf("depth 2', 'printf("depth 1: child1', 'printf("depth 1: child2'))
    trace = _record(tmp_path / "tree", programs["fork_tree"], status=7)
    reader = TraceReader(trace)
    try:
        procs = [t for t in reader.tasks() if t.tid == t.pid]
    finally:
        reader.close()
    root = procs[0].pid
    first_child = next(p.pid for p in procs if p.ppid == root)
    with _ProcessServer(trace, tmp_path / "servers", first_child) as server:
        out = _replay(server, "echo ===START===\\n", "info threads", "echo ===RUN===\\n",
                      f"break fork_tree.c:{grandchild}", f"break fork_tree.c:{child1}",
                      f"break fork_tree.c:{child2}", "continue", "print gs", "continue",
                      "reverse-continue", "print $_inferior", "echo ===END===\\n")
    (row,) = _threads(section(out, "===START===", "===RUN==="))
    assert row["id"] == f"{first_child}.{first_child}" and row["name"] == "fork_tree", out
    run = section(out, "===RUN===", "===END===")
    hits = re.findall(r"^Breakpoint (\d), main \(\) at .*fork_tree.c:(\d+)$", run, re.MULTILINE)
    assert hits == [("2", str(child1)), ("2", str(child1))], out  # not the others' lines
    assert "$1 = 2" in run and END_OF_HISTORY in run, out
