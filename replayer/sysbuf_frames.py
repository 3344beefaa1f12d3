"""A thread stopped at one of the syscall hook's `syscall` instructions (tracee.sysbuf_hook.c;
a buffered call's event, reverse-stepi onto it, `goto` its event), as it stood at its libc
site, for gdb (replayer.sysbuf_view): gdb has no CFI for the hook and could not unwind.

The hook's frames are read from the stack: the trampoline's return address (its `call` of
the hook's entry) marks the entry's frame, below it the pushed rbp and the argument
registers (relive_hook_entry: push rbp, rdi, rsi, rdx, r10, r8, r9); the entry's own `call`
of the C function leaves its return address on the stack, and the C function's prologue
(its `push`es, decoded from the process's copy of the hook) says where it saved rbx and
r12-r15. Anything not found as expected: the registers are left as they are.
"""
from __future__ import annotations

import struct
from collections.abc import Callable

from tracee import sysbuf
from tracee.task import MemoryAccessError, Task

SCAN = 4096  # bytes of stack searched for the hook's frames
_SAVED = ("rbx", "r12", "r13", "r14", "r15")
_ENTRY_PUSHES = ("rbp", "rdi", "rsi", "rdx", "r10", "r8", "r9")


def _pushes(code: bytes, at: int) -> list[str]:
    """The registers the function at `at` saves in its prologue, in push order: the run of
    `push`es on its straight path (gcc may test an argument first; branches not taken)."""
    import capstone
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    pushed: list[str] = []
    for _address, _size, mnemonic, op_str in md.disasm_lite(
            code[:128], at):
        if mnemonic == "push":
            pushed.append(op_str)
        elif pushed or mnemonic in ("call", "jmp", "ret"):
            break
    return pushed


def _call(code: bytes, at: int) -> tuple[int, int] | None:
    """relive_hook_entry's call of the C function: (its target, its return address)."""
    import capstone
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    for address, size, mnemonic, op_str in md.disasm_lite(
            code[:256], at):
        if mnemonic == "call":
            try:
                return int(op_str, 16), int(address + size)
            except ValueError:
                return None
        if mnemonic.startswith("j") or mnemonic == "ret":
            return None
    return None


def in_hook(rip: int) -> bool:
    return sysbuf.HOOK_CODE <= rip < sysbuf.HOOK_CODE + sysbuf.TABLE_OFF


def at_site(task: Task, values: dict[str, int], entry: int,
            return_of: Callable[[int], tuple[int, int] | None]) -> dict[str, int] | None:
    """`values` as at the site if the thread is at (or right after) a hook `syscall`;
    `entry`: the hook's entry (a trampoline page's slot); `return_of(v)`: (site pc before
    its syscall, after it) if v is a trampoline's return address from its call of the
    hook."""
    rip, rsp = values["rip"], values["rsp"]
    try:
        code = task.mem.read_upto(sysbuf.HOOK_CODE, sysbuf.TABLE_OFF)
        stack = task.mem.read_upto(rsp, SCAN)
    except MemoryAccessError:
        return None
    off = rip - sysbuf.HOOK_CODE
    if code[off:off + 2] == b"\x0f\x05":
        after = False
    elif off >= 2 and code[off - 2:off] == b"\x0f\x05":
        after = True
    else:
        return None
    words = struct.unpack_from(f"<{len(stack) // 8}Q", stack)
    slot = site = None
    for i, w in enumerate(words):
        found = return_of(w)
        if found is not None:
            slot, site = i, found
            break
    if slot is None or site is None or slot < len(_ENTRY_PUSHES):
        return None
    out = dict(values)
    for k, name in enumerate(_ENTRY_PUSHES):  # pushed in this order below the return address
        out[name] = words[slot - 1 - k]
    if not in_hook(entry):
        return None
    call = _call(code[entry - sysbuf.HOOK_CODE:], entry)
    if call is None or not in_hook(call[0]):
        return None
    c_function, call_end = call
    saved = _pushes(code[c_function - sysbuf.HOOK_CODE:], c_function)
    if not set(_SAVED) <= set(saved):
        return None
    ret = next((i for i in range(slot) if words[i] == call_end), None)
    if ret is None:
        return None
    for k, name in enumerate(saved):
        if name in _SAVED and ret - 1 - k >= 0:
            out[name] = words[ret - 1 - k]
    out["rsp"] = rsp + 8 * slot + 8 + 128  # the trampoline's call, then its red-zone step
    out["rip"] = site[1] if after else site[0]
    if after:
        out["rcx"] = out["rip"]  # as the kernel leaves it after a `syscall`
    return out
