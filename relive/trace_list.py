"""`relive ls` and `relive rm`: the traces in the trace directory, one line each, and their
removal (never of a trace still being recorded; `latest` follows)."""
from __future__ import annotations

import os
from pathlib import Path

from tracefile.errors import ReliveError

from relive import traces
from relive.inspect_trace import human_size, shown, state_text, status_text

HEADER = ("NAME", "PROGRAM", "WHEN", "SIZE", "STATE", "STATUS")


def trace_row(trace: Path) -> tuple[str, ...]:
    """One trace's line: name, program, when recorded, size, complete/incomplete/recording,
    how the program ended. A trace that cannot be read gets a line saying so."""
    from tracefile.reader import TraceReader
    try:
        reader = TraceReader(trace)
    except ReliveError as e:  # a recording that has only just begun has no tables yet
        state = "recording" if state_text(trace, False) == "recording" else "unreadable"
        return (shown(trace.name), "?", "?", "?", state, "-" if state == "recording"
                else shown(str(e)))
    try:
        meta = reader.meta
        state = state_text(trace, reader.complete)
        total, _ = reader.size_bytes()
        status = ("-" if state == "recording" or "exit_status" not in meta
                  else status_text(meta["exit_status"]))
        return (shown(trace.name), shown(_program(meta)),
                str(meta.get("started", "?")).replace("T", " ")[:19],
                human_size(total), state, status)
    finally:
        reader.close()


def _program(meta: dict[str, object]) -> str:
    """The command line, its program by file name (`relive info` gives the whole path)."""
    argv = meta.get("argv")
    if isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv):
        import shlex
        return shlex.join([os.path.basename(argv[0]) or argv[0], *argv[1:]])
    return os.path.basename(str(meta.get("program", "?")))


def ls_text() -> str:
    """The table of `relive ls`, oldest trace first, the latest marked with `*`."""
    found = traces.all_traces()
    if not found:
        return f"no traces in {traces.trace_root()}"
    latest = traces.latest_trace().resolve()
    rows: list[tuple[str, ...]] = [HEADER]
    for trace in found:
        name, *rest = trace_row(trace)
        rows.append((name + ("*" if trace.resolve() == latest else ""), *rest))
    rows = [(*r[:1], _clip(r[1], 40), *r[2:]) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=False))
                     + "  " + r[-1] for r in rows)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def remove(names: list[str]) -> list[str]:
    """Remove each named trace; returns the errors (the others are removed anyway)."""
    errors = []
    for name in names:
        try:
            traces.remove_trace(traces.named_trace(name))
        except ReliveError as e:
            errors.append(str(e))
    return errors
