"""A per-user cache of the mapped files traces copy: a file already copied into an earlier
trace, and unchanged since, is hard-linked into the new trace instead of read, hashed and
copied again (libc, ld.so and the program itself are the same from one recording to the next).

Layout of the cache directory (relive puts it in the trace root as `.files`, mode 0700):

    by-id/<id>      the content: a hard link of some trace's files/<id> (the same inode)
    by-stat/<key>   a symlink -> ../by-id/<id>; key = dev-ino-size-mtime_ns-ctime_ns of the
                    original file when it was copied
    notes/<kind>-<id>  what a recorder learned about the content <id> and keeps for the next
                    recordings (e.g. where its rdrand instructions are); swept with by-id/<id>

A file whose key is in the index holds the bytes that were copied: users cannot set a ctime,
so any change to the file gives it a new key. A copy written in place after it was indexed
(a trace's files/<id> is the same inode as by-id/<id>) has an mtime after its index entry's
and is dropped from the cache rather than linked into new traces. The exception is two
changes within one tick of the filesystem's clock, which leave the same ctime: a file changed
less than RECENT_NS ago is therefore not indexed (git's "racy clean" entries, handled the same way).

Entries appear whole (link() and symlink() are atomic), so recorders running at once never see
half a file. The cache is only a shortcut: every failure (another filesystem, an entry removed
meanwhile, a full disk) makes a method return None or do nothing, and the caller copies as it
would without a cache. A trace never depends on it: a hard link is a full file, so removing
the cache, or the original file, changes no trace.

Garbage: a by-id file with a single link is in no trace any more; `sweep()` removes those, and
index entries that point at nothing. It never removes what a trace uses, so it may run while
other recorders add entries; at worst one of them copies a file it could have linked.
Recorders sweep at most once every SWEEP_EVERY_S (`sweep_if_due`, a stamp file's mtime): a
sweep stats every entry (10-40 ms for ~400 of them here, at the end of every recording), and
garbage appears only as traces are deleted.

This module knows nothing of relive's trace root nor of the trace database.
"""
from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path

RECENT_NS = 2_000_000_000
SWEEP_EVERY_S = 3600
ID_DIGITS = 32


def stat_key(st: os.stat_result) -> str:
    return f"{st.st_dev}-{st.st_ino}-{st.st_size}-{st.st_mtime_ns}-{st.st_ctime_ns}"


