"""The sans-I/O packet codec: framing, acks, escapes, Ctrl-C, garbage, and feed invariance."""
from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gdbstub.codec import (
    NEED_DATA,
    PacketCodec,
    Interrupt,
    Packet,
    checksum,
    escape,
    escaped_prefix_length,
    frame,
    unescape,
)
from gdbstub.errors import RemoteProtocolError

# Captured from gdb 13.1 (`set debug remote 1`) talking to gdbserver and to this stub.
QSUPPORTED = (b"$qSupported:multiprocess+;swbreak+;hwbreak+;qRelocInsn+;fork-events+;"
              b"vfork-events+;exec-events+;vContSupported+;QThreadEvents+;no-resumed+;"
              b"memory-tagging+;xmlRegisters=i386#77")
CONNECT = b"+" + QSUPPORTED + b"+$vMustReplyEmpty#3a+$QStartNoAckMode#b0"


def events(conn: PacketCodec, out: list[object] | None = None) -> list[object]:
    """Drain events; with ``out``, events seen before an error are kept there."""
    out = [] if out is None else out
    while (event := conn.next_event()) is not NEED_DATA:
        out.append(event)
    return out


def test_captured_connect_sequence_is_acked_packet_by_packet() -> None:
    conn = PacketCodec()
    conn.receive_data(CONNECT)
    assert events(conn) == [Packet(QSUPPORTED[1:-3]), Packet(b"vMustReplyEmpty"),
                            Packet(b"QStartNoAckMode")]
    assert conn.data_to_send() == b"+++"
    assert conn.data_to_send() == b""


def test_captured_binary_write_is_delivered_raw() -> None:
    conn = PacketCodec()
    conn.receive_data(b"$X601000,4:\x05\x00\x00\x00#1e")
    assert events(conn) == [Packet(b"X601000,4:\x05\x00\x00\x00")]


def test_partial_packet_needs_data_until_checksum_complete() -> None:
    conn = PacketCodec()
    for chunk in (b"$Hgp0", b".0#", b"a"):
        conn.receive_data(chunk)
        assert conn.next_event() is NEED_DATA
    conn.receive_data(b"d")
    assert conn.next_event() == Packet(b"Hgp0.0")


def test_bad_checksum_is_nacked_and_dropped_then_stream_continues() -> None:
    conn = PacketCodec()
    conn.receive_data(b"$g#00$g#67")
    assert events(conn) == [Packet(b"g")]
    assert conn.data_to_send() == b"-+"


def test_no_ack_mode_sends_no_acks_and_accepts_bad_checksums() -> None:
    conn = PacketCodec()
    conn.enter_no_ack_mode()
    conn.receive_data(b"$g#67$m0,1#00+-")
    assert events(conn) == [Packet(b"g"), Packet(b"m0,1")]
    assert conn.data_to_send() == b""


def test_ctrl_c_between_packets_is_an_interrupt_but_inside_is_data() -> None:
    conn = PacketCodec()
    body = b"X0,1:\x03"
    conn.receive_data(b"\x03" + frame(body) + b"\x03")
    assert events(conn) == [Interrupt(), Packet(body), Interrupt()]


def test_nack_from_gdb_retransmits_last_reply_in_ack_mode_only() -> None:
    conn = PacketCodec()
    sent = conn.send_packet(b"OK")
    conn.receive_data(b"-")
    assert events(conn) == []
    assert conn.data_to_send() == sent
    conn.enter_no_ack_mode()
    conn.send_packet(b"E01")
    conn.receive_data(b"-")
    assert events(conn) == [] and conn.data_to_send() == b""


def test_send_packet_escapes_binary_and_checksums_escaped_bytes() -> None:
    framed = PacketCodec().send_packet(b"l$#}*\x00")
    assert framed == b"$l}\x04}\x03}]}\x0a\x00#" + b"%02x" % checksum(b"l}\x04}\x03}]}\x0a\x00")
    assert PacketCodec().send_packet(b"OK") == b"$OK#9a"
    assert PacketCodec().send_packet(b"") == b"$#00"


