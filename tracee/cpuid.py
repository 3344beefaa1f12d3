"""The cpuid instruction: run it here, make it fault in a tracee, identify the CPU.

cpuid tells a program which CPU it runs on (leaf 1's EBX bits 31-24 is the APIC id, leaf
0xB's EDX the x2APIC id): a program recorded on one CPU and replayed on another sees
different values, and a static Go binary keeps one in rbx up to its first syscall. Where
the CPU offers CPUID faulting (`cpuid_fault` in /proc/cpuinfo; the kernel's
arch_prctl(ARCH_SET_CPUID, 0)), a tracee's cpuid raises SIGSEGV and relive records and
replays its results as it does rdtsc's. The setting is per thread, inherited by fork and
clone, and reset by execve: it is set again at every exec stop.

`run_cpuid` executes the instruction in this process, through a few bytes of machine code
mapped executable (no compiler needed); relive runs it pinned to the CPU of its tracees,
so the APIC id is the one the program would have seen there.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import struct

from tracee import remote
from tracee.task import Task

NR_ARCH_PRCTL = 158
ARCH_GET_CPUID, ARCH_SET_CPUID = 0x1011, 0x1012
ENODEV = 19
CPUID = b"\x0f\xa2"
# The environment variable that turns faulting off even where it works (for tests, and to
# record a trace that replays only on the recording CPU, like one made without faulting).
FORCE_OFF = "RELIVE_CPUID_FAULTING"

# void f(uint32 leaf (edi), uint32 subleaf (esi), uint32 out[4] (rdx))
_CODE = bytes.fromhex(
    "53"          # push rbx
    "4989d0"      # mov r8, rdx
    "89f8"        # mov eax, edi
    "89f1"        # mov ecx, esi
    "0fa2"        # cpuid
    "418900"      # mov [r8], eax
    "41895804"    # mov [r8+4], ebx
    "41894808"    # mov [r8+8], ecx
    "4189500c"    # mov [r8+12], edx
    "5b"          # pop rbx
    "c3")         # ret
_stub: ctypes._CFuncPtr | None = None  # type: ignore[name-defined]
_keep: list[object] = []


def _function() -> ctypes._CFuncPtr:  # type: ignore[name-defined]
    global _stub
    if _stub is None:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        page.write(_CODE)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(page))
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        if libc.mprotect(addr, mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_EXEC) != 0:
            raise OSError(ctypes.get_errno(), "cannot make the cpuid stub executable")
        _keep.append(page)
        proto = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32,
                                 ctypes.POINTER(ctypes.c_uint32))
        _stub = proto(addr)
    return _stub


def run_cpuid(leaf: int, subleaf: int = 0) -> tuple[int, int, int, int]:
    """(eax, ebx, ecx, edx) of cpuid(leaf, subleaf) on the CPU this thread runs on."""
    out = (ctypes.c_uint32 * 4)()
    _function()(leaf & 0xFFFF_FFFF, subleaf & 0xFFFF_FFFF, out)
    return out[0], out[1], out[2], out[3]


def faulting_available() -> bool:
    """Whether this machine offers CPUID faulting (and it is not turned off with
    RELIVE_CPUID_FAULTING=0). Probed with arch_prctl(ARCH_SET_CPUID, 1): cpuid stays
    enabled in this process, and the kernel answers ENODEV where the CPU lacks faulting."""
    if os.environ.get(FORCE_OFF, "") == "0":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.syscall(NR_ARCH_PRCTL, ARCH_SET_CPUID, 1)) == 0


def make_cpuid_fault(task: Task) -> None:
    """Make cpuid fault in `task` (stopped at its exec, relive page mapped)."""
    remote.checked(remote.inject_syscall(task, NR_ARCH_PRCTL, ARCH_SET_CPUID, 0),
                   "arch_prctl(ARCH_SET_CPUID, 0)")


def signature() -> dict[str, object]:
    """What identifies the CPU model here (not which CPU of it): the vendor, leaf 1's EAX
    (family, model, stepping) and the model name."""
    _, b, c, d = run_cpuid(0)
    vendor = struct.pack("<III", b, d, c).decode("ascii", "replace")
    return {"vendor": vendor, "leaf1_eax": run_cpuid(1)[0], "model": model_name()}


def model_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def emulate(task: Task, values: tuple[int, int, int, int] | list[int]) -> None:
    """Finish the faulting cpuid at the task's rip with `values` (eax, ebx, ecx, edx)."""
    for reg, value in zip(("rax", "rbx", "rcx", "rdx"), values):
        task.set_reg(reg, value & 0xFFFF_FFFF)  # (cpuid zero-extends into the 64-bit registers)
    task.set_reg("rip", task.regs.rip + len(CPUID))
