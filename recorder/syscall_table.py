"""What every syscall writes into tracee memory: a declarative table.

The recorder reads this table at each syscall exit to know which tracee bytes the kernel wrote
(those are saved in the trace and written back at replay). A syscall is either:
  - in TABLE: its outputs are described by `Out` rules (possibly none);
  - irregular (IRREGULAR): the recorder has code for it (mmap family, clone, execve, ioctl by
    request, recvmsg, ...), the table only names it;
  - FAKE_ENOSYS: never run; the recorder makes it fail with -ENOSYS because libc has a fallback
    (rseq would have the kernel write into memory behind our back; clone3 -> clone);
  - anything else: recording stops with an error naming the syscall.

Size rules are small values, evaluated by `output_ranges` with the syscall's arguments, its
result and a function to read tracee memory (for sizes the kernel stores, like socklen_t).
This module knows nothing of ptrace: it is pure data plus one evaluator.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

# ---- size rules ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fixed:
    """A constant number of bytes (a struct)."""
    nbytes: int


@dataclass(frozen=True, slots=True)
class Result:
    """As many bytes as the syscall returned (read, getdents64, readlink, ...)."""


@dataclass(frozen=True, slots=True)
class ArgValue:
    """The value of argument `arg` times `scale` (e.g. poll: nfds * 8)."""
    arg: int
    scale: int = 1


@dataclass(frozen=True, slots=True)
class ResultTimes:
    """result * scale (epoll_wait: number of events * 12)."""
    scale: int


@dataclass(frozen=True, slots=True)
class DerefAfter:
    """The integer of `width` bytes the pointer argument `arg` points to, read after the call
    (accept/getsockname: *addrlen)."""
    arg: int
    width: int = 4


@dataclass(frozen=True, slots=True)
class Min:
    a: "Size"
    b: "Size"


Size = Union[Fixed, Result, ArgValue, ResultTimes, DerefAfter, Min]


@dataclass(frozen=True, slots=True)
class Out:
    """The kernel writes `size` bytes at the address in argument `arg` (skipped if that
    argument is NULL). `always`: written even when the call fails (rare)."""
    arg: int
    size: Size
    always: bool = False


@dataclass(frozen=True, slots=True)
class IovecOut:
    """The kernel fills the iovec array at argument `arg` (count in argument `count_arg`), in
    order, up to `limit` bytes in total (readv: the result)."""
    arg: int
    count_arg: int
    limit: Size = Result()


Output = Union[Out, IovecOut]


@dataclass(frozen=True, slots=True)
class Syscall:
    outputs: tuple[Output, ...] = ()
    # May block for a long time (read on a pipe, poll, futex wait): the scheduler may run
    # other threads meanwhile and outputs go through scratch buffers (issue 5).
    may_block: bool = False


def S(*outputs: Output, may_block: bool = False) -> Syscall:
    return Syscall(outputs=tuple(outputs), may_block=may_block)


# ---- the table ----------------------------------------------------------------------------

TABLE: dict[str, Syscall] = {
    "read": S(Out(1, Result()), may_block=True),
    "write": S(may_block=True),
    "close": S(),
    "getpid": S(),
    # ... (filled in below)
}

# Syscalls the recorder handles in code; the table only lists their names.
IRREGULAR: frozenset[str] = frozenset({
    "mmap", "munmap", "mremap", "mprotect", "brk", "madvise",
    "execve", "execveat", "exit", "exit_group",
    "clone", "fork", "vfork",
    "ioctl", "recvmsg", "recvmmsg", "sendmmsg",
    "rt_sigreturn", "arch_prctl", "prctl",
})

# Never run; answered -ENOSYS because glibc falls back to something the recorder handles.
FAKE_ENOSYS: frozenset[str] = frozenset({"rseq", "clone3", "io_uring_setup"})


# ---- evaluation ---------------------------------------------------------------------------

ReadInt = Callable[[int, int], int]  # (address, width) -> unsigned integer in tracee memory


def evaluate_size(size: Size, args: tuple[int, ...], result: int, read_int: ReadInt) -> int:
    match size:
        case Fixed(nbytes=n):
            return n
        case Result():
            return max(result, 0)
        case ArgValue(arg=i, scale=k):
            return args[i] * k
        case ResultTimes(scale=k):
            return max(result, 0) * k
        case DerefAfter(arg=i, width=w):
            return read_int(args[i], w) if args[i] else 0
        case Min(a=a, b=b):
            return min(evaluate_size(a, args, result, read_int),
                       evaluate_size(b, args, result, read_int))
    raise TypeError(f"not a size rule: {size!r}")


def output_ranges(call: Syscall, args: tuple[int, ...], result: int,
                  read_int: ReadInt) -> list[tuple[int, int]]:
    """(address, length) of every tracee range the kernel wrote for this call."""
    failed = -4096 < result < 0
    ranges: list[tuple[int, int]] = []
    for out in call.outputs:
        if failed and not (isinstance(out, Out) and out.always):
            continue
        match out:
            case Out(arg=i, size=size):
                if args[i]:
                    n = evaluate_size(size, args, result, read_int)
                    if n > 0:
                        ranges.append((args[i], n))
            case IovecOut(arg=i, count_arg=c, limit=limit):
                left = evaluate_size(limit, args, result, read_int)
                for k in range(args[c]):
                    if left <= 0:
                        break
                    base = read_int(args[i] + 16 * k, 8)
                    length = read_int(args[i] + 16 * k + 8, 8)
                    n = min(length, left)
                    if n and base:
                        ranges.append((base, n))
                    left -= n
    return ranges
