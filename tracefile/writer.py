"""Write a trace directory: trace.db (SQLite; WAL until closed) plus files/ with copies of
mapped files.

Events are batched and committed often (every COMMIT_EVERY events or COMMIT_SECONDS), so a
recorder killed mid-recording leaves a trace that replays up to its last commit; `complete` is
written into meta only by `close()` after a normal end. Events are stored in chunks, compressed
(tracefile.chunks), one sealed at every commit.
SQLite runs on a thread of its own (tracefile.sql_thread); `commit()` waits for it, the
periodic commits do not.
The directory is private to the user (0700; the database 0600, copied files 0700).
Given a `file_cache` directory (tracefile.file_cache), a mapped file unchanged since an earlier
recording is hard-linked from there instead of copied; the trace is the same either way.
"""
from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracefile.errors import TraceError
from tracefile import checked_copies, recording_lock
from tracefile.file_cache import ID_DIGITS, FileCache
from tracefile import chunks, sparse
from tracefile.chunks import ChunkBuilder
from tracefile.columnar import Columns
from tracefile.integrity import row_crc
from tracefile.records import FORMAT_VERSION, Event, Kind, TaskRecord
from tracefile.schema import SCHEMA
from tracefile.sql_thread import SqlThread

if TYPE_CHECKING:
    import sqlite3

    import zstandard

COMMIT_EVERY = 4096
COMMIT_SECONDS = 0.25
INSERT_TASK = "INSERT OR REPLACE INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
# nr, result, registers, exact writes as (addr, data)
SyscallRecord = tuple[int, int, bytes, list[tuple[int, bytes]]]
# An event before it goes into a chunk: seq, tid, kind, nr, result, regs, info, and its
# memory writes as (addr, data, conservative).
RawEvent = tuple[int, int, int, int, int, bytes, bytes, list[tuple[int, bytes, int]]]


class ChunkSink:
    """The chunk being filled and its compressor: used on the writer's SQL thread only,
    where zstandard is imported too, off the recording's start-up (~5 ms)."""

    def __init__(self) -> None:
        self.builder = ChunkBuilder()
        self._compressor: zstandard.ZstdCompressor | None = None

    def compressor(self) -> zstandard.ZstdCompressor:
        if self._compressor is None:
            import zstandard
            self._compressor = zstandard.ZstdCompressor(level=3)
        return self._compressor

    def seal(self, db: sqlite3.Connection) -> None:
        chunks.store(db, self.builder, self.compressor())

    def events(self, db: sqlite3.Connection, events: list[RawEvent]) -> None:
        builder = self.builder
        for seq, tid, kind, nr, result, regs, info, writes in events:
            if seq != builder.first + len(builder):
                raise TraceError(f"event {seq} stored out of order")
            builder.add(tid, kind, nr, result, regs, info, writes)
            if builder.full():
                self.seal(db)

    def syscalls(self, db: sqlite3.Connection, tid: int, first: int,
                 records: Iterable[SyscallRecord] | Columns, kind: Kind = Kind.SYSCALL
                 ) -> None:
        """A run of one task's SYSCALL (or BUFFERED) events (no info): most of a
        recording's events."""
        if first != self.builder.first + len(self.builder):
            raise TraceError(f"event {first} stored out of order")
        chunks.add_syscalls(self.builder, db, self.compressor(), tid, int(kind), records)


def _create_database(path: Path) -> sqlite3.Connection:
    """A new trace database. 64 KiB pages: the writes table is WITHOUT ROWID, whose rows keep
    at most about a quarter of a page in the tree; with smaller pages a write of a few KiB
    (a read of file data) spills into overflow pages. For `tar` of /usr/share/doc: 2.5x the
    writer's throughput of 4 KiB pages, and a smaller trace (90 MB; 111 MB with 4 KiB pages,
    209 MB with 32 KiB pages, whose overflow pages were mostly empty). No syncs: a
    committed transaction survives the recorder being killed (the kernel has the data), only
    a crash of the machine itself could lose or damage the trace; syncing at every WAL
    checkpoint halved the writer thread's throughput; `synchronous` is set before the switch
    to WAL, which otherwise syncs the new file three times (12-14 ms on a busy disk, 0.05 ms
    without). Called on the SQL thread, which imports sqlite3 too (with datetime, ~9 ms)
    while the recording starts."""
    import sqlite3
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA page_size=65536")
    db.execute("PRAGMA synchronous=OFF")  # before WAL: switching syncs otherwise (~12 ms)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(f"BEGIN; {SCHEMA} COMMIT;")  # one transaction, not one per table
    db.execute("BEGIN")
    return db


