"""Run a trace database's statements on a thread of their own, in the order they were issued.

Inserting an event row costs SQLite several microseconds of CPU (7 µs for a 216-byte register
row on a busy VM: as much as a third of the ptrace round trip of the syscall it records).
On its own thread, which the recorder moves to another CPU than the one it and its tracees are
pinned to, that cost leaves the recording's critical path: the recording thread only queues
statements. The GIL is no obstacle: the recorder's compiled loop and its waits release it,
and sqlite3 releases it while SQLite works.

The thread opens the connection itself, as its first job (creating the database is ~10 ms
the recording need not wait for), and closes it when stopped; only this thread uses it.
Statements run in the order they were queued; `wait()` returns when every statement queued
before it has run. A failure (disk full, an I/O error, a database that cannot be created) is
kept: the statements queued after it are dropped, and the next call from the recording
thread raises it as a TraceError. The queue is bounded, so a recorder faster than its disk
waits instead of buffering without limit.
"""
from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from tracefile.errors import TraceError

if TYPE_CHECKING:
    import sqlite3

    Job = Callable[[sqlite3.Connection], object]

QUEUED_JOBS = 64


class SqlThread:
    def __init__(self, open_db: Callable[[], sqlite3.Connection]) -> None:
        self._open_db = open_db
        self._jobs: queue.Queue[Job | threading.Event | None] = queue.Queue(QUEUED_JOBS)
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="relive-trace-writer",
                                        daemon=True)
        self._thread.start()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._put(lambda db: db.execute(sql, params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._put(lambda db: db.executemany(sql, rows))

    def submit(self, job: Job) -> None:
        """Run `job(connection)` on the thread, after what is queued."""
        self._put(job)

    def wait(self) -> None:
        """Return once every statement queued so far has run; raise what failed."""
        done = threading.Event()
        self._put(done)
        done.wait()
        self._raise_failure()

    def stop(self) -> None:
        """Run what is queued, then end the thread; raise what failed."""
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join()
        self._raise_failure()

    def avoid_cpu(self, cpu: int) -> None:
        """Run on the CPUs this process may use other than `cpu` (the recorder's own), if
        there are any."""
        native_id = self._thread.native_id
        if native_id is None or not self._thread.is_alive():
            return
        others = os.sched_getaffinity(native_id) - {cpu}
        if others:
            os.sched_setaffinity(native_id, others)

    def _put(self, job: Job | threading.Event) -> None:
        self._raise_failure()
        self._jobs.put(job)

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise TraceError(f"writing the trace failed: {self._error}") from self._error

    def _run(self) -> None:
        db: sqlite3.Connection | None = None
        try:
            db = self._open_db()
        except Exception as e:  # kept for the recording thread, like any other failure
            self._error = e
        while (job := self._jobs.get()) is not None:
            if isinstance(job, threading.Event):
                job.set()
            elif self._error is None and db is not None:
                try:
                    job(db)
                except Exception as e:  # kept for the recording thread: this one must go on
                    self._error = e
        if db is not None:
            db.close()
