"""Raw ptrace, waitpid and perf bindings through ctypes: the only place that calls libc.

Hot paths (the stop loop, registers) come through here rather than python-ptrace's object
layer, which costs a syscall per register and a Python exception per process event. Every call
must be made from the thread that attached (the kernel answers ESRCH otherwise).
"""
from __future__ import annotations

import ctypes
import enum
import os

# glibc's soname on x86-64 Linux; ctypes.util.find_library would run ldconfig at every start.
_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
_libc.syscall.restype = ctypes.c_long


NR_PERF_EVENT_OPEN, PERF_FLAG_FD_CLOEXEC = 298, 8


def perf_event_open(attr: ctypes.Array[ctypes.c_char], tid: int) -> int:
    """A perf event counting thread `tid` on any CPU, closed on exec: its descriptor.
    Raises OSError (EACCES, ENOENT, ...) as the kernel refuses it."""
    fd = _libc.syscall(NR_PERF_EVENT_OPEN, attr, tid, -1, -1, PERF_FLAG_FD_CLOEXEC)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(fd)


class Req(enum.IntEnum):
    TRACEME = 0
    PEEKUSER = 3
    POKEUSER = 6
    CONT = 7
    KILL = 8
    SINGLESTEP = 9
    GETREGS = 12
    SETREGS = 13
    GETFPREGS = 14
    SETFPREGS = 15
    ATTACH = 16
    DETACH = 17
    SYSCALL = 24
    SYSEMU = 31
    SYSEMU_SINGLESTEP = 32
    SETOPTIONS = 0x4200
    GETEVENTMSG = 0x4201
    GETSIGINFO = 0x4202
    SETSIGINFO = 0x4203
    SEIZE = 0x4206
    INTERRUPT = 0x4207
    LISTEN = 0x4208
    GETREGSET = 0x4204
    SETREGSET = 0x4205
    GET_SYSCALL_INFO = 0x420E
    GETSIGMASK = 0x420A
    SETSIGMASK = 0x420B


class Opt(enum.IntFlag):
    TRACESYSGOOD = 0x1
    TRACEFORK = 0x2
    TRACEVFORK = 0x4
    TRACECLONE = 0x8
    TRACEEXEC = 0x10
    TRACEVFORKDONE = 0x20
    TRACEEXIT = 0x40
    TRACESECCOMP = 0x80
    EXITKILL = 0x100000


class Event(enum.IntEnum):
    FORK = 1
    VFORK = 2
    CLONE = 3
    EXEC = 4
    VFORK_DONE = 5
    EXIT = 6
    SECCOMP = 7
    STOP = 128


class PtraceError(OSError):
    """A ptrace request failed (ESRCH usually means the task died or is not stopped)."""


def ptrace(req: int, pid: int, addr: int = 0, data: int | ctypes.c_void_p = 0) -> int:
    """One ptrace request; -1 is always an error here (PEEK requests, whose data may be -1,
    are made directly: get_debugreg)."""
    res: int = _libc.ptrace(req, pid, addr, data)
    if res == -1:
        err = ctypes.get_errno()
        name = Req(req).name if req in Req._value2member_map_ else req
        raise PtraceError(err, f"ptrace({name}, {pid}): {os.strerror(err)}")
    return res


class UserRegs(ctypes.Structure):
    """struct user_regs_struct (x86-64), in the kernel's order."""
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx",
        "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base",
        "gs_base", "ds", "es", "fs", "gs")]


REG_NAMES: tuple[str, ...] = tuple(f[0] for f in UserRegs._fields_)
REGS_SIZE = ctypes.sizeof(UserRegs)  # 216


class UserFPRegs(ctypes.Structure):
    """struct user_fpregs_struct (the 512-byte FXSAVE area)."""
    _fields_ = [("cwd", ctypes.c_uint16), ("swd", ctypes.c_uint16), ("ftw", ctypes.c_uint16),
                ("fop", ctypes.c_uint16), ("rip", ctypes.c_uint64), ("rdp", ctypes.c_uint64),
                ("mxcsr", ctypes.c_uint32), ("mxcr_mask", ctypes.c_uint32),
                ("st_space", ctypes.c_uint32 * 32), ("xmm_space", ctypes.c_uint32 * 64),
                ("padding", ctypes.c_uint32 * 24)]


