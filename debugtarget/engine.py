"""The engine: the one thread that makes every Target call.

ptrace only accepts requests from the thread that attached to a tracee (any other thread gets
ESRCH), so a ptrace-based target must be created and driven from one thread for its whole life.
The engine is that thread. It runs submitted calls one at a time, in order; trio code awaits
them with ``await engine.call(fn, *args)`` without blocking the event loop (the engine wakes
the waiting task through the run's TrioToken when the call is done). Never use
``trio.to_thread.run_sync`` for target calls: it picks an arbitrary worker thread.

Cancellation: if the awaiting task is cancelled (gdb disconnected), a call that has not started
is dropped; one already running finishes on the engine thread and its result is discarded. The
server is expected to ``Target.interrupt()`` a running resume so that does not take long.

Non-trio code (the application creating the target, tests) uses ``submit``, which returns a
``concurrent.futures.Future``. The engine knows nothing about gdb or targets.
"""
from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from types import TracebackType
from typing import Any, TypeVar

import trio

log = logging.getLogger(__name__)

T = TypeVar("T")

_Job = tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]


class Engine:
    """A dedicated worker thread with a FIFO of calls. Use as a context manager."""

    def __init__(self, name: str = "relive-engine",
                 idle: Callable[[], bool] | None = None) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        # A short piece of work done on the thread while no call waits (True: more left),
        # such as reaping the processes a backward search discarded.
        self._idle = idle
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Engine:
        """Start the thread (idempotent)."""
        if not self._thread.is_alive() and not self._closed:
            self._thread.start()
        return self

    def close(self, timeout: float | None = None) -> None:
        """Finish queued calls, then stop the thread and wait for it (up to ``timeout``)."""
        if not self._closed:
            self._closed = True
            self._jobs.put(None)
        if self._thread.is_alive() and not self.on_engine_thread():
            self._thread.join(timeout)

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def thread_id(self) -> int | None:
        """The engine thread's ``threading.get_ident()`` (None before start)."""
        return self._thread.ident

    def on_engine_thread(self) -> bool:
        """True when called from the engine thread itself."""
        return threading.get_ident() == self._thread.ident

    # -- submitting calls ----------------------------------------------------------------

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Queue ``fn(*args)`` for the engine thread; returns its Future."""
        if self._closed:
            raise RuntimeError("the engine is closed")
        if not self._thread.is_alive():
            self.start()
        future: Future[T] = Future()
        self._jobs.put((future, fn, args))
        return future

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the engine thread and return its result (or raise its error).

        Always checkpoints. If cancelled, the call's result is dropped (see module docs).
        """
        if self.on_engine_thread():
            raise RuntimeError("Engine.call from the engine thread would deadlock; call directly")
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()

        def wake(_: Future[T]) -> None:
            # If the trio run that asked has ended, nobody is waiting: drop the wake-up.
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

        future = self.submit(fn, *args)
        future.add_done_callback(wake)
        try:
            await done.wait()
        except BaseException:
            if future.cancel():
                log.debug("dropped %r before it ran (caller cancelled)", fn)
            raise
        return future.result()

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            if self._idle is not None and self._jobs.empty():
                try:
                    if self._idle():
                        continue  # (one piece at a time: a call never waits long)
                except Exception:
                    log.exception("idle work failed")
            job = self._jobs.get()
            if job is None:
                break
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)
        # Calls queued after close() never run; fail them instead of leaving waiters hanging.
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None and job[0].set_running_or_notify_cancel():
                job[0].set_exception(RuntimeError("the engine was closed"))
