"""Questions other parts ask of the catalogue, each answered from its entries alone.

The sets below replace the name sets the recorder and the replayer used to keep for
themselves (the scheduler's NEVER_BLOCKS, the replayer's EXECUTE_AS_IS, MAP_CHANGERS, ...):
a fact changes in one place, tracee.syscalls.catalogue. `may_block` decides for one call,
from its arguments where the entry says so, with the two questions about the process that
only the caller can answer (what a descriptor is, what a path names) passed in.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from tracee.syscalls.catalogue import CATALOGUE
from tracee.syscalls.commands import AT_FDCWD, O_CREAT, O_EXCL, O_NONBLOCK, O_PATH
from tracee.syscalls.rules import (SEMBUF_SIZE, ArgIs, Copy, Effect, Flow, OnFd, OnQueue,
                                   Record, Replay, SemOps, Syscall, WaitMask, arg_is)
from tracee.sysnums import NAME_OF


def entry(name: str) -> Syscall | None:
    """The catalogue's entry; None for a syscall relive does not know (refused at record)."""
    return CATALOGUE.get(name)


def names(test: Callable[[Syscall], bool]) -> frozenset[str]:
    return frozenset(name for name, call in CATALOGUE.items() if test(call))


def changing(effects: Effect) -> frozenset[str]:
    """The calls with any of these effects. Compared as ints: the & of two IntFlags costs
    ~3 us, which over the catalogue's entries was ~4 ms of every start-up."""
    mask = int(effects)
    return names(lambda c: int(c.effects) & mask != 0)


def numbers(of: frozenset[str]) -> frozenset[int]:
    """The x86-64 numbers of these syscalls."""
    return frozenset(nr for nr, name in NAME_OF.items() if name in of)


# -- recording -------------------------------------------------------------------------------
FAKE_ENOSYS = names(lambda c: c.record is Record.FAKE_ENOSYS)
BY_CODE = names(lambda c: c.record is Record.CODE)          # the recorder has code for them
NEVER_BLOCKS = names(lambda c: c.may_block is False)
# Calls the compiled record loop may take while other tasks are recorded: those that never
# wait, and those whose waiting commands it leaves to the Python path anyway (fcntl).
PLAIN_WHEN_SHARED = NEVER_BLOCKS | names(
    lambda c: isinstance(c.may_block, ArgIs) and not c.may_block.negate
    and c.plain_unless is not None
    and c.plain_unless.arg == c.may_block.arg and c.plain_unless.mask == c.may_block.mask
    and c.plain_unless.mask == 0xFFFF_FFFF    and c.may_block.values <= c.plain_unless.values)
FILE_WRITERS: dict[str, int] = {n: c.file_fd for n, c in CATALOGUE.items() if c.file_fd >= 0}
SHOWN = names(lambda c: c.shown)
CLOCK_READS = names(lambda c: c.clock)  # answered by the recorder at their seccomp stop
COPIERS: dict[str, Copy] = {n: c.copies for n, c in CATALOGUE.items() if c.copies is not None}

# -- replaying -------------------------------------------------------------------------------
NOT_EMULATED = names(lambda c: c.replay is not Replay.EMULATE)
RUN_BY_REPLAY = names(lambda c: c.replay in (Replay.EXECUTE, Replay.OWN_CODE))
IN_PLACE = names(lambda c: c.replay is Replay.IN_PLACE)

# -- what calls change and name --------------------------------------------------------------
MAP_CHANGERS = changing(Effect.MAPS)
CLONES = changing(Effect.NEW_TASK)
ENDS_TASK = changing(Effect.ENDS_TASK)
EXECS = names(lambda c: c.replay is Replay.EXEC)
OPENS: dict[str, int] = {n: c.path for n, c in CATALOGUE.items() if c.path >= 0}
CLOSES = changing(Effect.FD_CLOSE)
READS = names(lambda c: c.flow is Flow.IN)    # plain reads into one buffer
WRITES = names(lambda c: c.flow is Flow.OUT)  # plain writes from one buffer
FD_CHANGERS = changing(Effect.FD_CLOSE | Effect.FD_REPLACE | Effect.FD_TABLE
                       | Effect.FD_STATUS)
