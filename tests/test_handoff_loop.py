"""Thread switches at futex waits made by the compiled loop (issue 18.2, recorder/handoff.py).

A condvar hand-off between recorded threads used to return to Python twice (the waiter's wait
entry: ENTER and the switch; the woken thread's wait exit). The shared record loop now makes
that switch itself when the thread it switches to waits in a plain futex wait, so a ring of
threads handing a token round runs in C from one batch to the next. RELIVE_HANDOFF=0 leaves
the switches to Python (the behaviour before), which these tests compare against where they
count. Every recording must replay what it printed: the switch the loop makes is written as
the events Python's would be (ENTER, the woken thread's SYSCALL), so replay serialises the
threads the same way.
"""
import os
import re

from conftest import assert_faithful, describe, replay, run_relive

ROUNDS = 2000                  # per thread: 4 * ROUNDS hand-offs
HANDOFFS = 4 * ROUNDS
STARTUP_STOPS = 300
COUNTERS = re.compile(rb"relive: (\d+) stops handled in Python, (\d+) syscalls recorded by "
                      rb"the compiled loop, (\d+) thread switches")


def _env(handoff: bool) -> dict[str, str]:
    env = dict(os.environ, RELIVE_HANDOFF="1" if handoff else "0", RELIVE_FASTPATH="1")
    env.pop("RELIVE_SYSCALLBUF", None)
    env.pop("RELIVE_SYSCALLBUF_WAITS", None)
    return env


def _record(trace, prog, *args, handoff=True):
    rec = run_relive("--log", "debug", "record", "-o", trace, prog, *args, env=_env(handoff),
                     stdin=open(os.devnull, "rb"), timeout=300)
    assert rec.returncode == 0, describe(rec)
    found = COUNTERS.search(rec.stderr)
    assert found, describe(rec)
    rec.stderr = b"".join(line for line in rec.stderr.splitlines(keepends=True)
                          if not line.startswith(b"relive:"))
    return rec, tuple(map(int, found.groups()))


def _dump(trace) -> list[list[bytes]]:
    dump = run_relive("dump", trace, timeout=300)
    assert dump.returncode == 0, describe(dump)
    return [line.split() for line in dump.stdout.splitlines()]


def test_a_condvar_ring_switches_in_the_compiled_loop(programs, tmp_path):
    """4 threads, every wait sleeps: a switch per hand-off, and almost no stop in Python
    (with RELIVE_HANDOFF=0: 2 per hand-off, as before)."""
    trace = tmp_path / "t"
    rec, (python_stops, _compiled, switches) = _record(trace, programs["handoff_ring"], ROUNDS)
    assert rec.stdout.startswith(f"turns {HANDOFFS} checksum ".encode()), describe(rec)
    assert switches >= HANDOFFS - 10, switches
    assert python_stops <= HANDOFFS // 10 + STARTUP_STOPS, python_stops
    events = _dump(trace)
    enters = sum(1 for e in events if e[2:3] == [b"ENTER"])
    assert HANDOFFS - 10 <= enters <= HANDOFFS + 50, enters
    assert_faithful(rec, replay(trace))

    before = tmp_path / "before"
    rec0, (python_stops0, _, switches0) = _record(before, programs["handoff_ring"], ROUNDS,
                                                  handoff=False)
    assert rec0.stdout == rec.stdout
    assert python_stops0 >= 2 * HANDOFFS - STARTUP_STOPS, python_stops0
    assert abs(switches0 - switches) <= 50, (switches0, switches)


def test_a_timed_wait_that_times_out_beside_the_ring(programs, tmp_path):
    """A fifth thread's pthread_cond_timedwait times out (1 ms) again and again while the
    ring hands over: its wait's exit (ETIMEDOUT) is among the stops the loop keeps and
    switches to; the replay counts the same timeouts."""
    trace = tmp_path / "t"
    rec, (python_stops, _, _) = _record(trace, programs["handoff_ring"], ROUNDS, "timeout")
    found = re.search(rb"timed waits: ETIMEDOUT (\d+), other 0", rec.stdout)
    assert found and int(found.group(1)) > 0, describe(rec)
    timed_out = [e for e in _dump(trace) if e[2:3] == [b"SYSCALL"]
                 and e[3].startswith(b"futex(") and e[-4] == b"-0x6e"]
    assert len(timed_out) >= int(found.group(1))
    assert python_stops <= HANDOFFS // 10 + STARTUP_STOPS + 10 * len(timed_out)
    assert_faithful(rec, replay(trace))


def test_signals_to_threads_sleeping_in_their_wait(programs, tmp_path):
    """main sends SIGUSR1 to the ring's threads in turn: most arrive while the thread sleeps
    in its futex wait (the wait's exit is a restart the loop never switches to: Python
    delivers the signal and the kernel makes the wait again). Same output in the replay,
    signal counts included."""
    trace = tmp_path / "t"
    rec, _ = _record(trace, programs["handoff_ring"], 500, "signal")
    found = re.search(rb"signals sent (\d+), handled (\d+)", rec.stdout)
    assert found and int(found.group(2)) > 0, describe(rec)
    signals = [e for e in _dump(trace) if e[2:3] == [b"SIGNAL"]]
    assert signals
    assert_faithful(rec, replay(trace))


def test_the_ping_pong_benchmark_stays_in_the_loop(tmp_path):
    """bench/bench_pingpong.c in cond mode (issue 18's workload), 5,000 round trips."""
    binary = tmp_path / "bench_pingpong"
    src = os.path.join(os.path.dirname(__file__), "..", "bench", "bench_pingpong.c")
    build = os.system(f"gcc -O2 -pthread -o {binary} {src}")
    assert build == 0
    trace = tmp_path / "t"
    rec, (python_stops, _, switches) = _record(trace, binary, 5000, "cond")
    assert switches >= 2 * 5000 - 10
    assert python_stops <= 2 * 5000 // 10 + STARTUP_STOPS, python_stops
    assert_faithful(rec, replay(trace))


def test_pi_mutex_turns_stay_on_the_traced_path(programs, tmp_path):
    """Two threads take turns through a priority-inheritance mutex and condvars: the lock's
    FUTEX_LOCK_PI / FUTEX_UNLOCK_PI (the kernel hands the lock over and writes its word) are
    never a switch of the loop's; the condvar waits beside them are. Same output replayed."""
    trace = tmp_path / "t"
    rec, _ = _record(trace, programs["pi_robust"], 300, "pi")
    assert rec.stdout.startswith(b"pi turns 600 checksum "), describe(rec)
    pi_calls = [e for e in _dump(trace) if e[2:3] == [b"SYSCALL"] and e[3].startswith(b"futex(")
                and int(e[4].rstrip(b","), 16) & 0x7F in (6, 7)]
    assert pi_calls  # contended: the PI operations were made, traced
    assert_faithful(rec, replay(trace))


def test_a_robust_mutex_whose_owner_exits_replays(programs, tmp_path):
    """The kernel's FUTEX_OWNER_DIED at the holder's exit is in its EXIT event (recorder.
    robust_list): main's wait ends, and its lock returns EOWNERDEAD, in the replay too."""
    trace = tmp_path / "t"
    rec, _ = _record(trace, programs["pi_robust"], 100, "robust")
    assert b"robust: EOWNERDEAD 10, plain 0" in rec.stdout, describe(rec)
    assert_faithful(rec, replay(trace))
