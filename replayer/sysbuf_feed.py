"""Replaying buffered calls without a stop each: the hook's feed (tracee/sysbuf_hook.c
relive_hook_fed).

A trace whose hook has a replay mode (its code page's control block starts with
`sysbuf.FEED_MAGIC`: the trace holds the hook's bytes, so an older trace, whose hook has
none, keeps one PTRACE_SYSEMU stop per BUFFERED event) gets, at each exec, a read+write
mapping of replay's own at `sysbuf.FEED`; the hook's control word is pointed at it before
the first fed run (never under gdb, where the hook then runs as when recorded).
The compiled replay loop (tracee/fastloop.c relive_replay_run, handed the feed's address
by replayer.fastpath) writes a run of BUFFERED events there (number, arguments, result,
output) and lets the task run: the hook takes each record that is the call it is about to
make, copies the output where the kernel wrote it when recorded and returns the result,
leaving registers, flags, stack and buffer as the stopped path does. The next stop tells,
by the feed's `next`, how many records were taken; those events are replayed, and the
stop is checked as the next event's: a call that is not the recorded one is made, stops,
and is reported as a divergence naming its event, as without a feed.

The feed is left out of memory digests (tracee.digest): the recording had no such mapping.
A recorded mapping that overlaps it (never seen: it lies beside relive's own pages) turns
the feed off for that process first (`still_clear`). In autopilot the hook stays armed;
under gdb (a `continue` without watchpoints: replayer.forward, replayer.session) it is
armed only while the compiled loop runs, which holds back signals from outside that reach
the hook mid-record (tracee/fastloop.c held_in_hook): no stop gdb is shown lies inside a
fed call, and no checkpoint holds an armed hook.
"""
from __future__ import annotations

import logging
import struct

from tracee import remote, sysbuf
from tracee.address_space import PROT_READ, PROT_WRITE, AddressSpace, Flag
from tracee.remote import InjectionError
from tracee.task import MemoryAccessError, Task

log = logging.getLogger(__name__)
_U64 = struct.Struct("<Q")
_CTRL = sysbuf.HOOK_CODE + sysbuf.CTRL_OFF + len(sysbuf.FEED_MAGIC)  # the feed's address


def has_replay_mode(task: Task, space: AddressSpace) -> bool:
    """Whether the process's hook (the trace's bytes) can take a feed."""
    m = space.find(sysbuf.HOOK_CODE)
    if m is None or m.start != sysbuf.HOOK_CODE or not m.flags & Flag.SYSBUF:
        return False
    try:
        magic = task.mem.read(sysbuf.HOOK_CODE + sysbuf.CTRL_OFF, len(sysbuf.FEED_MAGIC))
    except (MemoryAccessError, OSError):
        return False
    return magic == sysbuf.FEED_MAGIC


def prepare(task: Task, space: AddressSpace) -> bool:
    """After an exec's rebuild: map the feed (empty), if the hook has a replay mode and the
    place is free; whether it did. The hook is pointed at it by `arm`, at the first fed run
    (until then, as under gdb, the hook makes its `syscall` at once)."""
    if not has_replay_mode(task, space) or not still_clear(space):
        return False
    try:
        remote.mmap_in_tracee(task, sysbuf.FEED, sysbuf.FEED_SIZE, PROT_READ | PROT_WRITE,
                              remote.MAP_PRIVATE | remote.MAP_ANONYMOUS
                              | remote.MAP_FIXED_NOREPLACE)
    except InjectionError as e:
        log.debug("no feed for the syscall buffer (%s): one stop per buffered call", e)
        return False
    empty = _U64.pack(sysbuf.FEED_HEAD) * 2
    return task.mem.write(sysbuf.FEED, empty) == len(empty)


def arm(task: Task) -> bool:
    """Point the hook at the feed (`prepare` made it); whether it is."""
    return task.mem.write(_CTRL, _U64.pack(sysbuf.FEED)) == _U64.size


def still_clear(space: AddressSpace) -> bool:
    """No recorded mapping lies where the feed goes."""
    return not space.overlapping(sysbuf.FEED, sysbuf.FEED + sysbuf.FEED_SIZE)


def disarm(task: Task) -> None:
    """The hook makes every call again (a recorded mapping took the feed's place)."""
    if task.mem.write(_CTRL, _U64.pack(0)) != _U64.size:
        log.warning("relive: cannot turn the syscall buffer's feed off in task %d", task.tid)
