"""The amd64 register description (target.xml) and the ``g``/``p`` packet encodings.

One table, ``REGISTERS``, drives both the XML sent to gdb and the byte layout of ``g``, so the
two cannot disagree: gdb numbers registers in document order and expects ``g`` to be their
concatenation, each little-endian, ``xx`` per byte for a value the target did not supply.

Features, in order (gdb 13's own i386/64bit-*.xml): core (rax..gs, st0-7, fctrl..fop =
regnums 0-39), sse (xmm0-15, mxcsr = 40-56), linux (orig_rax = 57), segments (fs_base, gs_base
= 58-59). No AVX upper halves and no pkeys: ``g`` is 560 bytes (1120 hex digits).

Values come from the Target as a name -> int mapping; this module knows nothing else about it.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class RegisterSpec:
    """One register as gdb sees it."""

    name: str
    bits: int
    type: str
    group: str | None = None

    @property
    def size(self) -> int:
        """Bytes in the ``g`` packet."""
        return self.bits // 8


@dataclass(frozen=True, slots=True)
class Feature:
    """A target-description feature: its gdb name, type definitions, and registers."""

    name: str
    types_xml: str
    registers: tuple[RegisterSpec, ...]


_GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
         "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")

_EFLAGS_XML = "".join(
    f'<field name="{name}" start="{bit}" end="{bit}"/>'
    for name, bit in (("CF", 0), ("", 1), ("PF", 2), ("AF", 4), ("ZF", 6), ("SF", 7),
                      ("TF", 8), ("IF", 9), ("DF", 10), ("OF", 11), ("NT", 14), ("RF", 16),
                      ("VM", 17), ("AC", 18), ("VIF", 19), ("VIP", 20), ("ID", 21)))

_MXCSR_XML = "".join(
    f'<field name="{name}" start="{bit}" end="{bit}"/>'
    for name, bit in (("IE", 0), ("DE", 1), ("ZE", 2), ("OE", 3), ("UE", 4), ("PE", 5),
                      ("DAZ", 6), ("IM", 7), ("DM", 8), ("ZM", 9), ("OM", 10), ("UM", 11),
                      ("PM", 12), ("FZ", 15)))

_VEC128_XML = (
    '<vector id="v8bf16" type="bfloat16" count="8"/>'
    '<vector id="v8h" type="ieee_half" count="8"/>'
    '<vector id="v4f" type="ieee_single" count="4"/>'
    '<vector id="v2d" type="ieee_double" count="2"/>'
    '<vector id="v16i8" type="int8" count="16"/>'
    '<vector id="v8i16" type="int16" count="8"/>'
    '<vector id="v4i32" type="int32" count="4"/>'
    '<vector id="v2i64" type="int64" count="2"/>'
    '<union id="vec128">'
    '<field name="v8_bfloat16" type="v8bf16"/><field name="v8_half" type="v8h"/>'
    '<field name="v4_float" type="v4f"/><field name="v2_double" type="v2d"/>'
    '<field name="v16_int8" type="v16i8"/><field name="v8_int16" type="v8i16"/>'
    '<field name="v4_int32" type="v4i32"/><field name="v2_int64" type="v2i64"/>'
    '<field name="uint128" type="uint128"/>'
    '</union>')

FEATURES: Final[tuple[Feature, ...]] = (
    Feature(
        "org.gnu.gdb.i386.core",
        f'<flags id="i386_eflags" size="4">{_EFLAGS_XML}</flags>',
        (*(RegisterSpec(n, 64, "data_ptr" if n in ("rbp", "rsp") else "int64") for n in _GPRS),
         RegisterSpec("rip", 64, "code_ptr"),
         RegisterSpec("eflags", 32, "i386_eflags"),
         *(RegisterSpec(n, 32, "int32") for n in ("cs", "ss", "ds", "es", "fs", "gs")),
         *(RegisterSpec(f"st{i}", 80, "i387_ext") for i in range(8)),
         *(RegisterSpec(n, 32, "int", "float")
           for n in ("fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop")))),
    Feature(
        "org.gnu.gdb.i386.sse",
        _VEC128_XML + f'<flags id="i386_mxcsr" size="4">{_MXCSR_XML}</flags>',
        (*(RegisterSpec(f"xmm{i}", 128, "vec128") for i in range(16)),
         RegisterSpec("mxcsr", 32, "i386_mxcsr", "vector"))),
    Feature("org.gnu.gdb.i386.linux", "", (RegisterSpec("orig_rax", 64, "int"),)),
    Feature("org.gnu.gdb.i386.segments", "",
            (RegisterSpec("fs_base", 64, "int"), RegisterSpec("gs_base", 64, "int"))),
)

REGISTERS: Final[tuple[RegisterSpec, ...]] = tuple(
    reg for feature in FEATURES for reg in feature.registers)
"""All registers in gdb regnum order (index == regnum)."""

REGISTER_NAMES: Final[tuple[str, ...]] = tuple(r.name for r in REGISTERS)
REGNUM: Final[Mapping[str, int]] = {r.name: i for i, r in enumerate(REGISTERS)}
G_PACKET_SIZE: Final = sum(r.size for r in REGISTERS)

EXPEDITED: Final[tuple[int, ...]] = (REGNUM["rbp"], REGNUM["rsp"], REGNUM["rip"])
"""Registers sent in every stop reply (as gdbserver does): 06 rbp, 07 rsp, 10 rip."""


def _target_xml() -> bytes:
    parts = ['<?xml version="1.0"?>\n<!DOCTYPE target SYSTEM "gdb-target.dtd">\n<target>\n'
             "<architecture>i386:x86-64</architecture>\n<osabi>GNU/Linux</osabi>\n"]
    regnum = 0
    for feature in FEATURES:
        parts.append(f'<feature name="{feature.name}">\n')
        if feature.types_xml:
            parts.append(feature.types_xml + "\n")
        for reg in feature.registers:
            group = f' group="{reg.group}"' if reg.group else ""
            parts.append(f'<reg name="{reg.name}" bitsize="{reg.bits}" type="{reg.type}"'
                         f' regnum="{regnum}"{group}/>\n')
            regnum += 1
        parts.append("</feature>\n")
    parts.append("</target>\n")
    return "".join(parts).encode()


TARGET_XML: Final[bytes] = _target_xml()


def encode_register(regnum: int, values: Mapping[str, int]) -> bytes:
    """Hex of one register (the reply to ``p``); ``xx`` bytes if the value is missing.

    Raises IndexError for a regnum the description does not have.
    """
    if regnum < 0:
        raise IndexError(regnum)
    spec = REGISTERS[regnum]
    value = values.get(spec.name)
    if value is None:
        return b"xx" * spec.size
    mask = (1 << spec.bits) - 1
    return (value & mask).to_bytes(spec.size, "little").hex().encode()


def encode_registers(values: Mapping[str, int]) -> bytes:
    """Hex of every register in regnum order (the reply to ``g``)."""
    return b"".join(encode_register(i, values) for i in range(len(REGISTERS)))


def values_from_bytes(raw: bytes) -> dict[str, int]:
    """The registers a ``G`` packet sets: its raw bytes, in regnum order (G_PACKET_SIZE)."""
    if len(raw) != G_PACKET_SIZE:
        raise ValueError(f"G packet has {len(raw)} bytes, expected {G_PACKET_SIZE}")
    out, pos = {}, 0
    for spec in REGISTERS:
        out[spec.name] = int.from_bytes(raw[pos:pos + spec.size], "little")
        pos += spec.size
    return out


def decode_registers(data: bytes) -> dict[str, int | None]:
    """Parse a ``g`` reply back to values (None for ``xx``); the inverse of encode_registers."""
    if len(data) != 2 * G_PACKET_SIZE:
        raise ValueError(f"g packet has {len(data)} hex digits, expected {2 * G_PACKET_SIZE}")
    out: dict[str, int | None] = {}
    pos = 0
    for spec in REGISTERS:
        chunk = data[pos:pos + 2 * spec.size]
        pos += 2 * spec.size
        out[spec.name] = None if b"x" in chunk else int.from_bytes(bytes.fromhex(
            chunk.decode()), "little")
    return out
