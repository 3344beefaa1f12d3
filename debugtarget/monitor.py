"""`monitor` commands typed in gdb (qRcmd): where the replay is, moving to an event or a
checkpoint, and going back to the last write of some memory.

Event numbers are `relive dump`'s, everywhere: the trace's events are numbered from 0 (the
initial exec) to count - 1. "At event N" is the state right after event N was replayed and
before event N + 1: `when` says N, `goto N` goes there, and a checkpoint taken there is
"at event N". (Inside the replayer a position counts events replayed: event N is position
N + 1.) The moves are ReplayTarget's typed calls (goto_event, checkpoint, goto_checkpoint,
last_write); this module only parses and words them. The gdb extension
(relive/gdb_extension.py) wraps these commands and refreshes gdb's caches after each move.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from debugtarget.errors import TargetError
from tracee.sysnums import name_of
from tracefile.records import Event, Kind

if TYPE_CHECKING:
    from debugtarget.replay import ReplayTarget
    from replayer.cpu_pin import CpuPin
    from replayer.snapshot import Snapshot

HELP = """relive monitor commands (event numbers are those of `relive dump`):
  info                   the trace, the current event, whether the trace is complete
  when                   the current event: the last one replayed
  goto N                 go to the state right after event N (before event N+1)
  checkpoint             keep a checkpoint here (at an event boundary); prints its id
  info checkpoints       list your checkpoints (and relive's automatic ones)
  info reverse           what the last backward command cost (stops of the program)
  restart N              go to checkpoint N
  delete checkpoint N    drop checkpoint N
  last-write ADDR [LEN]  go back to just before the last write to that memory
gdb does not see these moves. The same commands without `monitor` (relive's gdb extension:
loaded by `relive replay`, or `source $(relive gdbinit)`) refresh its view; after a plain
`monitor goto`, `restart` or `last-write`, run `maint flush register-cache`, `maint flush
dcache` and `sharedlibrary`. (The extension adds --no-hint, which leaves out this advice.)
"""
HINT = " (gdb's view is stale: see `monitor help`)"


def event_of(position: int) -> int:
    """The event a replay that has replayed `position` events is at."""
    return max(0, position - 1)


def run(target: ReplayTarget, command: str) -> str:
    """Run one `monitor` command on the replay; returns its output."""
    words = command.split()
    hint = HINT
    if words[-1:] == ["--no-hint"]:
        words, hint = words[:-1], ""
    session = target.replay.session
    match words:
        case [] | ["help"]:
            return HELP
        case ["when"]:
            return f"Current event: {event_of(session.position)}\n"
        case ["info"]:
            return _info(target)
        case ["checkpoint"]:
            number = target.checkpoint()
            return f"Checkpoint {number} at event {event_of(session.position)}\n"
        case ["info", "checkpoints"]:
            return _checkpoints(target)
        case ["info", "reverse"]:
            return (f"last backward command: {target.backward_stops()} stops of the replayed "
                    "program\n")
        case ["restart", n] if n.isdigit():
            event = target.goto_checkpoint(int(n))
            return f"At checkpoint {n}, event {event}{hint}\n"
        case ["delete", "checkpoint", n] if n.isdigit():
            return f"Deleted checkpoint {n} (event {target.delete_checkpoint(int(n))})\n"
        case ["goto", n] if n.isdigit():
            return f"At event {target.goto_event(int(n))}{hint}\n"
        case ["last-write", *rest] if 1 <= len(rest) <= 2:
            try:
                addr = int(rest[0], 0)
                length = int(rest[1], 0) if len(rest) == 2 else 8
            except ValueError:
                raise TargetError("usage: monitor last-write ADDRESS [LENGTH]") from None
            text = target.last_write(addr, length)
            return f"{text}; at event {event_of(session.position)}{hint}\n"
    raise TargetError(f"unknown monitor command {command!r}; try `monitor help`")


def _info(target: ReplayTarget) -> str:
    session = target.replay.session
    r = session.reader
    nxt = session.next_event
    return (f"trace: {target.trace}\nprogram: {r.meta.get('program')}\n"
            f"events: {r.event_count} ({'complete' if r.complete else 'INCOMPLETE'}), "
            f"numbered 0..{r.event_count - 1}\n"
            f"current event: {event_of(session.position)} "
            f"({'end of trace' if nxt is None else 'next: ' + _describe(nxt)})\n"
            + _cpu(session.pin))


def _cpu(pin: CpuPin) -> str:
    if pin.cpu is None:
        return "cpu: not pinned\n"
    moved = f" (moved {pin.moves} times off a crowded CPU)" if pin.moves else ""
    return f"cpu: {pin.cpu}{moved}\n"


def _describe(ev: Event) -> str:
    what = f"{ev.seq} {ev.kind.name.lower()}"
    return what + (f" {name_of(ev.nr)}" if ev.kind == Kind.SYSCALL else "")


def _checkpoints(target: ReplayTarget) -> str:
    timeline = target.replay.timeline
    kept = list(timeline.kept)
    if kept:
        lines = [f"Checkpoints (`restart N` goes to one, `delete checkpoint N` drops it), "
                 f"{timeline.memory_kib(timeline.kept.snapshots())} KiB private memory:"]
        lines += [f"  {n}: event {event_of(cp.position)}" + _threads(cp)
                  for n, cp in kept]
    else:
        lines = ["No checkpoints (`checkpoint` keeps one here)."]
    autos = timeline.checkpoints
    lines.append(f"Automatic, for reverse execution: {len(autos)} checkpoints, "
                 f"{timeline.memory_kib()} KiB private memory:")
    lines += [f"  event {event_of(cp.position)}" + _threads(cp) for cp in autos]
    return "\n".join(lines) + "\n"


def _threads(cp: Snapshot) -> str:
    procs, threads = len(cp.processes), len(cp.threads)
    if procs > 1:
        return f" ({procs} processes, {threads} threads)"
    return f" ({threads} threads)" if threads > 1 else ""
