"""A timer on a tracee's own CPU time that stops it (perf_event_open, task clock).

A program computing for seconds between two system calls gives a tracer no stop to act on.
A PERF_COUNT_SW_TASK_CLOCK event with a sample period counts the nanoseconds the thread runs
and, every period, sends it a signal (SIGSTOP here: replay never delivers a SIGSTOP of its
own, and one nobody takes is dropped), which the tracer sees as a signal-delivery-stop at
whatever instruction the thread had reached. Reverse execution uses it to leave checkpoints
inside long computations (replayer.timeline). The kernel's minimum period is 10 µs.
"""
from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import struct

from tracee import ptrace_api as api

PERF_TYPE_SOFTWARE, PERF_COUNT_SW_TASK_CLOCK = 1, 1
ATTR_SIZE = 128
DISABLED, EXCLUDE_KERNEL, EXCLUDE_HV = 1 << 0, 1 << 5, 1 << 6
PERF_EVENT_IOC_ENABLE, PERF_EVENT_IOC_DISABLE = 0x2400, 0x2401
F_SETSIG, F_SETOWN_EX, F_OWNER_TID = 10, 15, 0
MIN_PERIOD_NS = 10_000


class CpuTimerError(OSError):
    """The kernel refused the timer (perf events not allowed)."""


class CpuTimer:
    """Stops thread `tid` (SIGSTOP) every `period_ns` of the CPU time it runs while the
    timer is enabled; `elapsed()` is that CPU time."""

    def __init__(self, tid: int, period_ns: int) -> None:
        period = max(MIN_PERIOD_NS, int(period_ns))
        buf = ctypes.create_string_buffer(ATTR_SIZE)
        # Created disabled: the tracer enables it only while it waits for the thread to run
        # its own code (`enable`). With exclude_kernel the period can end only in user
        # mode, so the signal comes at an instruction boundary, never inside a system call.
        struct.pack_into("<IIQQQQQ", buf, 0, PERF_TYPE_SOFTWARE, ATTR_SIZE,
                         PERF_COUNT_SW_TASK_CLOCK, period, 0, 0,
                         DISABLED | EXCLUDE_KERNEL | EXCLUDE_HV)
        struct.pack_into("<I", buf, 48, 1)  # wakeup_events: a signal per period
        try:
            self.fd = api.perf_event_open(buf, tid)
        except OSError as e:
            raise CpuTimerError(e.errno, f"perf_event_open task clock: {e.strerror}") from None
        try:
            fcntl.fcntl(self.fd, F_SETSIG, signal.SIGSTOP)
            fcntl.fcntl(self.fd, F_SETOWN_EX, struct.pack("<ii", F_OWNER_TID, tid))
            fcntl.fcntl(self.fd, fcntl.F_SETFL, os.O_ASYNC)
        except OSError:
            self.close()
            raise

    def enable(self, tid: int | None = None) -> None:
        """Count (the thread is given when it is run; this timer follows its own)."""
        if self.fd >= 0:
            fcntl.ioctl(self.fd, PERF_EVENT_IOC_ENABLE, 0)

    def disable(self) -> None:
        if self.fd >= 0:
            fcntl.ioctl(self.fd, PERF_EVENT_IOC_DISABLE, 0)

    def elapsed(self) -> int:
        """Nanoseconds of CPU time the thread ran since the timer started."""
        if self.fd < 0:
            return 0
        return int.from_bytes(os.read(self.fd, 8), "little")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> CpuTimer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ThreadTimers:
    """A CpuTimer per thread, made when the thread first runs, for a multi-threaded tracee
    of which one thread runs at a time (a replay): `enable(tid)` before running `tid`.
    `elapsed()` is the CPU time all of them ran (read once per run, when it ends), so its
    difference over a stretch that one thread runs is that thread's. A thread whose timer
    the kernel refuses is not timed."""

    def __init__(self, period_ns: int) -> None:
        self.period_ns = period_ns
        self.timers: dict[int, CpuTimer | None] = {}
        self._read: dict[int, int] = {}  # each timer's reading when its thread last stopped
        self._total = 0
        self._current: int | None = None

    def enable(self, tid: int | None = None) -> None:
        if tid is None:
            return
        if tid not in self.timers:
            try:
                self.timers[tid] = CpuTimer(tid, self.period_ns)
            except CpuTimerError:
                self.timers[tid] = None
            self._read[tid] = 0
        timer = self.timers[tid]
        if timer is not None:
            self._current = tid
            timer.enable()

    def disable(self) -> None:
        tid, self._current = self._current, None
        timer = self.timers.get(tid) if tid is not None else None
        if tid is None or timer is None:
            return
        timer.disable()
        reading = timer.elapsed()
        self._total += reading - self._read[tid]
        self._read[tid] = reading

    def elapsed(self) -> int:
        return self._total

    def close(self) -> None:
        for timer in self.timers.values():
            if timer is not None:
                timer.close()
        self._current = None


def stop_pending(tid: int) -> bool:
    """Is a SIGSTOP pending for thread `tid` (a tick sent before its timer was closed)?"""
    bit = 1 << (signal.SIGSTOP - 1)
    try:
        with open(f"/proc/{tid}/status") as f:
            for line in f:
                if line.startswith(("SigPnd:", "ShdPnd:")) and int(line.split()[1], 16) & bit:
                    return True
    except OSError:
        pass
    return False


def _in_syscall(tid: int) -> bool:
    try:
        with open(f"/proc/{tid}/syscall") as f:
            return not f.read().startswith(("-1", "running"))
    except OSError:
        return True


def drain_stop(tid: int) -> None:
    """Take a leftover tick out of a stopped thread: resumed, it stops for the pending
    SIGSTOP before running any instruction, and that stop is dropped when it goes on
    (resumed with no signal). Without this, the next single step would meet the tick. Not
    at a syscall stop (resuming would finish the call): the tick stays pending there and is
    dropped like any stray SIGSTOP when the replay goes on."""
    while stop_pending(tid) and not _in_syscall(tid):
        api.ptrace(api.Req.CONT, tid, 0, 0)
        status = api.wait_task(tid)
        if not os.WIFSTOPPED(status):
            return
