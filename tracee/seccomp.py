"""The recorder's seccomp filter: syscalls stop the tracer only when seccomp says so.

Recorded processes get one seccomp-bpf filter, installed at the first exec stop through the
relive page and inherited by every child and kept across exec: a syscall made from one of
relive's *untraced* `syscall` instructions (the relive page's own, through which the recorder
injects calls, and the in-process hook's) is allowed; any other one (and any call of another
ABI) returns SECCOMP_RET_TRACE, which stops the tracee at PTRACE_EVENT_SECCOMP when it was
resumed with PTRACE_CONT. So the recorder resumes tasks with PTRACE_CONT instead of
PTRACE_SYSCALL (`Task.resume` translates), a traced call stops once at its seccomp stop (read
as its entry: `stops.decode`) and once at its exit, and an untraced call does not stop at all.

seccomp_data.instruction_pointer is the address after the `syscall` instruction (the
kernel's saved rip), so the filter compares with `insn + 2`.

Without CAP_SYS_ADMIN the filter needs no_new_privs, which is set then: set-user-ID programs
run with the caller's ids, as they do under an unprivileged tracer anyway.
RELIVE_SYSCALLBUF=0 records without the filter.
"""
from __future__ import annotations

import errno
import os
import struct

from tracee import ptrace_api as api
from tracee.remote import SYSCALL_INSN, InjectionError, checked, inject_syscall, put_data
from tracee.task import Task

NR_PRCTL, NR_SECCOMP = 157, 317
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_TRACE = 0x7FF00000
# classic BPF opcodes
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_RET_K = 0x06
# struct seccomp_data offsets
_ARCH, _IP_LO, _IP_HI = 4, 8, 12
# The untraced `syscall` instructions: the relive page's (relive's injected calls).
UNTRACED = (SYSCALL_INSN,)


def enabled() -> bool:
    """RELIVE_SYSCALLBUF=0 records every syscall with PTRACE_SYSCALL stops, as before."""
    return os.environ.get("RELIVE_SYSCALLBUF", "1") != "0"


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k & 0xFFFFFFFF)


def filter_program(untraced: tuple[int, ...]) -> bytes:
    """The BPF program: ALLOW a 64-bit call whose `syscall` instruction is at one of
    `untraced` (addresses of the instructions), TRACE everything else."""
    body: list[bytes] = []
    n = len(untraced)
    # Layout: arch check (2), then 4 per address, then RET TRACE, RET ALLOW.
    trace_at = 2 + 4 * n
    allow_at = trace_at + 1
    body.append(_insn(_LD_W_ABS, 0, 0, _ARCH))
    body.append(_insn(_JEQ_K, 0, trace_at - 2, api.AUDIT_ARCH_X86_64))
    for i, insn in enumerate(untraced):
        ip = insn + 2
        at = 2 + 4 * i
        body.append(_insn(_LD_W_ABS, 0, 0, _IP_LO))
        body.append(_insn(_JEQ_K, 0, 2, ip & 0xFFFFFFFF))        # no: next address
        body.append(_insn(_LD_W_ABS, 0, 0, _IP_HI))
        body.append(_insn(_JEQ_K, allow_at - (at + 4), 0, ip >> 32))
    body.append(_insn(_RET_K, 0, 0, SECCOMP_RET_TRACE))
    body.append(_insn(_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    return b"".join(body)


def same_clocks(pid: int) -> bool:
    """Does process `pid` read the clocks the recorder reads (same time namespace)?"""
    try:
        return os.readlink(f"/proc/{pid}/ns/time") == os.readlink("/proc/self/ns/time")
    except OSError:
        return not os.path.exists("/proc/self/ns/time")  # (a kernel without them)


def install(task: Task, untraced: tuple[int, ...]) -> None:
    """Install the filter in `task` (stopped at its exec stop, relive page mapped). From
    now on the task and its descendants must be resumed in seccomp mode."""
    prog = filter_program(untraced)
    fprog_addr, prog_addr = put_data(task, b"\0" * 16, prog)
    task.mem.write(fprog_addr, struct.pack("<HxxxxxxQ", len(prog) // 8, prog_addr))
    res = inject_syscall(task, NR_SECCOMP, SECCOMP_SET_MODE_FILTER, 0, fprog_addr)
    if res == -errno.EACCES:  # without CAP_SYS_ADMIN a filter needs no_new_privs
        checked(inject_syscall(task, NR_PRCTL, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
                "prctl(PR_SET_NO_NEW_PRIVS)")
        res = inject_syscall(task, NR_SECCOMP, SECCOMP_SET_MODE_FILTER, 0, fprog_addr)
    if res != 0:
        raise InjectionError(f"seccomp(SET_MODE_FILTER) failed in the tracee: "
                             f"{os.strerror(-res) if res < 0 else res}")