FD_CHANGER_NUMBERS = numbers(FD_CHANGERS)
WAIT_MASKS: dict[str, WaitMask] = {n: c.wait_mask for n, c in CATALOGUE.items()
                                   if c.wait_mask is not None}
# What the program sees of its CPU set (recorder.cpu_view): calls that show or set it, and
# the descriptor a call reads or duplicates (a /proc status file's lines are rewritten).
CPU_VIEW = names(lambda c: c.cpu_view)
READS_FD: dict[str, int] = {n: 0 for n in READS}
DUPS_FD: dict[str, int] = {n: c.dups_fd for n, c in CATALOGUE.items() if c.dups_fd >= 0}
# Calls after which a descriptor may be open on another file than before, or a file's
# descriptors may have to leave the syscall buffer's bitmap (recorder.sysbuf_fds): they make
# a descriptor (OPENS, DUPS_FD, fcntl's F_DUPFD), close or replace one (FD_CHANGERS), or map
# a file (MAP_CHANGERS).
DESCRIPTOR_CHANGERS = frozenset(OPENS) | frozenset(DUPS_FD) | FD_CHANGERS | MAP_CHANGERS


# -- may this call wait for another task? ----------------------------------------------------

class Process(Protocol):
    """What only the recorder can find out about the calling process."""

    def fd_waits(self, fd: int) -> bool:
        """May I/O on this descriptor wait (not O_NONBLOCK, not a regular file)?"""
        ...

    def queue_waits(self, fd: int) -> bool:
        """Is this open descriptor (a message queue's) not O_NONBLOCK?"""
        ...

    def read_memory(self, addr: int, size: int) -> bytes | None:
        """`size` bytes of the process's memory; None if they are not all readable."""
        ...

    def opening_waits(self, dirfd: int, path_addr: int) -> bool:
        """Does the path at this tracee address (relative to dirfd) name a FIFO or a device
        whose open may wait?"""
        ...


def int_arg(value: int) -> int:
    """An int argument (32 bits, signed) from its 64-bit register."""
    value &= 0xFFFF_FFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def may_block(call: Syscall, args: tuple[int, ...], process: Process) -> bool:
    """Can this call, with these arguments, wait for another task? When unsure: yes (the
    scheduler then lets others run, which costs a switch; the other answer can hang)."""
    rule = call.may_block
    if isinstance(rule, bool):
        return rule
    if isinstance(rule, ArgIs):
        return arg_is(rule, args)
    if isinstance(rule, OnFd):
        if rule.flags >= 0 and args[rule.flags] & rule.nowait:
            return False
        return any(process.fd_waits(int_arg(args[i])) for i in rule.fds)
    if isinstance(rule, OnQueue):
        return process.queue_waits(int_arg(args[rule.fd]))
    if isinstance(rule, SemOps):
        return _sem_ops_wait(rule, args, process)
    flags = args[rule.flags] if rule.flags >= 0 else rule.fixed_flags
    if flags & (O_NONBLOCK | O_PATH) or flags & (O_CREAT | O_EXCL) == O_CREAT | O_EXCL:
        return False  # (O_CREAT|O_EXCL makes a regular file or fails)
    dirfd = int_arg(args[rule.dirfd]) if rule.dirfd >= 0 else AT_FDCWD
    return process.opening_waits(dirfd, args[rule.path])


def _sem_ops_wait(rule: SemOps, args: tuple[int, ...], process: Process) -> bool:
    count = args[rule.number]
    if count > rule.most:
        return True
    ops = process.read_memory(args[rule.arg], SEMBUF_SIZE * count)
    if ops is None:
        return False  # EFAULT at once
    for k in range(0, len(ops), SEMBUF_SIZE):
        op = int.from_bytes(ops[k + 2:k + 4], "little", signed=True)
        flags = int.from_bytes(ops[k + 4:k + 6], "little")
        if op <= 0 and not flags & rule.nowait:
            return True
    return False


def changes_status(call: Syscall, args: tuple[int, ...]) -> bool:
    """Does this call set a descriptor's status flags (O_NONBLOCK), which every process
    sharing its open file description sees?"""
    return (bool(call.effects & Effect.FD_STATUS) and call.status_when is not None
            and arg_is(call.status_when, args))
