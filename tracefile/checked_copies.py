"""Trace file copies whose content was checked already: a replay hashes each copy of a mapped
file (SHA-256) before it maps it, which cost every `relive replay` ~25 ms (libc, ld.so, the
program; importing hashlib alone ~5-15 ms, OpenSSL's start-up) for files that are the same
from one replay to the next.

A copy whose hash matched its id is noted in a per-user directory ($XDG_CACHE_HOME/relive/
checked, mode 0700, as tracee.fastloop's builds) as a symlink named by the copy's stat key
(device, inode, size, mtime, ctime: tracefile.file_cache.stat_key) pointing at the id. Users
cannot set a ctime, so a copy changed since it was checked has another key and is hashed
again; a copy changed less than file_cache.RECENT_NS before it was checked is not noted
(two changes within one tick of the filesystem's clock leave the same ctime). The notes are
only a shortcut: every failure (no home, a full disk, a read-only cache) leaves the caller
hashing as before, and notes in a directory not owned by the user are not believed. Entries
are a few bytes each, read only by name; beyond MAX_NOTES the oldest quarter is removed. The
count is looked at by one note in TRIM_EVERY (chosen by the name's CRC): scanning and sorting
4,096 notes at every note cost a replay that noted 22 copies 0.4 s once the directory was full.
"""
from __future__ import annotations

import os
import time
import zlib
from pathlib import Path

from tracefile.file_cache import RECENT_NS, stat_key

MAX_NOTES = 4096
TRIM_EVERY = 32


def _directory() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "relive" / "checked"


def known(path: Path, file_id: str) -> bool:
    """Was `path` checked to hold the content `file_id`, unchanged since?"""
    try:
        st = os.stat(path)
        where = _directory()
        return (os.readlink(where / stat_key(st)) == file_id
                and where.stat().st_uid == os.getuid())
    except (OSError, ValueError):
        return False


def note(path: Path, file_id: str) -> None:
    """`path` holds the content `file_id` (its hash was just compared)."""
    try:
        st = os.stat(path)
        if time.time_ns() - st.st_ctime_ns < RECENT_NS:
            return
        where = _directory()
        where.mkdir(parents=True, exist_ok=True, mode=0o700)
        if where.stat().st_uid != os.getuid():
            return  # (not ours: never trust notes someone else could write)
        name = stat_key(st)
        entry = where / name
        try:
            os.symlink(file_id, entry)
        except FileExistsError:
            os.unlink(entry)  # a stale note for another content: replaced
            os.symlink(file_id, entry)
        if zlib.crc32(name.encode()) % TRIM_EVERY == 0:
            _trim(where)
    except OSError:
        pass


def _trim(where: Path) -> None:
    if len(os.listdir(where)) <= MAX_NOTES:
        return
    notes = sorted(os.scandir(where), key=lambda e: e.stat(follow_symlinks=False).st_mtime_ns)
    for entry in notes[:len(notes) - MAX_NOTES * 3 // 4]:
        try:
            os.unlink(entry.path)
        except OSError:
            pass
