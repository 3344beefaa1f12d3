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

Fine ctimes. On a filesystem whose ctimes do not move by ticks after a stat (Linux 6.13's
multigrain timestamps: ext4, xfs, btrfs, tmpfs), any change made after a stat, however soon,
gets a ctime of its own. There a copy need not have settled for RECENT_NS: a replay notes
what it hashed if the key it stat'ed before hashing is the key after (`note(before=...)`),
and the recorder notes the copies it just wrote or linked (`note_made`), every copy of each
new trace otherwise being hashed by its first replay (the link into the trace changes the
inode's ctime): ~4 ms of CPU, 8-14 ms on a busy machine. The recorder knows the content
of what it wrote (it hashed the bytes as it wrote them, then stat'ed the copy) or linked
(a cached copy `known` here, stat'ed just before the link); its own rename, link and unlink
(of an overwritten trace's link to the same inode) change only the ctime, so the copy is
noted if its size and mtime are still those stat'ed: a write
after that stat would have given it another mtime. What is not seen is only the write that
puts the mtime back at once (utimes), microseconds after relive's own step: no stray edit
does that, and a forged trace is not what these checks are against (tracefile.integrity).
Whether the ctimes are fine is tried once per filesystem (`_fine_ctimes`): three changes of
a probe file, each after a stat, must get three ctimes within a millisecond, which a clock
that moves by ticks (1 ms at least: HZ <= 1000) or a coarser filesystem cannot give. The
probe is in the notes directory, so it answers only for copies on the same filesystem.
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
    return checked_stat(path, file_id) is not None


def checked_stat(path: Path, file_id: str) -> os.stat_result | None:
    """`path`'s stat, if it was checked to hold the content `file_id`, unchanged since."""
    try:
        st = os.stat(path)
        where = _directory()
        if (os.readlink(where / stat_key(st)) == file_id
                and where.stat().st_uid == os.getuid()):
            return st
    except (OSError, ValueError):
        pass
    return None


def note(path: Path, file_id: str, before: os.stat_result | None = None) -> None:
    """`path` holds the content `file_id` (its hash was just compared); `before`: its stat
    taken before it was hashed."""
    try:
        st = os.stat(path)
        if not (before is not None and stat_key(before) == stat_key(st)
                and _fine_ctimes(st.st_dev)) and time.time_ns() - st.st_ctime_ns < RECENT_NS:
            return
        _write(st, file_id)
    except OSError:
        pass


def note_made(path: Path, file_id: str, made: os.stat_result) -> None:
    """The recorder wrote or linked `path` with the content `file_id`; `made` is its stat
    once the content was known (after the recorder's last write, or before its link)."""
    try:
        st = os.stat(path)
        if ((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
                == (made.st_dev, made.st_ino, made.st_size, made.st_mtime_ns)
                and _fine_ctimes(st.st_dev)):
            _write(st, file_id)
    except OSError:
        pass


_fine: dict[int, bool] = {}  # device -> are its ctimes fine (see the module's docstring)


def _fine_ctimes(dev: int) -> bool:
    if dev not in _fine:
        _fine[dev] = False
        where = _directory()
        where.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(where / ".ctime-probe", os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            if os.fstat(fd).st_dev == dev:
                start = time.monotonic_ns()
                seen = set()
                for _ in range(3):
                    os.fchmod(fd, 0o600)
                    seen.add(os.fstat(fd).st_ctime_ns)
                _fine[dev] = len(seen) == 3 and time.monotonic_ns() - start < 1_000_000
        finally:
            os.close(fd)
    return _fine[dev]


def _write(st: os.stat_result, file_id: str) -> None:
    """Note that the file `st` describes holds `file_id`."""
    try:
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
