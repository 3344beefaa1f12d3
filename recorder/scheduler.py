"""Which recorded thread runs: exactly one at a time, switched at points replay can find again.

Threads of every recorded process share one run queue. The running thread ("current") keeps the
CPU until it
  - enters a syscall that may block while another thread is ready: it is left in the kernel
    and another thread runs (the recorder writes an ENTER event so replay parks it there too).
    Whether a call may block is the syscall catalogue's answer, from the call's arguments
    where they decide it (recorder.blocking);
  - reaches a syscall boundary after its timeslice expired while another thread is ready;
  - runs user code past its timeslice while another thread is ready: it is interrupted and
    preempted at a point replay can find again (recorder.preempt).
A stop reported by a thread that is not current (a blocked syscall returned, a new thread
started) is kept with that thread, which becomes ready; it is handled when the thread runs.

The timeslice is measured with ITIMER_REAL; its SIGALRM handler only sets a flag and
interrupts the current thread, so the blocking waitpid in the main loop is retried (PEP 475).
"""
from __future__ import annotations

import signal
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from tracee import ptrace_api as api

if TYPE_CHECKING:
    from recorder.session import RecordedTask

TIMESLICE = 0.02

class RunQueue:
    """The ready threads and the one allowed to run user code."""

    def __init__(self) -> None:
        self._current: RecordedTask | None = None
        # Called with the thread that stops being current (the syscall buffer's records are
        # that thread's: recorder.sysbuf_record).
        self.on_leave: Callable[[RecordedTask], None] | None = None
        self.ready: deque[RecordedTask] = deque()
        self.expired = False
        self.alarms = 0  # timer signals handled so far
        self._armed = False
        # What the recorder did, for `relive --log debug record` and the tests that bound
        # the cost of a thread switch: stops handled in Python, syscalls recorded by the
        # compiled loop, threads given the CPU.
        self.python_stops = 0
        self.compiled_calls = 0
        self.switches = 0
        signal.signal(signal.SIGALRM, self._on_alarm)

    @property
    def current(self) -> RecordedTask | None:
        return self._current

    @current.setter
    def current(self, t: RecordedTask | None) -> None:
        old, self._current = self._current, t
        if old is not None and old is not t and self.on_leave is not None:
            self.on_leave(old)

    def close(self) -> None:
        self.disarm()
        signal.signal(signal.SIGALRM, signal.SIG_DFL)

    # -- the timeslice ----------------------------------------------------------------------
    def start_slice(self) -> None:
        """The current thread starts a timeslice; it only counts if someone else waits."""
        self.expired = False
        if self.ready:
            self.arm()
        else:
            self.disarm()

    def arm(self) -> None:
        if not self._armed:
            self._armed = True
            signal.setitimer(signal.ITIMER_REAL, TIMESLICE)

    def disarm(self) -> None:
        if self._armed:
            self._armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)

    def loop_arm_us(self) -> int:
        """The timeslice the compiled loop starts when another thread becomes ready while it
        runs (recorder.handoff), in microseconds; 0 if the timer runs already."""
        return 0 if self._armed else int(TIMESLICE * 1_000_000)

    def armed_by_loop(self, alarms_before: int) -> None:
        """The compiled loop started the timer: so noted, unless it has fired since."""
        if self.alarms == alarms_before:
            self._armed = True

    def switched_in_loop(self, t: RecordedTask, switches: int, *, timer_on: bool) -> None:
        """The compiled loop gave the CPU to `t` after `switches` switches of its own at
        futex waits (recorder.handoff), starting and stopping the timer as `pick` does;
        `timer_on`: it runs now. The loop took the records the threads it switched from
        left in the syscall buffer (at their wait's entry); what is there now is `t`'s, for
        its next stop: no `on_leave`."""
        self._current = t
        self.switches += switches
        self._armed = timer_on

    def _on_alarm(self, signum: int, frame: object) -> None:
        self._armed = False
        self.expired = True
        self.alarms += 1
        cur = self.current
        if cur is not None and cur.running_user:
            try:
                api.ptrace(api.Req.INTERRUPT, cur.task.tid)
            except OSError:
                pass

    def should_switch(self) -> bool:
        """At a syscall boundary of the current thread: give the CPU to another?"""
        return self.expired and bool(self.ready)

    # -- the queue ----------------------------------------------------------------------------
    def make_ready(self, t: RecordedTask) -> None:
        if t is self.current:
            self.current = None
        if t not in self.ready:
            self.ready.append(t)
        if self.current is not None:
            self.arm()

    def remove(self, t: RecordedTask) -> None:
        if t is self.current:
            self.current = None
        try:
            self.ready.remove(t)
        except ValueError:
            pass

    def pick(self) -> RecordedTask | None:
        if not self.ready:
            return None
        t = self.ready.popleft()
        self.current = t
        self.switches += 1
        self.start_slice()
        return t

