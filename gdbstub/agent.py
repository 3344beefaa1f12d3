"""gdb's agent expressions: the bytecode of breakpoint conditions evaluated in the stub.

When the stub advertises ``ConditionalBreakpoints+``, gdb compiles ``break LOC if COND`` to
bytecode and sends it with the breakpoint (``Z0,addr,kind;X<len>,<hex>...``). The stub then
evaluates it at every hit and reports only hits where it is true, with no round trip to gdb
(gdb's manual, "Agent Expressions"; gdbserver's ax.cc is the reference implementation).

Semantics follow gdbserver's: a breakpoint with several conditions stops if any is true; a
condition that cannot be evaluated here (floating point, trace state variables, a memory read
that fails, a malformed program) counts as true, so the hit is reported and gdb evaluates
the condition itself. Bytecode comes from the wire: its length, the stack depth and the
number of instructions run are bounded, and jumps are checked.

Values are 64-bit: every result is kept modulo 2**64 (gdb's LONGEST on amd64), and the
signed operations reinterpret it.
"""
from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from debugtarget.protocol import ThreadState

MAX_BYTECODE: Final = 4096      # bytes in one expression (gdb's are tens of bytes)
MAX_STACK: Final = 1024
MAX_STEPS: Final = 100_000      # instructions run per evaluation (loops are possible)
MASK: Final = (1 << 64) - 1

# gdb's amd64 register numbers (the order of the target description, gdbstub.registers).
REGISTER_NAMES: Final = (
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "eflags",
    "cs", "ss", "ds", "es", "fs", "gs")
FS_BASE, GS_BASE = 58, 59


class AgentError(Exception):
    """The expression cannot be evaluated here (the hit is then reported to gdb)."""


def _signed(v: int) -> int:
    return v - (1 << 64) if v & (1 << 63) else v


def _sign_extend(v: int, bits: int) -> int:
    if not 0 < bits <= 64:
        raise AgentError(f"extension to {bits} bits")
    v &= (1 << bits) - 1
    return (v - (1 << bits) if v & (1 << (bits - 1)) else v) & MASK


def _div(a: int, b: int) -> int:
    if b == 0:
        raise AgentError("division by zero")
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q  # C truncates towards zero


def _rem(a: int, b: int) -> int:
    if b == 0:
        raise AgentError("division by zero")
    return a - b * _div(a, b)


# Binary operations: opcode -> f(a, b) where b was on top.
_BINARY: Final[dict[int, Callable[[int, int], int]]] = {
    0x02: lambda a, b: a + b,
    0x03: lambda a, b: a - b,
    0x04: lambda a, b: a * b,
    0x05: lambda a, b: _div(_signed(a), _signed(b)),
    0x06: lambda a, b: _div(a, b),
    0x07: lambda a, b: _rem(_signed(a), _signed(b)),
    0x08: lambda a, b: _rem(a, b),
    0x09: lambda a, b: a << b if b < 64 else 0,
    0x0a: lambda a, b: _signed(a) >> min(b, 63),
    0x0b: lambda a, b: a >> b if b < 64 else 0,
    0x0f: lambda a, b: a & b,
    0x10: lambda a, b: a | b,
    0x11: lambda a, b: a ^ b,
    0x13: lambda a, b: int(a == b),
    0x14: lambda a, b: int(_signed(a) < _signed(b)),
    0x15: lambda a, b: int(a < b),
}
_REF: Final = {0x17: 1, 0x18: 2, 0x19: 4, 0x1a: 8}      # ref8..ref64: zero-extended loads
_CONST: Final = {0x22: 1, 0x23: 2, 0x24: 4, 0x25: 8}    # const8..const64: big-endian operands
_UNSUPPORTED: Final = {0x01: "float", 0x1b: "ref_float", 0x1c: "ref_double",
                       0x1d: "ref_long_double", 0x1e: "l_to_d", 0x1f: "d_to_l",
                       0x2c: "getv", 0x2d: "setv", 0x2e: "tracev", 0x34: "printf"}
_TRACE_SKIP: Final = {0x0d: 1, 0x30: 2}                 # trace_quick n, trace16 n: no-ops here


@dataclass(frozen=True, slots=True)
class AgentExpr:
    """One expression's bytecode, as gdb sent it."""

    code: bytes

    def evaluate(self, thread: ThreadState) -> int:
        """The value left on top of the stack at ``end``; AgentError if it cannot be had."""
        return _Run(self.code, thread).run()


