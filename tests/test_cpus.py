"""What a recorded program sees of the CPUs (issue 17.2) and of cpuid (issue 17.4).

relive pins itself and the program to one CPU; the program must still see the CPUs it has
natively (sched_getaffinity, getcpu, /proc/self/status; its own sched_setaffinity taking
effect for it), so programs that size themselves from them (nproc, make -j, xz -T0, Go)
behave as natively, and the replay is faithful. cpuid: where the CPU offers CPUID faulting
its results are recorded and a replay on another CPU is faithful; without it (forced with
RELIVE_CPUID_FAULTING=0) the replay runs on the recording CPU by default, and says so
before it starts when it cannot.
"""
from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys

import pytest

from conftest import assert_faithful, describe, record, replay, run_native, run_relive
from gdbhelpers import gdb_batch, requires_gdb, serve

from tracefile.integrity import row_crc

__all__ = ["serve"]  # the fixture, imported for pytest

CPUS = sorted(os.sched_getaffinity(0))
needs_two_cpus = pytest.mark.skipif(len(CPUS) < 2, reason="needs two usable CPUs")


def _faulting() -> bool:
    """CPUID faulting here? arch_prctl(ARCH_SET_CPUID, 1) fails with ENODEV without it
    (and leaves cpuid enabled in this process)."""
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.syscall(158, 0x1012, 1)) == 0


needs_faulting = pytest.mark.skipif(not _faulting(), reason="the CPU has no CPUID faulting")


