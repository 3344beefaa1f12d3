"""Where a syscall wrote tracee memory: the evaluator of the catalogue's size rules, and the
output helpers for the irregular calls whose writes the recorder works out in code (ioctl
SIOCGIFCONF, recvmsg, recvmmsg, sendmmsg).

Invariant: a range may cover more than the kernel wrote (those bytes are saved and written back
unchanged, which is harmless) but never less (a missed byte silently corrupts the replay). Where
the exact count is unknowable after the call (a socket address longer than the caller's buffer:
the kernel stores the full length), rules over-approximate, capped by the largest struct the
kernel can write; such a range may then end past the caller's buffer.
"""
from __future__ import annotations

from collections.abc import Callable

from tracee.syscalls.rules import (SOCKADDR_MAX, TIMESPEC, ArgCeil, ArgValue, DerefAfter,
                                   Fixed, IovecOut, Min, Out, Result, ResultTimes, Size,
                                   Sum, Syscall, WhenArg)

ReadInt = Callable[[int, int], int]  # (address, width) -> unsigned integer in tracee memory


def _failed(result: int) -> bool:
    return -4096 < result < 0


def evaluate_size(size: Size, args: tuple[int, ...], result: int, read_int: ReadInt) -> int:
    match size:
        case Fixed(nbytes=n):
            return n
        case Result():
            return max(result, 0)
        case ArgValue(arg=i, scale=k):
            return args[i] * k
        case ArgCeil(arg=i, per=per, scale=k):
            return -(-args[i] // per) * k
        case ResultTimes(scale=k):
            return max(result, 0) * k
        case DerefAfter(arg=i, width=w):
            return read_int(args[i], w) if args[i] else 0
        case Min(a=a, b=b):
            return min(evaluate_size(a, args, result, read_int),
                       evaluate_size(b, args, result, read_int))
        case Sum(a=a, b=b):
            return (evaluate_size(a, args, result, read_int)
                    + evaluate_size(b, args, result, read_int))
        case WhenArg(arg=i, values=values, then=then, mask=mask):
            if (args[i] & mask) in values:
                return evaluate_size(then, args, result, read_int)
            return 0
    raise TypeError(f"not a size rule: {size!r}")


def iovec_ranges(iov: int, count: int, limit: int,
                 read_int: ReadInt) -> list[tuple[int, int]]:
    """The buffers of an iovec array filled in order with `limit` bytes."""
    ranges: list[tuple[int, int]] = []
    for k in range(count):
        if limit <= 0:
            break
        base = read_int(iov + 16 * k, 8)
        length = read_int(iov + 16 * k + 8, 8)
        n = min(length, limit)
        if n and base:
            ranges.append((base, n))
        limit -= n
    return ranges


def output_ranges(call: Syscall, args: tuple[int, ...], result: int,
                  read_int: ReadInt) -> list[tuple[int, int]]:
    """(address, length) of every tracee range the kernel wrote for this call."""
    failed = _failed(result)
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
                ranges += iovec_ranges(args[i], args[c], left, read_int)
    return ranges


# ---- irregular calls: data for the recorder's code ----------------------------------------

# struct ifconf: int ifc_len, then (after 4 bytes of padding) the buffer's address.
IFCONF_LEN, IFCONF_BUF = 0, 8


def ifconf_ranges(ifconf: int, result: int, read_int: ReadInt) -> list[tuple[int, int]]:
    """ioctl(fd, SIOCGIFCONF, &ifconf): the kernel stores in ifc_len the bytes of struct
    ifreq it wrote at ifc_buf (or, with a NULL buffer, the bytes it would write). Read after
    the call."""
    if _failed(result) or not ifconf:
        return []
    ranges = [(ifconf + IFCONF_LEN, 4)]
    buf, used = read_int(ifconf + IFCONF_BUF, 8), read_int(ifconf + IFCONF_LEN, 4)
    if buf and 0 < used < 1 << 31:
        ranges.append((buf, used))
    return ranges


# struct msghdr (56 bytes) and struct mmsghdr (msghdr + unsigned msg_len, 64 bytes).
MSG_NAME, MSG_NAMELEN, MSG_IOV, MSG_IOVLEN = 0, 8, 16, 24
MSG_CONTROL, MSG_CONTROLLEN, MSG_FLAGS = 32, 40, 48
MMSGHDR_SIZE, MMSG_LEN = 64, 56


def msghdr_output_ranges(msg_addr: int, result: int,
                         read_int: ReadInt) -> list[tuple[int, int]]:
    """What recvmsg wrote for the msghdr at `msg_addr`, `result` being the bytes received.

    Must run after the call: the kernel replaced msg_namelen with the address length and
    msg_controllen with the control bytes it wrote. On failure nothing is written.
    """
    if _failed(result):
        return []
    ranges = [(msg_addr + MSG_NAMELEN, 4), (msg_addr + MSG_CONTROLLEN, 8),
              (msg_addr + MSG_FLAGS, 4)]
    name = read_int(msg_addr + MSG_NAME, 8)
    namelen = min(read_int(msg_addr + MSG_NAMELEN, 4), SOCKADDR_MAX.nbytes)
    if name and namelen:
        ranges.append((name, namelen))
    ranges += iovec_ranges(read_int(msg_addr + MSG_IOV, 8), read_int(msg_addr + MSG_IOVLEN, 8),
                           result, read_int)
    control = read_int(msg_addr + MSG_CONTROL, 8)
    controllen = read_int(msg_addr + MSG_CONTROLLEN, 8)
    if control and controllen:
        ranges.append((control, controllen))
    return ranges


def recvmmsg_output_ranges(args: tuple[int, ...], result: int,
                           read_int: ReadInt) -> list[tuple[int, int]]:
    """recvmmsg(fd, msgvec, vlen, flags, timeout): `result` messages, each with its msg_len,
    and the time left in *timeout."""
    if _failed(result) or result == 0:
        return []
    ranges: list[tuple[int, int]] = []
    for k in range(result):
        entry = args[1] + MMSGHDR_SIZE * k
        received = read_int(entry + MMSG_LEN, 4)
        ranges += msghdr_output_ranges(entry, received, read_int)
        ranges.append((entry + MMSG_LEN, 4))
    if args[4]:
        ranges.append((args[4], TIMESPEC.nbytes))
    return ranges


def sendmmsg_output_ranges(args: tuple[int, ...], result: int) -> list[tuple[int, int]]:
    """sendmmsg(fd, msgvec, vlen, flags) stores msg_len in each of the `result` messages sent."""
    if _failed(result):
        return []
    return [(args[1] + MMSGHDR_SIZE * k + MMSG_LEN, 4) for k in range(result)]
