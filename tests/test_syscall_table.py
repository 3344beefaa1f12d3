"""The syscall output table against the truth: gcc's sizeof() and the running kernel.

Three kinds of checks:
  - names: every syscall the table mentions exists on x86-64, and the ones glibc programs,
    python, perl, sqlite3 and coreutils call are all covered;
  - sizes: a C program compiled at test time prints the sizeof() of each struct the kernel
    writes, and each Fixed size in the table must be one of them (both directions: no
    unchecked Fixed size may slip in);
  - behaviour: `output_ranges` and the helpers on fake memory, then real syscalls made through
    ctypes on a sentinel-filled arena, where every byte the kernel changed must lie inside a
    range the table reports (a too-small or missing rule fails here).
"""
from __future__ import annotations

import ctypes
import errno
import mmap
import os
import re
import select as select_module
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pytest
from conftest import GCC, NO_GCC
from hypothesis import given
from hypothesis import strategies as st
from ptrace.syscall.linux.x86_64 import SYSCALL_NAMES

from tracee.syscalls.catalogue import CATALOGUE
from tracee.syscalls.commands import (
    FUTEX_CMD_MASK,
    IOCTLS,
    Fcntl,
    FutexOp,
    IpcCtl,
    Ioctl,
    MsgCtl,
    SemCtl,
    ShmCtl,
    IPC_NOWAIT,
    fcntl_outputs,
    ioctl_outputs,
    msgctl_outputs,
    semctl_outputs,
    shmctl_outputs,
)
from tracee.syscalls.outputs import (
    MMSG_LEN,
    MMSGHDR_SIZE,
    MSG_CONTROL,
    MSG_CONTROLLEN,
    MSG_FLAGS,
    MSG_IOV,
    MSG_IOVLEN,
    MSG_NAME,
    MSG_NAMELEN,
    ifconf_ranges,
    msghdr_output_ranges,
    output_ranges,
    recvmmsg_output_ranges,
    sendmmsg_output_ranges,
)
from tracee.syscalls.queries import BY_CODE as IRREGULAR
from tracee.syscalls.queries import FAKE_ENOSYS, entry
from tracee.syscalls.rules import (
    ArgCeil,
    ArgValue,
    DerefAfter,
    Fixed,
    IovecOut,
    SEM_VALUE,
    Min,
    Out,
    Output,
    Record,
    ResultTimes,
    Size,
    Sum,
    Syscall,
    WhenArg,
)

# The entries whose outputs the table states (the others have recorder code or are faked).
TABLE = {name: call for name, call in CATALOGUE.items() if call.record is Record.TABLE}

# ---- names --------------------------------------------------------------------------------

UNISTD_64 = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
# Syscalls newer than both python-ptrace's list and this machine's kernel headers.
NEWER_THAN_HEADERS = {"fchmodat2": 452}


def syscall_numbers() -> dict[str, int]:
    """name -> x86-64 number. python-ptrace's table also lists the x32 ABI's numbers (512 and
    up) under the same names, so those are left out."""
    numbers = {name: nr for nr, name in SYSCALL_NAMES.items() if nr < 512}
    if UNISTD_64.exists():
        numbers.update((name, int(nr)) for name, nr in
                       re.findall(r"#define __NR_(\w+) (\d+)", UNISTD_64.read_text()))
    return numbers | NEWER_THAN_HEADERS


def known_syscall_names() -> set[str]:
    return set(syscall_numbers())


def words(text: str) -> list[str]:
    return text.split()


def test_every_name_is_an_x86_64_syscall() -> None:
    known = known_syscall_names()
    unknown = sorted((set(TABLE) | IRREGULAR | FAKE_ENOSYS) - known)
    assert not unknown, f"not x86-64 syscalls: {unknown}"


def test_categories_are_disjoint() -> None:
    assert not set(TABLE) & IRREGULAR
    assert not set(TABLE) & FAKE_ENOSYS
    assert not IRREGULAR & FAKE_ENOSYS


REQUIRED = words("""
read write pread64 pwrite64 readv writev preadv pwritev preadv2 open openat openat2 close
close_range stat fstat lstat newfstatat statx statfs fstatfs access faccessat faccessat2 lseek
getdents64 getdents readlink readlinkat getcwd chdir fchdir mkdir mkdirat rmdir unlink unlinkat
rename renameat renameat2 link linkat symlink symlinkat chmod fchmod fchmodat chown fchown
lchown fchownat umask truncate ftruncate fsync fdatasync fallocate flock fcntl dup dup2 dup3
pipe pipe2 socketpair socket bind listen connect accept accept4 getsockname getpeername
getsockopt setsockopt sendto recvfrom sendmsg recvmsg shutdown poll ppoll select pselect6
epoll_create epoll_create1 epoll_ctl epoll_wait epoll_pwait epoll_pwait2 eventfd eventfd2
timerfd_create timerfd_settime timerfd_gettime signalfd signalfd4 inotify_init inotify_init1
inotify_add_watch inotify_rm_watch nanosleep clock_nanosleep clock_gettime clock_getres
gettimeofday time times getrusage sysinfo uname getrandom getpid getppid gettid getuid geteuid
getgid getegid getgroups setuid setgid getresuid getresgid getpgrp getpgid getsid setsid setpgid
getpriority setpriority sched_getaffinity sched_setaffinity sched_yield sched_getparam
sched_getscheduler getrlimit setrlimit prlimit64 rt_sigaction rt_sigprocmask rt_sigpending
rt_sigtimedwait rt_sigsuspend sigaltstack kill tgkill tkill pause alarm setitimer getitimer
timer_create timer_settime timer_gettime timer_delete timer_getoverrun futex set_robust_list
get_robust_list set_tid_address membarrier madvise mincore mlock munlock msync sync syncfs wait4
waitid capget prctl arch_prctl getcpu sched_getattr personality sendfile copy_file_range splice
tee memfd_create getxattr lgetxattr fgetxattr listxattr llistxattr flistxattr setxattr lsetxattr
fsetxattr utimensat utimes futimesat ioprio_get pidfd_open pidfd_send_signal kcmp ioctl mmap
munmap mprotect brk execve exit_group clone
""")


def test_required_syscalls_are_covered() -> None:
    missing = [n for n in REQUIRED if n not in TABLE and n not in IRREGULAR]
    assert not missing, f"no rule for: {missing}"


def test_lookup() -> None:
    assert entry("read") is TABLE["read"]
    assert entry("mmap") is CATALOGUE["mmap"] and entry("no_such_call") is None


BLOCKING = words("""
read readv recvfrom accept accept4 poll ppoll select pselect6 epoll_wait epoll_pwait
epoll_pwait2 futex nanosleep clock_nanosleep wait4 waitid pause rt_sigsuspend rt_sigtimedwait
connect sendto sendmsg write writev flock openat open fcntl ioctl recvmsg
""")


def test_blocking_calls_are_marked() -> None:
    """Every call that can wait for another task says so (statically or by a rule); the
    rules' answers from the arguments are checked in tests/test_syscall_catalogue.py."""
    assert [n for n in BLOCKING if CATALOGUE[n].may_block is False] == []
    assert CATALOGUE["getpid"].may_block is False and CATALOGUE["fstat"].may_block is False


# ---- the rules are well formed --------------------------------------------------------------

def size_leaves(size: Size) -> Iterator[Size]:
    match size:
        case Min(a=a, b=b) | Sum(a=a, b=b):
            yield from size_leaves(a)
            yield from size_leaves(b)
        case WhenArg(then=then):
            yield size
            yield from size_leaves(then)
        case _:
            yield size


