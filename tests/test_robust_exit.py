"""Robust mutexes whose owner goes away holding them (recorder/robust_list.py).

At a thread's exit the kernel walks the robust list the thread registered and puts
FUTEX_OWNER_DIED in the word of each mutex it still held, waking a waiter: the next owner
gets EOWNERDEAD. No system call of the program makes those writes, so the recorder puts them
in the thread's EXIT event and replay makes them there; before, a waiter's replay diverged
(its futex wait's return found the word unchanged and it waited again), and a lock nobody
waited for came back plain instead of EOWNERDEAD.
"""
import struct
import subprocess


from conftest import assert_faithful, describe, replay, run_relive
from tracefile.reader import TraceReader
from tracefile.records import Kind

FUTEX_WAITERS, FUTEX_OWNER_DIED = 0x80000000, 0x40000000


def _record(trace, prog, *args):
    rec = run_relive("record", "-o", trace, prog, *args, stdin=subprocess.DEVNULL, timeout=200)
    assert rec.returncode == 0, describe(rec)
    rec.stderr = b"".join(line for line in rec.stderr.splitlines(keepends=True)
                          if not line.startswith(b"relive:"))
    return rec


def _owner_died(exits: list[list[int]]) -> bool:
    """Every word written is FUTEX_OWNER_DIED, the owner's tid gone, FUTEX_WAITERS kept if
    a waiter had set it (whether it had by then is the scheduler's: under load the holder
    may exit before the other side waits)."""
    return all(w & ~FUTEX_WAITERS == FUTEX_OWNER_DIED for words in exits for w in words)


def _exit_words(trace) -> list[list[int]]:
    """Per EXIT event with writes: the 32-bit words it writes."""
    reader = TraceReader(trace)
    try:
        return [[struct.unpack("<I", w.data)[0] for w in ev.writes]
                for ev in reader.events() if ev.kind == Kind.EXIT and ev.writes]
    finally:
        reader.close()


def test_a_thread_exits_holding_two_robust_mutexes(programs, tmp_path):
    """Five times a thread exits holding two robust mutexes: main waits for the first (the
    kernel wakes it) and takes the second, which nobody waited for: only the word says its
    owner died. Both EOWNERDEAD in the replay as when recorded."""
    trace = tmp_path / "t"
    rec = _record(trace, programs["robust_owner"], "two", 5)
    assert rec.stdout.startswith(b"robust: EOWNERDEAD 10, plain 0, "), describe(rec)
    exits = _exit_words(trace)
    assert len(exits) == 5 and all(len(words) == 2 for words in exits), exits
    assert _owner_died(exits), exits
    assert FUTEX_OWNER_DIED in exits[0], exits  # the second lock: nobody waited for it
    assert_faithful(rec, replay(trace))


def test_a_process_exits_holding_a_shared_robust_mutex(programs, tmp_path):
    """A process-shared robust mutex in a MAP_SHARED page: a child process _exits holding it
    (its whole address space goes) while its parent waits for it, five times."""
    trace = tmp_path / "t"
    rec = _record(trace, programs["robust_owner"], "shared", 5)
    assert rec.stdout.startswith(b"robust: EOWNERDEAD 5, plain 0, "), describe(rec)
    exits = _exit_words(trace)
    assert len(exits) == 5 and all(len(words) == 1 for words in exits), exits
    assert _owner_died(exits), exits
    assert_faithful(rec, replay(trace))


def test_a_process_killed_holding_a_shared_robust_mutex(programs, tmp_path):
    """The classic case: the parent kills (SIGKILL) a child process that holds the shared
    lock; the kernel still walks the child's robust list. The child's exit stop comes while
    the parent runs on towards the lock: let go at once, the kernel's write would land
    anywhere in the parent's stretch, which replay runs after the EXIT event (a divergence
    in about two recordings of three, before the exit waited for the parent to stop).
    Whether the parent waits already (FUTEX_WAITERS kept) depends on timing."""
    trace = tmp_path / "t"
    rec = _record(trace, programs["robust_owner"], "killed", 30)
    assert rec.stdout.startswith(b"robust: EOWNERDEAD 30, plain 0, "), describe(rec)
    exits = _exit_words(trace)
    assert len(exits) == 30 and all(len(words) == 1 for words in exits), exits
    assert _owner_died(exits), exits
    assert_faithful(rec, replay(trace))


def test_a_priority_inheritance_robust_mutex(programs, tmp_path):
    """A guard more than a check of the fix: for a PI robust mutex the waiter's
    FUTEX_LOCK_PI rewrites the word in the kernel (a recorded output of that call), after
    the EXIT event's FUTEX_OWNER_DIED; the two must agree on EOWNERDEAD."""
    trace = tmp_path / "t"
    rec = _record(trace, programs["robust_owner"], "pi", 5)
    assert rec.stdout.startswith(b"robust: EOWNERDEAD 5, plain 0, "), describe(rec)
    assert_faithful(rec, replay(trace))


def test_a_thread_without_robust_mutexes_exits_with_no_writes(programs, tmp_path):
    """Every thread registers a robust list (glibc); exits holding nothing write nothing."""
    trace = tmp_path / "t"
    rec = _record(trace, programs["pi_robust"], 40, "pi")
    assert rec.returncode == 0, describe(rec)
    assert _exit_words(trace) == []
    assert_faithful(rec, replay(trace))


def test_the_leader_exits_holding_a_robust_mutex(programs, tmp_path):
    """main takes a robust mutex and leaves by pthread_exit (its process lives on in a
    thread that waits for the lock): the leader's EXIT event carries the write, and the
    waiter's replay does not diverge (before: 'the buffered syscall futex differs')."""
    trace = tmp_path / "t"
    rec = _record(trace, programs["robust_owner"], "leader")
    assert rec.stdout.startswith(b"robust: EOWNERDEAD 1, plain 0, "), describe(rec)
    exits = _exit_words(trace)
    assert len(exits) == 1 and len(exits[0]) == 1 and _owner_died(exits), exits
    rep = replay(trace)
    assert rep.returncode == 0 and b"diverged" not in rep.stderr, describe(rep)


def test_the_leader_exits_holding_a_robust_mutex_output(programs, tmp_path):
    trace = tmp_path / "t"
    rec = _record(trace, programs["robust_owner"], "leader")
    assert_faithful(rec, replay(trace))
