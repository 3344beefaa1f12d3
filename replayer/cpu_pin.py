"""The CPU a replay runs on, moved when other jobs crowd it (traces recorded with CPUID
faulting only).

A replay pins its engine thread and its tracees to one CPU (tracee.spawn.pin_to_one_cpu): a
ptrace stop and resume there costs ~10 µs, with no cross-CPU wakeup. Which CPU it is matters
to the program only where cpuid runs natively (a trace recorded without CPUID faulting:
replayer.cpu_match keeps the recording CPU, the APIC id must match). Recorded with faulting,
everything that tells the program its CPU comes from the trace: cpuid results (CPUID
events), rdtscp's TSC_AUX (RDTSC events), sched_getaffinity, sched_setaffinity and getcpu
(emulated, the recorded result given back); rdpid, which nothing traps, is not covered
either way. There the CPU is the replay's own business, and the one it started on can fill
up afterwards: every relive recording, replay and test pins itself where it starts, so two
of them can share one CPU while another idles, and then every ptrace stop waits its turn
(a busy loop on the pinned CPU made 50,000 ptrace stops 3-5x slower than pinned on the
idle CPU; docs/reverse.md).

So after a gdb command during which the engine thread waited in the run queue more than
WAIT_SHARE of the command's time (and at least MIN_WAIT_NS), the run queues of the CPUs the
replay may use are looked at (SAMPLES times; not again for QUIET_S if none was shorter) and
the replay moves to the CPU with the fewest runnable threads pinned to it if it has
SHORTER_BY fewer than its own:
the engine thread, every live tracee, the trace reader (which avoids the replay's CPU), and
every process restored from a checkpoint afterwards (the stored copies keep the CPU they
were forked on; `follow`). Between commands every tracee is stopped, so nothing runs while
it moves. RELIVE_CPU=N (a fixed choice) or a trace without faulting never moves.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

WAIT_SHARE = 0.1  # of a command's wall time spent waiting for the CPU
MIN_WAIT_NS = 10_000_000  # (shorter commands: not worth a sample)
SAMPLES, SAMPLE_GAP_S = 5, 0.01  # looks at the run queues (each reads /proc/*/task/*/stat)
SHORTER_BY = 0.5  # pinned runnable threads fewer on the CPU moved to than on its own
QUIET_S = 5.0  # after a sample that found no idler CPU, none for this long


class CpuPin:
    """The CPU the replay is pinned to (None: not pinned), and whether it may move."""

    def __init__(self, cpu: int | None, movable: bool,
                 avoid: Callable[[int | None], None] = lambda cpu: None) -> None:
        self.cpu = cpu
        self.movable = movable and cpu is not None
        self.moved = False  # stored checkpoints may sit on another CPU: restores follow
        self.moves = 0
        self._avoid = avoid
        self._start: tuple[float, int] | None = None
        self._quiet_until = 0.0

    def follow(self, tids: Iterable[int]) -> None:
        """Pin the threads of a process just restored from a checkpoint to the replay's CPU
        (its stored copy was forked where the replay ran then)."""
        if self.moved and self.cpu is not None:
            _pin(tids, self.cpu)

    def command_starts(self) -> None:
        self._start = (time.monotonic(), _run_queue_wait()) if self.movable else None

    def command_ends(self, tids: Iterable[int]) -> None:
        """A gdb command ended (every tracee stopped): move if it waited too long."""
        if self._start is None or self.cpu is None:
            return
        started, waited = self._start
        self._start = None
        wall = (time.monotonic() - started) * 1e9
        wait = _run_queue_wait() - waited
        if (wait < MIN_WAIT_NS or wait < WAIT_SHARE * wall
                or time.monotonic() < self._quiet_until):
            return
        queues = run_queues(sorted(os.sched_getaffinity(0) | _allowed_before()))
        if self.cpu not in queues:
            return
        best = min(queues, key=lambda c: (queues[c], c != self.cpu))
        log.debug("the last command waited %.0f ms for CPU %d of %.0f ms; runnable threads "
                  "pinned per CPU %s", wait / 1e6, self.cpu, wall / 1e6, queues)
        if best == self.cpu or queues[best] > queues[self.cpu] - SHORTER_BY:
            self._quiet_until = time.monotonic() + QUIET_S
            return
        log.debug("moving the replay from CPU %d to CPU %d", self.cpu, best)
        try:
            os.sched_setaffinity(0, {best})
        except OSError:  # (no longer allowed: a cpuset changed meanwhile)
            self._quiet_until = time.monotonic() + QUIET_S
            return
        _pin(tids, best)
        self._avoid(best)
        self.cpu, self.moved = best, True
        self.moves += 1


def _pin(tids: Iterable[int], cpu: int) -> None:
    for tid in tids:
        try:
            os.sched_setaffinity(tid, {cpu})
        except OSError:  # (gone meanwhile: a dying thread)
            pass


def _allowed_before() -> set[int]:
    """The CPUs this process was allowed before it pinned itself (its main thread keeps
    them: pinning is done by the engine thread, for itself)."""
    try:
        return os.sched_getaffinity(os.getpid())
    except OSError:
        return set()


def _run_queue_wait() -> int:
    """Nanoseconds this thread has waited in a run queue (its /proc schedstat, 2nd field)."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as f:
            return int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def run_queues(cpus: list[int], samples: int = SAMPLES) -> dict[int, float]:
    """For each of `cpus`, how many runnable threads of other processes are pinned to it
    (state R in /proc, allowed on that CPU alone), averaged over `samples` looks
    SAMPLE_GAP_S apart. Those are what a replay pinned there waits behind: the scheduler
    moves the other threads to whichever CPU is less loaded, but not these (nor the replay).
    (A busy share would not tell them apart: every CPU of a loaded machine is 100% busy.)"""
    counts = dict.fromkeys(cpus, 0)
    me = os.getpid()
    for i in range(samples):
        if i:
            time.sleep(SAMPLE_GAP_S)
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == me:
                continue
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tids:
                cpu = _pinned_runnable(pid, tid)
                if cpu in counts:
                    counts[cpu] += 1
    return {cpu: n / samples for cpu, n in counts.items()}


def _pinned_runnable(pid: str, tid: str) -> int | None:
    """The CPU a runnable thread is pinned to (None: not runnable, not pinned, or gone)."""
    try:
        with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
            if f.read().rsplit(b")", 1)[1].split()[0] != b"R":
                return None
        allowed = os.sched_getaffinity(int(tid))
    except (OSError, IndexError):
        return None
    return next(iter(allowed)) if len(allowed) == 1 else None