def _leave_wal(db: sqlite3.Connection) -> None:
    """A finished trace is read in rollback-journal mode: its readers then open trace.db
    alone, where a WAL database made each new trace's first reader create its -wal and
    -shm files (1-7 ms on a busy disk) and left them behind. Should a reader have it open
    now (`relive info` during the recording), it stays a WAL database, as readable."""
    import sqlite3
    try:
        db.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.OperationalError:
        pass


def _path_value(path: str) -> str | bytes:
    """A path for a TEXT column: as text, or, if it is not UTF-8 (Python keeps such bytes as
    surrogates, which SQLite cannot store as text), as its bytes (the reader decodes both)."""
    try:
        path.encode()
        return path
    except UnicodeEncodeError:
        return os.fsencode(path)


class TraceWriter:
    def __init__(self, directory: Path, *, force: bool = False,
                 file_cache: Path | None = None) -> None:
        self.dir = Path(directory)
        if self.dir.exists() and not self.dir.is_dir():
            raise TraceError(f"{self.dir} exists and is not a directory")
        # An existing directory is locked before anything in it is checked or removed: a
        # trace still being recorded is never overwritten, even with --force.
        self._lock: int | None = recording_lock.hold(self.dir) if self.dir.is_dir() else None
        try:
            self._prepare(force, file_cache)
        except BaseException:
            if self._lock is not None:
                recording_lock.release(self._lock)
            raise
        self._sql = SqlThread(functools.partial(_create_database, self.dir / "trace.db"))
        self._sink = ChunkSink()
        self._uncommitted = 0
        self._events: list[RawEvent] = []
        self._tasks: dict[int, list[Any]] = {}  # tid -> its row of the tasks table
        self._last_commit = time.monotonic()
        self._added: dict[tuple[int, ...], str] = {}
        self.event_count = 0
        self.set_meta(format_version=FORMAT_VERSION)
        self._flush()

    def _prepare(self, force: bool, file_cache: Path | None) -> None:
        """An empty trace directory (an old trace there removed, with `force`), locked."""
        if self.dir.exists() and any(self.dir.iterdir()):
            if not force:
                raise TraceError(f"{self.dir} exists and is not empty; use --force to overwrite it")
            if not (self.dir / "trace.db").exists():
                raise TraceError(f"{self.dir} is not empty and does not hold a trace; "
                                 "refusing to overwrite it even with --force")
            for name in ("trace.db", "trace.db-wal", "trace.db-shm"):
                (self.dir / name).unlink(missing_ok=True)
            old_copies = list((self.dir / "files").glob("*"))
        else:
            old_copies = []
        old_umask = os.umask(0o077)
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.dir, 0o700)
            if self._lock is None:
                self._lock = recording_lock.hold(self.dir)
            (self.dir / "files").mkdir(exist_ok=True, mode=0o700)
            # Created here, 0600: SQLite gives its -wal and -shm files the same mode.
            os.close(os.open(self.dir / "trace.db", os.O_CREAT | os.O_WRONLY, 0o600))
            self._cache = FileCache.open(file_cache) if file_cache is not None else None
        finally:
            os.umask(old_umask)
        for old in old_copies:
            self._remove_copy(old)

    def _remove_copy(self, old: Path) -> None:
        """Remove an old trace's copy. Unlinking changes the inode's ctime: the note of a
        replay that checked its content is kept for the file cache's link to the same inode
        (the next recording links it)."""
        made = checked_copies.checked_stat(old, old.name) if self._cache is not None else None
        old.unlink()
        if made is not None and self._cache is not None:
            checked_copies.note_made(self._cache.content(old.name), old.name, made)

    # -- metadata ---------------------------------------------------------------------------
    def set_meta(self, **values: Any) -> None:
        rows = [(k, json.dumps(v)) for k, v in values.items()]
        self._sql.executemany("INSERT OR REPLACE INTO meta(key, value, crc) VALUES (?, ?, ?)",
                              [(k, v, row_crc(k, v)) for k, v in rows])

    def put_task(self, task: TaskRecord) -> None:
        row = [task.tid, task.pid, task.ppid, json.dumps(list(task.argv)), _path_value(task.exe),
               task.exit_status, self.event_count]
        self._tasks[task.tid] = row
        self._store_task(row)

    def set_task_command(self, tid: int, argv: list[str], exe: str) -> None:
        """The task exec'd: its command line is the new program's."""
        row = self._tasks.get(tid)
        if row is not None:
            row[3:5] = json.dumps(argv), _path_value(exe)
            self._store_task(row)

    def set_task_exit(self, tid: int, status: int) -> None:
        row = self._tasks.get(tid)
        if row is not None:
            row[5] = status
            self._store_task(row)

    def _store_task(self, row: list[Any]) -> None:
        """(Rows are rewritten whole: the checksum covers all of them.)"""
        self._sql.execute(INSERT_TASK, (*row, row_crc(*row)))

    # -- events -----------------------------------------------------------------------------
    def add(self, event: Event) -> int:
        """Store `event` (its seq is assigned here and returned)."""
        seq = self.event_count
        self.event_count += 1
        info = json.dumps(event.info, separators=(",", ":")).encode() if event.info else b""
        self._events.append((seq, event.tid, int(event.kind), event.nr, event.result,
                             event.regs, info,
                             [(w.addr, w.data, int(w.conservative)) for w in event.writes]))
        self._uncommitted += 1
        if (self._uncommitted >= COMMIT_EVERY
                or time.monotonic() - self._last_commit > COMMIT_SECONDS):
            self._flush()
        return seq

    def add_syscalls(self, tid: int, count: int,
                     records: Callable[[], Iterable[SyscallRecord]],
                     kind: Kind = Kind.SYSCALL) -> int:
        """Store a run of `count` SYSCALL events of task `tid`, exactly as `add` would store
        them: `records()` yields each as (nr, result, regs, exact writes as (addr, data)).
        It is called on the SQL thread, so unpacking and compressing a run costs the
        recording thread nothing. Returns the last seq."""
        return self.add_runs(tid, ((kind, count, records),))

    def add_runs(self, tid: int,
                 runs: Sequence[tuple[Kind, int,
                                      Callable[[], Iterable[SyscallRecord] | Columns]]]
                 ) -> int:
        """`add_syscalls` of several runs of task `tid`, in order, handed to the SQL thread
        as one job: a batch of the compiled loop alternates SYSCALL runs with BUFFERED ones
        (tar: thousands a second), and each hand-off costs the recording thread ~25 us."""
        return self.add_task_runs([(tid, kind, n, records) for kind, n, records in runs])

    def add_task_runs(self, runs: Sequence[tuple[int, Kind, int, Callable[
                          [], Iterable[SyscallRecord] | Columns]]]
                      ) -> int:
        """`add_runs` of runs of several tasks (tid, kind, count, records), in order: the
        compiled loop's thread switches (recorder.handoff). An ENTER event is a run of one
        record (nr, 0, entry registers, no writes), stored as `add` would store it."""
        first = self.event_count
        count = sum(n for _, _, n, _ in runs)
        self.event_count += count
        self._uncommitted += count
        self._queue_rows()  # what `add` stored before comes first
        sink = self._sink

        def job(db: sqlite3.Connection) -> None:
            at = first
            for tid, kind, n, records in runs:
                sink.syscalls(db, tid, at, records(), kind)
                at += n

        self._sql.submit(job)
        if (self._uncommitted >= COMMIT_EVERY
                or time.monotonic() - self._last_commit > COMMIT_SECONDS):
            self._flush()
        return self.event_count - 1

    def commit(self, *, wait: bool = True) -> None:
        """Commit everything so far; with `wait`, return once it is in the database."""
        self._flush()
        if wait:
            self._sql.wait()

    def _flush(self) -> None:
        """Queue the events so far, sealed into a chunk, and a commit (the SQL thread runs
        them): a recorder killed mid-recording leaves every committed event readable."""
        self._queue_rows()
        self._sql.submit(self._sink.seal)
        self._sql.execute("COMMIT")
        self._sql.execute("BEGIN")
        self._uncommitted = 0
        self._last_commit = time.monotonic()

    def _queue_rows(self) -> None:
        if self._events:
            events, sink = self._events, self._sink
            self._sql.submit(lambda db: sink.events(db, events))
            self._events = []

    def avoid_cpu(self, cpu: int) -> None:
        """Do the database work on other CPUs than `cpu` (the recorder's), if there are
        any."""
        self._sql.avoid_cpu(cpu)

    # -- files ------------------------------------------------------------------------------
    def add_file(self, path: str, name: str | None = None, *, fresh: bool = False) -> str:
        """Copy a mapped file into the trace (content-addressed); returns its id. `path` is
        where to read it (e.g. /proc/PID/map_files/...), `name` what the program called it.
        `fresh`: read the content now, whatever the file's times say (a file written through
        shared mappings may not have them updated on every write)."""
        st = os.stat(path)
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        file_id = None if fresh else self._added.get(key)
        if file_id is not None:
            return file_id
        cache = self._cache if not fresh else None
        file_id = made = None  # made: the copy's stat once its content was known
        if cache is not None:
            cached = cache.lookup(st)
            made = checked_copies.checked_stat(cache.content(cached), cached) if cached else None
            file_id = cache.link_into(st, self.dir / "files")
            made = made if file_id == cached else None
        if file_id is None:
            file_id, made = self._copy(path, name or path)
            if cache is not None:
                cache.remember(st, self.dir / "files" / file_id)
        if made is not None:  # its first replay need not hash it again
            checked_copies.note_made(self.dir / "files" / file_id, file_id, made)
        row = (file_id, _path_value(name or path), st.st_size)
        self._sql.execute("INSERT OR IGNORE INTO files(id, path, size, crc) VALUES (?, ?, ?, ?)",
                          (*row, row_crc(*row)))
        if not fresh:
            self._added[key] = file_id
        return file_id

    def copy_of(self, file_id: str) -> Path:
        """The trace's copy of a file added with `add_file`."""
        return self.dir / "files" / file_id

    def cached_note(self, kind: str, file_id: str) -> str | None:
        """What an earlier recording noted about this file content (tracefile.file_cache)."""
        return self._cache.note(kind, file_id) if self._cache is not None else None

    def keep_note(self, kind: str, file_id: str, text: str) -> None:
        if self._cache is not None:
            self._cache.keep_note(kind, file_id, text)

    def _copy(self, path: str, shown: str) -> tuple[str, os.stat_result | None]:
        """Copy `path` (`shown` to users) into files/ under its id; returns the id and, if
        this was the first copy of that content in the trace, its stat after the last
        write."""
        import hashlib  # only on a file-cache miss: OpenSSL's start-up costs ~5 ms
        tmp = self.dir / "files" / f".incoming-{os.getpid()}"
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as src, open(tmp, "wb") as dst:
                os.fchmod(dst.fileno(), 0o700)
                sparse.copy(src.fileno(), dst.fileno(), digest)  # holes stay holes
                written = os.fstat(dst.fileno())
        except OSError as e:  # a full disk, most likely: free what the copy took at once
            tmp.unlink(missing_ok=True)
            raise TraceError(f"copying {shown} into the trace {self.dir} failed: "
                             f"{e.strerror or e}") from None
        file_id = digest.hexdigest()[:ID_DIGITS]
        final = self.dir / "files" / file_id
        if final.exists():
            tmp.unlink()
            return file_id, None
        tmp.rename(final)
        return file_id, written

    def close(self, *, complete: bool = True, **meta: Any) -> None:
        """Write the final metadata, commit and close. A writing failure is raised (as a
        TraceError) unless `complete` is False: a recording that ends in an error, maybe
        that very failure, has it reported already."""
        try:
            self.set_meta(complete=complete, events=self.event_count, **meta)
            self._flush()
            self._sql.execute("COMMIT")
            self._sql.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._sql.submit(_leave_wal)
        except TraceError:
            pass  # stop() raises it
        if self._cache is not None:
            # When it no longer delays the program, and while the SQL thread commits.
            self._cache.sweep_if_due()
        try:
            self._sql.stop()
        except TraceError:
            if complete:
                raise
        finally:
            if self._lock is not None:
                recording_lock.release(self._lock)
                self._lock = None
