"""One gdb client's connection: bytes between its socket, the wire codec, and the session
on the engine thread.

Per connection two tasks run side by side:

- the **reader** receives bytes, feeds the codec, writes its acks, parses each packet into a
  request and queues it; a Ctrl-C (``\\x03``) is acted on at once, even while a resume is
  running on the engine thread, by ``Session.request_interrupt`` (-> ``Target.interrupt``);
- the **dispatcher** takes requests in order, runs ``session.handle`` on the engine thread
  (``await engine.call``), and sends the reply packets.

Long requests: while a ``monitor`` command or a resume runs on the engine thread, the target's
progress notes (``Session.console``) are sent at once as console output (``O`` packets, which
gdb accepts before the final reply), and during a monitor command an empty ``O`` packet goes
out after every KEEPALIVE seconds of silence: gdb waits for a qRcmd reply only
``remotetimeout`` seconds (2 by default) before "Ignoring packet error" and misreading what
comes next. (gdb waits for a stop reply without a limit.) gdb 13 gives up on a monitor
command when the user presses Ctrl-C, silently: a packet that arrives while a monitor command
runs means nobody waits for its answer. The target is told (the progress sink answers False,
so a long ``goto`` stops early) and the answer is not sent, so the new request gets its own.

When gdb goes away mid-resume, the running resume is interrupted and its result dropped;
``Detach`` (``D``) and ``k`` end a connection the same way.
Every packet is logged at DEBUG on the ``gdbstub.packets`` logger (silent unless enabled).
"""
from __future__ import annotations

import contextlib
import logging
import math

import trio

from debugtarget.engine import Engine
from gdbstub.codec import NEED_DATA, Interrupt, Packet, PacketCodec
from gdbstub.errors import BadRequest, RemoteProtocolError
from gdbstub.replies import ERROR, console_output
from gdbstub.requests import Rcmd, Request, Resume, Run, parse_request
from gdbstub.session import Reply, Session

log = logging.getLogger(__name__)
packet_log = logging.getLogger("gdbstub.packets")

RECEIVE_SIZE = 65536
KEEPALIVE = 1.0  # seconds of silence during a monitor command before an empty O packet


