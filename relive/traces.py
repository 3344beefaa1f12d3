"""Where traces live: $RELIVE_TRACE_DIR or $XDG_DATA_HOME/relive (~/.local/share/relive),
one directory per recording named <program>-<n>, a `latest` symlink to the newest, and `.files`,
the cache of mapped files that recordings hard-link instead of copying."""
from __future__ import annotations

import os
from pathlib import Path

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


def resolve_trace(arg: str | None) -> Path:
    """The trace a command names, or the latest one."""
    if arg:
        path = Path(arg)
        if not path.exists():
            raise TraceError(f"no trace at {path}")
        return path
    latest = trace_root() / "latest"
    if not latest.exists():
        raise TraceError(f"no trace given and no latest trace in {trace_root()}; "
                         "record one with `relive record PROGRAM`")
    return latest.resolve()
