"""Copies of a trace's files that a replayed process may execute, for a trace kept on a
filesystem mounted noexec (a tmpfs /tmp, a USB stick, a CI artifact volume).

Replay execs the trace's copy of the program and maps the copied libraries executable; the
kernel refuses both for a file on a noexec mount (EACCES, EPERM). There, each copy the
replay asks for is put once into an anonymous memory file (memfd_create), which is exec'able
wherever the trace lives, and handed out as /proc/<this pid>/fd/<n>: the replayed processes,
children of this one, open and exec that path. The memory files live until the reader that
made them is closed; mappings and exec'd images keep their own reference after that.
"""
from __future__ import annotations

import os
from pathlib import Path

from tracefile import sparse
from tracefile.errors import TraceError

_MFD_EXEC = 0x10  # Linux 6.3+: say the memory file may be executed (else a warning is logged)


def on_noexec_mount(directory: Path) -> bool:
    try:
        return bool(os.statvfs(directory).f_flag & os.ST_NOEXEC)
    except OSError:
        return False


class ExecCopies:
    def __init__(self, trace: Path) -> None:
        self._trace = trace
        self._fds: dict[str, int] = {}

    def path(self, file_id: str, source: Path) -> Path:
        """An executable copy of `source` (the trace's file `file_id`)."""
        fd = self._fds.get(file_id)
        if fd is None:
            fd = self._copy(file_id, source)
            self._fds[file_id] = fd
        return Path(f"/proc/{os.getpid()}/fd/{fd}")

    def _copy(self, file_id: str, source: Path) -> int:
        try:
            try:
                fd = os.memfd_create(f"relive-{file_id}", os.MFD_CLOEXEC | _MFD_EXEC)
            except OSError:  # a kernel before 6.3 knows no MFD_EXEC
                fd = os.memfd_create(f"relive-{file_id}", os.MFD_CLOEXEC)
        except OSError as e:
            raise TraceError(f"trace {self._trace} is on a filesystem mounted noexec and its "
                             f"files cannot be copied to memory to run them ({e.strerror}); "
                             "copy the trace elsewhere") from None
        try:
            with open(source, "rb") as src:
                sparse.copy(src.fileno(), fd)  # a hole takes no memory
            os.fchmod(fd, 0o500)
        except OSError as e:
            os.close(fd)
            raise TraceError(f"cannot copy {source} of trace {self._trace} to memory to run "
                             f"it (the trace is on a noexec filesystem): {e.strerror}") from None
        return fd

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
