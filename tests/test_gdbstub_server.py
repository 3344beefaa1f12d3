"""The trio server over memory streams and real sockets, with FakeTarget on a real engine."""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
import trio
import trio.testing

from gdbstub.codec import NEED_DATA, PacketCodec, Packet, frame
from debugtarget.engine import Engine
from gdbstub.fake import FakeTarget
from gdbstub.server import REFUSAL, GdbServer, serve

QSUPPORTED = b"qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=i386"


class FakeGdb:
    """The gdb end of a stream: sends framed packets, acks and collects replies."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.codec = PacketCodec()

    async def send(self, payload: bytes) -> None:
        await self.stream.send_all(frame(payload))

    async def receive(self) -> bytes:
        """The next reply payload; EOFError when the stub hangs up."""
        while True:
            event = self.codec.next_event()
            acks = self.codec.data_to_send()
            if acks:
                await self.stream.send_all(acks)
            if isinstance(event, Packet):
                return event.payload
            if event is NEED_DATA:
                try:
                    data = await self.stream.receive_some(65536)
                except trio.BrokenResourceError:
                    data = b""
                if not data:
                    raise EOFError
                self.codec.receive_data(data)

    async def ask(self, payload: bytes) -> bytes:
        await self.send(payload)
        return await self.receive()

    async def connect(self) -> None:
        """gdb's opening: qSupported, then no-ack mode."""
        assert b"QStartNoAckMode+" in await self.ask(QSUPPORTED)
        assert await self.ask(b"QStartNoAckMode") == b"OK"
        self.codec.enter_no_ack_mode()


@pytest.fixture
def engine() -> Iterator[Engine]:
    with Engine() as e:
        yield e


def attach(nursery: trio.Nursery, server: GdbServer) -> FakeGdb:
    client, server_end = trio.testing.memory_stream_pair()
    nursery.start_soon(server.handle_stream, server_end)
    return FakeGdb(client)


async def wait_for_resume(target: FakeTarget) -> None:
    """Block (in a helper thread, not the engine) until the target is inside resume()."""
    assert await trio.to_thread.run_sync(target.resume_started.wait, 10)


async def read_frame(stream: trio.abc.Stream) -> bytes:
    """Raw bytes up to and including the next frame's checksum."""
    wire = b""
    while b"#" not in wire or len(wire) < wire.index(b"#") + 3:
        wire += await stream.receive_some(1)
    return wire


async def test_acks_are_exchanged_until_no_ack_mode(engine: Engine) -> None:
    target = FakeTarget()
    async with trio.open_nursery() as nursery:
        client, server_end = trio.testing.memory_stream_pair()
        nursery.start_soon(GdbServer(target, engine).handle_stream, server_end)
        await client.send_all(b"+$?#3f")
        wire = await read_frame(client)
        assert wire.startswith(b"+$T05") and wire.endswith(b";thread:p64.64;#%02x" % (
            sum(wire[2:-3]) % 256))
        await client.send_all(b"+$QStartNoAckMode#b0")
        assert await read_frame(client) == b"+$OK#9a"
        await client.send_all(b"+$g#67")
        reply = await read_frame(client)
        assert reply.startswith(b"$0000") and len(reply) == 1 + 1120 + 3
        nursery.cancel_scope.cancel()


async def test_conversation_runs_every_target_call_on_the_engine_thread(
        engine: Engine) -> None:
    target = FakeTarget()
    async with trio.open_nursery() as nursery:
        gdb = attach(nursery, GdbServer(target, engine))
        await gdb.connect()
        assert (await gdb.ask(b"?")).startswith(b"T05")
        assert await gdb.ask(b"Z0,401008,1") == b"OK"
        assert (await gdb.ask(b"vCont;c:p64.-1")).startswith(b"T05swbreak:;")
        assert await gdb.ask(b"m601000,4") == b"00000000"
        assert (await gdb.ask(b"bc")).startswith(b"T05replaylog:begin;")
        assert await gdb.ask(b"mzz,1") == b"E01"  # malformed, the connection survives
        assert await gdb.ask(b"qfThreadInfo") == b"mp64.64"
        await gdb.send(b"qRcmd," + b"when".hex().encode())
        assert await gdb.receive() == b"O" + b"position 0 of 12\n".hex().encode()
        assert await gdb.receive() == b"OK"
        assert await gdb.ask(b"D") == b"OK"
        with pytest.raises(EOFError):
            await gdb.receive()
    assert {ident for name, ident in target.calls} == {engine.thread_id}


