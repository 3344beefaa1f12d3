"""rdrand and rdseed: the CPU's random numbers cannot be trapped here, so relive patches the
instructions out of the code it maps and records the numbers it hands out instead
(tracee/rdrand.py). Checked with a C program using every operand size, with libstdc++'s
std::random_device, and through gdb (the code shows rdrand, stepping gives the recorded
number, forwards and backwards)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import trace_rows
import pytest
from conftest import assert_faithful, describe, record, replay, reseal, run_relive
from gdbhelpers import gdb_batch, requires_gdb, serve

from tracee import rdrand

__all__ = ["serve"]  # the fixture, imported for pytest

with open("/proc/cpuinfo") as _f:
    _FLAGS = set(re.search(r"^flags\s*:(.*)$", _f.read(), re.MULTILINE)[1].split())  # type: ignore[index]
pytestmark = pytest.mark.skipif(not {"rdrand", "rdseed"} <= _FLAGS,
                                reason="this CPU has no rdrand/rdseed")
PRINTED = re.compile(rb"^(rdrand16|rdrand32|rdrand64|rdseed32|rdseed64|rdrand_r9): (0x[0-9a-f]+)$",
                     re.MULTILINE)
DUMPED = re.compile(r" RDRAND +(rdrand|rdseed) (\w+) = (0x[0-9a-f]+)$", re.MULTILINE)


def _objdump_sites(binary: Path) -> set[int]:
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(binary)],
                         capture_output=True, text=True, check=True).stdout
    return {int(m[1], 16) for m in re.finditer(r"^\s*([0-9a-f]+):\s+(?:rdrand|rdseed)\s",
                                               out, re.MULTILINE)}


def test_scan_finds_the_instructions_objdump_lists_and_not_lookalike_bytes(programs):
    binary = programs["rdrand"]
    found = rdrand.scan(binary)
    # the program's file offsets equal its addresses in objdump's listing (text at p_vaddr
    # == p_offset in gcc's PIE layout); the lookalike mov is not among them
    assert {s.offset for s in found.sites} == _objdump_sites(binary)
    assert len(found.sites) == 6 and found.doubtful == 0
    assert {(s.insn, s.width) for s in found.sites} == {
        ("rdrand", 2), ("rdrand", 4), ("rdrand", 8), ("rdseed", 4), ("rdseed", 8)}
    assert any(s.reg == "r9" for s in found.sites)
    assert binary.read_bytes().count(b"\x0f\xc7\xf0") > sum(
        1 for s in found.sites if s.code.endswith(b"\x0f\xc7\xf0"))  # the lookalike exists


def test_numbers_are_recorded_and_replayed(programs, tmp_path):
    rec = record(tmp_path / "t", programs["rdrand"])
    assert rec.returncode == 0, describe(rec)
    assert b"lookalike: 0xf0c70f00\n" in rec.stdout  # the instruction around the bytes ran
    assert_faithful(rec, replay(tmp_path / "t"))
    dump = run_relive("dump", tmp_path / "t", capture_output=True, text=True).stdout
    printed = [int(v, 16) for _, v in PRINTED.findall(rec.stdout)]
    recorded = [(insn, reg, int(v, 16)) for insn, reg, v in DUMPED.findall(dump)]
    assert [v for _, _, v in recorded] == printed and len(printed) == 6
    assert recorded[5][1] == "r9" and [i for i, _, _ in recorded].count("rdseed") == 2


def test_each_recording_replays_its_own_numbers(programs, tmp_path):
    rec1 = record(tmp_path / "t1", programs["rdrand"])
    rec2 = record(tmp_path / "t2", programs["rdrand"])
    assert rec1.stdout != rec2.stdout
    assert_faithful(rec1, replay(tmp_path / "t1"))
    assert_faithful(rec2, replay(tmp_path / "t2"))


def test_a_changed_number_is_a_divergence(programs, tmp_path):
    """The numbers reach syscall arguments: a replay that computed another one (as before
    relive patched rdrand) is caught, not silent."""
    rec = record(tmp_path / "t", programs["rdrand"])
    assert rec.returncode == 0, describe(rec)
    db = trace_rows.connect(tmp_path / "t")
    with db:
        seq, = db.execute("SELECT seq FROM events WHERE kind = 9 ORDER BY seq LIMIT 1 OFFSET 2"
                          ).fetchone()
        db.execute("UPDATE events SET result = result + 1 WHERE seq = ?", (seq,))
        reseal(db)
    db.close()
    rep = replay(tmp_path / "t")
    assert rep.returncode != 0
    assert re.search(rb"replay diverged at event \d+ .*registers differ", rep.stderr), describe(rep)
    assert re.search(rb"r[a-z0-9]+: recorded 0x[0-9a-f]+, replay 0x", rep.stderr), describe(rep)


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")
def test_std_random_device(tmp_path):
    """libstdc++'s std::random_device takes its numbers from rdrand/rdseed on such CPUs."""
    src = tmp_path / "random_device.cpp"
    src.write_text('#include <random>\n#include <cstdio>\nint main() {\n'
                   '  std::random_device rd;\n  unsigned a = rd(), b = rd();\n'
                   '  std::printf("%u %u %.0f\\n", a, b, rd.entropy());\n'
                   '  return (a ^ b) & 1;\n}\n')
    binary = tmp_path / "random_device"
    subprocess.run(["g++", "-O1", "-o", str(binary), str(src)], check=True)
    rec = record(tmp_path / "t", binary)
    assert rec.returncode in (0, 1), describe(rec)
    assert_faithful(rec, replay(tmp_path / "t"))
    dump = run_relive("dump", tmp_path / "t", capture_output=True, text=True).stdout
    assert len(DUMPED.findall(dump)) >= 2


@requires_gdb
@pytest.mark.slow
def test_gdb_shows_rdrand_and_steps_to_the_recorded_number(programs, tmp_path, serve):
    rec = record(tmp_path / "t", programs["rdrand"])
    assert rec.returncode == 0, describe(rec)
    want = dict(PRINTED.findall(rec.stdout))[b"rdrand64"].decode()
    server = serve(tmp_path / "t")
    run = gdb_batch("break *rdrand64+4", "continue", "x/i $pc", "stepi",
                    "printf \"after: %#lx\\n\", $rax", "reverse-stepi", "x/i $pc",
                    "stepi", "printf \"again: %#lx\\n\", $rax", connect=server.address)
    out = run.output
    assert re.search(r"=> 0x[0-9a-f]+ <rdrand64\+4>:\s+rdrand %rax", out), str(run)
    assert "ud2" not in out, str(run)
    assert f"after: {want}\n" in out and f"again: {want}\n" in out, str(run)
