"""Instructions and memory for the editor's disassembly and memory views (the `disassemble`
and `readMemory` requests), from gdb's `-data-disassemble` and `-data-read-memory-bytes`.

x86 instructions have no fixed length, so a window of instructions around an address is
built from whole functions (`-data-disassemble -a`), which gdb decodes from their real start,
and only falls back to decoding a byte range where there is no function. Positions the
window cannot fill are answered as invalid instructions, as DAP asks (the reply always has
exactly instructionCount entries).
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from relive.dap.gdb import Gdb, ScriptError

__all__ = ["MAX_INSTRUCTIONS", "MAX_MEMORY", "disassemble", "read_memory"]

MAX_INSTRUCTIONS = 10_000        # per disassemble request
MAX_MEMORY = 1 << 20             # bytes per readMemory request
MAX_INSN = 15                    # longest x86 instruction, bytes


@dataclass(frozen=True, slots=True)
class _Insn:
    address: int
    size: int
    text: dict[str, Any]


def address_of(reference: object, offset: object = 0) -> int:
    """A DAP memoryReference ("0x...") plus a byte offset."""
    try:
        return int(str(reference), 0) + int(str(offset or 0), 0)
    except ValueError:
        raise ValueError(f"not a memory reference: {reference!r}") from None


def disassemble(gdb: Gdb, args: dict[str, Any]) -> list[dict[str, Any]]:
    base = address_of(args["memoryReference"], args.get("offset"))
    first = int(args.get("instructionOffset") or 0)
    count = int(args["instructionCount"])
    if not 0 < count <= MAX_INSTRUCTIONS or abs(first) > MAX_INSTRUCTIONS:
        raise ValueError(f"instructionCount must be 1..{MAX_INSTRUCTIONS} and "
                         f"|instructionOffset| at most {MAX_INSTRUCTIONS}")
    insns = _function(gdb, base) or _range(gdb, base, base + MAX_INSN * (count + max(first, 0)))
    at = next((i for i, insn in enumerate(insns) if insn.address >= base), len(insns))
    for _ in range(32):  # earlier functions, while the window starts before what we have
        if at + first >= 0 or not insns:
            break
        before = _function(gdb, insns[0].address - 1)
        if not before or before[-1].address >= insns[0].address:
            break
        insns = before + insns
        at += len(before)
    for _ in range(32):  # later code, while the window ends after it
        if at + first + count <= len(insns) or not insns:
            break
        end = insns[-1].address + insns[-1].size
        more = _function(gdb, end) or _range(gdb, end, end + MAX_INSN * count)
        more = [insn for insn in more if insn.address >= end]
        if not more:
            break
        insns += more
    out = []
    for index in range(at + first, at + first + count):
        if 0 <= index < len(insns):
            out.append(insns[index].text)
        else:
            out.append({"address": hex(max(0, base + index - at)), "instruction": "??",
                        "presentationHint": "invalid"})
    return out


def read_memory(gdb: Gdb, args: dict[str, Any]) -> dict[str, Any]:
    address = address_of(args["memoryReference"], args.get("offset"))
    count = int(args["count"])
    if not 0 <= count <= MAX_MEMORY:
        raise ValueError(f"count must be 0..{MAX_MEMORY}")
    if count == 0:
        return {"address": hex(address)}
    try:
        blocks = gdb.mi(f"-data-read-memory-bytes {address:#x} {count}")["memory"]
    except ScriptError:
        return {"address": hex(address), "unreadableBytes": count}
    data = b""
    for block in blocks:  # gdb answers the readable part, from the start
        if int(block["begin"], 16) != address + len(data):
            break
        data += bytes.fromhex(block["contents"])
    out: dict[str, Any] = {"address": hex(address), "data": base64.b64encode(data).decode()}
    if len(data) < count:
        out["unreadableBytes"] = count - len(data)
    return out


def _function(gdb: Gdb, address: int) -> list[_Insn]:
    try:
        listed = gdb.mi(f"-data-disassemble -a {address:#x} -- 5")["asm_insns"]
    except ScriptError:  # no function there
        return []
    return _parse(listed)


def _range(gdb: Gdb, start: int, end: int) -> list[_Insn]:
    try:
        listed = gdb.mi(f"-data-disassemble -s {start:#x} -e {end:#x} -- 5")["asm_insns"]
    except ScriptError:  # unmapped
        return []
    return _parse(listed)


def _parse(listed: list[dict[str, Any]]) -> list[_Insn]:
    """gdb's source-centric listing (mode 5) as instructions in address order."""
    insns = []
    for group in listed:
        source = group if "line_asm_insn" in group else {}
        for raw in group.get("line_asm_insn", [group]):
            text: dict[str, Any] = {"address": raw["address"],
                                    "instruction": raw.get("inst", ""),
                                    "instructionBytes": raw.get("opcodes", "")}
            if raw.get("func-name"):
                text["symbol"] = f"{raw['func-name']}+{raw.get('offset', 0)}"
            if source.get("fullname") and source.get("line"):
                text["location"] = {"name": source.get("file", ""),
                                    "path": source["fullname"]}
                text["line"] = int(source["line"])
            size = len(raw.get("opcodes", "").split())
            insns.append(_Insn(int(raw["address"], 16), max(1, size), text))
    insns.sort(key=lambda insn: insn.address)
    return insns