async def test_ctrl_c_interrupts_a_running_continue(engine: Engine) -> None:
    target = FakeTarget(block_on_continue=True)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            gdb = attach(nursery, GdbServer(target, engine))
            await gdb.connect()
            await gdb.send(b"vCont;c:p64.-1")
            await wait_for_resume(target)
            await gdb.stream.send_all(b"\x03")
            assert (await gdb.receive()).startswith(b"T02")
            assert (await gdb.ask(b"vCont;s:p64.64")).startswith(b"T05")
            nursery.cancel_scope.cancel()
    [(_, interrupt_thread)] = [c for c in target.calls if c[0] == "interrupt"]
    assert interrupt_thread != engine.thread_id


async def test_ctrl_c_while_idle_is_ignored(engine: Engine) -> None:
    target = FakeTarget()
    async with trio.open_nursery() as nursery:
        gdb = attach(nursery, GdbServer(target, engine))
        await gdb.connect()
        await gdb.stream.send_all(b"\x03")
        assert (await gdb.ask(b"vCont;s:p64.64")).startswith(b"T05")
        nursery.cancel_scope.cancel()
    assert "interrupt" not in [name for name, _ in target.calls]


async def test_disconnect_mid_continue_leaves_the_server_ready_for_the_next_gdb(
        engine: Engine) -> None:
    target = FakeTarget(block_on_continue=True)
    server = GdbServer(target, engine)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            first = attach(nursery, server)
            await first.connect()
            await first.send(b"c")
            await wait_for_resume(target)
            await first.stream.aclose()
            await trio.testing.wait_all_tasks_blocked()
            second = attach(nursery, server)
            await second.connect()
            assert (await second.ask(b"?")).startswith(b"T0")
            assert (await second.ask(b"vCont;s:p64.64")).startswith(b"T05")
            nursery.cancel_scope.cancel()
    assert "interrupt" in [name for name, _ in target.calls]


async def test_gdb_reconnecting_at_once_is_served_not_refused(engine: Engine) -> None:
    """A gdb that connects while the previous one's hang-up is still being processed (an IDE
    reconnecting, `disconnect` then `target remote`) waits for that session to wind down and
    is served; it used to be refused as a second client, 2 times in 5."""
    target = FakeTarget(block_on_continue=True)
    server = GdbServer(target, engine)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for action in (b"?", b"c", b"D"):
                first = attach(nursery, server)
                await first.connect()
                await first.send(action)
                if action == b"c":
                    await wait_for_resume(target)
                else:
                    await first.receive()
                await first.stream.aclose()
                second = attach(nursery, server)  # before the server saw the hang-up
                assert b"ReverseContinue+" in await second.ask(QSUPPORTED), action
                assert (await second.ask(b"?")).startswith(b"T0"), action
                await second.stream.aclose()
                await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()


async def test_protocol_garbage_closes_only_that_connection(engine: Engine) -> None:
    target = FakeTarget()
    server = GdbServer(target, engine)
    async with trio.open_nursery() as nursery:
        gdb = attach(nursery, server)
        await gdb.stream.send_all(b"hello")
        with pytest.raises(EOFError):
            await gdb.receive()
        await trio.testing.wait_all_tasks_blocked()
        again = attach(nursery, server)
        await again.connect()
        nursery.cancel_scope.cancel()


