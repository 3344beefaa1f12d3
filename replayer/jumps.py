"""Jumping to a recorded point instead of running to it (recorder.jump_points).

A PREEMPT event recorded with `jump` carries the state of its thread at the point: the pages
its process wrote since the last such point (as the event's memory writes), all general
registers (the event's registers) and the extended x87/SSE/AVX state (info). The stretch
between the thread's last event and the point made no syscall while no other thread ran, so
writing that state is the recorded state exactly: the stretch is not run in replay at all.

Deterministic by construction (the same event, the same writes, wherever replay comes from: a
checkpoint, a reverse pass); a gdb breakpoint or watchpoint inside the skipped stretch is not
hit (docs/reverse.md). After writing, the memory near the registers is compared with the
recording's (cheap: an interpreter's registers point at the objects it works on) and any
difference is a divergence, never a silently wrong state; the next syscall of the thread
checks every register as usual.
"""
from __future__ import annotations

from tracee import ptrace_api as api
from tracee.digest import ranges_digest
from tracee.task import Task
from tracefile.records import Event

from replayer.errors import ReplayDivergence
from replayer.rebuild import write_memory


def jump_to(task: Task, ev: Event) -> None:
    """Give `task` (stopped after its previous event) the state recorded in `ev`."""
    write_memory(task, ev)
    task.set_regs_from(ev.regs)
    task.set_reg("orig_rax", -1)  # in user code: resuming must never restart a syscall
    task.flush_regs()
    xstate = bytes.fromhex(str(ev.info.get("xstate", "")))
    if xstate:
        try:
            api.set_xstate(task.tid, xstate)
        except api.PtraceError as e:
            raise ReplayDivergence(
                event=ev.seq, tid=ev.tid,
                what=f"the recorded extended register state ({len(xstate)} bytes) cannot "
                     f"be given to this CPU: {e}") from e
    near = ev.info.get("near")
    if near is not None and ranges_digest(task.mem.read_upto, near) != ev.info["near_digest"]:
        raise ReplayDivergence(
            event=ev.seq, tid=ev.tid,
            what="memory near the registers differs from the recording after writing the "
                 "recorded state of a preempted thread")
