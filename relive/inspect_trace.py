"""`relive info`, `relive ps`, `relive dump`: read-only views of a trace."""
from __future__ import annotations

import os
import shlex
import signal
from pathlib import Path
from typing import TextIO

from tracee.sysnums import name_of
from tracefile.reader import TraceReader
from tracefile.records import Event, Kind, TaskRecord

from replayer.registers import unpack


def _size_text(total: int, shared: int) -> str:
    if not shared:
        return f"{total} bytes"
    return f"{total} bytes ({shared} of them in files shared with other traces)"


def _status_text(status: int | None) -> str:
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
            f"program:  {m.get('program', '?')}",
            f"argv:     {' '.join(m.get('argv', []))}",
            f"cwd:      {m.get('cwd', '?')}",
            f"recorded: {m.get('started', '?')} on {m.get('host', '?')}",
            f"cpu:      {m.get('cpu', '?')}" + (
                "" if "pmu" not in m else " (with a PMU, not used)" if m["pmu"] else
                " (no PMU: preemption points found by pc, registers and memory)"),
            f"tasks:    {_task_summary(r.tasks())}",
            f"events:   {r.event_count}",
            f"size:     {_size_text(*r.size_bytes())}",
            "complete: yes" if r.complete else
            "complete: NO - the recording was cut off; replay stops at its last event"
            + (f" ({m['error']})" if m.get("error") else ""),
        ]
        if "cpuid" in m:
            lines.append(f"cpuid:    {_cpuid_text(m)}")
        if "exit_status" in m:
            lines.append(f"status:   {_status_text(m['exit_status'])}")
        return "\n".join(lines)
    finally:
        r.close()


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
                rows.append(f"{t.pid}\t{t.ppid}\t{threads}\t{_status_text(t.exit_status)}\t"
                            + command.replace("\n", "\\n").replace("\t", "\\t"))
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
            shown = _STREAMS.get(ev.info.get("out", 0), "")
            return (f"{head} {name_of(ev.nr)}({args}) = {ev.result:#x} [{written} bytes "
                    f"written]{shown}")
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
            return f"{head} {ev.info.get('exe')} [{len(ev.info.get('maps', []))} mappings, " \
                   f"{written} bytes written]"
        case Kind.EXIT if "exec" in ev.info:
            return f"{head} {_status_text(ev.result)} (killed by thread {ev.info['exec']}'s execve)"
        case Kind.EXIT:
            return f"{head} {_status_text(ev.result)}"
        case Kind.ENTER:
            return f"{head} {name_of(ev.nr)}: blocked, another thread runs"
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
            out.write(describe_event(ev) + "\n")
    finally:
        r.close()