def _env(**values: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RELIVE_CPUID_FAULTING", None)
    env.update(values)
    return env


def _check(tmp_path, argv, *, cwd=None):
    """Record `argv` pinned to the first CPU: its output equals the native output, and the
    replay (pinned to the last CPU) re-emits it faithfully."""
    native = run_native(argv, cwd=cwd)
    assert native.returncode == 0, describe(native)
    trace = tmp_path / "trace"
    rec = record(trace, *argv, cwd=cwd, env=_env(RELIVE_CPU=str(CPUS[0])))
    assert rec.returncode == 0, describe(rec)
    assert rec.stdout == native.stdout, describe(rec)
    assert_faithful(rec, replay(trace, env=_env(RELIVE_CPU=str(CPUS[-1]))))
    return rec


# -- the CPU set ---------------------------------------------------------------------------

@needs_two_cpus
@pytest.mark.parametrize("argv", [
    ["nproc"],
    ["taskset", "-c", str(CPUS[-1]), "nproc"],
    ["grep", "Cpus_allowed", "/proc/self/status"],
    ["taskset", "-c", str(CPUS[-1]), "grep", "Cpus_allowed", "/proc/self/status"],
    # dd reads the status file as its fd 0 (open, dup2), 7 bytes at a time
    ["sh", "-c", "dd if=/proc/self/status bs=7 2>/dev/null | grep -e Cpus_allowed -e State"],
    [sys.executable, "-c", "import os, multiprocessing; "
     "print(os.sched_getaffinity(0), os.cpu_count(), multiprocessing.cpu_count())"],
    pytest.param(["ruby", "-e", 'require "etc"; p Etc.nprocessors'],
                 marks=pytest.mark.skipif(shutil.which("ruby") is None,
                                          reason="ruby is not installed")),
], ids=["nproc", "taskset-nproc", "status", "taskset-status", "dd-status", "python", "ruby"])
def test_programs_see_their_native_cpus(tmp_path, argv):
    _check(tmp_path, argv)


@needs_two_cpus
def test_affinity_calls_threads_and_children(tmp_path, programs):
    """sched_setaffinity in a thread changes that thread's set only, an impossible set
    fails with EINVAL, a forked child inherits its parent's set; getcpu is in the set."""
    rec = _check(tmp_path, [programs["cpu_affinity"]])
    assert f"main: {len(CPUS)} cpus:".encode() in rec.stdout
    assert b"thread after: 1 cpus: 0 getcpu-in-set=1" in rec.stdout
    assert b"main set {1000}: -1" in rec.stdout
    assert f"child: 1 cpus: {CPUS[-1]} getcpu-in-set=1".encode() in rec.stdout


@needs_two_cpus
def test_make_runs_jobs_side_by_side(tmp_path):
    """make -j$(nproc) with two jobs that each wait (up to 20 s) for the other to start:
    they meet only if nproc says 2 (natively it does; with relive's pin showing it would
    say 1, and make would run them one after the other and fail)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    wait = ("@touch {me}.started; for i in $$(seq 400); do [ -f {other}.started ] && break; "
            "sleep 0.05; done; [ -f {other}.started ] && echo {me} ran beside {other}")
    (tmp_path / "Makefile").write_text(
        "all: a b\na:\n\t" + wait.format(me="a", other="b") + "\nb:\n\t"
        + wait.format(me="b", other="a") + "\n")
    trace = tmp_path / "trace"
    rec = record(trace, "sh", "-c", "make -s -j$(nproc)", cwd=tmp_path,
                 env=_env(RELIVE_CPU=str(CPUS[0])))
    assert rec.returncode == 0, describe(rec)
    assert sorted(rec.stdout.splitlines()) == [b"a ran beside b", b"b ran beside a"]
    assert_faithful(rec, replay(trace))


@needs_two_cpus
def test_xz_uses_the_native_number_of_threads(tmp_path):
    if shutil.which("xz") is None:
        pytest.skip("xz is not installed")
    data = tmp_path / "data"
    data.write_bytes(os.urandom(1 << 16).hex().encode())
    argv = ["xz", "-T0", "-vv", "-k", "-c", str(data)]
    native = run_native(argv)
    threads = [ln for ln in native.stderr.splitlines() if b"threads" in ln]
    assert threads == [f"xz: Using up to {len(CPUS)} threads.".encode()], describe(native)
    trace = tmp_path / "trace"
    rec = record(trace, *argv, env=_env(RELIVE_CPU=str(CPUS[0])))
    assert rec.returncode == 0, describe(rec)
    assert threads[0] in rec.stderr, describe(rec)
    assert_faithful(rec, replay(trace))


# -- cpuid ---------------------------------------------------------------------------------

@needs_two_cpus
@needs_faulting
def test_cpuid_replays_on_another_cpu(tmp_path, programs):
    """cpuid leaf 1, then a syscall with the APIC id in rbx: recorded on one CPU, replayed
    on another, the recorded values are given back (no divergence)."""
    trace = tmp_path / "trace"
    rec = record(trace, programs["cpuid_apic"], env=_env(RELIVE_CPU=str(CPUS[0])))
    assert rec.returncode == 0, describe(rec)
    assert_faithful(rec, replay(trace, env=_env(RELIVE_CPU=str(CPUS[-1]))))
    dump = run_relive("dump", trace, text=True)
    assert "CPUID   leaf 0x1 " in dump.stdout
    info = run_relive("info", trace, text=True)
    assert "cpuid:    recorded (CPUID faulting)" in info.stdout


@requires_gdb
@needs_two_cpus
@needs_faulting
def test_gdb_steps_over_cpuid_to_the_recorded_values(programs, tmp_path, serve, monkeypatch):
    """Under gdb, on another CPU than the recording's: stepping over cpuid gives the
    recorded APIC id, and so does stepping over it again after reverse-stepi."""
    trace = tmp_path / "trace"
    rec = record(trace, programs["cpuid_apic"], env=_env(RELIVE_CPU=str(CPUS[0])))
    assert rec.returncode == 0, describe(rec)
    apic = int(rec.stdout.split()[2].rstrip(b","))
    monkeypatch.setenv("RELIVE_CPU", str(CPUS[-1]))
    server = serve(trace)
    run = gdb_batch("break *cpuid_here", "continue", "x/i $pc", "stepi",
                    'printf "after: %d\\n", $rbx >> 24', "reverse-stepi", "x/i $pc", "stepi",
                    'printf "again: %d\\n", $rbx >> 24', connect=server.address)
    out = run.output
    assert re.search(r"=> 0x[0-9a-f]+ <[^>]+>:\s+cpuid", out), str(run)
    assert f"after: {apic}\n" in out and f"again: {apic}\n" in out, str(run)


@needs_faulting
def test_programs_own_cpuid_faulting(tmp_path, programs):
    """The program's own ARCH_GET/SET_CPUID: it sees its own flag, its cpuid faults once it
    asked for that (in a forked child too) and runs again once it asks."""
    _check(tmp_path, [programs["cpuid_own_faulting"]])


def _started_on(cpu: int) -> list[str]:
    """A command prefix: run on `cpu` to start with, allowed every CPU (so a replay that
    pins to the CPU it starts on would pick `cpu`)."""
    code = ("import os, sys; os.sched_setaffinity(0, {%d}); os.sched_setaffinity(0, %r); "
            "os.execv(sys.executable, [sys.executable, '-m', 'relive'] + sys.argv[1:])"
            % (cpu, set(CPUS)))
    return [sys.executable, "-c", code]


@needs_two_cpus
def test_without_faulting_replay_runs_on_the_recording_cpu(tmp_path, programs):
    trace = tmp_path / "trace"
    rec = record(trace, programs["cpuid_apic"],
                 env=_env(RELIVE_CPU=str(CPUS[0]), RELIVE_CPUID_FAULTING="0"))
    assert rec.returncode == 0, describe(rec)
    info = run_relive("info", trace, text=True)
    assert f"recorded on CPU {CPUS[0]}; replay runs there by default" in info.stdout
    env = _env(PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env.pop("RELIVE_CPU", None)
    rep = subprocess.run([*_started_on(CPUS[-1]), "replay", "--autopilot", str(trace)],
                         env=env, capture_output=True, stdin=subprocess.DEVNULL, timeout=120)
    assert_faithful(rec, rep)
    assert b"recorded without CPUID faulting" not in rep.stderr
    # Made to replay elsewhere: said before the replay starts, then the divergence.
    rep = replay(trace, env=_env(RELIVE_CPU=str(CPUS[-1])))
    first = rep.stderr.splitlines()[0]
    assert first.startswith(b"relive: this trace was recorded without CPUID faulting and it "
                            b"was recorded on CPU %d and replays on CPU %d" % (CPUS[0], CPUS[-1]))
    assert b"rbx: recorded" in rep.stderr and rep.returncode != 0, describe(rep)


@needs_faulting
def test_faulting_trace_refused_where_cpuid_cannot_fault(tmp_path, programs):
    trace = tmp_path / "trace"
    rec = record(trace, programs["cpuid_apic"])
    assert rec.returncode == 0, describe(rec)
    rep = replay(trace, env=_env(RELIVE_CPUID_FAULTING="0"))
    assert rep.returncode != 0
    assert rep.stdout == b"" and b"Traceback" not in rep.stderr, describe(rep)
    assert rep.stderr.startswith(b"relive: this trace was recorded with CPUID faulting"), \
        describe(rep)


@needs_two_cpus
@needs_faulting
def test_static_go_binary_replays_on_another_cpu(tmp_path):
    """A static Go binary keeps cpuid's APIC id in rbx up to its first syscall; it sizes
    GOMAXPROCS from sched_getaffinity."""
    if shutil.which("go") is None:
        pytest.skip("go is not installed")
    (tmp_path / "main.go").write_text(
        'package main\n\nimport (\n\t"fmt"\n\t"runtime"\n)\n\nfunc main() {\n'
        '\tfmt.Println("GOMAXPROCS", runtime.GOMAXPROCS(0), "NumCPU", runtime.NumCPU())\n}\n')
    env = dict(os.environ, CGO_ENABLED="0", GO111MODULE="off")
    build = subprocess.run(["go", "build", "-o", "hello", "main.go"], cwd=tmp_path, env=env,
                           capture_output=True, timeout=500)
    assert build.returncode == 0, describe(build)
    rec = _check(tmp_path, [tmp_path / "hello"])
    assert rec.stdout == f"GOMAXPROCS {len(CPUS)} NumCPU {len(CPUS)}\n".encode()


def test_without_faulting_another_cpu_model_is_said_before_the_replay(tmp_path, programs):
    trace = tmp_path / "trace"
    rec = record(trace, programs["cpuid_apic"], env=_env(RELIVE_CPUID_FAULTING="0"))
    assert rec.returncode == 0, describe(rec)
    db = sqlite3.connect(trace / "trace.db")
    value = json.dumps({"vendor": "GenuineIntel", "leaf1_eax": 0x806F8,
                        "model": "Xeon Platinum"})
    with db:  # (sealed with its checksum: an edit, not damage)
        db.execute("UPDATE meta SET value = ?, crc = ? WHERE key = 'cpu_signature'",
                   (value, row_crc("cpu_signature", value)))
    db.close()
    rep = replay(trace)
    assert rep.stderr.splitlines()[0].startswith(
        b"relive: this trace was recorded without CPUID faulting and it was recorded on a "
        b"Xeon Platinum (GenuineIntel, cpuid 1: 0x806f8), this is a "), describe(rep)
    assert rep.stdout == rec.stdout, describe(rep)  # (this machine: the same CPU in fact)