def all_outputs() -> Iterator[tuple[str, Output]]:
    for name, call in TABLE.items():
        for out in call.outputs:
            yield name, out
    for cmd in Fcntl:
        for out in fcntl_outputs((0, cmd, 0)):
            yield f"fcntl({cmd.name})", out
    for req, outs in IOCTLS.items():
        for out in outs:
            yield f"ioctl({req:#x})", out


def test_argument_indices_are_in_range() -> None:
    for name, out in all_outputs():
        indices = [out.arg] + ([out.count_arg] if isinstance(out, IovecOut) else [])
        size = out.size if isinstance(out, Out) else out.limit
        indices += [leaf.arg for leaf in size_leaves(size)
                    if isinstance(leaf, (ArgValue, ArgCeil, DerefAfter, WhenArg))]
        assert all(0 <= i < 6 for i in indices), f"{name}: {out}"


@given(result=st.integers(min_value=-4095, max_value=1 << 20))
def test_null_pointers_never_yield_ranges(result: int) -> None:
    """The kernel writes nothing through a NULL pointer; no rule may claim it did."""
    def read_int(addr: int, width: int) -> int:
        raise AssertionError(f"read tracee memory at {addr:#x} with all arguments NULL")
    for name, call in TABLE.items():
        assert output_ranges(call, (0,) * 6, result, read_int) == [], name


# ---- sizes against gcc ----------------------------------------------------------------------

# Probes compiled with the kernel's uapi headers only: what the kernel itself writes.
KERNEL_PROBES = {
    "stat": "sizeof(struct stat)",
    "statx": "sizeof(struct statx)",
    "statfs": "sizeof(struct statfs)",
    "timespec": "sizeof(struct __kernel_timespec)",
    "timeval": "sizeof(struct __kernel_old_timeval)",
    "timezone": "sizeof(struct timezone)",
    "itimerval": "sizeof(struct itimerval)",
    "itimerspec": "sizeof(struct __kernel_itimerspec)",
    "rusage": "sizeof(struct rusage)",
    "sysinfo": "sizeof(struct sysinfo)",
    "utsname": "sizeof(struct new_utsname)",
    "rlimit": "sizeof(struct rlimit)",
    "tms": "sizeof(struct tms)",
    "timex": "sizeof(struct __kernel_timex)",
    "siginfo": "sizeof(siginfo_t)",
    "kernel_sigaction": "sizeof(struct sigaction)",
    "stack_t": "sizeof(stack_t)",
    "cap_version": "sizeof(((struct __user_cap_header_struct *)0)->version)",
    "cap_data": "_LINUX_CAPABILITY_U32S_3 * sizeof(struct __user_cap_data_struct)",
    "flock": "sizeof(struct flock)",
    "f_owner_ex": "sizeof(struct f_owner_ex)",
    "owner_uids": "2 * sizeof(__kernel_uid32_t)",
    "rw_hint": "sizeof(__u64)",
    "termios": "sizeof(struct termios)",
    "termios2": "sizeof(struct termios2)",
    "termio": "sizeof(struct termio)",
    "winsize": "sizeof(struct winsize)",
    "epoll_event": "sizeof(struct epoll_event)",
    "pollfd": "sizeof(struct pollfd)",
    "timer_t": "sizeof(__kernel_timer_t)",
    "time_t": "sizeof(__kernel_old_time_t)",
    "loff_t": "sizeof(__kernel_loff_t)",
    "sockaddr_storage": "sizeof(struct __kernel_sockaddr_storage)",
    "uid": "sizeof(__kernel_uid32_t)",
    "gid": "sizeof(__kernel_gid32_t)",
    "u32": "sizeof(__u32)",
    "int": "sizeof(int)",
    "int_pair": "2 * sizeof(int)",
    "long": "sizeof(long)",
    "pointer": "sizeof(void *)",
    "size_t": "sizeof(__kernel_size_t)",
    "FUTEX_CMD_MASK": "FUTEX_CMD_MASK",
    "mq_attr": "sizeof(struct mq_attr)",
    "semid64_ds": "sizeof(struct semid64_ds)",
    "seminfo": "sizeof(struct seminfo)",
    "msqid64_ds": "sizeof(struct msqid64_ds)",
    "msginfo": "sizeof(struct msginfo)",
    "shmid64_ds": "sizeof(struct shmid64_ds)",
    "shminfo64": "sizeof(struct shminfo64)",
    "shm_info": "sizeof(struct shm_info)",
    "sem_value": "sizeof(unsigned short)",  # GETALL's array
    "IPC_NOWAIT": "IPC_NOWAIT",
}
KERNEL_HEADERS = """
#include <asm/termios.h>
#include <asm/signal.h>
#include <asm/siginfo.h>
#include <asm/stat.h>
#include <asm/statfs.h>
#include <asm/poll.h>
#include <asm/posix_types.h>
#include <linux/stat.h>
#include <linux/fcntl.h>
#include <linux/fs.h>
#include <linux/time.h>
#include <linux/time_types.h>
#include <linux/timex.h>
#include <linux/times.h>
#include <linux/resource.h>
#include <linux/eventpoll.h>
#include <linux/capability.h>
#include <linux/utsname.h>
#include <linux/sysinfo.h>
#include <linux/futex.h>
#include <linux/sockios.h>
#include <linux/socket.h>
#include <linux/mqueue.h>
#include <linux/ipc.h>
#include <linux/sem.h>
#include <linux/msg.h>
#include <linux/shm.h>
"""
# Probes that need glibc's headers (types the uapi headers do not export).
LIBC_PROBES = {
    "sched_param": "sizeof(struct sched_param)",
    "ifreq": "sizeof(struct ifreq)",
    "socklen_t": "sizeof(socklen_t)",
    "unsigned": "sizeof(unsigned)",
    "page_size": "sysconf(_SC_PAGESIZE)",
    "msghdr": "sizeof(struct msghdr)",
    "iovec": "sizeof(struct iovec)",
    "mmsghdr": "sizeof(struct mmsghdr)",
    "mmsghdr.msg_len": "offsetof(struct mmsghdr, msg_len)",
    **{f"msghdr.{f}": f"offsetof(struct msghdr, {f})" for f in (
        "msg_name", "msg_namelen", "msg_iov", "msg_iovlen", "msg_control", "msg_controllen",
        "msg_flags")},
}
LIBC_HEADERS = """
#define _GNU_SOURCE
#include <stddef.h>
#include <unistd.h>
#include <sched.h>
#include <net/if.h>
#include <sys/socket.h>
#include <sys/uio.h>
"""

