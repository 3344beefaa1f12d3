"""Breakpoint conditions evaluated in the stub: gdb hands ``break LOC if COND`` over as agent
bytecode (``ConditionalBreakpoints+``), and the replay stops only at hits where it holds, with
no round trip to gdb per hit.

The oracle is gdbserver on a live run of the same program, with the same conditions (it
evaluates them target-side too): both must stop at the same calls with the same values.
Backwards, reverse-continue must land on the last hit where the condition holds."""
from __future__ import annotations

import re
import shutil
import subprocess
import time

import pytest
from conftest import describe, record
from gdbhelpers import gdb_batch, normalise, requires_gdb, serve

from gdbstub.agent import AgentError, AgentExpr, parse_conditions

__all__ = ["serve"]  # the fixture, imported for pytest

GDBSERVER = shutil.which("gdbserver")
CALLS = "2000"
# Each holds first at a later call than the one before (a live run only goes forwards).
CONDITIONS = [
    "i == 150",
    "p->x > 100000 && (i & 7) == 3",
    "total % 7 == 0 && i > 900",
    "(char) i == 'A' && i > 1000",
    "i / 3 == 400",
    "-i < -1300",
    "i % 100 == 78 && p->x % 2 == 1 && i > 1400",
    "i * i > 3000000",
]


def _script() -> list[str]:
    commands = []
    for n, cond in enumerate(CONDITIONS, 1):
        commands += [f"break step if {cond}", "continue", f"echo ===stop {n}\\n", "print i",
                     "print *p", "print total", f"delete {n}"]
    return commands


@pytest.fixture(scope="module")
def cond_trace(programs, tmp_path_factory):
    trace = tmp_path_factory.mktemp("conditions") / "cond_loop"
    rec = record(trace, programs["cond_loop"], CALLS)
    assert rec.returncode == 0, describe(rec)
    return trace


def _stops(output: str) -> list[list[str]]:
    """What gdb printed at each stop (values and frame), normalised."""
    parts = re.split(r"===stop \d+", output)[1:]
    return [[line for line in normalise(part)[:4] if line.startswith("$")] for part in parts]


