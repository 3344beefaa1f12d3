"""amd64 target.xml vs the g packet layout, and Linux <-> gdb signal numbering."""
from __future__ import annotations

import signal as pysignal
import xml.etree.ElementTree as ET

import pytest

from gdbstub.registers import (
    G_PACKET_SIZE,
    REGISTERS,
    REGNUM,
    TARGET_XML,
    decode_registers,
    encode_register,
    encode_registers,
)
from gdbstub.signals import GdbSignal, from_gdb, to_gdb


def test_target_xml_is_one_document_whose_regnums_match_the_g_layout() -> None:
    root = ET.fromstring(TARGET_XML)
    assert root.findtext("architecture") == "i386:x86-64"
    assert root.findtext("osabi") == "GNU/Linux"
    features = [f.get("name") for f in root.iter("feature")]
    assert features == ["org.gnu.gdb.i386.core", "org.gnu.gdb.i386.sse",
                        "org.gnu.gdb.i386.linux", "org.gnu.gdb.i386.segments"]
    regs = [(r.get("name"), int(r.get("bitsize", "0")), int(r.get("regnum", "-1")))
            for r in root.iter("reg")]
    assert regs == [(spec.name, spec.bits, i) for i, spec in enumerate(REGISTERS)]
    assert b"xi:include" not in TARGET_XML


def test_register_numbers_match_rsp_notes() -> None:
    assert REGNUM["rip"] == 16 and REGNUM["eflags"] == 17 and REGNUM["gs"] == 23
    assert REGNUM["st0"] == 24 and REGNUM["fop"] == 39 and REGNUM["xmm0"] == 40
    assert REGNUM["mxcsr"] == 56 and REGNUM["orig_rax"] == 57
    assert REGNUM["fs_base"] == 58 and REGNUM["gs_base"] == 59
    assert G_PACKET_SIZE == 560


def test_g_packet_is_little_endian_with_xx_for_missing_values() -> None:
    values = {"rax": 0x1122334455667788, "rip": 0x401000, "eflags": 0x246,
              "orig_rax": -1, "xmm15": 1 << 127, "gs_base": 0x7F00}
    packet = encode_registers(values)
    assert len(packet) == 1120
    assert packet[:16] == b"8877665544332211"
    assert packet[16:32] == b"xx" * 8  # rbx missing
    assert encode_register(REGNUM["rip"], values) == b"0010400000000000"
    assert encode_register(REGNUM["eflags"], values) == b"46020000"
    assert encode_register(REGNUM["orig_rax"], values) == b"ff" * 8
    decoded = decode_registers(packet)
    assert decoded["rax"] == 0x1122334455667788 and decoded["rbx"] is None
    assert decoded["xmm15"] == 1 << 127 and decoded["gs_base"] == 0x7F00
    assert decoded["orig_rax"] == (1 << 64) - 1


def test_encode_register_rejects_regnums_outside_the_description() -> None:
    with pytest.raises(IndexError):
        encode_register(len(REGISTERS), {})


@pytest.mark.parametrize(("linux", "gdb"), [
    (pysignal.SIGTRAP, 5), (pysignal.SIGKILL, 9), (pysignal.SIGSEGV, 11),
    (pysignal.SIGBUS, 10), (pysignal.SIGUSR1, 30), (pysignal.SIGUSR2, 31),
    (pysignal.SIGALRM, 14), (pysignal.SIGCHLD, 20), (pysignal.SIGWINCH, 28),
    (pysignal.SIGSYS, 12), (pysignal.SIGPWR, 32), (pysignal.SIGIO, 23),
    (pysignal.SIGSTOP, 17), (pysignal.SIGCONT, 19), (pysignal.SIGINT, 2), (0, 0),
    (32, 77), (33, 45), (40, 52), (63, 75), (64, 78),
])
def test_signal_translation_follows_gdb_signals_def(linux: int, gdb: int) -> None:
    assert to_gdb(linux) == gdb
    assert from_gdb(gdb) == linux


def test_signals_without_a_counterpart() -> None:
    assert to_gdb(16) == GdbSignal.UNKNOWN  # SIGSTKFLT has no gdb name
    assert to_gdb(200) == GdbSignal.UNKNOWN
    assert from_gdb(GdbSignal.EMT) is None
    assert from_gdb(GdbSignal.POLL) == pysignal.SIGIO


def test_every_linux_signal_round_trips() -> None:
    for linux in range(1, 65):
        if linux == 16:
            continue
        assert from_gdb(to_gdb(linux)) == linux, linux
