"""The trio TCP server: the listener that hands each gdb to a ``GdbConnection``.

One client at a time. A gdb that connects while another's session is still winding down (it
hung up a moment ago, or is about to) waits up to HANDOVER_WAIT seconds for it to end, then is
served. If the other is still attached then, the newcomer gets its first packet answered with
``E.another gdb is already connected to this replay`` (gdb 13 prints it as "Remote failure
reply: ...") and is disconnected; the first session is undisturbed. When a connection ends
(gdb went away, ``D``, ``k``), the server accepts the next one.
"""
from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Protocol

import trio

from debugtarget.engine import Engine
from debugtarget.protocol import Target
from gdbstub.codec import NEED_DATA, Packet, PacketCodec
from gdbstub.connection import RECEIVE_SIZE, GdbConnection
from gdbstub.errors import RemoteProtocolError
from gdbstub.session import Session

log = logging.getLogger(__name__)

REFUSAL = b"E.another gdb is already connected to this replay"
REFUSAL_TIMEOUT = 10.0
HANDOVER_WAIT = 1.0  # below gdb's default remotetimeout (2 s) for its first packet


class TaskStatus(Protocol):
    """What ``nursery.start`` passes as ``task_status`` (trio 0.22 exports no such type)."""

    def started(self, value: int) -> None:
        """Report that the task is ready, with a value for the starter."""


class GdbServer:
    """Accepts gdb connections for one target, one at a time."""

    def __init__(self, target: Target, engine: Engine,
                 session_factory: Callable[[Target], Session] = Session) -> None:
        self._target = target
        self._engine = engine
        self._session_factory = session_factory
        self._attached = trio.Lock()  # held by the connection being served

    async def handle_stream(self, stream: trio.abc.Stream) -> None:
        """Serve one accepted connection (the handler for ``trio.serve_listeners``)."""
        acquired = False
        with trio.move_on_after(HANDOVER_WAIT):
            await self._attached.acquire()
            acquired = True
        if not acquired:
            await refuse(stream)
            return
        try:
            session = self._session_factory(self._target)
            await GdbConnection(stream, session, self._engine).run()
        finally:
            self._attached.release()


async def serve(target: Target, engine: Engine, *, host: str = "127.0.0.1", port: int = 0,
                debug_registers: int = 4, listener: socket.socket | None = None,
                task_status: TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
    """Listen on ``host:port`` (0: any free port), or on ``listener`` (a bound, listening
    socket, TCP or Unix), and serve gdb until cancelled. ``debug_registers`` is how many
    hardware breakpoint/watchpoint slots the target offers.

    Use ``port = await nursery.start(serve, target, engine)``: the bound port (0 for a Unix
    socket) is reported through ``task_status`` once the socket is listening.
    """
    if listener is not None:
        listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(listener))]
    else:
        listeners = await trio.open_tcp_listeners(port, host=host)
    name = listeners[0].socket.getsockname()
    bound: int = name[1] if isinstance(name, tuple) else 0
    log.info("listening for gdb on %s", name)
    task_status.started(bound)
    server = GdbServer(target, engine,
                       session_factory=lambda t: Session(t, debug_registers=debug_registers))
    await trio.serve_listeners(server.handle_stream, listeners)


async def refuse(stream: trio.abc.Stream) -> None:
    """Answer a surplus client's first packet with REFUSAL, then hang up.

    After the reply the stream is half-closed and drained, so gdb reads the refusal and a clean
    end of stream rather than a connection reset.
    """
    log.warning("refusing a second gdb connection: one is already attached")
    codec = PacketCodec()
    with trio.move_on_after(REFUSAL_TIMEOUT):
        try:
            while True:
                data = await stream.receive_some(RECEIVE_SIZE)
                if not data:
                    break
                codec.receive_data(data)
                if _has_packet(codec):
                    await stream.send_all(codec.data_to_send() + codec.send_packet(REFUSAL))
                    if isinstance(stream, trio.abc.HalfCloseableStream):
                        await stream.send_eof()
                    while await stream.receive_some(RECEIVE_SIZE):
                        pass
                    break
        except (trio.BrokenResourceError, trio.ClosedResourceError, RemoteProtocolError):
            pass
    await trio.aclose_forcefully(stream)


def _has_packet(codec: PacketCodec) -> bool:
    """Consume buffered events; True once a whole packet has arrived."""
    while (event := codec.next_event()) is not NEED_DATA:
        if isinstance(event, Packet):
            return True
    return False