async def test_packets_are_logged_on_the_packets_logger(
        engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    assert logging.getLogger("gdbstub.packets").getEffectiveLevel() > logging.DEBUG
    target = FakeTarget()
    with caplog.at_level(logging.DEBUG, logger="gdbstub.packets"):
        async with trio.open_nursery() as nursery:
            gdb = attach(nursery, GdbServer(target, engine))
            await gdb.ask(b"vCont?")
            nursery.cancel_scope.cancel()
    messages = [r.getMessage() for r in caplog.records if r.name == "gdbstub.packets"]
    assert messages == ["<- b'vCont?'", "-> b'vCont;c;C;s;S;r'"]


async def test_real_socket_one_client_at_a_time(engine: Engine) -> None:
    target = FakeTarget(block_on_continue=True)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve, target, engine)
            first = FakeGdb(await trio.open_tcp_stream("127.0.0.1", port))
            await first.connect()
            assert len(await first.ask(b"g")) == 1120

            second = FakeGdb(await trio.open_tcp_stream("127.0.0.1", port))
            assert await second.ask(QSUPPORTED) == REFUSAL
            with pytest.raises(EOFError):
                await second.receive()
            assert (await first.ask(b"?")).startswith(b"T05")

            await first.send(b"c")  # then hang up while the continue runs
            await wait_for_resume(target)
            await first.stream.aclose()

            third = FakeGdb(await trio.open_tcp_stream("127.0.0.1", port))  # served at once
            assert b"ReverseContinue+" in await third.ask(QSUPPORTED)
            assert (await third.ask(b"?")).startswith(b"T0")
            nursery.cancel_scope.cancel()


async def test_a_monitor_command_gdb_gave_up_on_is_not_answered(engine: Engine) -> None:
    """gdb 13 gives up on a monitor command at Ctrl-C without a word; its next request
    shows it. From then on the running command's notes and answer are not sent (gdb would
    take them for the next reply), the target is told (it stops early), and the next request
    gets its own answer."""
    target = engine.submit(FakeTarget).result()
    async with trio.open_nursery() as nursery:
        gdb = attach(nursery, GdbServer(target, engine))
        await gdb.connect()
        started = time.monotonic()
        await gdb.send(b"qRcmd," + b"slow 8 0".hex().encode())  # 8 notes, 0.5 s apart
        assert await gdb.receive() == b"O" + b"note 0\n".hex().encode()
        await gdb.send(b"qRcmd," + b"when".hex().encode())  # gdb moved on
        replies = [await gdb.receive()]
        while replies[-1] != b"OK":
            replies.append(await gdb.receive())
        # (empty console packets keep gdb waiting while the old command ends)
        assert [r for r in replies if r != b"O"] == [
            b"O" + b"position 0 of 12\n".hex().encode(), b"OK"], replies
        assert time.monotonic() - started < 3.5  # not after all 8 notes
        assert target.calls.count(("monitor", engine.thread_id)) == 2
        nursery.cancel_scope.cancel()


async def test_gdb_waiting_behind_an_abandoned_monitor_command_gets_keepalives(
        engine: Engine) -> None:
    """The abandoned command may run on (here: 3 silent seconds); gdb, now waiting for its
    next monitor command, gets empty console packets meanwhile, not the old notes or
    answer, then its own answer."""
    target = engine.submit(FakeTarget).result()
    async with trio.open_nursery() as nursery:
        gdb = attach(nursery, GdbServer(target, engine))
        await gdb.connect()
        await gdb.send(b"qRcmd," + b"slow 1 3".hex().encode())
        assert await gdb.receive() == b"O" + b"note 0\n".hex().encode()
        await gdb.send(b"qRcmd," + b"when".hex().encode())
        replies = [await gdb.receive()]
        while replies[-1] != b"OK":
            replies.append(await gdb.receive())
        assert replies[-2:] == [b"O" + b"position 0 of 12\n".hex().encode(), b"OK"], replies
        assert set(replies[:-2]) == {b"O"} and len(replies) >= 3, replies
        nursery.cancel_scope.cancel()
