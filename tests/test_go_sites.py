"""A Go program's own syscall sites jump to the in-process hook (tracee/go_sites.py,
recorder/go_patch.py, replayer/go_view.py): Go makes its calls itself (runtime·futex,
nanotime1's clock_gettime, Syscall6), so without this every one of them stopped the
recorder. tests/programs/go_sites.go (goroutines, channels, timers, time.Now in a loop, a
regular file written and read, TCP over loopback), built with the `go` on PATH as a
default build (cgo: dynamically linked, libc mapped too) and a static one (CGO_ENABLED=0,
as most Go tools ship), must replay byte for byte with its clock reads and file calls
recorded without a stop; a tampered buffered record must be reported at its event; gdb
must see Go's own code and unwind a thread blocked at a patched site; a stripped binary
is patched from its pclntab; an unknown Go version keeps today's path."""
from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
import trace_rows
from conftest import (PROGRAMS_DIR, assert_diverged_at, assert_faithful, describe, replay,
                      reseal, run_relive)
from gdbhelpers import gdb_batch, requires_gdb, serve

from tracee import fastloop, sysbuf
from tracefile.reader import TraceReader
from tracefile.records import Kind

__all__ = ["serve"]  # the fixture, imported for pytest

GO = shutil.which("go")
CLOCK_GETTIME, READ, WRITE = 228, 0, 1
pytestmark = [pytest.mark.skipif(GO is None, reason="go is not installed: no Go program "
                                 "to record (apt-get install golang-go)"),
              pytest.mark.skipif(sysbuf.hook() is None or fastloop.load() is None,
                                 reason="the hook or the fast path could not be built (no gcc?)"),
              pytest.mark.usefixtures("syscallbuf_on")]
BUILDS = {"go_sites": {}, "go_sites_static": {"CGO_ENABLED": "0"},
          "go_sites_stripped": {"CGO_ENABLED": "0", "LDFLAGS": "-s -w"}}


@pytest.fixture(scope="session")
def go_programs(tmp_path_factory):
    """tests/programs/go_sites.go built three ways: {name: binary}."""
    out = tmp_path_factory.mktemp("goprograms")
    cache = tmp_path_factory.mktemp("gocache")
    src = PROGRAMS_DIR / "go_sites.go"

    def build(name: str) -> tuple[str, subprocess.CompletedProcess[str]]:
        extra = dict(BUILDS[name])
        ldflags = extra.pop("LDFLAGS", "")
        env = dict(os.environ, GOCACHE=str(cache / name), GOFLAGS="", GO111MODULE="off",
                   **extra)
        argv = [GO or "go", "build", "-o", str(out / name)]
        if ldflags:
            argv += ["-ldflags", ldflags]
        return name, subprocess.run([*argv, str(src)], capture_output=True, text=True,
                                    env=env, cwd=out, timeout=300)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(build, BUILDS))
    errors = [f"{name}:\n{proc.stderr}" for name, proc in results if proc.returncode]
    if errors:
        pytest.fail("go build failed:\n" + "\n".join(errors), pytrace=False)
    return {name: out / name for name in BUILDS}


@pytest.fixture(scope="module")
def recorded(go_programs, tmp_path_factory):
    """Each build recorded once (with --log debug): {name: (trace, the record's process)}."""
    where = tmp_path_factory.mktemp("gorec")
    out = {}
    for name, binary in go_programs.items():
        trace = where / name
        rec = run_relive("--log", "debug", "record", "-o", trace, binary, where / f"{name}.txt",
                         stdin=subprocess.DEVNULL, timeout=300)
        assert rec.returncode == 0, describe(rec)
        out[name] = trace, rec
    return out


def _calls(trace) -> dict[tuple[Kind, int], int]:
    r = TraceReader(trace)
    try:
        out: dict[tuple[Kind, int], int] = {}
        for ev in r.events():
            key = (ev.kind, ev.nr if ev.kind in (Kind.SYSCALL, Kind.BUFFERED) else -1)
            out[key] = out.get(key, 0) + 1
        return out
    finally:
        r.close()


def _native(binary, tmp_path) -> bytes:
    run = subprocess.run([binary, tmp_path / "native.txt"], capture_output=True, timeout=120)
    assert run.returncode == 0, run
    return run.stdout


@pytest.mark.parametrize("name", ["go_sites", "go_sites_static"])
def test_a_go_program_replays_with_its_clock_reads_and_file_calls_buffered(
        name, recorded, go_programs, tmp_path):
    """The whole program replays identically; its clock reads cost no stop (before: one
    traced clock_gettime per read), nor do the reads and writes of its regular file; its
    TCP reads stay traced (a socket may block); 8,000 clock reads in a row with no other
    call (a spin) stop again after the first 2,048 (tracee.go_sites SPIN_LIMIT)."""
    trace, rec = recorded[name]
    assert rec.stdout == _native(go_programs[name], tmp_path)
    assert re.search(rb"relive: \d+ syscall sites of the Go binary \S+ jump to the hook",
                     rec.stderr), describe(rec)
    assert_faithful(rec, replay(trace, timeout=300))
    got = _calls(trace)
    buffered_clocks = got.get((Kind.BUFFERED, CLOCK_GETTIME), 0)
    traced_clocks = got.get((Kind.SYSCALL, CLOCK_GETTIME), 0)
    assert buffered_clocks > 2000, got  # the 2,000 between writes, the runtime's
    assert 1000 < traced_clocks < 6000, got  # the spin's but its first 2,048 (or more:
    #                          another thread's call, e.g. sysmon's usleep, ends a run too)
    assert got.get((Kind.BUFFERED, WRITE), 0) >= 200, got  # of the 220 (a full buffer: traced)
    assert got.get((Kind.BUFFERED, READ), 0) > 0, got
    assert got.get((Kind.SYSCALL, READ), 0) >= 100, got  # the sockets'