def signed(value: int) -> int:
    """A 64-bit register's value as a signed number (a syscall's result: -errno)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def get_regs(pid: int, into: UserRegs) -> UserRegs:
    ptrace(Req.GETREGS, pid, 0, ctypes.addressof(into))
    return into


def set_regs(pid: int, regs: UserRegs) -> None:
    ptrace(Req.SETREGS, pid, 0, ctypes.addressof(regs))


def get_fpregs(pid: int) -> bytes:
    buf = UserFPRegs()
    ptrace(Req.GETFPREGS, pid, 0, ctypes.addressof(buf))
    return bytes(buf)


def set_fpregs(pid: int, data: bytes) -> None:
    buf = UserFPRegs.from_buffer_copy(data)
    ptrace(Req.SETFPREGS, pid, 0, ctypes.addressof(buf))


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


NT_X86_XSTATE = 0x202
XSTATE_MAX = 16384  # larger than any XSAVE area (AVX-512 with AMX tiles is ~11 KiB)


def get_xstate(pid: int) -> bytes:
    """The thread's whole extended state (x87, SSE, AVX, ...: the XSAVE area), or, where the
    kernel has no NT_X86_XSTATE regset, the 512-byte FXSAVE area."""
    buf = ctypes.create_string_buffer(XSTATE_MAX)
    iov = _IoVec(ctypes.addressof(buf), XSTATE_MAX)
    try:
        ptrace(Req.GETREGSET, pid, NT_X86_XSTATE, ctypes.addressof(iov))
    except PtraceError:
        return get_fpregs(pid)
    return buf.raw[:iov.len]


def set_xstate(pid: int, data: bytes) -> None:
    """Give the thread an extended state read by get_xstate."""
    if len(data) == ctypes.sizeof(UserFPRegs):
        set_fpregs(pid, data)
        return
    buf = ctypes.create_string_buffer(data, len(data))
    iov = _IoVec(ctypes.addressof(buf), len(data))
    ptrace(Req.SETREGSET, pid, NT_X86_XSTATE, ctypes.addressof(iov))


SIGINFO_SIZE = 128


def get_siginfo(pid: int) -> bytes:
    buf = ctypes.create_string_buffer(SIGINFO_SIZE)
    ptrace(Req.GETSIGINFO, pid, 0, ctypes.addressof(buf))
    return buf.raw


def set_siginfo(pid: int, data: bytes) -> None:
    buf = ctypes.create_string_buffer(data, SIGINFO_SIZE)
    ptrace(Req.SETSIGINFO, pid, 0, ctypes.addressof(buf))


def get_sigmask(pid: int) -> int:
    """The thread's blocked-signal mask (bit n-1 for signal n)."""
    val = ctypes.c_uint64()
    ptrace(Req.GETSIGMASK, pid, 8, ctypes.addressof(val))
    return val.value


def set_sigmask(pid: int, mask: int) -> None:
    val = ctypes.c_uint64(mask)
    ptrace(Req.SETSIGMASK, pid, 8, ctypes.addressof(val))


def get_event_msg(pid: int) -> int:
    val = ctypes.c_ulong()
    ptrace(Req.GETEVENTMSG, pid, 0, ctypes.addressof(val))
    return val.value


class SyscallInfo(ctypes.Structure):
    """struct ptrace_syscall_info: op 1 = entry (nr, args), 2 = exit (rval, is_error)."""
    _fields_ = [("op", ctypes.c_uint8), ("pad", ctypes.c_uint8 * 3), ("arch", ctypes.c_uint32),
                ("instruction_pointer", ctypes.c_uint64), ("stack_pointer", ctypes.c_uint64),
                ("u", ctypes.c_uint64 * 7)]


SYSCALL_INFO_NONE = 0  # not at a syscall stop (an event or signal stop)
SYSCALL_INFO_ENTRY = 1
SYSCALL_INFO_EXIT = 2
SYSCALL_INFO_SECCOMP = 3  # a PTRACE_EVENT_SECCOMP stop: the entry's nr and args, then ret_data
# SyscallInfo.arch: the ABI of the call (<linux/audit.h>). A 64-bit program's int $0x80 (or
# sysenter) is an i386 call, numbered as i386 calls are.
AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003


def get_syscall_info(pid: int, into: SyscallInfo) -> SyscallInfo:
    ptrace(Req.GET_SYSCALL_INFO, pid, ctypes.sizeof(into), ctypes.addressof(into))
    return into


# struct user: u_debugreg starts at offset 848.
DEBUGREG_OFFSET = 848


def set_debugreg(pid: int, index: int, value: int) -> None:
    ptrace(Req.POKEUSER, pid, DEBUGREG_OFFSET + 8 * index, value)


def get_debugreg(pid: int, index: int) -> int:
    ctypes.set_errno(0)
    res = _libc.ptrace(Req.PEEKUSER, pid, DEBUGREG_OFFSET + 8 * index, None)
    if res == -1 and ctypes.get_errno():
        raise PtraceError(ctypes.get_errno(), "PEEKUSER debugreg")
    return int(res) & 0xFFFFFFFFFFFFFFFF


WALL = 0x40000000


def wait_any() -> tuple[int, int]:
    """waitpid(-1, __WALL): the next stopped or exited task and its raw status."""
    return os.waitpid(-1, WALL)


def wait_task(tid: int) -> int:
    return os.waitpid(tid, WALL)[1]


def tgkill(tgid: int, tid: int, sig: int) -> None:
    if _libc.syscall(234, tgid, tid, sig) != 0:
        raise OSError(ctypes.get_errno(), "tgkill")


PR_SET_TSC = 26
PR_TSC_SIGSEGV = 2
PR_SET_PDEATHSIG = 1


def prctl(option: int, arg2: int = 0) -> None:
    if _libc.prctl(option, ctypes.c_ulong(arg2), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl")


def personality(persona: int) -> int:
    return int(_libc.personality(ctypes.c_ulong(persona)))


def _make_rdtsc() -> ctypes._CFuncPtr:  # type: ignore[name-defined]
    """A tiny machine-code function returning the CPU's time-stamp counter."""
    import mmap
    code = bytes.fromhex("0f31" "48c1e220" "4809d0" "c3")  # rdtsc; shl rdx,32; or rax,rdx; ret
    buf = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    buf.write(code)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    fn = ctypes.CFUNCTYPE(ctypes.c_uint64)(addr)
    fn._keep = buf  # type: ignore[attr-defined]
    return fn


read_tsc = _make_rdtsc()
