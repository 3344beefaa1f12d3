"""relive's commands for gdb: move through a replay and keep gdb in step.

Load it into gdb with `source PATH` or `gdb -x PATH` (`relive replay` does; `relive gdbinit`
prints PATH). It runs inside gdb's own Python and imports nothing of relive's.

A `monitor goto` moves the replay behind gdb's back: gdb keeps the registers, frames and
memory it cached, and the list of shared libraries it last saw, so `bt` can show stale
frames or `?? ()`. Each command here sends the matching `monitor` command, then refreshes
what gdb cached (registers and frames, the memory cache, the shared library list and the
thread list) and shows the frame, as after a stop. Event numbers are `relive dump`'s: "at
event N" is the state right after event N.

    when                    the current event
    goto N                  go to the state right after event N
    checkpoint              keep a checkpoint here; prints its id
    info checkpoints        list them
    restart N               go to checkpoint N
    delete checkpoint N     drop checkpoint N
    last-write EXPR         go back to just before the last write to EXPR

`checkpoint`, `restart`, `info checkpoints` and `delete checkpoint` replace gdb's own
commands of those names, which fork a live process and cannot work on a remote replay.
"""
from __future__ import annotations

import re

import gdb

_WHEN = re.compile(r"Current event: (\d+)")
_CHECKPOINT = re.compile(r"^\s*(\d+): event (\d+)", re.MULTILINE)


def _monitor(command: str, capture: bool = True) -> str:
    """Run `monitor COMMAND` on the replay; its text (with capture=False, shown as it comes,
    which is how the progress notes of a long command reach the user)."""
    # (Not Inferior.connection: gdb 13 aborts at exit if a TargetConnection object is still
    # around, "connpy_connection_dealloc: Assertion `conn_obj->target == nullptr' failed".)
    if gdb.selected_inferior().pid == 0:
        raise gdb.GdbError("relive: not connected to a replay (`target remote HOST:PORT` "
                           "to a `relive replay --port` first)")
    text = gdb.execute(f"monitor {command}", to_string=capture)
    return text or ""


def _when() -> int:
    text = _monitor("when")
    match = _WHEN.search(text)
    if match is None:
        raise gdb.GdbError(f"relive: unexpected answer to `monitor when`: {text.strip()!r}")
    return int(match.group(1))


def _number(arg: str, usage: str) -> int:
    words = gdb.string_to_argv(arg)
    if len(words) != 1 or not words[0].isdigit():
        raise gdb.GdbError(f"usage: {usage}")
    return int(words[0])


def refresh() -> None:
    """Forget what gdb cached about the program's state, after relive moved it."""
    gdb.execute("maintenance flush register-cache", to_string=True)
    gdb.execute("maintenance flush dcache", to_string=True)
    gdb.execute("sharedlibrary", to_string=True)  # libraries mapped or unmapped since
    gdb.execute("info threads", to_string=True)  # threads born or gone since
    thread = gdb.selected_thread()
    if thread is None or not thread.is_valid():
        threads = gdb.selected_inferior().threads()
        if threads:
            min(threads, key=lambda t: (t.ptid[1] != t.ptid[0], t.num)).switch()


def _move(command: str) -> None:
    """A `monitor` command that moves the replay, its progress shown as it comes. On Ctrl-C
    gdb stops waiting for it; the next request tells relive so, and the move stops where it
    is (a last-write search runs to its end first): show where that is."""
    try:
        _monitor(command, capture=False)
    except KeyboardInterrupt:
        now = _when()
        refresh()
        gdb.execute("frame")
        raise gdb.GdbError(f"relive: interrupted; the replay is at event {now}") from None


def _moved(expect: int | None) -> None:
    """After a move: refresh, check where the replay is, show the frame."""
    refresh()
    if expect is not None:
        now = _when()
        if now != expect:
            raise gdb.GdbError(f"relive: the replay is at event {now}, not {expect}")
    gdb.execute("frame")