class _Run:
    def __init__(self, code: bytes, thread: ThreadState) -> None:
        self.code = code
        self.thread = thread
        self.stack: list[int] = []
        self.pc = 0

    def pop(self) -> int:
        if not self.stack:
            raise AgentError("stack underflow")
        return self.stack.pop()

    def push(self, v: int) -> None:
        if len(self.stack) >= MAX_STACK:
            raise AgentError("stack overflow")
        self.stack.append(v & MASK)

    def operand(self, size: int) -> int:
        if self.pc + size > len(self.code):
            raise AgentError("truncated operand")
        v = int.from_bytes(self.code[self.pc:self.pc + size], "big")
        self.pc += size
        return v

    def jump(self, target: int) -> None:
        if target >= len(self.code):
            raise AgentError(f"jump to {target} outside the expression")
        self.pc = target

    def run(self) -> int:
        for _ in range(MAX_STEPS):
            if self.pc >= len(self.code):
                raise AgentError("ran off the end of the expression")
            op = self.code[self.pc]
            self.pc += 1
            if op == 0x27:  # end
                return self.pop()
            self.step(op)
        raise AgentError(f"more than {MAX_STEPS} instructions")

    def step(self, op: int) -> None:
        if op in _BINARY:
            b = self.pop()
            self.push(_BINARY[op](self.pop(), b))
        elif op in _REF:
            addr = self.pop()
            data = self.thread.read_memory(addr, _REF[op])
            if len(data) != _REF[op]:
                raise AgentError(f"cannot read {_REF[op]} bytes at {addr:#x}")
            self.push(int.from_bytes(data, "little"))
        elif op in _CONST:
            self.push(self.operand(_CONST[op]))
        elif op in _TRACE_SKIP:
            self.operand(_TRACE_SKIP[op])
        elif op in _UNSUPPORTED:
            raise AgentError(f"{_UNSUPPORTED[op]} is not evaluated in the stub")
        else:
            self.step_other(op)

    def step_other(self, op: int) -> None:
        match op:
            case 0x0e:  # log_not
                self.push(int(self.pop() == 0))
            case 0x12:  # bit_not
                self.push(~self.pop())
            case 0x16:  # ext n
                self.push(_sign_extend(self.pop(), self.operand(1)))
            case 0x2a:  # zero_ext n
                bits = self.operand(1)
                self.push(self.pop() & ((1 << bits) - 1) if bits < 64 else self.pop())
            case 0x20:  # if_goto
                target = self.operand(2)
                if self.pop():
                    self.jump(target)
            case 0x21:  # goto
                self.jump(self.operand(2))
            case 0x26:  # reg n
                self.push(self.thread.register(register_name(self.operand(2))))
            case 0x28:  # dup
                v = self.pop()
                self.push(v)
                self.push(v)
            case 0x29:  # pop
                self.pop()
            case 0x2b:  # swap
                b, a = self.pop(), self.pop()
                self.push(b)
                self.push(a)
            case 0x32:  # pick n: copy the n-th item below the top
                n = self.operand(1)
                if n >= len(self.stack):
                    raise AgentError("pick below the stack")
                self.push(self.stack[-1 - n])
            case 0x33:  # rot: a b c => c a b
                c, b, a = self.pop(), self.pop(), self.pop()
                for v in (c, a, b):
                    self.push(v)
            case 0x0c | 0x2f:  # trace, tracenz: collect memory (tracepoints only)
                self.pop()
                self.pop()
            case _:
                raise AgentError(f"unknown bytecode {op:#04x}")


def register_name(regnum: int) -> str:
    if regnum < len(REGISTER_NAMES):
        return REGISTER_NAMES[regnum]
    if regnum == FS_BASE:
        return "fs_base"
    if regnum == GS_BASE:
        return "gs_base"
    raise AgentError(f"register {regnum} is not evaluated in the stub")


def parse_conditions(text: bytes) -> tuple[AgentExpr, ...]:
    """The conditions after a ``Z0``/``Z1``'s kind: ``X<len>,<hex>`` entries, one after the
    other (gdb writes them with no separator) or separated by ``;``. A ``cmds:`` list (target
    commands, not advertised) ends them. ValueError on anything malformed."""
    exprs: list[AgentExpr] = []
    i = 0
    while i < len(text):
        if text[i:i + 1] == b";":
            i += 1
            continue
        if text.startswith(b"cmds:", i):
            break
        if text[i:i + 1] != b"X":
            raise ValueError(f"unexpected {text[i:i + 1]!r} in breakpoint conditions")
        comma = text.find(b",", i)
        if comma < 0 or comma - i > 5:
            raise ValueError("condition without a length")
        length = int(text[i + 1:comma], 16)
        if not 0 < length <= MAX_BYTECODE:
            raise ValueError(f"condition of {length} bytes (at most {MAX_BYTECODE})")
        hex_end = comma + 1 + 2 * length
        if hex_end > len(text):
            raise ValueError("condition shorter than its length")
        exprs.append(AgentExpr(bytes.fromhex(text[comma + 1:hex_end].decode("ascii"))))
        i = hex_end
    return tuple(exprs)


def any_true(exprs: tuple[AgentExpr, ...], thread: ThreadState) -> bool:
    """gdbserver's rule: stop if any condition is true, or if one cannot be evaluated."""
    for expr in exprs:
        try:
            if expr.evaluate(thread):
                return True
        except (AgentError, OSError, struct.error):
            return True
    return False
