"""relive's GDB Remote Serial Protocol stub.

Layers, each its own module: ``codec`` (framing, no I/O) -> ``requests`` (typed requests) ->
``session`` (requests to ``Target`` calls, reply payloads) -> ``server`` (trio TCP), with
``engine`` running every Target call on one dedicated thread. ``target`` defines the protocol
the replayer implements; ``fake`` is an in-memory implementation for tests. This package never
imports the recorder, the replayer, the tracee layer or ptrace.

Typical wiring (in the application)::

    with Engine() as engine:
        target = engine.submit(make_replay_target, trace_dir).result()  # created on the engine
        trio.run(serve, target, engine)   # or: port = await nursery.start(serve, target, engine)
"""
from gdbstub.engine import Engine
from gdbstub.errors import (
    BadRequest,
    GdbStubError,
    NoSuchThread,
    RemoteProtocolError,
    TargetError,
    Unsupported,
)
from gdbstub.server import GdbServer, serve
from gdbstub.session import Reply, Session
from gdbstub.target import (
    Action,
    Direction,
    FileStat,
    Library,
    LibraryList,
    ResumeCommand,
    Stop,
    StopKind,
    Target,
    ThreadId,
    ThreadInfo,
    WatchKind,
    Watchpoint,
)

__all__ = [
    "Action", "BadRequest", "Direction", "Engine", "FileStat", "GdbServer", "GdbStubError",
    "Library", "LibraryList", "NoSuchThread", "RemoteProtocolError", "Reply", "ResumeCommand",
    "Session", "Stop", "StopKind", "Target", "TargetError", "ThreadId", "ThreadInfo",
    "Unsupported", "WatchKind", "Watchpoint", "serve",
]
