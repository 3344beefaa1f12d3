"""relive's GDB Remote Serial Protocol stub: a front end over ``debugtarget``'s Target.

Layers, each its own module: ``codec`` (the wire codec: framing, no I/O) -> ``requests``
(typed requests) -> ``session`` (requests to ``Target`` calls, reply payloads; no I/O) ->
``server`` (trio TCP: the listener, and one ``GdbConnection`` per client). Every Target call
runs on ``debugtarget.engine.Engine``'s thread. The Target protocol and its types are
``debugtarget.protocol``; ``fake`` is an in-memory Target for tests. This package never
imports the recorder, the replayer, the tracee layer, ptrace, or debugtarget's replay adapter.

Typical wiring (in the application)::

    with Engine() as engine:
        target = engine.submit(make_replay_target, trace_dir).result()  # created on the engine
        trio.run(serve, target, engine)   # or: port = await nursery.start(serve, target, engine)
"""
from gdbstub.errors import BadRequest, GdbStubError, RemoteProtocolError
from gdbstub.server import GdbServer, serve
from gdbstub.session import Reply, Session

__all__ = ["BadRequest", "GdbServer", "GdbStubError", "RemoteProtocolError", "Reply", "Session",
           "serve"]
