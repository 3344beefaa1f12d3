"""The files gdb may read through vFile: only the trace's own copies of the files the
program mapped, looked up by the names the program used. Handles stay valid across a
restart of the replay."""
from __future__ import annotations

import errno
import os
from pathlib import Path

from debugtarget.protocol import FileStat
from tracefile.reader import TraceReader, checked_file_id


class TraceFiles:
    def __init__(self, trace: Path) -> None:
        reader = TraceReader(trace)
        try:
            self.paths = {orig: reader.dir / "files" / fid
                          for fid, orig in reader.file_ids().items()}
            for ev in reader.events(0, 1):
                exe_id = checked_file_id(reader.dir, ev.info["exe_id"])
                self.paths[ev.info["exe"]] = reader.dir / "files" / exe_id
        finally:
            reader.close()
        self._open: dict[int, int] = {}

    def copy_of(self, path: str) -> Path | None:
        """The trace's copy of `path`: by exact name, by the name it resolves to here, or by
        a unique file name (the loader is mapped as /usr/lib/... but named /lib64/...)."""
        copy = self.paths.get(path) or self.paths.get(os.path.realpath(path))
        if copy is None:
            base = os.path.basename(path)
            matches = {c for p, c in self.paths.items() if os.path.basename(p) == base}
            copy = matches.pop() if len(matches) == 1 else None
        return copy

    def open(self, path: str) -> int:
        copy = self.copy_of(path)
        if copy is None:
            raise OSError(errno.ENOENT, f"{path} is not part of this trace")
        fd = os.open(copy, os.O_RDONLY | os.O_CLOEXEC)
        self._open[fd] = fd
        return fd

    def pread(self, handle: int, length: int, offset: int) -> bytes:
        return os.pread(self._handle(handle), length, offset)

    def fstat(self, handle: int) -> FileStat:
        return FileStat.from_os(os.fstat(self._handle(handle)))

    def close(self, handle: int) -> None:
        os.close(self._open.pop(self._handle(handle)))

    def _handle(self, handle: int) -> int:
        if handle not in self._open:
            raise OSError(errno.EBADF, f"no open file {handle}")
        return handle