@requires_gdb
@pytest.mark.skipif(GDBSERVER is None, reason="gdbserver is not installed")
def test_conditions_stop_where_gdbserver_stops_them(programs, cond_trace, serve):
    live = subprocess.Popen([GDBSERVER, "--once", "127.0.0.1:0", str(programs["cond_loop"]),
                             CALLS], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        port = None
        deadline = time.monotonic() + 30
        while port is None and time.monotonic() < deadline:
            line = live.stdout.readline().decode()
            m = re.search(r"Listening on port (\d+)", line)
            port = m.group(1) if m else None
        assert port is not None, "gdbserver did not start"
        expected = gdb_batch(*_script(), "kill", connect=f"127.0.0.1:{port}")
    finally:
        live.kill()
        live.wait()
    server = serve(cond_trace)
    got = gdb_batch(*_script(), "kill", connect=f"127.0.0.1:{server.port}")
    want = _stops(expected.output)
    assert len(want) == len(CONDITIONS) and all(want), expected
    assert _stops(got.output) == want, got


@requires_gdb
def test_a_false_condition_costs_no_stop_reply(cond_trace, serve):
    """gdb sees one stop per continue (and the dynamic loader's), not one per call: the
    condition was evaluated in the stub. Evaluated by gdb, the same run shows a stop reply
    for every call of step up to the 1900th."""
    server = serve(cond_trace)
    run = gdb_batch("break step if i == 1900", "set debug remote 1", "continue",
                    "set debug remote 0", "print i", "kill",
                    connect=f"127.0.0.1:{server.port}")
    assert "$1 = 1900" in run.output, run
    assert re.search(r"Z0,[0-9a-f]+,1;X[0-9a-f]+,", run.output), run  # sent to the stub
    replies = re.findall(r"Packet received: T05", run.output)
    assert 1 <= len(replies) < 10, (len(replies), run)


@requires_gdb
def test_reverse_continue_stops_at_the_last_hit_where_the_condition_holds(cond_trace, serve):
    server = serve(cond_trace)
    run = gdb_batch("break main", "continue", "break step if i == 1700", "continue",
                    "delete", "break step if (i % 250) == 7 && p->x > 0",
                    "reverse-continue", "print i", "reverse-continue", "print i",
                    "delete", "break step if i == 1999", "continue", "print i", "delete",
                    "break step if (i % 250) == 7", "reverse-continue", "reverse-continue",
                    "print i", "kill",
                    connect=f"127.0.0.1:{server.port}")
    values = re.findall(r"^\$\d+ = (-?\d+)$", run.output, re.MULTILINE)
    # back from 1700: 1507, then 1257; forward to 1999; back twice: 1757, then 1507
    assert values == ["1507", "1257", "1999", "1507"], run


# gdb's agent opcodes by name, with their operand sizes (gdb's ax.def).
OPCODES = {"add": (0x02, 0), "sub": (0x03, 0), "mul": (0x04, 0), "div_signed": (0x05, 0),
           "div_unsigned": (0x06, 0), "rem_signed": (0x07, 0), "rem_unsigned": (0x08, 0),
           "lsh": (0x09, 0), "rsh_signed": (0x0a, 0), "rsh_unsigned": (0x0b, 0),
           "log_not": (0x0e, 0), "bit_and": (0x0f, 0), "bit_or": (0x10, 0),
           "bit_xor": (0x11, 0), "bit_not": (0x12, 0), "equal": (0x13, 0),
           "less_signed": (0x14, 0), "less_unsigned": (0x15, 0), "ext": (0x16, 1),
           "ref8": (0x17, 0), "ref16": (0x18, 0), "ref32": (0x19, 0), "ref64": (0x1a, 0),
           "if_goto": (0x20, 2), "goto": (0x21, 2), "const8": (0x22, 1), "const16": (0x23, 2),
           "const32": (0x24, 4), "const64": (0x25, 8), "reg": (0x26, 2), "end": (0x27, 0),
           "dup": (0x28, 0), "pop": (0x29, 0), "zero_ext": (0x2a, 1), "swap": (0x2b, 0),
           "pick": (0x32, 1), "rot": (0x33, 0)}
_LISTING = re.compile(r"^\s*\d+\s+([a-z_0-9]+)(?:\s+(\d+))?\s*$")


def _bytecodes(text: str) -> list[bytes]:
    """`maint agent-eval` listings (`  0  reg 5`, ...) assembled back into bytecode."""
    codes, code = [], bytearray()
    for line in text.splitlines():
        m = _LISTING.match(line)
        if not m:
            continue
        op, size = OPCODES[m.group(1)]
        code.append(op)
        if size:
            code += int(m.group(2)).to_bytes(size, "big")
        if m.group(1) == "end":
            codes.append(bytes(code))
            code = bytearray()
    return codes


@requires_gdb
def test_gdbs_own_bytecode_evaluates_here_as_in_c(programs):
    """Expressions compiled by gdb itself (`maint agent-eval`), evaluated with fixed
    registers and memory, give what C gives."""
    cases = {"(long) $rdi * 3 - 7 == 2": 1, "(int) $rsi / -2": -21, "(int) $rsi % -5": 2,
             "(unsigned char) $rdx": 0xF0, "(signed char) $rdx": -16,
             "(unsigned long) $rax >> 60": 15, "(long) $rax >> 60": -1, "!$rcx": 1,
             "(long) $rdi < (long) $rsi": 1, "~(long) $rcx": -1, "*(int *) $rbx": -2,
             "*(short *) $rbx == -2 ? 10 : 20": 10, "(unsigned) -1 / 2u": 0x7FFFFFFF}
    registers = {"rdi": 3, "rsi": 42, "rdx": 0x1F0, "rax": 0xF000_0000_0000_0000, "rcx": 0,
                 "rbx": 0x1000}

    class Thread:
        def register(self, name: str) -> int:
            return registers.get(name, 0)

        def read_memory(self, addr: int, length: int) -> bytes:
            if addr != 0x1000:
                raise AgentError("unmapped")
            return (-2).to_bytes(8, "little", signed=True)[:length]

    commands = ["starti"] + [f"maint agent-eval {expr}" for expr in cases]
    run = gdb_batch(*commands, program=programs["cond_loop"])
    codes = _bytecodes(run.output)
    assert len(codes) == len(cases), run
    for (expr, want), code in zip(cases.items(), codes):
        got = AgentExpr(code).evaluate(Thread())
        assert got == want & ((1 << 64) - 1), (expr, code.hex(), got)


def test_conditions_from_the_wire_are_bounded_and_checked():
    assert parse_conditions(b"X3,220127") == (AgentExpr(bytes.fromhex("220127")),)
    assert len(parse_conditions(b"X3,220127X3,220027")) == 2       # as gdb writes them
    assert len(parse_conditions(b"X3,220127;X3,220027;cmds:0,X1,27")) == 2
    for bad in (b"X0,", b"X2,22", b"Xzz,00", b"X2001,00", b"Y1,27", b"X3,22012", b"X1,zz"):
        with pytest.raises(ValueError):
            parse_conditions(bad)
    with pytest.raises(AgentError):  # a loop that never ends is cut off
        AgentExpr(bytes.fromhex("210000")).evaluate(None)  # type: ignore[arg-type]
    with pytest.raises(AgentError):  # a jump outside the expression
        AgentExpr(bytes.fromhex("2100ff")).evaluate(None)  # type: ignore[arg-type]