class FileCache:
    def __init__(self, root: Path) -> None:
        """Use `open()`: it makes sure the directory exists and is private."""
        self.root = root
        self._by_id = root / "by-id"
        self._by_stat = root / "by-stat"
        self._notes = root / "notes"
        self._usable = True

    @classmethod
    def open(cls, root: Path) -> FileCache | None:
        """The cache in `root`, created 0700 if need be; None if it cannot be used (the path
        is not a directory, or not one of this user's)."""
        try:
            root.mkdir(parents=True, exist_ok=True, mode=0o700)
            st = os.lstat(root)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
                return None
            if stat.S_IMODE(st.st_mode) != 0o700:
                os.chmod(root, 0o700)
            cache = cls(root)
            cache._by_id.mkdir(exist_ok=True, mode=0o700)
            cache._by_stat.mkdir(exist_ok=True, mode=0o700)
        except OSError:
            return None
        return cache

    def link_into(self, st: os.stat_result, directory: Path) -> str | None:
        """If the file `st` describes is cached, hard-link its content as directory/<id> and
        return the id; otherwise None."""
        if not self._usable:
            return None
        entry = self._by_stat / stat_key(st)
        file_id = self.lookup(st)
        try:
            indexed_ns = os.lstat(entry).st_mtime_ns
        except OSError:
            return None
        if file_id is None:
            return None
        content = self.content(file_id)
        try:
            if os.stat(content).st_mtime_ns > indexed_ns:
                # Written in place since it was indexed (through some trace's files/<id>,
                # the same inode): no longer the bytes copied. Every later recording would
                # have linked the damage; forget it and copy the file afresh.
                os.unlink(entry)
                os.unlink(content)
                return None
            os.link(content, directory / file_id)
        except FileExistsError:
            pass  # the trace holds these bytes already, mapped under another name
        except OSError as e:
            self._give_up_on(e)
            return None
        return file_id

    def lookup(self, st: os.stat_result) -> str | None:
        """The id of the content indexed for the file `st` describes, if any."""
        try:
            file_id = os.path.basename(os.readlink(self._by_stat / stat_key(st)))
        except OSError:
            return None
        if len(file_id) != ID_DIGITS or file_id.strip("0123456789abcdef"):
            return None
        return file_id

    def content(self, file_id: str) -> Path:
        """Where the content `file_id` is kept (it may be gone)."""
        return self._by_id / file_id

    def remember(self, st: os.stat_result, copy: Path) -> None:
        """Index `copy`, a trace's finished copy of the file `st` describes (named by its id),
        for the next recordings."""
        if not self._usable or time.time_ns() - st.st_ctime_ns < RECENT_NS:
            return
        key = stat_key(st)
        target = f"../by-id/{copy.name}"
        try:
            try:
                os.link(copy, self._by_id / copy.name)
            except FileExistsError:
                pass  # the same bytes, cached from another file or another recorder
            try:
                os.symlink(target, self._by_stat / key)
            except FileExistsError:  # left dangling by a sweep: replace it whole
                tmp = self._by_stat / f".{key}.{os.getpid()}"
                os.symlink(target, tmp)
                os.replace(tmp, self._by_stat / key)
        except OSError as e:
            self._give_up_on(e)

    def note(self, kind: str, file_id: str) -> str | None:
        """The note of `kind` kept about the content `file_id`, or None."""
        try:
            return (self._notes / f"{kind}-{file_id}").read_text()
        except (OSError, UnicodeDecodeError):
            return None

    def keep_note(self, kind: str, file_id: str, text: str) -> None:
        """Keep `text` about the content `file_id` (cached: by-id/<id> exists)."""
        if not self._usable or not (self._by_id / file_id).exists():
            return
        tmp = self._notes / f".{kind}-{file_id}.{os.getpid()}"
        try:
            self._notes.mkdir(exist_ok=True, mode=0o700)
            tmp.write_text(text)
            os.replace(tmp, self._notes / f"{kind}-{file_id}")
        except OSError:
            tmp.unlink(missing_ok=True)

    def sweep_if_due(self) -> None:
        """Sweep if no recorder has in the last SWEEP_EVERY_S."""
        stamp = self.root / ".swept"
        try:
            if time.time() - stamp.stat().st_mtime < SWEEP_EVERY_S:
                return
        except OSError:
            pass  # never swept (or unreadable): sweep
        try:
            stamp.touch(mode=0o600)  # (an existing stamp gets the time now)
        except OSError:
            pass
        self.sweep()

    def sweep(self) -> None:
        """Remove the content no trace uses any more, then index entries and notes left
        pointing at nothing."""
        for entry in _entries(self._by_id):
            try:
                if entry.stat(follow_symlinks=False).st_nlink == 1:
                    os.unlink(entry.path)
            except OSError:
                pass
        for entry in _entries(self._by_stat):
            try:
                if not os.path.exists(entry.path):
                    os.unlink(entry.path)
            except OSError:
                pass
        for entry in _entries(self._notes):
            try:
                if not (self._by_id / entry.name.rpartition("-")[2]).exists():
                    os.unlink(entry.path)
            except OSError:
                pass

    def _give_up_on(self, error: OSError) -> None:
        """A trace on another filesystem than the cache can never link: stop trying."""
        if error.errno == errno.EXDEV:
            self._usable = False


def _entries(directory: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as it:
            return list(it)
    except OSError:
        return []
