"""Where traces live: $RELIVE_TRACE_DIR or $XDG_DATA_HOME/relive (~/.local/share/relive),
one directory per recording named <program>-<n>, a `latest` symlink to the newest, and `.files`,
the cache of mapped files that recordings hard-link instead of copying.

Commands name a trace by path or by its name here; `latest` that points nowhere falls back to
the newest trace left; removing a trace never touches one being recorded
(tracefile.recording_lock) and keeps `latest` pointing at a trace."""
from __future__ import annotations

import os
from pathlib import Path

from tracefile import recording_lock
from tracefile.errors import TraceError


def trace_root() -> Path:
    if os.environ.get("RELIVE_TRACE_DIR"):
        return Path(os.environ["RELIVE_TRACE_DIR"])
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(data) / "relive"


def file_cache_dir() -> Path:
    """Where recordings share the unchanged files they map (tracefile.file_cache); removing
    it is always safe."""
    return trace_root() / ".files"


def new_trace_dir(program: str) -> Path:
    root = trace_root()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    base = os.path.basename(program) or "trace"
    n = 0
    while True:
        candidate = root / f"{base}-{n}"
        try:
            candidate.mkdir(mode=0o700)
            return candidate
        except FileExistsError:
            n += 1


def set_latest(trace: Path) -> None:
    link = trace_root() / "latest"
    tmp = trace_root() / f".latest-{os.getpid()}"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(trace.resolve())
        tmp.replace(link)
    except OSError:
        pass


def resolve_trace(arg: str | None, *, replay: bool = False) -> Path:
    """The trace a command names, or the latest one. A name without a slash that is not a
    trace in the current directory is looked up in the trace directory (`relive info
    hello-0`). With `replay`, a trace still being recorded is refused."""
    path = named_trace(arg) if arg else latest_trace()
    if replay and recording_lock.being_recorded(path):
        raise TraceError(f"trace {path} is still being recorded; replay it once the "
                         "recording has ended")
    return path


def named_trace(arg: str) -> Path:
    path = Path(arg)
    if "/" not in arg and arg not in (".", "..") and not (path / "trace.db").exists():
        if arg == "latest":
            return latest_trace()
        in_root = trace_root() / arg
        if in_root.is_dir():
            return in_root
        if not path.exists():
            raise TraceError(f"no trace at {arg}, nor a trace named {arg} in {trace_root()} "
                             "(`relive ls` lists them)")
    if not path.exists():
        raise TraceError(f"no trace at {path}")
    return path


def latest_trace() -> Path:
    """What `latest` points to; if it points nowhere (the trace was removed by hand), the
    most recently written trace left in the trace directory."""
    latest = trace_root() / "latest"
    if latest.exists():
        return latest.resolve()
    remaining = all_traces()
    if not remaining:
        raise TraceError(f"no trace given and no latest trace in {trace_root()}; "
                         "record one with `relive record PROGRAM`")
    return remaining[-1]


def all_traces() -> list[Path]:
    """The traces in the trace directory, oldest first (by when their database was last
    written; a trace recorded with `-o` elsewhere is not among them)."""
    found = []
    try:
        entries = list(os.scandir(trace_root()))
    except OSError:
        return []
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            found.append((os.stat(Path(entry.path) / "trace.db").st_mtime_ns, entry.name))
        except OSError:
            continue  # not a trace
    return [trace_root() / name for _, name in sorted(found)]


def remove_trace(trace: Path) -> None:
    """Delete a trace directory, refusing one that is being recorded (its recorder's lock is
    held while deleting, so no recording can start in it meanwhile) or that is not a trace;
    then repoint `latest` if it pointed to it."""
    if trace.is_symlink() or not (trace / "trace.db").is_file():
        raise TraceError(f"{trace} is not a relive trace (no trace.db); not removing it")
    try:
        lock = recording_lock.hold(trace, patience=0.2)
    except TraceError:
        raise TraceError(f"cannot remove {trace}: it is still being recorded") from None
    import shutil  # only here: ~5 ms of start-up for every other command
    try:
        shutil.rmtree(trace)
    except OSError as e:
        raise TraceError(f"cannot remove {trace}: {e.strerror}") from None
    finally:
        recording_lock.release(lock)
    repoint_latest()


def repoint_latest() -> None:
    """Make `latest` point to the newest trace left if its trace is gone (or remove it when
    none is left)."""
    link = trace_root() / "latest"
    if not link.is_symlink() or link.exists():
        return
    remaining = all_traces()
    if remaining:
        set_latest(remaining[-1])
    else:
        link.unlink(missing_ok=True)