def test_a_stripped_go_binary_is_patched_from_its_pclntab(recorded, go_programs, tmp_path):
    """No .symtab (Debian's Go packages are all stripped): the sites' functions come from
    the function table the Go runtime keeps for itself."""
    trace, rec = recorded["go_sites_stripped"]
    assert rec.stdout == _native(go_programs["go_sites_stripped"], tmp_path)
    assert re.search(rb"relive: \d+ syscall sites of the Go binary \S+ jump to the hook",
                     rec.stderr), describe(rec)
    assert_faithful(rec, replay(trace, timeout=300))
    assert _calls(trace).get((Kind.BUFFERED, CLOCK_GETTIME), 0) > 2000


def test_an_unknown_go_version_keeps_the_traced_path(go_programs, tmp_path):
    """A Go version whose site shapes were not read (here the static build with its
    .go.buildinfo saying go9.99.9) is recorded as before, every call traced, and the debug
    log says why."""
    data = go_programs["go_sites_static"].read_bytes()
    at = data.index(b"\xff Go buildinf:")
    n = data[at + 32]
    version = data[at + 33:at + 33 + n]
    assert version.startswith(b"go1.") and n >= 8, version
    binary = tmp_path / "go_future"
    binary.write_bytes(data[:at + 33] + b"go9.99.9".ljust(n, b"0") + data[at + 33 + n:])
    binary.chmod(0o755)
    trace = tmp_path / "t"
    rec = run_relive("--log", "debug", "record", "-o", trace, binary, tmp_path / "f.txt",
                     stdin=subprocess.DEVNULL, timeout=300)
    assert rec.returncode == 0, describe(rec)
    assert b"Go binary's syscalls stay traced: Go version b'go9.99.9" in rec.stderr, describe(rec)
    assert_faithful(rec, replay(trace, timeout=300))
    got = _calls(trace)
    assert got.get((Kind.BUFFERED, CLOCK_GETTIME), 0) == 0, got
    assert got.get((Kind.SYSCALL, CLOCK_GETTIME), 0) > 5000, got


def test_a_tampered_buffered_go_clock_read_diverges_naming_its_event(recorded, tmp_path):
    src, _ = recorded["go_sites_static"]
    trace = tmp_path / "t"
    shutil.copytree(src, trace)
    db = trace_rows.connect(trace)
    rows = db.execute("SELECT seq, regs FROM events WHERE kind = ? AND nr = ? ORDER BY seq",
                      (int(Kind.BUFFERED), CLOCK_GETTIME)).fetchall()
    seq, regs = rows[len(rows) // 2]
    args = list(struct.unpack("<7Q", regs))
    args[0] += 5  # the clock id
    db.execute("UPDATE events SET regs = ? WHERE seq = ?", (struct.pack("<7Q", *args), seq))
    reseal(db)
    db.commit()
    db.close()
    err = assert_diverged_at(replay(trace, timeout=300), seq)
    assert re.search(rf"\brdi: recorded {args[0]:#x}, replay {args[0] - 5:#x}\b", err), err


@requires_gdb
def test_gdb_sees_go_code_and_unwinds_threads_blocked_at_patched_sites(
        recorded, go_programs, serve):
    """A breakpoint in a Go function stops with its goroutine's backtrace; the idle Ms,
    blocked in futex waits made by a trampoline's `syscall`, are shown at runtime.futex
    (their site) and unwind to runtime.futexsleep; the patched sites read as Go's own
    instructions, never the `jmp`."""
    trace, _ = recorded["go_sites_static"]
    binary = go_programs["go_sites_static"]
    run = gdb_batch("break main.stage", "continue", "echo ===BT===\\n", "bt",
                    "echo ===ALL===\\n", "thread apply all bt 2", "echo ===CODE===\\n",
                    "x/2i 'runtime.futex.abi0'+28", "x/2i 'runtime.nanotime1.abi0'+175",
                    "echo ===END===\\n", connect=serve(trace).address, program=binary,
                    timeout=300)
    out = run.output
    bt = out.split("===BT===")[1].split("===ALL===")[0]
    assert re.search(r"#0 +main\.stage \(", bt), out
    assert "main.pipeline.func1" in bt, out
    every = out.split("===ALL===")[1].split("===CODE===")[0]
    assert re.search(r"#0 +runtime\.futex \(\).*\n#1 .* in runtime\.futexsleep", every), out
    code = out.split("===CODE===")[1].split("===END===")[0]
    assert re.search(r"<runtime\.futex\+28>:\s+mov\s+\$0xca,%eax\n.*<runtime\.futex\+33>:"
                     r"\s+syscall", code), out
    assert re.search(r"<runtime\.nanotime1\+175>:\s+mov\s+\$0xe4,%rax\n.*syscall", code), out
    assert "jmp" not in code, out
