"""The i386 system call ABI is refused at record time, in one line (issue 21, item 4): a
64-bit program's `int $0x80`, and a 32-bit program. Recorded under the x86-64 numbers, an
i386 call would be another call, and the trace would replay as if faithful."""
from __future__ import annotations

import os
import re
import subprocess

import pytest
from conftest import PROGRAMS_DIR, describe, record, replay, run_relive


def assert_clean_failure(proc, status, needle):
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == status, describe(proc)
    assert "Traceback" not in err and err.startswith("relive: ") and needle in err, err


@pytest.mark.parametrize("fastpath", ["1", "0"], ids=["compiled-loop", "python-path"])
def test_int80_in_a_64_bit_program_is_refused(programs, tmp_path, fastpath):
    """After a run of getppid calls (recorded by the compiled loop, which must hand the
    int $0x80 entry back, or by the Python path), i386 getuid stops the recording, naming it
    and the event."""
    trace = tmp_path / "trace"
    prog = programs["int80_getuid"]
    rec = record(trace, prog, env={**os.environ, "RELIVE_FASTPATH": fastpath})
    assert_clean_failure(rec, 125, "32-bit system calls (int $0x80) are not supported")
    first = rec.stderr.decode().splitlines()[0]
    assert re.fullmatch(rf"relive: 32-bit system calls \(int \$0x80\) are not supported: "
                        rf"{re.escape(str(prog))} \(pid \d+\) called system call 24 of the "
                        rf"i386 ABI at event \d+", first), describe(rec)
    assert rec.stdout == b"before\n", describe(rec)  # stopped there
    info = run_relive("info", trace, text=True)
    assert "complete: NO" in info.stdout and "int $0x80" in info.stdout, info.stdout
    rep = replay(trace)  # what was recorded before it replays
    assert rep.returncode == 0 and rep.stdout == b"before\n", describe(rep)


@pytest.fixture(scope="module")
def hello32(tmp_path_factory):
    """tests/programs/hello.c built as a 32-bit program, if gcc can (gcc-multilib)."""
    out = tmp_path_factory.mktemp("m32") / "hello32"
    proc = subprocess.run(["gcc", "-m32", "-o", str(out), str(PROGRAMS_DIR / "hello.c")],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"gcc -m32 does not work here (gcc-multilib?): "
                    f"{proc.stderr.strip().splitlines()[-1:]}")
    return out


def test_32_bit_program_is_refused(hello32, tmp_path):
    rec = record(tmp_path / "trace", hello32)
    assert_clean_failure(rec, 125, "32-bit programs are not supported")
    assert (f"relive: 32-bit programs are not supported: {hello32}"
            in rec.stderr.decode()), describe(rec)
    assert rec.stdout == b"", describe(rec)


def test_32_bit_program_started_by_a_shell_is_refused(hello32, tmp_path):
    trace = tmp_path / "trace"
    rec = record(trace, "sh", "-c", f"echo before; {hello32}")
    assert_clean_failure(rec, 125, "is a 32-bit (i386) program")
    assert rec.stdout == b"before\n", describe(rec)
    rep = replay(trace)
    assert rep.returncode == 0 and rep.stdout == b"before\n", describe(rep)