# (syscall, argument) -> the probe naming the struct the kernel writes there.
FIXED_SPEC: dict[tuple[str, int], str] = {
    ("stat", 1): "stat", ("fstat", 1): "stat", ("lstat", 1): "stat", ("newfstatat", 2): "stat",
    ("statx", 4): "statx", ("statfs", 1): "statfs", ("fstatfs", 1): "statfs",
    ("pipe", 0): "int_pair", ("pipe2", 0): "int_pair", ("socketpair", 3): "int_pair",
    ("sendfile", 2): "loff_t", ("copy_file_range", 1): "loff_t",
    ("copy_file_range", 3): "loff_t", ("splice", 1): "loff_t", ("splice", 3): "loff_t",
    ("accept", 1): "sockaddr_storage", ("accept", 2): "socklen_t",
    ("accept4", 1): "sockaddr_storage", ("accept4", 2): "socklen_t",
    ("getsockname", 1): "sockaddr_storage", ("getsockname", 2): "socklen_t",
    ("getpeername", 1): "sockaddr_storage", ("getpeername", 2): "socklen_t",
    ("getsockopt", 4): "socklen_t",
    ("recvfrom", 4): "sockaddr_storage", ("recvfrom", 5): "socklen_t",
    ("ppoll", 2): "timespec", ("select", 4): "timeval", ("pselect6", 4): "timespec",
    ("timerfd_settime", 3): "itimerspec", ("timerfd_gettime", 1): "itimerspec",
    ("nanosleep", 1): "timespec", ("clock_nanosleep", 3): "timespec",
    ("clock_gettime", 1): "timespec", ("clock_getres", 1): "timespec",
    ("clock_adjtime", 1): "timex", ("adjtimex", 0): "timex",
    ("gettimeofday", 0): "timeval", ("gettimeofday", 1): "timezone", ("time", 0): "time_t",
    ("times", 0): "tms", ("getitimer", 1): "itimerval", ("setitimer", 2): "itimerval",
    ("timer_create", 2): "timer_t", ("timer_settime", 3): "itimerspec",
    ("timer_gettime", 1): "itimerspec",
    ("getresuid", 0): "uid", ("getresuid", 1): "uid", ("getresuid", 2): "uid",
    ("getresgid", 0): "gid", ("getresgid", 1): "gid", ("getresgid", 2): "gid",
    ("getrlimit", 1): "rlimit", ("prlimit64", 3): "rlimit", ("getrusage", 1): "rusage",
    ("sysinfo", 0): "sysinfo", ("uname", 0): "utsname",
    ("capget", 0): "cap_version", ("capget", 1): "cap_data",
    ("getcpu", 0): "unsigned", ("getcpu", 1): "unsigned", ("get_mempolicy", 0): "int",
    ("sched_getparam", 1): "sched_param", ("sched_rr_get_interval", 1): "timespec",
    ("rt_sigaction", 2): "kernel_sigaction", ("rt_sigtimedwait", 1): "siginfo",
    ("sigaltstack", 1): "stack_t",
    ("wait4", 1): "int", ("wait4", 3): "rusage", ("waitid", 2): "siginfo", ("waitid", 4): "rusage",
    ("futex", 0): "u32", ("futex", 4): "u32",
    ("get_robust_list", 1): "pointer", ("get_robust_list", 2): "size_t",
    ("mq_timedreceive", 3): "unsigned", ("mq_getsetattr", 2): "mq_attr",
    ("msgrcv", 1): "long",  # the mtype before the text
}
SEMCTL_SPEC = {IpcCtl.IPC_STAT: "semid64_ds", SemCtl.SEM_STAT: "semid64_ds",
               SemCtl.SEM_STAT_ANY: "semid64_ds", IpcCtl.IPC_INFO: "seminfo",
               SemCtl.SEM_INFO: "seminfo"}
MSGCTL_SPEC = {IpcCtl.IPC_STAT: "msqid64_ds", MsgCtl.MSG_STAT: "msqid64_ds",
               MsgCtl.MSG_STAT_ANY: "msqid64_ds", IpcCtl.IPC_INFO: "msginfo",
               MsgCtl.MSG_INFO: "msginfo"}
SHMCTL_SPEC = {IpcCtl.IPC_STAT: "shmid64_ds", ShmCtl.SHM_STAT: "shmid64_ds",
               ShmCtl.SHM_STAT_ANY: "shmid64_ds", IpcCtl.IPC_INFO: "shminfo64",
               ShmCtl.SHM_INFO: "shm_info"}
FCNTL_SPEC = {Fcntl.F_GETLK: "flock", Fcntl.F_OFD_GETLK: "flock",
              Fcntl.F_GETOWN_EX: "f_owner_ex", Fcntl.F_GETOWNER_UIDS: "owner_uids",
              Fcntl.F_GET_RW_HINT: "rw_hint", Fcntl.F_GET_FILE_RW_HINT: "rw_hint"}
IOCTL_SPEC = {
    Ioctl.TCGETS: "termios", Ioctl.TCGETA: "termio", Ioctl.TCGETS2: "termios2",
    Ioctl.TIOCGWINSZ: "winsize", Ioctl.TIOCGPGRP: "int", Ioctl.TIOCGSID: "int",
    Ioctl.TIOCOUTQ: "int", Ioctl.TIOCMGET: "int", Ioctl.FIONREAD: "int", Ioctl.TIOCGETD: "int",
    Ioctl.TIOCGPTN: "unsigned", Ioctl.TIOCGPTLCK: "int", Ioctl.TIOCGEXCL: "int",
    Ioctl.FIOQSIZE: "loff_t", Ioctl.FS_IOC_GETFLAGS: "int", Ioctl.SIOCGIFNAME: "ifreq",
    Ioctl.SIOCGIFINDEX: "ifreq", Ioctl.SIOCGIFFLAGS: "ifreq", Ioctl.SIOCGIFADDR: "ifreq",
    Ioctl.SIOCGIFBRDADDR: "ifreq", Ioctl.SIOCGIFNETMASK: "ifreq", Ioctl.SIOCGIFMTU: "ifreq",
    Ioctl.SIOCGIFHWADDR: "ifreq", Ioctl.SIOCGIFDSTADDR: "ifreq", Ioctl.SIOCGIFMETRIC: "ifreq",
    Ioctl.SIOCGIFTXQLEN: "ifreq", Ioctl.SIOCGIFMAP: "ifreq",
}


def run_probes(tmp: Path, headers: str, probes: dict[str, str]) -> dict[str, int]:
    lines = "".join(f'    printf("%s %lld\\n", "{key}", (long long)({expr}));\n'
                    for key, expr in probes.items())
    src = tmp / "probe.c"
    src.write_text(f"{headers}\n#include <stdio.h>\nint main(void)\n{{\n{lines}    return 0;\n}}\n")
    exe = tmp / "probe"
    if GCC is None:
        pytest.skip(NO_GCC)
    build = subprocess.run(["gcc", "-o", str(exe), str(src)], capture_output=True, text=True,
                           check=False)
    assert build.returncode == 0, build.stderr
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    return {key: int(value) for key, value in (line.split() for line in out.splitlines())}


