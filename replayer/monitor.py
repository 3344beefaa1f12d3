"""`monitor` commands typed in gdb (qRcmd): where the replay is, moving to an event or a
checkpoint, and going back to the last write of some memory."""
from __future__ import annotations

from typing import TYPE_CHECKING

from gdbstub.errors import TargetError
from tracee.sysnums import name_of
from tracefile.records import Kind

if TYPE_CHECKING:
    from replayer.target import ReplayTarget

HELP = """relive monitor commands:
  info                   the trace, the current event, whether the trace is complete
  when                   the current event number
  goto N                 go to the state right after event N
  checkpoint             take a checkpoint here (at an event boundary)
  info checkpoints       list checkpoints and the memory they hold
  restart N              go to checkpoint N
  last-write ADDR [LEN]  go back to just before the last write to that memory
                         (from gdb: eval "monitor last-write %p %d", &var, sizeof(var))
After goto, restart and last-write, `maint flush register-cache` refreshes gdb's view.
"""
REFRESH = "; `maint flush register-cache` refreshes gdb's view\n"


def run(target: ReplayTarget, command: str) -> str:
    """Run one `monitor` command on the replay; returns its output."""
    words = command.split()
    session = target.session
    match words:
        case [] | ["help"]:
            return HELP
        case ["when"]:
            return f"Current event: {session.position}\n"
        case ["info"]:
            r = session.reader
            nxt = session.next_event
            what = ("end of trace" if nxt is None else
                    f"next: {nxt.kind.name.lower()}"
                    + (f" {name_of(nxt.nr)}" if nxt.kind == Kind.SYSCALL else ""))
            return (f"trace: {target.trace}\nprogram: {r.meta.get('program')}\n"
                    f"events: {r.event_count} ({'complete' if r.complete else 'INCOMPLETE'})\n"
                    f"current event: {session.position} ({what})\n")
        case ["checkpoint"]:
            return f"Checkpoint at event {target.take_checkpoint()}\n"
        case ["info", "checkpoints"]:
            cps = target.timeline.checkpoints
            lines = "".join(f"  {i}: event {cp.position}"
                            + (f" ({len(cp.threads)} threads)" if cp.multi else "") + "\n"
                            for i, cp in enumerate(cps))
            return (f"{len(cps)} checkpoints, {target.timeline.memory_kib()} KiB private "
                    f"memory:\n{lines}")
        case ["restart", n] if n.isdigit():
            cps = target.timeline.checkpoints
            if not int(n) < len(cps):
                raise TargetError(f"no checkpoint {n}; `monitor info checkpoints` lists them")
            return f"At event {target.goto_event(cps[int(n)].position)}{REFRESH}"
        case ["goto", n] if n.isdigit():
            return f"At event {target.goto_event(int(n))}{REFRESH}"
        case ["last-write", *rest] if 1 <= len(rest) <= 2:
            try:
                addr = int(rest[0], 0)
                length = int(rest[1], 0) if len(rest) == 2 else 8
            except ValueError:
                raise TargetError("usage: monitor last-write ADDRESS [LENGTH]") from None
            return target.last_write(addr, length) + REFRESH
    raise TargetError(f"unknown monitor command {command!r}; try `monitor help`")
