"""Copying and hashing files with holes as files with holes.

A program may map a sparse file (python's test_mmap maps files of 2-6 GB holding a few
bytes; databases preallocate with holes). The trace keeps a copy of every mapped file, named
by the SHA-256 of its content: read and written byte by byte, such a file cost its whole
apparent size in disk space and time (a 0.8 s test took 100 s to record, 18 GB of trace).
Here the holes the filesystem reports (`SEEK_DATA`/`SEEK_HOLE`) are neither read nor
written: the copy gets the same holes, and the digest is fed zeros for them from memory, so
the id is the plain content's hash, whatever the holes (a filesystem without them reports
the whole file as data, which is the old way).

This module knows files and digests, nothing of traces.
"""
from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from typing import Protocol

_CHUNK = 1 << 20
_ZEROS = memoryview(bytes(_CHUNK))


class Digest(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...


def runs(fd: int, size: int) -> Iterator[tuple[int, int, bool]]:
    """(offset, length, is_data) runs covering the first `size` bytes of `fd`, in order."""
    pos = 0
    while pos < size:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:  # no data after pos: a hole to the end
                yield pos, size - pos, False
                return
            yield pos, size - pos, True  # no SEEK_DATA here (EINVAL): all data
            return
        if data > pos:
            yield pos, min(data, size) - pos, False
            pos = min(data, size)
            if pos >= size:
                return
        hole = min(os.lseek(fd, pos, os.SEEK_HOLE), size)
        yield pos, hole - pos, True
        pos = hole


def _zeros(digest: Digest, length: int) -> None:
    while length > 0:
        n = min(length, _CHUNK)
        digest.update(_ZEROS[:n])
        length -= n


def _data(src: int, pos: int, length: int, dst: int | None, digest: Digest | None) -> int:
    """Copy/hash one data run; returns how many bytes it really had (a file shrunk meanwhile
    has fewer)."""
    done = 0
    while done < length:
        chunk = os.pread(src, min(_CHUNK, length - done), pos + done)
        if not chunk:
            break
        if digest is not None:
            digest.update(chunk)
        if dst is not None:
            view = memoryview(chunk)
            while view:
                view = view[os.pwrite(dst, view, pos + done + len(chunk) - len(view)):]
        done += len(chunk)
    return done


def copy(src: int, dst: int | None, digest: Digest | None = None) -> int:
    """Copy `src` into the empty file `dst` (None: only hash), keeping its holes, feeding its
    content to `digest`; returns the size copied (the size `src` had when the copy began, or
    less if it shrank meanwhile)."""
    size = os.fstat(src).st_size
    end = 0
    for pos, length, is_data in runs(src, size):
        if not is_data:
            if digest is not None:
                _zeros(digest, length)
            end = pos + length
            continue
        got = _data(src, pos, length, dst, digest)
        end = pos + got
        if got < length:
            break
    if dst is not None:
        os.ftruncate(dst, end)  # the holes at the end, and never longer than what was read
    return end


def _data_ranges(fd: int, size: int) -> list[tuple[int, int]]:
    return [(pos, pos + length) for pos, length, is_data in runs(fd, size) if is_data]


def same_content(a: int, b: int) -> bool:
    """Whether two files hold the same bytes, reading only where either has data (where
    both have holes both are zeros)."""
    size = os.fstat(a).st_size
    if os.fstat(b).st_size != size:
        return False
    spans = sorted(_data_ranges(a, size) + _data_ranges(b, size))
    end = 0
    for start, stop in spans:
        start = max(start, end)
        while start < stop:
            n = min(_CHUNK, stop - start)
            if os.pread(a, n, start) != os.pread(b, n, start):
                return False
            start += n
        end = max(end, stop)
    return True