class When(gdb.Command):  # type: ignore[misc]
    """The current event of the replay: the last one replayed (`relive dump` numbers)."""

    def __init__(self) -> None:
        super().__init__("when", gdb.COMMAND_RUNNING)

    def invoke(self, arg: str, from_tty: bool) -> None:
        gdb.write(f"Current event: {_when()}\n")


class Goto(gdb.Command):  # type: ignore[misc]
    """goto N: go to the state right after event N of the replay (`relive dump` numbers it),
    and show the frame there."""

    def __init__(self) -> None:
        super().__init__("goto", gdb.COMMAND_RUNNING)

    def invoke(self, arg: str, from_tty: bool) -> None:
        event = _number(arg, "goto EVENT")
        _move(f"goto {event} --no-hint")
        _moved(event)


class Checkpoint(gdb.Command):  # type: ignore[misc]
    """Keep a checkpoint of the replay here (at an event boundary, e.g. after `goto N`) and
    print its id; `restart ID` comes back to it. Ids never change."""

    def __init__(self) -> None:
        super().__init__("checkpoint", gdb.COMMAND_RUNNING)

    def invoke(self, arg: str, from_tty: bool) -> None:
        text = _monitor("checkpoint")
        if not re.match(r"Checkpoint \d+ at event \d+", text):
            raise gdb.GdbError(text.strip())
        gdb.write(text)


class InfoCheckpoints(gdb.Command):  # type: ignore[misc]
    """List the replay's checkpoints: yours, by id, and relive's automatic ones."""

    def __init__(self) -> None:
        super().__init__("info checkpoints", gdb.COMMAND_STATUS)

    def invoke(self, arg: str, from_tty: bool) -> None:
        gdb.write(_monitor("info checkpoints"))


class Restart(gdb.Command):  # type: ignore[misc]
    """restart ID: go to checkpoint ID (`info checkpoints` lists them) and show the frame."""

    def __init__(self) -> None:
        super().__init__("restart", gdb.COMMAND_RUNNING)

    def invoke(self, arg: str, from_tty: bool) -> None:
        number = _number(arg, "restart CHECKPOINT-ID")
        events = {int(n): int(e) for n, e in _CHECKPOINT.findall(_monitor("info checkpoints"))}
        if number not in events:
            raise gdb.GdbError(f"relive: no checkpoint {number}; `info checkpoints` lists them")
        _move(f"restart {number} --no-hint")
        _moved(events[number])


class DeleteCheckpoint(gdb.Command):  # type: ignore[misc]
    """delete checkpoint ID: drop checkpoint ID."""

    def __init__(self) -> None:
        super().__init__("delete checkpoint", gdb.COMMAND_RUNNING)

    def invoke(self, arg: str, from_tty: bool) -> None:
        number = _number(arg, "delete checkpoint CHECKPOINT-ID")
        text = _monitor(f"delete checkpoint {number}")
        if not text.startswith("Deleted checkpoint"):
            raise gdb.GdbError(text.strip())
        gdb.write(text)


class LastWrite(gdb.Command):  # type: ignore[misc]
    """last-write EXPR: go back to just before the last write to EXPR (an lvalue of 1, 2, 4
    or 8 bytes) and show the frame of the code that wrote it; EXPR still has its old value
    there."""

    def __init__(self) -> None:
        super().__init__("last-write", gdb.COMMAND_RUNNING, gdb.COMPLETE_EXPRESSION)

    def invoke(self, arg: str, from_tty: bool) -> None:
        if not arg.strip():
            raise gdb.GdbError("usage: last-write EXPRESSION")
        value = gdb.parse_and_eval(arg)
        if value.address is None:
            raise gdb.GdbError(f"relive: {arg} is not in memory (not an lvalue)")
        addr, size = int(value.address), value.type.sizeof
        before = (_when(), int(gdb.parse_and_eval("$pc")))
        _move(f"last-write {addr:#x} {size} --no-hint")
        refresh()
        if (_when(), int(gdb.parse_and_eval("$pc"))) == before:
            raise gdb.GdbError(f"relive: no write to {arg} found before this point")
        gdb.execute("frame")


for command in (When, Goto, Checkpoint, InfoCheckpoints, Restart, DeleteCheckpoint, LastWrite):
    command()
