"""`relive info`, `relive ps`, `relive dump`: read-only views of a trace."""
from __future__ import annotations

import os
import shlex
import signal
import struct
from pathlib import Path
from typing import TextIO

from tracee.remote import LEGACY_RELIVE_PAGE
from tracee.sysnums import name_of
from tracefile import recording_lock
from tracefile.errors import TraceError
from tracefile.reader import TraceReader
from tracefile.records import Event, Kind, TaskRecord

from replayer.registers import unpack


def human_size(n: int) -> str:
    """Bytes in binary units, as ls -h does: 512 B, 4.0 KiB, 12.3 MiB."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def shown(text: str) -> str:
    """A path or argument for the terminal: bytes that are not UTF-8 (kept by Python as
    surrogates) as \\xNN and control characters escaped, so nothing can garble the output
    (or fail to encode)."""
    raw = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in raw)


def _size_text(total: int, shared: int) -> str:
    if not shared:
        return f"{human_size(total)} ({total} bytes)"
    return (f"{human_size(total)} ({total} bytes, {human_size(shared)} of them in files shared "
            "with other traces)")


def state_text(trace: Path, complete: bool) -> str:
    """complete, incomplete, or recording (a recorder holds the trace right now)."""
    if recording_lock.being_recorded(trace):
        return "recording"
    return "complete" if complete else "incomplete"


def status_text(status: int | None) -> str:
    if status is None:
        return "running when the recording stopped"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            return f"killed by {signal.Signals(sig).name}"
        except ValueError:
            return f"killed by signal {sig}"
    return f"exit {os.WEXITSTATUS(status)}"


def info_text(trace: Path) -> str:
    r = TraceReader(trace)
    try:
        m = r.meta
        lines = [
            f"trace:    {trace}",
            f"program:  {shown(str(m.get('program', '?')))}",
            f"argv:     {shown(shlex.join(m.get('argv', [])))}",
            f"cwd:      {shown(str(m.get('cwd', '?')))}",
            f"recorded: {m.get('started', '?')} on {m.get('host', '?')}",
            f"cpu:      {m.get('cpu', '?')}" + (
                "" if "pmu" not in m else " (with a PMU, not used)" if m["pmu"] else
                " (no PMU: preemption points found by pc, registers and memory)"),
            f"tasks:    {_task_summary(r.tasks())}",
            f"events:   {r.event_count}",
            f"size:     {_size_text(*r.size_bytes())}",
            _complete_line(trace, r.complete, m),
        ]
        if not r.verified:
            lines.append(f"checked:  NO - format {m['format_version']}, from before relive "
                         "kept checksums: damage to this trace goes unnoticed")
        if "cpuid" in m:
            lines.append(f"cpuid:    {_cpuid_text(m)}")
        if "exit_status" in m:
            lines.append(f"status:   {status_text(m['exit_status'])}")
        lines.append(f"page:     {_page_text(m)}")
        return "\n".join(lines)
    finally:
        r.close()


def _complete_line(trace: Path, complete: bool, meta: dict[str, object]) -> str:
    state = state_text(trace, complete)
    if state == "recording":
        return "complete: not yet - still being recorded (the counts above are so far)"
    if state == "complete":
        return "complete: yes"
    return ("complete: NO - the recording was cut off; replay stops at its last event"
            + (f" ({meta['error']})" if meta.get("error") else ""))


def _page_text(m: dict[str, object]) -> str:
    """Where the trace had relive's page (tracee.remote: RELIVE_PAGE_ADDRESS for a replay
    whose recorded mappings cover this relive's)."""
    page = m.get("relive_page")
    if not isinstance(page, int):
        return f"{LEGACY_RELIVE_PAGE:#x} (relive's own; recorded before it moved)"
    return f"{page:#x} (relive's own)"


def _cpuid_text(m: dict[str, object]) -> str:
    if m["cpuid"] == "faulting":
        return "recorded (CPUID faulting): replays on any CPU that offers CPUID faulting"
    cpu = m.get("cpu_number")
    where = f"CPU {cpu}" if isinstance(cpu, int) else "no CPU in particular (not pinned)"
    return f"native (no CPUID faulting): recorded on {where}; replay runs there by default"


def _task_summary(tasks: list[TaskRecord]) -> str:
    processes = sum(1 for t in tasks if t.tid == t.pid)
    threads = len(tasks)
    return (f"{processes} process{'es' if processes != 1 else ''}, "
            f"{threads} thread{'s' if threads != 1 else ''}")


