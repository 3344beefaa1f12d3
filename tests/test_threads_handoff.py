"""The cost of a futex hand-off between two recorded threads (issue 18.2), counted, not timed.

threads_handoff.c passes a counter back and forth through a mutex and two condition variables:
each hand-off is, in glibc, a futex wake of the condition variable, a futex wake of the mutex
(pthread_cond_wait re-takes it as contended) and the futex wait of the thread handing over.
The recorder needs the waiter's wait entry (it blocks: ENTER, the other thread runs) and the
woken thread's wait exit (its result) in Python; the wakes never block, so they cause no switch
and, with the compiled loop, no return to Python either.
"""
import os
import re

import pytest

from conftest import assert_faithful, describe, record, replay, run_relive

ROUNDS = 2000
HANDOFFS = 2 * ROUNDS          # each round trip hands over twice
STARTUP_STOPS = 300            # stops of the program's start and end (~130 seen)
COUNTERS = re.compile(rb"relive: (\d+) stops handled in Python, (\d+) syscalls recorded by "
                      rb"the compiled loop, (\d+) thread switches")


def _record(trace, prog, *args, fast):
    # The wakes as ptrace-stopped calls are these tests' subject: without the in-process
    # buffer, which makes them without a stop (tests/test_syscallbuf.py).
    env = dict(os.environ, RELIVE_FASTPATH="1" if fast else "0", RELIVE_SYSCALLBUF="seccomp")
    rec = run_relive("--log", "debug", "record", "-o", trace, prog, *args, env=env,
                     stdin=open(os.devnull, "rb"), timeout=300)
    assert rec.returncode == 0, describe(rec)
    found = COUNTERS.search(rec.stderr)
    assert found, describe(rec)
    python_stops, compiled, switches = map(int, found.groups())
    return rec, python_stops, compiled, switches


def _enters(trace):
    dump = run_relive("dump", trace, timeout=300)
    assert dump.returncode == 0, describe(dump)
    return sum(1 for line in dump.stdout.splitlines() if line.split()[2:3] == [b"ENTER"])


def _without_debug_lines(proc):
    """The recording's output as a plain run shows it (no `relive: ...` debug lines)."""
    proc.stderr = b"".join(line for line in proc.stderr.splitlines(keepends=True)
                           if not line.startswith(b"relive:"))
    return proc


def test_a_condvar_hand_off_costs_two_python_stops_and_one_switch(programs, tmp_path):
    trace = tmp_path / "t"
    rec, python_stops, compiled, switches = _record(trace, programs["threads_handoff"],
                                                    ROUNDS, fast=True)
    # Before: every stop of every futex call went through Python (~6 per hand-off).
    assert python_stops <= 2 * HANDOFFS + STARTUP_STOPS, (python_stops, compiled)
    # The wakes ran in the compiled loop: 2 per hand-off, each an entry and an exit stop.
    assert compiled >= 2 * HANDOFFS - STARTUP_STOPS, (python_stops, compiled)
    assert python_stops + 2 * compiled <= 6 * HANDOFFS + STARTUP_STOPS
    assert switches <= HANDOFFS + 50, switches
    assert _enters(trace) <= HANDOFFS + 50
    rep = replay(trace)
    assert rep.stdout.startswith(f"round trips {ROUNDS} checksum ".encode()), describe(rep)
    assert_faithful(_without_debug_lines(rec), rep)


def test_a_futex_wake_is_no_switch_on_the_python_path_either(programs, tmp_path):
    """RELIVE_FASTPATH=0: the Python path stops at every call, but a wake, which never
    blocks, no longer hands the CPU over (before: ~1.7 switches per hand-off, the woken thread
    running into the mutex its waker still held)."""
    trace = tmp_path / "t"
    rec, python_stops, compiled, switches = _record(trace, programs["threads_handoff"],
                                                    ROUNDS, fast=False)
    assert compiled == 0
    assert _enters(trace) <= HANDOFFS + 50
    assert switches <= HANDOFFS + 50, switches
    assert_faithful(_without_debug_lines(rec), replay(trace))


@pytest.mark.parametrize("fast", [True, False])
def test_a_thread_spinning_after_a_wake_is_preempted_for_the_woken_one(programs, tmp_path,
                                                                       fast):
    """The waker spins, without a syscall, until the thread it woke has run: the stop of the
    woken thread that the compiled loop keeps must start the timeslice, and the timeslice's
    end must reach the loop even if it comes between two of its waits (it did not: the
    recording hung, one run in a few)."""
    for i in range(3):
        trace = tmp_path / f"t{i}"
        env = dict(os.environ, RELIVE_FASTPATH="1" if fast else "0")
        rec = record(trace, programs["threads_wake_spin"], "20", env=env, timeout=120)
        assert rec.returncode == 0 and rec.stdout == b"rounds 20\n", describe(rec)
        assert_faithful(rec, replay(trace))


def test_threads_woken_as_the_process_exits_replay(programs, tmp_path):
    """Threads woken from a condition variable, then exit() at once: the compiled loop keeps
    the woken threads' syscall exits for later, and exit_group kills them before they are
    handled. Such a stale stop was recorded as a syscall (a bogus exit_group), and replay
    died with ESRCH (`go version` did so one run in four)."""
    for i in range(10):
        trace = tmp_path / f"t{i}"
        rec = record(trace, programs["threads_wake_exit"])
        assert rec.returncode == 0 and rec.stdout == b"woke 6\n", describe(rec)
        assert_faithful(rec, replay(trace))


def test_with_the_buffer_a_hand_off_costs_two_python_stops_and_no_compiled_call(programs,
                                                                                  tmp_path):
    """The syscall buffer on (the default): the wakes are buffered, and each futex wait is
    first probed in the hook (a buffered FUTEX_CMP_REQUEUE of the word onto itself:
    tracee/sysbuf_hook.c futex_wait). In this ping-pong every wait sleeps (the other thread
    cannot run before it does), so each is then made traced: its entry (ENTER, switch) and
    the exit when the woken thread runs are the only stops, 2 per hand-off, in Python."""
    trace = tmp_path / "t"
    env = dict(os.environ, RELIVE_SYSCALLBUF="1")
    env.pop("RELIVE_SYSCALLBUF_WAITS", None)
    rec = run_relive("--log", "debug", "record", "-o", trace, programs["threads_handoff"],
                     ROUNDS, env=env, stdin=open(os.devnull, "rb"), timeout=300)
    assert rec.returncode == 0, describe(rec)
    found = COUNTERS.search(rec.stderr)
    assert found, describe(rec)
    python_stops, compiled, switches = map(int, found.groups())
    assert python_stops <= 2 * HANDOFFS + STARTUP_STOPS, (python_stops, compiled)
    assert compiled <= STARTUP_STOPS, compiled          # the wakes: buffered
    assert switches <= HANDOFFS + 50, switches
    dump = run_relive("dump", trace, timeout=300)
    assert dump.returncode == 0, describe(dump)
    probes = traced_waits = 0
    for line in dump.stdout.splitlines():
        fields = line.split()
        if fields[3:4] and fields[3].startswith(b"futex("):
            op = int(fields[4].rstrip(b","), 16) & 0x7F
            probes += fields[2] == b"BUFFERED" and op == 4   # FUTEX_CMP_REQUEUE
            traced_waits += fields[2] == b"SYSCALL" and op in (0, 9)
    assert probes >= HANDOFFS - 50, probes              # every wait asked first
    assert traced_waits <= HANDOFFS + 50, traced_waits  # the sleeping ones: traced
    assert_faithful(_without_debug_lines(rec), replay(trace))
