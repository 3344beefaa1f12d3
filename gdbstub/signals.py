"""Signal numbers: Linux x86-64 <-> gdb's remote-protocol numbering.

Stop replies (``T05``, ``X09``) and ``C``/``S`` resume packets carry *gdb's* signal numbers
(include/gdb/signals.def), which are not Linux's: SIGBUS is 7 on Linux but 10 to gdb, SIGUSR1
is 10 on Linux but 30 to gdb. Everything the Target sees or returns is a Linux number; the
session translates at the wire boundary with ``to_gdb`` and ``from_gdb``.

The tables are data. Linux signals gdb has no name for (SIGSTKFLT) map to GDB_SIGNAL_UNKNOWN;
gdb numbers with no Linux counterpart (SIGEMT, SIGLOST, Solaris/Mach ones) map to ``None``.
"""
from __future__ import annotations

from enum import IntEnum


class GdbSignal(IntEnum):
    """gdb's target-independent signal numbers (the ones sent on the wire)."""

    NONE = 0
    HUP = 1
    INT = 2
    QUIT = 3
    ILL = 4
    TRAP = 5
    ABRT = 6
    EMT = 7
    FPE = 8
    KILL = 9
    BUS = 10
    SEGV = 11
    SYS = 12
    PIPE = 13
    ALRM = 14
    TERM = 15
    URG = 16
    STOP = 17
    TSTP = 18
    CONT = 19
    CHLD = 20
    TTIN = 21
    TTOU = 22
    IO = 23
    XCPU = 24
    XFSZ = 25
    VTALRM = 26
    PROF = 27
    WINCH = 28
    LOST = 29
    USR1 = 30
    USR2 = 31
    PWR = 32
    POLL = 33
    REALTIME_33 = 45  # SIG33 .. SIG63 are 45 .. 75, contiguous
    REALTIME_63 = 75
    REALTIME_32 = 77
    REALTIME_64 = 78
    UNKNOWN = 143


class LinuxSignal(IntEnum):
    """Linux x86-64 signal numbers (asm-generic/signal.h)."""

    SIGHUP = 1
    SIGINT = 2
    SIGQUIT = 3
    SIGILL = 4
    SIGTRAP = 5
    SIGABRT = 6
    SIGBUS = 7
    SIGFPE = 8
    SIGKILL = 9
    SIGUSR1 = 10
    SIGSEGV = 11
    SIGUSR2 = 12
    SIGPIPE = 13
    SIGALRM = 14
    SIGTERM = 15
    SIGSTKFLT = 16
    SIGCHLD = 17
    SIGCONT = 18
    SIGSTOP = 19
    SIGTSTP = 20
    SIGTTIN = 21
    SIGTTOU = 22
    SIGURG = 23
    SIGXCPU = 24
    SIGXFSZ = 25
    SIGVTALRM = 26
    SIGPROF = 27
    SIGWINCH = 28
    SIGIO = 29
    SIGPWR = 30
    SIGSYS = 31


SIGRTMIN = 32  # the kernel's first real-time signal (glibc reserves 32 and 33)
SIGRTMAX = 64

# Linux number -> gdb number for the classic signals.
_LINUX_TO_GDB: dict[int, GdbSignal] = {
    LinuxSignal.SIGHUP: GdbSignal.HUP,
    LinuxSignal.SIGINT: GdbSignal.INT,
    LinuxSignal.SIGQUIT: GdbSignal.QUIT,
    LinuxSignal.SIGILL: GdbSignal.ILL,
    LinuxSignal.SIGTRAP: GdbSignal.TRAP,
    LinuxSignal.SIGABRT: GdbSignal.ABRT,
    LinuxSignal.SIGBUS: GdbSignal.BUS,
    LinuxSignal.SIGFPE: GdbSignal.FPE,
    LinuxSignal.SIGKILL: GdbSignal.KILL,
    LinuxSignal.SIGUSR1: GdbSignal.USR1,
    LinuxSignal.SIGSEGV: GdbSignal.SEGV,
    LinuxSignal.SIGUSR2: GdbSignal.USR2,
    LinuxSignal.SIGPIPE: GdbSignal.PIPE,
    LinuxSignal.SIGALRM: GdbSignal.ALRM,
    LinuxSignal.SIGTERM: GdbSignal.TERM,
    LinuxSignal.SIGSTKFLT: GdbSignal.UNKNOWN,
    LinuxSignal.SIGCHLD: GdbSignal.CHLD,
    LinuxSignal.SIGCONT: GdbSignal.CONT,
    LinuxSignal.SIGSTOP: GdbSignal.STOP,
    LinuxSignal.SIGTSTP: GdbSignal.TSTP,
    LinuxSignal.SIGTTIN: GdbSignal.TTIN,
    LinuxSignal.SIGTTOU: GdbSignal.TTOU,
    LinuxSignal.SIGURG: GdbSignal.URG,
    LinuxSignal.SIGXCPU: GdbSignal.XCPU,
    LinuxSignal.SIGXFSZ: GdbSignal.XFSZ,
    LinuxSignal.SIGVTALRM: GdbSignal.VTALRM,
    LinuxSignal.SIGPROF: GdbSignal.PROF,
    LinuxSignal.SIGWINCH: GdbSignal.WINCH,
    LinuxSignal.SIGIO: GdbSignal.IO,
    LinuxSignal.SIGPWR: GdbSignal.PWR,
    LinuxSignal.SIGSYS: GdbSignal.SYS,
}

_GDB_TO_LINUX: dict[int, int] = {int(g): int(lx) for lx, g in _LINUX_TO_GDB.items()
                                 if g is not GdbSignal.UNKNOWN}
_GDB_TO_LINUX[GdbSignal.POLL] = LinuxSignal.SIGIO  # SIGPOLL is SIGIO on Linux


def to_gdb(linux_signal: int) -> int:
    """gdb's number for a Linux signal; 0 stays 0, anything unknown is GDB_SIGNAL_UNKNOWN."""
    if linux_signal == 0:
        return GdbSignal.NONE
    if linux_signal in _LINUX_TO_GDB:
        return _LINUX_TO_GDB[linux_signal]
    if linux_signal == SIGRTMIN:
        return GdbSignal.REALTIME_32
    if SIGRTMIN < linux_signal < SIGRTMAX:
        return GdbSignal.REALTIME_33 + (linux_signal - 33)
    if linux_signal == SIGRTMAX:
        return GdbSignal.REALTIME_64
    return GdbSignal.UNKNOWN


def from_gdb(gdb_signal: int) -> int | None:
    """The Linux number for a gdb signal, 0 for "no signal", None if Linux has no such signal."""
    if gdb_signal == GdbSignal.NONE:
        return 0
    if gdb_signal in _GDB_TO_LINUX:
        return _GDB_TO_LINUX[gdb_signal]
    if GdbSignal.REALTIME_33 <= gdb_signal <= GdbSignal.REALTIME_63:
        return 33 + (gdb_signal - GdbSignal.REALTIME_33)
    if gdb_signal == GdbSignal.REALTIME_32:
        return SIGRTMIN
    if gdb_signal == GdbSignal.REALTIME_64:
        return SIGRTMAX
    return None