@pytest.fixture(scope="module")
def c_values(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """Every probe's value as gcc sees it on this machine, plus the enum constants by name."""
    kernel = dict(KERNEL_PROBES)
    for enum in (Ioctl, Fcntl, FutexOp, IpcCtl, SemCtl, MsgCtl, ShmCtl):
        kernel.update({member.name: member.name for member in enum})
    values = run_probes(tmp_path_factory.mktemp("kernel"), KERNEL_HEADERS, kernel)
    values.update(run_probes(tmp_path_factory.mktemp("libc"), LIBC_HEADERS, LIBC_PROBES))
    return values


def fixed_sizes(outputs: tuple[Output, ...]) -> dict[int, set[int]]:
    """argument -> the Fixed sizes that appear in its rules."""
    found: dict[int, set[int]] = {}
    for out in outputs:
        if isinstance(out, Out):
            for leaf in size_leaves(out.size):
                if isinstance(leaf, Fixed):
                    found.setdefault(out.arg, set()).add(leaf.nbytes)
    return found


def test_fixed_sizes_match_gcc(c_values: dict[str, int]) -> None:
    table = {(name, arg): sizes for name, call in TABLE.items()
             for arg, sizes in fixed_sizes(call.outputs).items()}
    unchecked = sorted(set(table) - set(FIXED_SPEC))
    assert not unchecked, f"Fixed sizes with no sizeof() check: {unchecked}"
    wrong = {key: (table.get(key), c_values[probe]) for key, probe in FIXED_SPEC.items()
             if table.get(key) != {c_values[probe]}}
    assert not wrong, f"(syscall, arg): (table, gcc) differ: {wrong}"


def test_fcntl_and_ioctl_sizes_match_gcc(c_values: dict[str, int]) -> None:
    for cmd in Fcntl:
        want = {2: {c_values[FCNTL_SPEC[cmd]]}} if cmd in FCNTL_SPEC else {}
        assert fixed_sizes(fcntl_outputs((0, cmd, 0))) == want, cmd.name
    for req in Ioctl:
        want = {2: {c_values[IOCTL_SPEC[req]]}} if req in IOCTL_SPEC else {}
        assert fixed_sizes(ioctl_outputs(req) or ()) == want, req.name


def test_semctl_msgctl_shmctl_sizes_match_gcc(c_values: dict[str, int]) -> None:
    for cmd in (*IpcCtl, *SemCtl):
        want = {3: {c_values[SEMCTL_SPEC[cmd]]}} if cmd in SEMCTL_SPEC else {}
        assert fixed_sizes(semctl_outputs((0, 0, cmd, 0)) or ()) == want, cmd.name
    for cmd in (*IpcCtl, *MsgCtl):
        want = {2: {c_values[MSGCTL_SPEC[cmd]]}} if cmd in MSGCTL_SPEC else {}
        assert fixed_sizes(msgctl_outputs((0, cmd, 0)) or ()) == want, cmd.name
    for cmd in (*IpcCtl, *ShmCtl):
        want = {2: {c_values[SHMCTL_SPEC[cmd]]}} if cmd in SHMCTL_SPEC else {}
        assert fixed_sizes(shmctl_outputs((0, cmd, 0)) or ()) == want, cmd.name
    assert semctl_outputs((0, 0, 99, 0)) is None and msgctl_outputs((0, 99, 0)) is None
    assert shmctl_outputs((0, 99, 0)) is None
    assert SEM_VALUE == c_values["sem_value"] and IPC_NOWAIT == c_values["IPC_NOWAIT"]


def test_scaled_sizes_match_gcc(c_values: dict[str, int]) -> None:
    long = c_values["long"]
    for name in ("poll", "ppoll"):
        assert TABLE[name].outputs[0] == Out(0, ArgValue(1, c_values["pollfd"]), always=True)
    for name in ("epoll_wait", "epoll_pwait", "epoll_pwait2"):
        assert TABLE[name].outputs == (Out(1, ResultTimes(c_values["epoll_event"])),)
    for name in ("select", "pselect6"):
        sets = [out.size for out in TABLE[name].outputs if isinstance(out, Out) and out.arg < 4]
        assert sets == [ArgCeil(0, 8 * long, long)] * 3
    assert TABLE["mincore"].outputs == (Out(2, ArgCeil(1, c_values["page_size"])),)
    gid = c_values["gid"]
    assert TABLE["getgroups"].outputs == (Out(1, Min(ResultTimes(gid), ArgValue(0, gid))),)


def test_constants_match_headers(c_values: dict[str, int]) -> None:
    for enum in (Ioctl, Fcntl, FutexOp, IpcCtl, SemCtl, MsgCtl, ShmCtl):
        for member in enum:
            assert member.value == c_values[member.name] & 0xFFFF_FFFF, member.name
    assert FUTEX_CMD_MASK == c_values["FUTEX_CMD_MASK"] & 0xFFFF_FFFF
    offsets = {"msg_name": MSG_NAME, "msg_namelen": MSG_NAMELEN, "msg_iov": MSG_IOV,
               "msg_iovlen": MSG_IOVLEN, "msg_control": MSG_CONTROL,
               "msg_controllen": MSG_CONTROLLEN, "msg_flags": MSG_FLAGS}
    assert {f: c_values[f"msghdr.{f}"] for f in offsets} == offsets
    assert (c_values["mmsghdr"], c_values["mmsghdr.msg_len"]) == (MMSGHDR_SIZE, MMSG_LEN)
    assert c_values["iovec"] == 16  # the stride output_ranges walks iovec arrays with


# ---- the evaluator on fake memory -----------------------------------------------------------

class FakeMemory:
    """Little-endian integers at chosen addresses; reading anything else is a test failure."""

    def __init__(self) -> None:
        self.ints: dict[int, tuple[int, int]] = {}

    def put(self, addr: int, width: int, value: int) -> None:
        self.ints[addr] = (width, value)

    def read_int(self, addr: int, width: int) -> int:
        assert addr in self.ints and self.ints[addr][0] == width, f"unexpected read {addr:#x}"
        return self.ints[addr][1]

    def iovecs(self, at: int, pairs: list[tuple[int, int]]) -> None:
        for k, (base, length) in enumerate(pairs):
            self.put(at + 16 * k, 8, base)
            self.put(at + 16 * k + 8, 8, length)


def no_memory(addr: int, width: int) -> int:
    raise AssertionError(f"unexpected read at {addr:#x}")


def ranges_of(name: str, args: tuple[int, ...], result: int,
              read_int: Callable[[int, int], int] = no_memory) -> list[tuple[int, int]]:
    return output_ranges(TABLE[name], args + (0,) * (6 - len(args)), result, read_int)


def test_read_saves_the_bytes_returned() -> None:
    assert ranges_of("read", (3, 0x1000, 4096), 17) == [(0x1000, 17)]
    assert ranges_of("read", (3, 0x1000, 4096), 0) == []


def test_a_failed_call_saves_nothing_but_always_outputs() -> None:
    assert ranges_of("read", (3, 0x1000, 4096), -11) == []          # EAGAIN
    assert ranges_of("fstat", (3, 0x2000), -9) == []                 # EBADF
    # An interrupted nanosleep stores the time left: that is its only output.
    assert ranges_of("nanosleep", (0x3000, 0x4000), -516) == [(0x4000, 16)]
    assert ranges_of("poll", (0x5000, 3, 100), -4) == [(0x5000, 24)]  # revents zeroed


def test_readv_fills_iovecs_in_order_up_to_the_result() -> None:
    mem = FakeMemory()
    mem.iovecs(0x7000, [(0xA000, 10), (0, 0), (0xB000, 100), (0xC000, 50)])
    assert ranges_of("readv", (3, 0x7000, 4), 60, mem.read_int) == [(0xA000, 10), (0xB000, 50)]
    assert ranges_of("readv", (3, 0x7000, 4), 0, mem.read_int) == []


def test_accept4_saves_the_address_and_its_length() -> None:
    mem = FakeMemory()
    mem.put(0x9000, 4, 110)  # *addrlen after the call: a unix socket address
    assert ranges_of("accept4", (3, 0x8000, 0x9000, 0), 5, mem.read_int) == [
        (0x8000, 110), (0x9000, 4)]
    # With no address buffer only the (ignored) length pointer remains.
    assert ranges_of("accept4", (3, 0, 0, 0), 5, mem.read_int) == []
    # The stored length is the address's full length, maybe more than the buffer: capped.
    mem.put(0x9000, 4, 4000)
    assert ranges_of("accept4", (3, 0x8000, 0x9000, 0), 5, mem.read_int)[0] == (0x8000, 128)


def test_recvfrom_with_msg_trunc_saves_at_most_the_buffer() -> None:
    mem = FakeMemory()
    mem.put(0x9000, 4, 0)
    assert ranges_of("recvfrom", (3, 0x8000, 4, 0x20, 0xA000, 0x9000), 1500, mem.read_int) == [
        (0x8000, 4), (0x9000, 4)]


def test_select_fd_sets_are_whole_longs() -> None:
    args = (65, 0x1000, 0, 0x3000, 0x4000)
    assert ranges_of("select", args, 1) == [(0x1000, 16), (0x3000, 16), (0x4000, 16)]
    assert ranges_of("select", (64, 0x1000, 0x2000, 0, 0), 0) == [(0x1000, 8), (0x2000, 8)]
    assert ranges_of("select", (1, 0x1000, 0, 0, 0x4000), 1) == [(0x1000, 8), (0x4000, 16)]
    assert ranges_of("select", (1, 0x1000, 0, 0, 0x4000), -4) == [(0x4000, 16)]


def test_msgrcv_saves_the_type_and_the_text() -> None:
    assert ranges_of("msgrcv", (1, 0x1000, 48, 0, 0), 17) == [(0x1000, 25)]
    assert ranges_of("msgrcv", (1, 0x1000, 48, 0, 0), 0) == [(0x1000, 8)]  # empty text
    assert ranges_of("msgrcv", (1, 0x1000, 48, 0, 0o4000), -42) == []        # ENOMSG


def test_process_vm_readv_fills_local_iovecs_in_order() -> None:
    mem = FakeMemory()
    mem.iovecs(0x7000, [(0xA000, 9), (0xB000, 40)])
    assert ranges_of("process_vm_readv", (99, 0x7000, 2, 0x8000, 2, 0), 42, mem.read_int) == [
        (0xA000, 9), (0xB000, 33)]
    mq = ranges_of("mq_timedreceive", (3, 0x1000, 64, 0x2000, 0), 14)
    assert mq == [(0x1000, 14), (0x2000, 4)]


def test_size_only_queries_write_nothing() -> None:
    assert ranges_of("getgroups", (0, 0x1000), 12) == []
    assert ranges_of("getgroups", (32, 0x1000), 12) == [(0x1000, 48)]
    assert ranges_of("getxattr", (0x1, 0x2, 0x3000, 0), 40) == []
    assert ranges_of("sched_getaffinity", (0, 128, 0x3000), 8) == [(0x3000, 8)]
    assert ranges_of("mincore", (0x10000, 3 * 4096 + 1, 0x3000), 0) == [(0x3000, 4)]


def test_futex_writes_only_for_operations_that_store() -> None:
    wait_private = 0 | 128
    assert ranges_of("futex", (0x1000, wait_private, 0, 0, 0xDEAD, 0), 0) == []
    assert ranges_of("futex", (0x1000, FutexOp.FUTEX_WAKE_OP | 128, 1, 1, 0x2000, 0), 1) == [
        (0x2000, 4)]
    assert ranges_of("futex", (0x1000, FutexOp.FUTEX_LOCK_PI, 0, 0, 0, 0), -110) == [
        (0x1000, 4)]  # ETIMEDOUT after setting the waiters bit


def test_ioctl_and_fcntl_lookups() -> None:
    assert ioctl_outputs(Ioctl.TCGETS) == (Out(2, Fixed(36)),)
    assert ioctl_outputs(0xFFFF_FFFF_8004_5430) == (Out(2, Fixed(4)),)  # sign-extended TIOCGPTN
    assert ioctl_outputs(Ioctl.TCSETS) == ()
    assert ioctl_outputs(0x1234) is None
    assert fcntl_outputs((3, Fcntl.F_GETLK, 0x1000)) == (Out(2, Fixed(32)),)
    assert fcntl_outputs((3, 1, 0)) == ()  # F_GETFD


def test_msghdr_ranges_use_the_lengths_the_kernel_stored() -> None:
    mem, msg = FakeMemory(), 0x1000
    mem.put(msg + MSG_NAME, 8, 0x2000)
    mem.put(msg + MSG_NAMELEN, 4, 16)
    mem.put(msg + MSG_IOV, 8, 0x3000)
    mem.put(msg + MSG_IOVLEN, 8, 2)
    mem.iovecs(0x3000, [(0x4000, 8), (0x5000, 100)])
    mem.put(msg + MSG_CONTROL, 8, 0x6000)
    mem.put(msg + MSG_CONTROLLEN, 8, 32)
    got = msghdr_output_ranges(msg, 20, mem.read_int)
    assert sorted(got) == sorted([(msg + 8, 4), (msg + 40, 8), (msg + 48, 4), (0x2000, 16),
                                  (0x4000, 8), (0x5000, 12), (0x6000, 32)])
    assert msghdr_output_ranges(msg, -11, mem.read_int) == []


def test_mmsg_helpers() -> None:
    mem, vec = FakeMemory(), 0x1000
    for k, received in enumerate((5, 7)):
        entry = vec + 64 * k
        for off, width, value in ((MSG_NAME, 8, 0), (MSG_NAMELEN, 4, 0), (MSG_IOV, 8, 0x8000),
                                  (MSG_IOVLEN, 8, 1), (MSG_CONTROL, 8, 0),
                                  (MSG_CONTROLLEN, 8, 0), (MMSG_LEN, 4, received)):
            mem.put(entry + off, width, value)
    mem.iovecs(0x8000, [(0x9000, 64)])
    got = recvmmsg_output_ranges((3, vec, 4, 0, 0x7000), 2, mem.read_int)
    assert (0x9000, 5) in got and (0x9000, 7) in got
    assert (vec + 56, 4) in got and (vec + 64 + 56, 4) in got and (0x7000, 16) in got
    assert sendmmsg_output_ranges((3, vec, 4, 0), 2) == [(vec + 56, 4), (vec + 120, 4)]


# ---- real syscalls: every byte the kernel changed is inside a reported range ---------------

NR = syscall_numbers()
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
SENTINEL = 0xA5
AT_FDCWD = -100


def syscall(name: str, args: tuple[int, ...]) -> int:
    """The raw syscall's result, -errno on failure, as the recorder sees it in rax."""
    ctypes.set_errno(0)
    result = _libc.syscall(ctypes.c_long(NR[name]), *(ctypes.c_long(a) for a in args))
    return -ctypes.get_errno() if result == -1 else int(result)


class Arena:
    """Sentinel-filled scratch memory holding every buffer a test syscall reads or writes."""

    def __init__(self, size: int = 1 << 16) -> None:
        self.mem = mmap.mmap(-1, size)
        self.mem.write(bytes([SENTINEL]) * size)
        self.base = ctypes.addressof(ctypes.c_char.from_buffer(self.mem))
        self.used = 0

    def alloc(self, size: int = 512, data: bytes = b"") -> int:
        self.used = -(-self.used // 16) * 16
        addr = self.base + self.used
        self.mem[self.used:self.used + len(data)] = data
        self.used += size
        return addr

    def cstr(self, text: str | Path) -> int:
        raw = os.fsencode(text) + b"\0"
        return self.alloc(len(raw), raw)

    def ints(self, *values: int, width: int = 8) -> int:
        raw = b"".join((v & (1 << 8 * width) - 1).to_bytes(width, "little") for v in values)
        return self.alloc(len(raw), raw)

    def iovecs(self, *sizes: int) -> int:
        bufs = [self.alloc(n) for n in sizes]
        return self.ints(*(x for pair in zip(bufs, sizes) for x in pair))

    def contains(self, addr: int, length: int) -> bool:
        return self.base <= addr and addr + length <= self.base + len(self.mem)

    def read_int(self, addr: int, width: int) -> int:
        assert self.contains(addr, width), f"read outside the arena: {addr:#x}"
        off = addr - self.base
        return int.from_bytes(self.mem[off:off + width], "little")


class Closeable(Protocol):
    def close(self) -> object: ...


@dataclass
class Env:
    """What a case sets up; closed after the call."""
    arena: Arena
    tmp: Path
    keep: list[Closeable] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)

    def buf(self, size: int = 512) -> int:
        return self.arena.alloc(size)

    def file(self, name: str = "data", data: bytes = b"0123456789" * 10) -> Path:
        path = self.tmp / name
        path.write_bytes(data)
        return path

    def open(self, name: str = "data", flags: int = os.O_RDONLY) -> int:
        path = self.tmp / name
        if not path.exists():
            self.file(name)
        fd = os.open(path, flags)
        self.fds.append(fd)
        return fd

    def pipe(self, data: bytes = b"") -> tuple[int, int]:
        r, w = os.pipe()
        self.fds += [r, w]
        os.write(w, data)
        return r, w

    def sock(self, *args: int) -> socket.socket:
        s = socket.socket(*args)
        self.keep.append(s)
        return s

    def cleanup(self, fn: Callable[[], object]) -> None:
        self.keep.append(Closer(fn))


@dataclass
class Closer:
    close: Callable[[], object]


@dataclass
class Call:
    name: str
    args: tuple[int, ...]
    outputs: tuple[Output, ...] | None = None   # a helper's outputs, for irregular calls
    ranges: Callable[[int], list[tuple[int, int]]] | None = None  # or a helper's ranges
    writes: bool = True        # the call is known to change some bytes
    result_fd: bool = False


# Calls whose arguments are buffers and constants: (syscall, args builder).
SIMPLE: dict[str, tuple[str, Callable[[Env], tuple[int, ...]]]] = {
    "stat": ("stat", lambda e: (e.arena.cstr(e.file()), e.buf())),
    "lstat": ("lstat", lambda e: (e.arena.cstr(e.file()), e.buf())),
    "fstat": ("fstat", lambda e: (e.open(), e.buf())),
    "newfstatat": ("newfstatat", lambda e: (AT_FDCWD, e.arena.cstr(e.file()), e.buf(), 0)),
    "statx": ("statx", lambda e: (AT_FDCWD, e.arena.cstr(e.file()), 0, 0xFFF, e.buf())),
    "statfs": ("statfs", lambda e: (e.arena.cstr(e.tmp), e.buf())),
    "fstatfs": ("fstatfs", lambda e: (e.open(), e.buf())),
    "readlink": ("readlink", lambda e: (e.arena.cstr("/proc/self/exe"), e.buf(), 512)),
    "readlinkat": ("readlinkat", lambda e: (AT_FDCWD, e.arena.cstr("/proc/self/cwd"),
                                            e.buf(), 512)),
    "getcwd": ("getcwd", lambda e: (e.buf(4096), 4096)),
    "pread64": ("pread64", lambda e: (e.open(), e.buf(64), 64, 5)),
    "preadv": ("preadv", lambda e: (e.open(), e.arena.iovecs(3, 0, 50), 3, 1, 0)),
    "pipe2": ("pipe2", lambda e: (e.buf(8), os.O_CLOEXEC)),
    "socketpair": ("socketpair", lambda e: (socket.AF_UNIX, socket.SOCK_STREAM, 0, e.buf(8))),
    "uname": ("uname", lambda e: (e.buf(),)),
    "sysinfo": ("sysinfo", lambda e: (e.buf(),)),
    "times": ("times", lambda e: (e.buf(),)),
    "getrusage": ("getrusage", lambda e: (0, e.buf())),
    "clock_gettime": ("clock_gettime", lambda e: (1, e.buf())),
    "clock_getres": ("clock_getres", lambda e: (1, e.buf())),
    "gettimeofday": ("gettimeofday", lambda e: (e.buf(), e.buf())),
    "time": ("time", lambda e: (e.buf(),)),
    "getitimer": ("getitimer", lambda e: (0, e.buf())),
    "getrlimit": ("getrlimit", lambda e: (7, e.buf())),          # RLIMIT_NOFILE
    "prlimit64": ("prlimit64", lambda e: (0, 7, 0, e.buf())),
    "getresuid": ("getresuid", lambda e: (e.buf(8), e.buf(8), e.buf(8))),
    "getresgid": ("getresgid", lambda e: (e.buf(8), e.buf(8), e.buf(8))),
    "getcpu": ("getcpu", lambda e: (e.buf(8), e.buf(8), 0)),
    "sched_getaffinity": ("sched_getaffinity", lambda e: (0, 128, e.buf())),
    "sched_getparam": ("sched_getparam", lambda e: (0, e.buf())),
    "sched_rr_get_interval": ("sched_rr_get_interval", lambda e: (0, e.buf())),
    "sched_getattr": ("sched_getattr", lambda e: (0, e.buf(128), 128, 0)),
    "capget": ("capget", lambda e: (e.arena.ints(0x20080522, 0, width=4), e.buf())),
    # An unknown version: EINVAL, and the kernel stores the version it wants.
    "capget_unknown_version": ("capget", lambda e: (e.arena.ints(0x1234, 0, width=4),
                                                    e.buf())),
    "get_robust_list": ("get_robust_list", lambda e: (0, e.buf(8), e.buf(8))),
    "rt_sigaction": ("rt_sigaction", lambda e: (10, 0, e.buf(), 8)),  # SIGUSR1's action
    "rt_sigprocmask": ("rt_sigprocmask", lambda e: (0, 0, e.buf(), 8)),
    "rt_sigpending": ("rt_sigpending", lambda e: (e.buf(), 8)),
    "sigaltstack": ("sigaltstack", lambda e: (0, e.buf())),
    "getrandom": ("getrandom", lambda e: (e.buf(64), 64, 0)),
    "mincore": ("mincore", lambda e: (e.arena.base, 3 * 4096 + 1, e.buf(16))),
}


def simple_case(name: str, build: Callable[[Env], tuple[int, ...]]) -> Callable[[Env], Call]:
    return lambda env: Call(name, build(env))


CASES: dict[str, Callable[[Env], Call]] = {
    key: simple_case(name, build) for key, (name, build) in SIMPLE.items()}


def case(fn: Callable[[Env], Call]) -> Callable[[Env], Call]:
    CASES[fn.__name__] = fn
    return fn


@case
def getgroups(env: Env) -> Call:
    return Call("getgroups", (64, env.buf()), writes=bool(os.getgroups()))


@case
def mbind(env: Env) -> Call:
    """OpenBLAS (numpy) sets a policy at start-up; the call only reads its node mask."""
    return Call("mbind", (env.arena.base, 4096, 0, 0, 0, 0), writes=False)  # MPOL_DEFAULT


@case
def getdents64(env: Env) -> Call:
    for name in ("a", "bb", "ccc"):
        env.file(name)
    return Call("getdents64", (env.open(".", os.O_RDONLY | os.O_DIRECTORY), env.buf(4096), 4096))


@case
def read(env: Env) -> Call:
    r, _ = env.pipe(b"hello world")
    return Call("read", (r, env.buf(64), 64))


@case
def readv(env: Env) -> Call:
    r, _ = env.pipe(b"0123456789")
    return Call("readv", (r, env.arena.iovecs(4, 100), 2))


@case
def copy_file_range(env: Env) -> Call:
    out = env.open("out", os.O_WRONLY | os.O_CREAT)
    return Call("copy_file_range", (env.open(), env.arena.ints(3), out, env.arena.ints(0), 10, 0))


@case
def sendfile(env: Env) -> Call:
    out = env.open("out", os.O_WRONLY | os.O_CREAT)
    return Call("sendfile", (out, env.open(), env.arena.ints(3), 10))


@case
def splice(env: Env) -> Call:
    _, w = env.pipe()
    return Call("splice", (env.open(), env.arena.ints(3), w, 0, 10, 0))


# -- waiting for file descriptors: each is ready at once

@case
def poll(env: Env) -> Call:
    r, w = env.pipe(b"x")
    fds = env.arena.ints(r | (1 << 32), w | (4 << 32))  # {fd, POLLIN|POLLOUT, revents 0}
    return Call("poll", (fds, 2, 0))


@case
def ppoll(env: Env) -> Call:
    r, _ = env.pipe(b"x")
    return Call("ppoll", (env.arena.ints(r | (1 << 32)), 1, env.arena.ints(5, 0), 0, 8))


def fd_set(env: Env, *fds: int) -> int:
    words = [0] * 16
    for fd in fds:
        words[fd // 64] |= 1 << fd % 64
    return env.arena.ints(*words)


@case
def select(env: Env) -> Call:
    r, w = env.pipe(b"x")
    return Call("select", (max(r, w) + 1, fd_set(env, r, w), fd_set(env, r, w), 0,
                           env.arena.ints(5, 0)))


@case
def pselect6(env: Env) -> Call:
    r, w = env.pipe(b"x")
    return Call("pselect6", (max(r, w) + 1, fd_set(env, r), fd_set(env, w), fd_set(env, r),
                             env.arena.ints(5, 0), 0))


def ready_epoll(env: Env) -> int:
    """An epoll instance with one readable pipe registered."""
    r, _ = env.pipe(b"x")
    ep = select_module.epoll()
    env.keep.append(ep)
    ep.register(r)
    return ep.fileno()


@case
def epoll_wait(env: Env) -> Call:
    return Call("epoll_wait", (ready_epoll(env), env.buf(), 4, 0))


@case
def epoll_pwait(env: Env) -> Call:
    return Call("epoll_pwait", (ready_epoll(env), env.buf(), 4, 0, 0, 8))


# -- timers: 100 s from now, never firing during the test

def in_100s(env: Env) -> int:
    return env.arena.ints(0, 0, 100, 0)  # struct itimerspec


def timerfd(env: Env) -> int:
    fd = syscall("timerfd_create", (1, 0))
    assert fd >= 0
    env.fds.append(fd)
    return fd


@case
def timerfd_settime(env: Env) -> Call:
    return Call("timerfd_settime", (timerfd(env), 0, in_100s(env), env.buf()))


@case
def timerfd_gettime(env: Env) -> Call:
    fd = timerfd(env)
    assert syscall("timerfd_settime", (fd, 0, in_100s(env), 0)) == 0
    return Call("timerfd_gettime", (fd, env.buf()))


def sigev_none(env: Env) -> int:
    return env.arena.alloc(64, bytes(12) + (1).to_bytes(4, "little") + bytes(48))


def posix_timer(env: Env) -> int:
    slot = env.buf(8)
    if syscall("timer_create", (1, sigev_none(env), slot)) == -errno.ENOSYS:
        pytest.skip("timer_create is not available here")
    timer = env.arena.read_int(slot, 4)
    env.cleanup(lambda: syscall("timer_delete", (timer,)))
    return timer


@case
def timer_create(env: Env) -> Call:
    slot = env.buf(8)
    env.cleanup(lambda: syscall("timer_delete", (env.arena.read_int(slot, 4),)))
    return Call("timer_create", (1, sigev_none(env), slot))


@case
def timer_settime(env: Env) -> Call:
    return Call("timer_settime", (posix_timer(env), 0, in_100s(env), env.buf()))


@case
def timer_gettime(env: Env) -> Call:
    timer = posix_timer(env)
    assert syscall("timer_settime", (timer, 0, in_100s(env), 0)) == 0
    return Call("timer_gettime", (timer, env.buf()))


# -- children

def exited_child(code: int) -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(code)
    return pid


@case
def wait4(env: Env) -> Call:
    return Call("wait4", (exited_child(3), env.buf(8), 0, env.buf()))


@case
def waitid(env: Env) -> Call:
    return Call("waitid", (1, exited_child(4), env.buf(), 4, env.buf()))  # P_PID, WEXITED


# -- sockets

def connected_unix(env: Env) -> tuple[socket.socket, socket.socket]:
    """A listening server and a client (bound to a path) queued on it."""
    server = env.sock(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(env.tmp / "server"))
    server.listen()
    client = env.sock(socket.AF_UNIX, socket.SOCK_STREAM)
    client.bind(str(env.tmp / "client"))
    client.connect(str(env.tmp / "server"))
    return server, client


@case
def accept4(env: Env) -> Call:
    server, _ = connected_unix(env)
    return Call("accept4", (server.fileno(), env.buf(), env.arena.ints(128, width=4),
                            socket.SOCK_CLOEXEC), result_fd=True)


@case
def accept4_short_buffer(env: Env) -> Call:
    server, _ = connected_unix(env)
    return Call("accept4", (server.fileno(), env.buf(8), env.arena.ints(8, width=4), 0),
                result_fd=True)


@case
def getsockname(env: Env) -> Call:
    s = env.sock(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(env.tmp / "named"))
    return Call("getsockname", (s.fileno(), env.buf(), env.arena.ints(128, width=4)))


@case
def getpeername(env: Env) -> Call:
    _, client = connected_unix(env)
    return Call("getpeername", (client.fileno(), env.buf(), env.arena.ints(128, width=4)))


@case
def getsockopt(env: Env) -> Call:
    _, client = connected_unix(env)
    return Call("getsockopt", (client.fileno(), socket.SOL_SOCKET, socket.SO_PEERCRED,
                               env.buf(64), env.arena.ints(64, width=4)))


def datagram_pair(env: Env, *messages: bytes) -> tuple[socket.socket, socket.socket]:
    """Sender a (named, so receivers get an address), receiver b (gets credentials)."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    env.keep += [a, b]
    a.bind(os.fsencode(env.tmp / "sender"))
    b.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    for message in messages:
        a.send(message)
    return a, b


@case
def recvfrom(env: Env) -> Call:
    _, b = datagram_pair(env, b"0123456789")
    return Call("recvfrom", (b.fileno(), env.buf(64), 64, 0, env.buf(),
                             env.arena.ints(128, width=4)))


@case
def recvfrom_msg_trunc(env: Env) -> Call:
    _, b = datagram_pair(env, b"0123456789")
    return Call("recvfrom", (b.fileno(), env.buf(64), 4, socket.MSG_TRUNC, 0, 0))


def msghdr_bytes(env: Env, name_len: int, *iov_sizes: int, control: int = 64) -> bytes:
    """A struct msghdr (56 bytes) over fresh buffers; padding keeps the sentinel."""
    name = env.buf(name_len) if name_len else 0
    ctl = env.buf(control) if control else 0
    pad = int.from_bytes(bytes([SENTINEL]) * 4, "little") << 32
    fields = (name, name_len | pad, env.arena.iovecs(*iov_sizes), len(iov_sizes), ctl,
              control, pad)
    return b"".join(v.to_bytes(8, "little") for v in fields)


@case
def recvmsg(env: Env) -> Call:
    _, b = datagram_pair(env, b"0123456789")
    msg = env.arena.alloc(56, msghdr_bytes(env, 128, 4, 100))
    return Call("recvmsg", (b.fileno(), msg, 0),
                ranges=lambda result: msghdr_output_ranges(msg, result, env.arena.read_int))


@case
def recvmmsg(env: Env) -> Call:
    _, b = datagram_pair(env, b"first", b"second message")
    entries = [msghdr_bytes(env, 128, 8, 8) + bytes([SENTINEL]) * 8 for _ in range(3)]
    args = (b.fileno(), env.arena.alloc(3 * 64, b"".join(entries)), 3, socket.MSG_DONTWAIT,
            env.arena.ints(5, 0))
    return Call("recvmmsg", args,
                ranges=lambda result: recvmmsg_output_ranges(args, result, env.arena.read_int))


@case
def sendmmsg(env: Env) -> Call:
    a, _ = datagram_pair(env)
    entries = [msghdr_bytes(env, 0, 8, control=0) + bytes([SENTINEL]) * 8 for _ in range(2)]
    args = (a.fileno(), env.arena.alloc(2 * 64, b"".join(entries)), 2, 0)
    return Call("sendmmsg", args, ranges=lambda result: sendmmsg_output_ranges(args, result))


# -- fcntl and ioctl through their helpers

def fcntl(fd: int, cmd: Fcntl, arg: int) -> Call:
    return Call("fcntl", (fd, cmd, arg), outputs=fcntl_outputs((fd, cmd, arg)))


@case
def fcntl_F_GETLK(env: Env) -> Call:
    flock = env.arena.ints(1, 0, 0, 0)  # F_WRLCK over the whole file: answered F_UNLCK
    return fcntl(env.open("data", os.O_RDWR), Fcntl.F_GETLK, flock)


@case
def fcntl_F_GETOWN_EX(env: Env) -> Call:
    return fcntl(env.open(), Fcntl.F_GETOWN_EX, env.buf(16))


def ioctl(fd: int, request: Ioctl, arg: int) -> Call:
    outputs = ioctl_outputs(request)
    assert outputs is not None
    return Call("ioctl", (fd, request, arg), outputs=outputs)


def tty_case(request: Ioctl) -> Callable[[Env], Call]:
    def build(env: Env) -> Call:
        master, slave = os.openpty()
        env.fds += [master, slave]
        on_master = request in (Ioctl.TIOCGPTN, Ioctl.TIOCGPTLCK)
        return ioctl(master if on_master else slave, request, env.buf(64))
    return build


for _request in (Ioctl.TCGETS, Ioctl.TCGETA, Ioctl.TCGETS2, Ioctl.TIOCGWINSZ, Ioctl.TIOCOUTQ,
                 Ioctl.TIOCGETD, Ioctl.TIOCGEXCL, Ioctl.TIOCGPTN, Ioctl.TIOCGPTLCK):
    CASES[f"ioctl_{_request.name}"] = tty_case(_request)


@case
def ioctl_FIONREAD(env: Env) -> Call:
    r, _ = env.pipe(b"abc")
    return ioctl(r, Ioctl.FIONREAD, env.buf(16))


@case
def ioctl_FIOQSIZE(env: Env) -> Call:
    return ioctl(env.open(), Ioctl.FIOQSIZE, env.buf(16))


def inet_socket(env: Env) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    env.keep.append(sock)
    return sock.fileno()


@case
def ioctl_SIOCGIFCONF(env: Env) -> Call:
    """The interfaces, as libuuid and ifconfig ask: ifc_len and that many bytes of ifreq."""
    ifconf = env.arena.ints(512, env.buf(512))  # ifc_len (then padding), ifc_buf
    args = (inet_socket(env), Ioctl.SIOCGIFCONF, ifconf)
    return Call("ioctl", args, ranges=lambda result: ifconf_ranges(ifconf, result,
                                                                   env.arena.read_int))


@case
def ioctl_SIOCGIFCONF_size(env: Env) -> Call:
    """With no buffer the kernel only stores the length it would need."""
    ifconf = env.arena.ints(0, 0)
    args = (inet_socket(env), Ioctl.SIOCGIFCONF, ifconf)
    return Call("ioctl", args, ranges=lambda result: ifconf_ranges(ifconf, result,
                                                                   env.arena.read_int))


for _request in (Ioctl.SIOCGIFFLAGS, Ioctl.SIOCGIFADDR, Ioctl.SIOCGIFNETMASK,
                 Ioctl.SIOCGIFMTU, Ioctl.SIOCGIFHWADDR, Ioctl.SIOCGIFTXQLEN, Ioctl.SIOCGIFMAP):
    CASES[f"ioctl_{_request.name}"] = (
        lambda request: lambda env: ioctl(inet_socket(env), request,
                                          env.arena.alloc(40, b"lo\0")))(_request)


# -- futexes (private operations on words in the arena)

PRIVATE = 128


@case
def futex_lock_pi(env: Env) -> Call:
    word = env.arena.ints(0, width=4)  # free: the kernel stores our tid
    env.cleanup(lambda: syscall("futex", (word, FutexOp.FUTEX_UNLOCK_PI | PRIVATE, 0, 0, 0, 0)))
    return Call("futex", (word, FutexOp.FUTEX_LOCK_PI | PRIVATE, 0, 0, 0, 0))


@case
def futex_wake_op(env: Env) -> Call:
    word, word2 = env.arena.ints(0, width=4), env.arena.ints(0, width=4)
    set_to_7 = 7 << 12  # FUTEX_OP(FUTEX_OP_SET, 7, FUTEX_OP_CMP_EQ, 0)
    return Call("futex", (word, FutexOp.FUTEX_WAKE_OP | PRIVATE, 1, 1, word2, set_to_7))


@case
def futex_wait_mismatch(env: Env) -> Call:
    word = env.arena.ints(1, width=4)  # FUTEX_WAIT on a changed value: EAGAIN at once
    return Call("futex", (word, 0 | PRIVATE, 0, 0, 0xDEAD_BEEF, 0), writes=False)


def changed_bytes(before: bytes, after: bytes, base: int) -> list[int]:
    return [base + i for i, (x, y) in enumerate(zip(before, after)) if x != y]


def reported_ranges(call: Call, args: tuple[int, ...], result: int,
                    arena: Arena) -> list[tuple[int, int]]:
    if call.ranges is not None:
        return call.ranges(result)
    rule = TABLE[call.name] if call.outputs is None else Syscall(outputs=call.outputs)
    registers = tuple(a & (1 << 64) - 1 for a in args)  # as the recorder reads them
    return output_ranges(rule, registers, result, arena.read_int)


@pytest.mark.parametrize("name", sorted(CASES))
def test_real_syscall_writes_stay_inside_reported_ranges(name: str, tmp_path: Path) -> None:
    env = Env(arena=Arena(), tmp=tmp_path)
    try:
        call = CASES[name](env)
        args = call.args + (0,) * (6 - len(call.args))
        before = bytes(env.arena.mem)
        result = syscall(call.name, args)
        after = bytes(env.arena.mem)
        if result == -errno.ENOSYS:
            pytest.skip(f"{call.name} is not available here")
        if call.result_fd and result >= 0:
            env.fds.append(result)
        ranges = reported_ranges(call, args, result, env.arena)
        written = changed_bytes(before, after, env.arena.base)
        missed = [a for a in written if not any(s <= a < s + n for s, n in ranges)]
        assert not missed, (f"{call.name} -> {result}: kernel wrote {len(missed)} bytes outside "
                            f"{[(hex(s), n) for s, n in ranges]}, first at {missed[0]:#x}")
        # Every buffer is in the arena: a range elsewhere means a rule names the wrong argument.
        stray = [(hex(s), n) for s, n in ranges if not env.arena.contains(s, n)]
        assert not stray, f"{call.name}: ranges outside any buffer: {stray}"
        if call.writes:
            assert written, f"{call.name} -> {result} changed nothing: the case tests nothing"
    finally:
        for fd in env.fds:
            os.close(fd)
        for obj in env.keep:
            obj.close()
