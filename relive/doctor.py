"""`relive doctor`: what relive can do on this machine, checked, one line a thing.

The first thing to run when something does not work: it says whether programs can be traced
here (ptrace allowed, and by whom), whether the compiled fast path is on (and why not), which
gdb `relive replay` will start, and what the CPU offers that changes how traces replay (CPUID
faulting, a hardware PMU, rdrand). Each line is `ok`, `note` (works, with a consequence) or
`FAIL` (relive cannot do its job until it is fixed, with what to do). Exit 1 if any FAILs.
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import NamedTuple

OK, NOTE, FAIL = "ok", "note", "FAIL"


class Check(NamedTuple):
    verdict: str
    what: str
    detail: str


def _ptrace() -> Check:
    """Can a process trace its child here? (Yama's ptrace_scope 3, or a seccomp profile
    that denies ptrace, as some container runtimes set, forbid it.)"""
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            scope = int(f.read().strip() or 0)
    except (OSError, ValueError):
        scope = 0
    if scope >= 3:
        return Check(FAIL, "ptrace", "forbidden (kernel.yama.ptrace_scope = 3; a reboot with "
                                     "a lower value is needed)")
    proc = subprocess.run([sys.executable, "-c", _TRACE_CHILD], capture_output=True,
                          text=True, timeout=30)
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return Check(FAIL, "ptrace", f"a traced child could not be started ({why}); in a "
                                     "container, allow ptrace (e.g. --cap-add=SYS_PTRACE)")
    return Check(OK, "ptrace", f"a traced child runs (yama ptrace_scope {scope})")


# Fork a child that asks to be traced and stops; the parent sees the stop and kills it.
_TRACE_CHILD = """
import ctypes, os, signal
libc = ctypes.CDLL(None, use_errno=True)
pid = os.fork()
if pid == 0:
    if libc.ptrace(0, 0, None, None) != 0:
        os._exit(3)
    os.kill(os.getpid(), signal.SIGSTOP)
    os._exit(0)
_, status = os.waitpid(pid, 0)
os.kill(pid, signal.SIGKILL)
os.waitpid(pid, 0)
if not (os.WIFSTOPPED(status) and os.WSTOPSIG(status) == signal.SIGSTOP):
    raise SystemExit("PTRACE_TRACEME failed: " + os.strerror(ctypes.get_errno() or 1))
"""


def _fast_path() -> Check:
    from tracee import fastloop
    state = fastloop.status()
    return Check(OK if state.startswith("on") else NOTE, "fast path", state)


def _buffered_records() -> Check:
    """Whether the syscall buffer's records are handled without Python per record
    (tracee/records.c)."""
    from tracee import records
    state = records.status()
    return Check(OK if state.startswith("on") else NOTE, "records path", state)


def _syscall_stops() -> Check:
    """Whether recordings stop at syscalls through relive's seccomp filter (tracee.seccomp)."""
    from tracee import seccomp
    if not seccomp.enabled():
        return Check(NOTE, "seccomp filter", "off (RELIVE_SYSCALLBUF=0): every syscall stops "
                                             "the recorder twice")
    try:
        with open("/proc/self/status") as f:
            has = any(line.startswith("Seccomp:") for line in f)
    except OSError:
        has = False
    if not has:
        return Check(NOTE, "seccomp filter", "this kernel has no seccomp: every syscall stops "
                                             "the recorder twice")
    return Check(OK, "seccomp filter", "on: clock reads stop the recorder once, other "
                                       "syscalls twice (RELIVE_SYSCALLBUF=0 turns it off)")


def _syscall_buffer() -> Check:
    """Whether libc's calls of the catalogue's `buffered` kind are recorded without a stop
    (tracee.sysbuf); RELIVE_SYSCALLBUF=seccomp keeps the filter alone."""
    from tracee import seccomp, sysbuf
    if not seccomp.enabled():
        return Check(NOTE, "syscall buffer", "off (RELIVE_SYSCALLBUF=0)")
    state = sysbuf.status()
    return Check(OK if state.startswith("on") else NOTE, "syscall buffer", state)


def _gdb() -> Check:
    gdb = shutil.which("gdb")
    if gdb is None:
        return Check(FAIL, "gdb", "not found: `relive replay` starts gdb (install it, e.g. "
                                  "apt-get install gdb); `relive replay -a` works without")
    proc = subprocess.run([gdb, "--version"], capture_output=True, text=True, timeout=30)
    version = (proc.stdout.splitlines() or ["?"])[0]
    return Check(OK, "gdb", f"{gdb}: {version}")


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _cpu() -> Iterator[Check]:
    from tracee.hwcount import has_pmu
    flags = _cpu_flags()
    yield Check(OK, "cpu", f"{platform.machine()}, {os.cpu_count()} CPUs")
    if "cpuid_fault" in flags:
        yield Check(OK, "cpuid faulting", "available")
    else:
        yield Check(NOTE, "cpuid faulting", "not available: a trace replays exactly on a CPU "
                                            "of the same model")
    yield Check(NOTE, "hardware PMU", "present (relive does not need it)" if has_pmu() else
                "absent: relive works without it (rr would not)")
    if flags & {"rdrand", "rdseed"}:
        yield Check(NOTE, "rdrand/rdseed", "present: relive patches them out of code mapped "
                                           "from files, not out of JIT-generated code")


def _trace_dir() -> Check:
    from relive.traces import trace_root
    root = trace_root()
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        return Check(FAIL, "traces", f"{root}: not writable (set RELIVE_TRACE_DIR)")
    return Check(OK, "traces", f"go to {root}")


def _version() -> str:
    from importlib import metadata
    try:
        return metadata.version("relive")
    except metadata.PackageNotFoundError:
        return "(not installed: run from a source tree)"


def checks() -> Iterator[Check]:
    yield Check(OK, "relive", f"{_version()} on Python {platform.python_version()}")
    steps: list[Callable[[], Check]] = [_ptrace, _fast_path, _buffered_records, _syscall_stops,
                                          _syscall_buffer, _gdb, _trace_dir]
    for step in steps:
        yield step()
    yield from _cpu()


def run_doctor() -> int:
    failed = False
    for check in checks():
        print(f"{check.verdict:<4}  {check.what + ':':<16} {check.detail}", flush=True)
        failed |= check.verdict == FAIL
    return 1 if failed else 0