def ps_text(trace: Path) -> str:
    r = TraceReader(trace)
    try:
        tasks = r.tasks()
        rows = ["PID\tPPID\tTHREADS\tSTATUS\tCOMMAND"]
        for t in tasks:
            if t.tid == t.pid:
                threads = sum(1 for o in tasks if o.pid == t.pid)
                command = shlex.join(t.argv) if t.argv else t.exe
                rows.append(f"{t.pid}\t{t.ppid}\t{threads}\t{status_text(t.exit_status)}\t"
                            + shown(command))
        return "\n".join(rows)
    finally:
        r.close()


_STREAMS = {1: " -> stdout", 2: " -> stderr"}  # a SYSCALL's info["out"]: what it printed


def describe_event(ev: Event) -> str:
    written = sum(len(w.data) for w in ev.writes)
    head = f"{ev.seq:>7} {ev.tid:>7} {ev.kind.name:<7}"
    match ev.kind:
        case Kind.SYSCALL:
            regs = unpack(ev.regs)
            args = ", ".join(f"{regs[r]:#x}" for r in ("rdi", "rsi", "rdx", "r10", "r8", "r9"))
            stream = _STREAMS.get(ev.info.get("out", 0), "")
            return (f"{head} {name_of(ev.nr)}({args}) = {ev.result:#x} [{written} bytes "
                    f"written]{stream}")
        case Kind.BUFFERED if len(ev.regs) == 56:  # six arguments and rip (tracee.sysbuf)
            args = ", ".join(f"{v:#x}" for v in struct.unpack("<6Q", ev.regs[:48]))
            return (f"{head} {name_of(ev.nr)}({args}) = {ev.result:#x} [{written} bytes "
                    "written]")
        case Kind.SIGNAL:
            try:
                name = signal.Signals(ev.nr).name
            except ValueError:
                name = str(ev.nr)
            return f"{head} {name} {ev.info.get('where')} [{written} bytes written]"
        case Kind.RDTSC:
            return f"{head} value {ev.result:#x}"
        case Kind.CPUID:
            out = ev.info.get("out") or []
            regs = unpack(ev.regs) if ev.regs else {}
            return (f"{head} leaf {ev.result:#x} subleaf {regs.get('rcx', 0) & 0xFFFF_FFFF:#x} "
                    f"-> {' '.join(f'{v:#x}' for v in out)}")
        case Kind.RDRAND:
            value = ev.result & 0xFFFF_FFFF_FFFF_FFFF
            return f"{head} {ev.info.get('insn')} {ev.info.get('reg')} = {value:#x}"
        case Kind.EXEC:
            maps = len(ev.info.get("maps", []))
            return (f"{head} {shown(str(ev.info.get('exe')))} [{maps} mappings, "
                    f"{written} bytes written]")
        case Kind.EXIT if "exec" in ev.info:
            return f"{head} {status_text(ev.result)} (killed by thread {ev.info['exec']}'s execve)"
        case Kind.EXIT:
            return f"{head} {status_text(ev.result)}"
        case Kind.ENTER:
            return f"{head} {name_of(ev.nr)}: blocked, another thread runs"
        case Kind.PREEMPT if ev.info.get("jump"):
            return (f"{head} at rip {ev.info.get('rip', 0):#x}: replay jumps here "
                    f"[{written} bytes of memory written, registers]")
        case Kind.PREEMPT:
            return f"{head} at rip {ev.info.get('rip', 0):#x}, another thread runs"
        case Kind.MAPPING:
            m = ev.info.get("map", {})
            what = {2: "scratch area", 4: "guard page"}.get(m.get("flags", 0), "mapping")
            return f"{head} {what} {m.get('start', 0):#x}-{m.get('end', 0):#x}"
    return head


def dump(trace: Path, out: TextIO) -> None:
    r = TraceReader(trace)
    try:
        for ev in r.events():
            try:
                line = describe_event(ev)
            except (struct.error, TypeError, ValueError, AttributeError) as e:
                # (a trace without checksums: values of the right types, not of the right shape)
                raise TraceError(f"trace {trace} is corrupt at event {ev.seq}: "
                                 f"{type(e).__name__}: {e}") from None
            out.write(line + "\n")
    finally:
        r.close()
