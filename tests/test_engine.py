"""The engine thread: one thread for every call, errors delivered, cancellation survivable."""
from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest
import trio

from debugtarget.engine import Engine


@pytest.fixture
def engine() -> Iterator[Engine]:
    with Engine() as e:
        yield e


async def test_every_call_runs_on_the_same_dedicated_thread(engine: Engine) -> None:
    idents = [await engine.call(threading.get_ident) for _ in range(5)]
    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(lambda: engine.call(lambda: idents.append(threading.get_ident())))
    assert set(idents) == {engine.thread_id}
    assert engine.thread_id != threading.get_ident()
    assert engine.submit(threading.get_ident).result() == engine.thread_id


async def test_results_and_exceptions_come_back(engine: Engine) -> None:
    assert await engine.call(lambda a, b: a + b, 2, 3) == 5

    def fail() -> None:
        raise ValueError("from the engine")
    with pytest.raises(ValueError, match="from the engine"):
        await engine.call(fail)
    assert await engine.call(lambda: "still alive") == "still alive"


async def test_cancelled_call_finishes_on_the_engine_and_the_result_is_dropped(
        engine: Engine) -> None:
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        release.wait(10)
        finished.set()
        return "late"

    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(engine.call, slow)
            await trio.to_thread.run_sync(started.wait, 10)  # a helper thread, not the engine
            scope.cancel()
    assert scope.cancelled_caught
    release.set()
    assert await engine.call(lambda: "next call runs") == "next call runs"
    assert finished.is_set()


async def test_call_queued_behind_a_busy_engine_is_dropped_when_cancelled(
        engine: Engine) -> None:
    release = threading.Event()
    ran: list[str] = []
    engine.submit(release.wait, 10)
    with trio.move_on_after(0) as scope:
        await engine.call(ran.append, "should not run")
    assert scope.cancelled_caught
    release.set()
    await engine.call(lambda: None)
    assert ran == []


def test_closed_engine_refuses_new_calls() -> None:
    engine = Engine().start()
    engine.close()
    with pytest.raises(RuntimeError, match="closed"):
        engine.submit(lambda: None)


def test_an_engine_reaps_only_the_forks_it_traces() -> None:
    """A discarded fork waits at its exit stop to be reaped by the engine that traces it (the
    only thread ptrace lets release it). With several engines in one process (the tests run
    replays side by side), another engine's idle reaping once waited for it forever: the
    engine wedged and gdb got no reply (found by CI in test_wire_fuzz)."""
    from tracee.spawn import spawn
    from tracee.task import Memory, Task, kill_tasks, reap_one

    def spawn_and_discard() -> None:
        pid = spawn("/bin/sleep", ["sleep", "60"], dict(os.environ))
        kill_tasks([Task(pid, pid, Memory(pid))], later=True)

    with Engine() as tracer, Engine() as other:
        tracer.submit(spawn_and_discard).result(30)
        assert other.submit(reap_one).result(10) is False  # none of its own: no wait
        assert tracer.submit(reap_one).result(10) is False  # its own, reaped
