"""The replay as a Target, driven in-process as a front end would (debugtarget.replay): the
typed time-travel calls beside `monitor`, and the replay's refusals reaching the front end as
TargetError with the replay left where it was. A real recorded program, on the engine thread."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from conftest import describe, record
from debugtarget.engine import Engine
from debugtarget.errors import TargetError
from debugtarget.replay import ReplayTarget


class OnEngine:
    """A ReplayTarget on its own engine thread; `call` runs a method there."""

    def __init__(self, trace: Path) -> None:
        self.engine = Engine().start()
        self.target: ReplayTarget = self.engine.submit(partial(ReplayTarget, trace)).result(60)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.engine.submit(fn, *args).result(120)

    def when(self) -> int:
        text = self.call(self.target.monitor, "when")
        return int(text.split(":")[1])

    def close(self) -> None:
        self.engine.submit(self.target.close).result(30)
        self.engine.close(30)


@pytest.fixture(scope="module")
def replay(programs, tmp_path_factory) -> Iterator[OnEngine]:
    trace = tmp_path_factory.mktemp("target") / "hello"
    rec = record(trace, programs["hello"], "a", "b")
    assert rec.returncode == 0, describe(rec)
    r = OnEngine(trace)
    yield r
    r.close()


def test_goto_event_and_checkpoints_are_typed_calls(replay: OnEngine):
    t = replay.target
    assert replay.call(t.goto_event, 5) == 5 and replay.when() == 5
    number = replay.call(t.checkpoint)
    assert f"{number}: event 5" in replay.call(t.monitor, "info checkpoints")
    assert replay.call(t.goto_event, 9) == 9
    assert replay.call(t.goto_checkpoint, number) == 5 and replay.when() == 5
    assert replay.call(t.delete_checkpoint, number) == 5
    with pytest.raises(TargetError, match=f"no checkpoint {number}"):
        replay.call(t.goto_checkpoint, number)
    assert replay.when() == 5


def test_a_refused_move_is_a_target_error_and_moves_nothing(replay: OnEngine):
    t = replay.target
    replay.call(t.goto_event, 7)
    with pytest.raises(TargetError, match="event 100000 is outside the trace"):
        replay.call(t.goto_event, 100000)
    with pytest.raises(TargetError, match="aligned length"):
        replay.call(t.last_write, 0x1001, 8)
    with pytest.raises(TargetError, match="not a user-space address"):
        replay.call(t.last_write, 1 << 48, 8)
    with pytest.raises(TargetError, match="event 100000 is outside the trace"):
        replay.call(t.monitor, "goto 100000")  # (the session shows it to gdb as text)
    assert replay.when() == 7


def test_last_write_goes_back_to_the_call_that_pushed_the_return_address(replay: OnEngine):
    """At a syscall inside libc, [rsp, rsp + 8) holds the return address that a `call` wrote
    (an instruction of the program, before the event): last_write goes back to it."""
    t = replay.target
    replay.call(t.goto_event, 8)
    thread = replay.call(t.current_stop).thread
    rsp = replay.call(t.registers, thread)["rsp"]
    text = replay.call(t.last_write, rsp, 8)
    assert f"which wrote {rsp:#x}" in text, text
    assert replay.when() < 8
    assert replay.call(t.current_stop).thread == thread
