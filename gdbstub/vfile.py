"""gdb's Host I/O (``vFile:`` packets): how gdb reads the executable and libraries through us.

gdb opens the files named by ``qXfer:exec-file`` and ``qXfer:libraries-svr4`` with
``vFile:open``, reads them with ``pread`` and ``fstat``, and closes them. A replay serves its
trace's copies, so symbols match what ran even if the binary was rebuilt since; which paths it
serves is the Target's business (``open_file``). This module parses the packets, keeps the set
of handles this connection opened, and encodes ``F`` replies:

    F<result>[,<errno>][;<binary attachment>]      (numbers hex, errno in gdb's numbering)

Everything is read-only: opening for writing, ``pwrite`` and ``unlink`` fail with EROFS.
"""
from __future__ import annotations

import errno
import logging
import os
import struct
from dataclasses import dataclass
from typing import Final, assert_never

from gdbstub.codec import PACKET_SIZE, escaped_prefix_length
from debugtarget.errors import TargetError
from gdbstub.syntax import hex_bytes, hex_int, split_exact
from debugtarget.protocol import Target

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class VFileSetFs:
    """``vFile:setfs:pid``: later paths are as process ``pid`` sees them (0: the stub's view)."""

    pid: int


@dataclass(frozen=True, slots=True, kw_only=True)
class VFileOpen:
    """``vFile:open:<hex path>,<flags>,<mode>`` (flags in gdb's File-I/O numbering)."""

    path: str
    flags: int
    mode: int


@dataclass(frozen=True, slots=True, kw_only=True)
class VFilePread:
    """``vFile:pread:<fd>,<count>,<offset>``."""

    fd: int
    count: int
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class VFilePwrite:
    """``vFile:pwrite:<fd>,<offset>,<binary>`` (refused)."""

    fd: int
    offset: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class VFileClose:
    """``vFile:close:<fd>``."""

    fd: int


@dataclass(frozen=True, slots=True, kw_only=True)
class VFileFstat:
    """``vFile:fstat:<fd>``."""

    fd: int


@dataclass(frozen=True, slots=True, kw_only=True)
class VFileReadlink:
    """``vFile:readlink:<hex path>``."""

    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class VFileUnlink:
    """``vFile:unlink:<hex path>`` (refused)."""

    path: str


VFileRequest = (VFileSetFs | VFileOpen | VFilePread | VFilePwrite | VFileClose | VFileFstat
                | VFileReadlink | VFileUnlink)

# gdb File-I/O open flags that mean "write".
_WRITE_FLAGS: Final = 0x1 | 0x2 | 0x8 | 0x200 | 0x400  # WRONLY RDWR APPEND CREAT TRUNC

# Linux errno -> gdb File-I/O errno; the protocol defines only these.
_GDB_ERRNO: Final[dict[int, int]] = {
    errno.EPERM: 1, errno.ENOENT: 2, errno.EINTR: 4, errno.EBADF: 9, errno.EACCES: 13,
    errno.EFAULT: 14, errno.EBUSY: 16, errno.EEXIST: 17, errno.ENODEV: 19,
    errno.ENOTDIR: 20, errno.EISDIR: 21, errno.EINVAL: 22, errno.ENFILE: 23,
    errno.EMFILE: 24, errno.EFBIG: 27, errno.ENOSPC: 28, errno.ESPIPE: 29, errno.EROFS: 30,
    errno.ENAMETOOLONG: 91,
}
_EUNKNOWN: Final = 9999
_REPLY_BUDGET: Final = PACKET_SIZE - 32  # room for "F<count>;" in a full-size reply
MAX_OFFSET: Final = (1 << 63) - 1  # a file offset is a signed 64-bit off_t


def _hex_int(text: bytes, payload: bytes) -> int:
    return hex_int(text, payload, "vFile argument")


def _hex_path(text: bytes, payload: bytes) -> str:
    return os.fsdecode(hex_bytes(text, payload, "vFile path"))


