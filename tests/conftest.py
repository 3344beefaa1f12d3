"""Shared fixtures: compiled test programs, a per-test trace directory, and a
helper to run the relive CLI as a subprocess (``python -m relive``)."""

import os
import re
import shutil
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PROGRAMS_DIR = Path(__file__).resolve().parent / "programs"
GCC = shutil.which("gcc")
NO_GCC = "gcc is not installed: the C test programs cannot be built"
requires_gcc = pytest.mark.skipif(GCC is None, reason=NO_GCC)


def run_relive(*args, **kw):
    """Run ``python -m relive ARGS`` and return the CompletedProcess.

    Output is captured as bytes (pass text=True for str); the default timeout
    is 120 s.  Any subprocess.run keyword may be overridden.  The repo root is
    put on PYTHONPATH so this works without an editable install.
    """
    env = dict(kw.pop("env", None) or os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    kw.setdefault("capture_output", True)
    kw.setdefault("timeout", 120)
    return subprocess.run([sys.executable, "-m", "relive", *map(str, args)],
                          env=env, **kw)


def _compile(src, out_dir):
    binary = out_dir / src.stem
    proc = subprocess.run(["gcc", "-O0", "-g", "-o", str(binary), str(src)],
                          capture_output=True, text=True)
    return src.name, binary, proc


@pytest.fixture(scope="session")
def programs(tmp_path_factory):
    """Compile every tests/programs/*.c; return {name: Path to binary}. Without gcc, the
    tests that need them are skipped (with NO_GCC as the reason), not errors."""
    if GCC is None:
        pytest.skip(NO_GCC)
    out_dir = tmp_path_factory.mktemp("programs")
    sources = sorted(PROGRAMS_DIR.glob("*.c"))
    if not sources:
        pytest.fail(f"no C programs found in {PROGRAMS_DIR}", pytrace=False)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(pool.map(lambda s: _compile(s, out_dir), sources))
    errors = [f"{name}:\n{proc.stderr}" for name, _, proc in results
              if proc.returncode != 0]
    if errors:
        pytest.fail("compiling test programs failed:\n" + "\n".join(errors),
                    pytrace=False)
    return {binary.name: binary for _, binary, _ in results}


_SUITE_CPUS = os.sched_getaffinity(0)


@pytest.fixture(autouse=True)
def _restore_cpu_affinity():
    """Tests that replay in this process pin it to one CPU (as relive does); what later tests
    start would inherit that and see one CPU (test_cpus compares with the native set)."""
    yield
    if os.sched_getaffinity(0) != _SUITE_CPUS:
        os.sched_setaffinity(0, _SUITE_CPUS)


@pytest.fixture(scope="session", autouse=True)
def _suite_trace_root(tmp_path_factory):
    """The suite's recordings keep their traces, and the cache of mapped files they share,
    out of the user's own ~/.local/share/relive."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RELIVE_TRACE_DIR", str(tmp_path_factory.mktemp("relive-data")))
        yield


@pytest.fixture
def trace_root(tmp_path, monkeypatch):
    """A fresh directory, also exported as RELIVE_TRACE_DIR to subprocesses."""
    root = tmp_path / "traces"
    root.mkdir()
    monkeypatch.setenv("RELIVE_TRACE_DIR", str(root))
    return root


@pytest.fixture
def relive():
    """The run_relive helper, for tests that prefer a fixture to an import."""
    return run_relive


# -- helpers for the record/replay tests (import them: ``from conftest import ...``) ----------

def strip_relive(stderr):
    """stderr without relive's own ``relive: ...`` lines (what remains is the program's)."""
    return b"".join(line for line in stderr.splitlines(keepends=True)
                    if not line.startswith(b"relive:"))


def shell_status(returncode):
    """A subprocess return code as a shell reports it: 128+N for death by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def run_native(argv, **kw):
    """Run a program directly (no relive), stdin from /dev/null, output captured."""
    kw.setdefault("capture_output", True)
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("timeout", 120)
    return subprocess.run([str(a) for a in argv], check=False, **kw)


def record(trace, *argv, **kw):
    """``relive record -o TRACE ARGV...`` with stdin from /dev/null."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    return run_relive("record", "-o", trace, *argv, **kw)


def replay(trace, **kw):
    """``relive replay --autopilot TRACE``."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    return run_relive("replay", "--autopilot", trace, **kw)


def describe(proc):
    """A failing subprocess, for assertion messages."""
    return (f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout[-3000:]!r}\n"
            f"--- stderr ---\n{proc.stderr[-3000:]!r}")


def assert_diverged_at(rep, seq) -> str:
    """The replay stopped with a divergence naming event `seq`; its stderr, for more checks."""
    err = rep.stderr.decode(errors="replace")
    assert rep.returncode == 1, describe(rep)
    assert re.search(rf"diverged at event {seq}\b", err), err
    return err


def assert_faithful(rec, rep):
    """The replay re-emitted exactly what the recording printed and exited 0."""
    assert rep.returncode == 0, describe(rep)
    assert b"Traceback" not in rep.stderr, describe(rep)
    assert rep.stdout == rec.stdout, describe(rep)
    assert strip_relive(rep.stderr) == strip_relive(rec.stderr), describe(rep)


@pytest.fixture
def copy_of(recorded, tmp_path):
    """A throwaway copy of one of the module's `recorded` traces, to tamper with."""
    def copy(name):
        trace, proc = recorded[name]
        dest = tmp_path / name
        shutil.copytree(trace, dest)
        return dest, proc
    return copy


# rdi in struct user_regs_struct: r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi
RDI = 14


def reseal(db):
    """Recompute the checksum of every event row after a test edited recorded values to make
    the replay diverge: the trace is otherwise intact (an edit left unsealed is damage,
    reported before anything replays: tests/test_trace_damage.py)."""
    from tracefile.integrity import event_crc
    rows = db.execute("SELECT seq, tid, kind, nr, result, writes, regs, info FROM events")
    db.executemany("UPDATE events SET crc = ? WHERE seq = ?",
                   [(event_crc(*row), row[0]) for row in rows.fetchall()])


def set_rdi(regs, value=None):
    """A recorded register file with rdi replaced (by default: plus one), for tampering with
    a trace; returns (the old rdi, the new register bytes)."""
    old = struct.unpack_from("<Q", regs, 8 * RDI)[0]
    new = bytearray(regs)
    struct.pack_into("<Q", new, 8 * RDI, old + 1 if value is None else value)
    return old, bytes(new)


@pytest.fixture(scope="module")
def syscallbuf_on():
    """The module's recordings have the syscall buffer on whatever the environment says
    (`pytestmark = pytest.mark.usefixtures("syscallbuf_on")`)."""
    old = os.environ.get("RELIVE_SYSCALLBUF")
    os.environ["RELIVE_SYSCALLBUF"] = "1"
    yield
    if old is None:
        del os.environ["RELIVE_SYSCALLBUF"]
    else:
        os.environ["RELIVE_SYSCALLBUF"] = old