class GdbConnection:
    """One attached gdb: the reader and dispatcher tasks around a codec and a session."""

    def __init__(self, stream: trio.abc.Stream, session: Session, engine: Engine) -> None:
        self._stream = stream
        self._session = session
        self._engine = engine
        self._codec = PacketCodec()
        self._send_lock = trio.StrictFIFOLock()
        self._queue_in, self._queue_out = trio.open_memory_channel[Request | BadRequest](
            math.inf)
        self._resume_outstanding = False
        self._monitor_running = False
        self._abandoned = False  # gdb stopped waiting for the running monitor command
        self._keep_waiting = False  # ... and waits for another one (keepalives go on)
        self._notes_in, self._notes_out = trio.open_memory_channel[str](math.inf)

    async def run(self) -> None:
        """Serve until gdb disconnects, detaches, kills, or breaks the protocol."""
        token = trio.lowlevel.current_trio_token()

        def note(text: str) -> bool:  # on the engine thread: hand it to the trio side
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(self._take_note, text)
            return not self._abandoned
        self._session.console = note
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read_loop, nursery.cancel_scope)
                await self._dispatch_loop()
                nursery.cancel_scope.cancel()
        finally:
            if self._resume_outstanding:
                log.info("gdb left during a resume; interrupting it")
                self._session.request_interrupt()
            with contextlib.suppress(RuntimeError):  # the engine is already closed
                self._engine.submit(self._session.close)
            await trio.aclose_forcefully(self._stream)
        log.info("gdb connection closed")

    async def _send(self, data: bytes) -> None:
        if data:
            async with self._send_lock:
                await self._stream.send_all(data)

    async def _read_loop(self, connection_scope: trio.CancelScope) -> None:
        try:
            while True:
                data = await self._stream.receive_some(RECEIVE_SIZE)
                if not data:
                    log.info("gdb closed the connection")
                    break
                self._codec.receive_data(data)
                await self._process_events()
        except RemoteProtocolError as exc:
            log.warning("closing the gdb connection: %s", exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.info("gdb connection lost: %s", exc)
        connection_scope.cancel()

    async def _process_events(self) -> None:
        while True:
            event = self._codec.next_event()
            await self._send(self._codec.data_to_send())
            if event is NEED_DATA:
                return
            if isinstance(event, Interrupt):
                self._on_interrupt()
            elif isinstance(event, Packet):
                packet_log.debug("<- %r", event.payload)
                request = self._parse(event.payload)
                if self._monitor_running and not self._abandoned:
                    log.info("gdb gave up on the running monitor command (Ctrl-C)")
                    self._abandoned = True
                    # gdb now waits for this one; a monitor command it waits for forever,
                    # as long as keepalives come
                    self._keep_waiting = isinstance(request, Rcmd)
                self._queue_in.send_nowait(request)

    def _parse(self, payload: bytes) -> Request | BadRequest:
        try:
            request = parse_request(payload)
        except BadRequest as exc:
            log.info("%s", exc)
            return exc
        if isinstance(request, (Resume, Run)):
            self._resume_outstanding = True
        return request

    def _on_interrupt(self) -> None:
        packet_log.debug("<- ^C")
        if self._resume_outstanding:
            self._session.request_interrupt()
        else:
            log.info("ignoring Ctrl-C: nothing is running")

    async def _dispatch_loop(self) -> None:
        """Answer requests in order until one ends the session or gdb goes away."""
        async for item in self._queue_out:
            reply = await self._handle(item)
            try:
                for payload in reply.packets:
                    packet_log.debug("-> %r", payload)
                    await self._send(self._codec.send_packet(payload))
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                log.info("gdb connection lost while replying: %s", exc)
                return
            if reply.no_ack_after:
                self._codec.enter_no_ack_mode()
            if reply.close_after:
                return

    def _take_note(self, text: str) -> None:
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            self._notes_in.send_nowait(text)

    async def _relay_notes(self, keepalive: float) -> None:
        """Send progress notes as console output while a long request runs; with a finite
        `keepalive`, an empty one after that many seconds of silence."""
        try:
            while True:
                text = ""
                with trio.move_on_after(keepalive):
                    text = await self._notes_out.receive()
                if self._abandoned and not self._keep_waiting:
                    continue
                if self._abandoned:
                    text = ""  # (the notes were about the command gdb gave up on)
                with trio.CancelScope(shield=True):  # never half a packet
                    for payload in console_output(text) if text else [b"O"]:
                        packet_log.debug("-> %r", payload)
                        await self._send(self._codec.send_packet(payload))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return

    async def _flush_notes(self) -> None:
        """Notes the engine made before its reply, not yet sent: they go first."""
        while True:
            try:
                text = self._notes_out.receive_nowait()
            except trio.WouldBlock:
                return
            for payload in console_output(text):
                await self._send(self._codec.send_packet(payload))

    async def _call(self, item: Request) -> Reply:
        """Run the request on the engine; notes are relayed meanwhile for long ones."""
        if not isinstance(item, (Rcmd, Resume)):
            return await self._engine.call(self._session.handle, item)
        monitor = isinstance(item, Rcmd)
        self._monitor_running, self._abandoned = monitor, False
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._relay_notes, KEEPALIVE if monitor else math.inf)
            try:
                reply = await self._engine.call(self._session.handle, item)
            finally:
                self._monitor_running = False
                nursery.cancel_scope.cancel()
        if self._abandoned:
            while True:  # notes and answer for nobody
                try:
                    self._notes_out.receive_nowait()
                except trio.WouldBlock:
                    return Reply(())
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._flush_notes()
        return reply

    async def _handle(self, item: Request | BadRequest) -> Reply:
        if isinstance(item, BadRequest):
            return Reply.of(ERROR)
        try:
            reply = await self._call(item)
        except Exception:
            log.exception("internal error while handling %r", item)
            reply = Reply.of(ERROR)
        if isinstance(item, (Resume, Run)):
            # Not in a finally: if we are cancelled mid-resume, run() must still see it.
            self._resume_outstanding = False
            self._session.discard_interrupt()
        return reply