def parse_vfile(args: bytes, payload: bytes) -> VFileRequest | None:
    """The request for ``vFile:<args>``; None for an operation this stub does not know."""
    op, _, rest = args.partition(b":")
    match op:
        case b"setfs":
            return VFileSetFs(pid=_hex_int(rest, payload))
        case b"open":
            path, flags, mode = split_exact(rest, b",", 3, payload)
            return VFileOpen(path=_hex_path(path, payload), flags=_hex_int(flags, payload),
                             mode=_hex_int(mode, payload))
        case b"pread":
            fd, count, offset = split_exact(rest, b",", 3, payload)
            return VFilePread(fd=_hex_int(fd, payload), count=_hex_int(count, payload),
                              offset=_hex_int(offset, payload))
        case b"pwrite":
            fd, offset, data = split_exact(rest, b",", 3, payload)
            return VFilePwrite(fd=_hex_int(fd, payload), offset=_hex_int(offset, payload),
                               data=data)
        case b"close":
            return VFileClose(fd=_hex_int(rest, payload))
        case b"fstat":
            return VFileFstat(fd=_hex_int(rest, payload))
        case b"readlink":
            return VFileReadlink(path=_hex_path(rest, payload))
        case b"unlink":
            return VFileUnlink(path=_hex_path(rest, payload))
    return None


def _ok(result: int, attachment: bytes | None = None) -> bytes:
    reply = b"F%x" % result
    return reply if attachment is None else reply + b";" + attachment


def _fail(linux_errno: int | None) -> bytes:
    return b"F-1,%x" % _GDB_ERRNO.get(linux_errno or 0, _EUNKNOWN)


def encode_stat(st_size: int, st_mode: int, *, dev: int = 0, ino: int = 0, nlink: int = 1,
                uid: int = 0, gid: int = 0, rdev: int = 0, blksize: int = 4096,
                blocks: int = 0, atime: int = 0, mtime: int = 0, ctime: int = 0) -> bytes:
    """gdb's 64-byte big-endian ``struct stat`` (File-I/O protocol)."""
    m32, m64 = 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF
    return struct.pack(">7I3Q3I", dev & m32, ino & m32, st_mode & m32, nlink & m32,
                       uid & m32, gid & m32, rdev & m32, st_size & m64, blksize & m64,
                       blocks & m64, atime & m32, mtime & m32, ctime & m32)


class HostIO:
    """The vFile state of one gdb connection. Runs on the engine thread like the session."""

    def __init__(self, target: Target) -> None:
        self._target = target
        self._fs_pid = 0
        self._handles: set[int] = set()

    def handle(self, request: VFileRequest) -> bytes:
        """The ``F`` reply payload for one request."""
        try:
            return self._dispatch(request)
        except OSError as exc:
            return _fail(exc.errno)
        except TargetError as exc:
            log.info("vFile request %s failed: %s", request, exc)
            return _fail(None)

    def close_all(self) -> None:
        """Close every handle gdb left open (when the connection ends)."""
        for handle in sorted(self._handles):
            try:
                self._target.close_file(handle)
            except (OSError, TargetError) as exc:
                log.debug("closing vFile handle %d: %s", handle, exc)
        self._handles.clear()

    def _dispatch(self, request: VFileRequest) -> bytes:
        match request:
            case VFileSetFs(pid=pid):
                self._fs_pid = pid
                return _ok(0)
            case VFileOpen(path=path, flags=flags):
                if flags & _WRITE_FLAGS:
                    return _fail(errno.EROFS)
                handle = self._target.open_file(self._fs_pid, path)
                self._handles.add(handle)
                return _ok(handle)
            case VFilePread(fd=fd, count=count, offset=offset):
                self._check(fd)
                if offset > MAX_OFFSET:
                    return _fail(errno.EINVAL)
                data = self._target.pread(fd, min(count, _REPLY_BUDGET), offset)
                data = data[:escaped_prefix_length(data, min(count, _REPLY_BUDGET))]
                return _ok(len(data), data)
            case VFileClose(fd=fd):
                self._check(fd)
                self._handles.discard(fd)
                self._target.close_file(fd)
                return _ok(0)
            case VFileFstat(fd=fd):
                self._check(fd)
                st = self._target.fstat(fd)
                data = encode_stat(st.size, st.mode, dev=st.dev, ino=st.ino, nlink=st.nlink,
                                   uid=st.uid, gid=st.gid, rdev=st.rdev, blksize=st.blksize,
                                   blocks=st.blocks, atime=st.atime, mtime=st.mtime,
                                   ctime=st.ctime)
                return _ok(len(data), data)
            case VFileReadlink(path=path):
                link = os.fsencode(self._target.readlink(self._fs_pid, path))
                if escaped_prefix_length(link, _REPLY_BUDGET) < len(link):
                    return _fail(errno.ENAMETOOLONG)
                return _ok(len(link), link)
            case VFilePwrite() | VFileUnlink():
                return _fail(errno.EROFS)
            case _:
                assert_never(request)

    def _check(self, fd: int) -> None:
        if fd not in self._handles:
            raise OSError(errno.EBADF, f"vFile handle {fd} is not open")