def test_incoming_escapes_are_decoded_and_a_dangling_escape_is_an_error() -> None:
    assert unescape(b"a}\x03b}]") == b"a#b}"
    conn = PacketCodec()
    conn.receive_data(b"$ab}#" + b"%02x" % checksum(b"ab}"))
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


@pytest.mark.parametrize("garbage", [
    b"hello",  # bytes outside a packet
    b"$abc$def#00",  # unescaped '$' inside a packet
    b"$g#zz",  # checksum not hex
])
def test_garbage_is_a_remote_protocol_error_and_the_connection_stays_dead(
        garbage: bytes) -> None:
    conn = PacketCodec()
    conn.receive_data(garbage)
    with pytest.raises(RemoteProtocolError):
        events(conn)
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_packet_without_terminator_is_refused_past_the_size_limit() -> None:
    conn = PacketCodec(max_payload=16)
    conn.receive_data(b"$" + b"a" * 16)
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"a")
    with pytest.raises(RemoteProtocolError, match="longer than 16"):
        conn.next_event()


def test_escaped_prefix_length_respects_the_budget() -> None:
    assert escaped_prefix_length(b"abcdef", 4) == 4
    assert escaped_prefix_length(b"a#b#", 4) == 3  # a }# b = 4 bytes
    assert escaped_prefix_length(b"####", 5) == 2
    assert escaped_prefix_length(b"ab", 10) == 2
    assert escaped_prefix_length(b"#a", 1) == 1  # always progress
    assert escaped_prefix_length(b"", 0) == 0


# -- properties ---------------------------------------------------------------------------

payloads = st.binary(max_size=40)


def wire_items() -> st.SearchStrategy[bytes]:
    good = payloads.map(frame)
    corrupt = payloads.map(lambda p: frame(p)[:-2] + b"%02x" % ((checksum(escape(p)) + 1) % 256))
    return st.one_of(good, corrupt, st.just(b"\x03"), st.just(b"+"), st.just(b"-"),
                     st.binary(max_size=6))


def feed(data: bytes, chunk_sizes: list[int] | None) -> tuple[list[object], bytes, bool]:
    """Feed ``data`` whole (None) or in chunks; return events, outbox, whether it failed."""
    conn = PacketCodec(max_payload=64)
    conn.send_packet(b"last")
    got: list[object] = []
    out = b""
    pieces = [data] if chunk_sizes is None else []
    if chunk_sizes is not None:
        pos = 0
        for size in chunk_sizes:
            pieces.append(data[pos:pos + size])
            pos += size
        pieces.append(data[pos:])
    try:
        for piece in pieces:
            conn.receive_data(piece)
            events(conn, got)
            out += conn.data_to_send()
    except RemoteProtocolError:
        return got, out + conn.data_to_send(), True
    return got, out, False


@settings(max_examples=300, deadline=None)
@given(st.lists(wire_items(), max_size=8), st.data())
def test_whole_and_byte_at_a_time_and_random_chunks_give_the_same_events(
        items: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(items)
    whole = feed(stream, None)
    assert feed(stream, [1] * len(stream)) == whole
    chunks = data.draw(st.lists(st.integers(1, 20), max_size=10))
    assert feed(stream, chunks) == whole


@settings(max_examples=300, deadline=None)
@given(st.lists(payloads, max_size=6))
def test_framed_payloads_round_trip_exactly(bodies: list[bytes]) -> None:
    conn = PacketCodec()
    conn.receive_data(b"".join(frame(b) for b in bodies))
    assert events(conn) == [Packet(b) for b in bodies]
    assert conn.data_to_send() == b"+" * len(bodies)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_raises_only_remote_protocol_error(data: bytes) -> None:
    conn = PacketCodec(max_payload=64)
    conn.receive_data(data)
    with contextlib.suppress(RemoteProtocolError):
        events(conn)
