"""How replay treats each recorded syscall.

Everything is emulated (PTRACE_SYSEMU skips it; the recorded result and memory are put in
place) except what changes the address space or the kernel's signal state, which runs for real
inside the tracee with the recorded outcome enforced: mmap at the recorded address from the
trace's file copy, munmap/mprotect/mremap/madvise, brk (emulated with anonymous mappings, since
the replay kernel's heap is elsewhere), arch_prctl, rt_sigaction/sigprocmask/sigaltstack.
rt_sigreturn, exit and exit_group run in place; execve is replayed by exec + rebuild.
"""
from __future__ import annotations

import os
import shutil
import tempfile

from tracee import rdrand, remote
from tracee.address_space import AddressSpace, Mapping, mapping_from_info
from tracee.remote import MAP_ANONYMOUS, MAP_FIXED, MAP_SHARED, inject_syscall
from tracee.syscalls.queries import IN_PLACE, RUN_BY_REPLAY
from tracee.sysnums import name_of, nr
from tracee.task import Task
from tracefile import sparse
from tracefile.reader import TraceReader
from tracefile.records import Event

from replayer.errors import ReplayDivergence
from replayer.rebuild import clear_of_relive, map_anonymous, map_file, map_shared_copy

PAGE = 4096
MREMAP_MAYMOVE, MREMAP_FIXED = 1, 2
MAP_FIXED_NOREPLACE = 0x100000
MAP_LOCKED = 0x2000
ARCH_SET_GS, ARCH_SET_FS = 0x1001, 0x1002
ARCH_REQ_XCOMP_PERM, ARCH_REQ_XCOMP_GUEST_PERM = 0x1023, 0x1025  # (AMX tile data)

# The catalogue says which calls run for real with the same arguments, the result checked
# (EXECUTED), which run where the program made them (IN_PLACE: they change registers or end
# the task), and which this module's code runs (RUN_BY_REPLAY: EXECUTED and mmap & co.).


def page_up(n: int) -> int:
    return (n + PAGE - 1) & ~(PAGE - 1)


def args_of(regs: object) -> tuple[int, ...]:
    return tuple(getattr(regs, r) for r in ("rdi", "rsi", "rdx", "r10", "r8", "r9"))


class ProcessState:
    """What replay tracks about one replayed process beyond the kernel's view."""
    __slots__ = ("space", "brk", "patched", "feed", "feed_armed")

    def __init__(self, *, space: AddressSpace, brk: int | None = None,
                 patched: dict[int, bytes] | None = None, feed: bool = False,
                 feed_armed: bool = False) -> None:
        self.space = space
        self.brk = brk
        # address -> original bytes of each rdrand/rdseed patched out (tracee.rdrand)
        self.patched = patched if patched is not None else {}
        # The syscall buffer's hook can take a feed, and is pointed at it (replayer.sysbuf_feed)
        self.feed = feed
        self.feed_armed = feed_armed

    def copy(self) -> ProcessState:
        return ProcessState(space=self.space.copy(), brk=self.brk, patched=dict(self.patched),
                            feed=self.feed, feed_armed=self.feed_armed)

    def patch_code(self, task: Task, event: Event) -> None:
        """Patch the rdrand/rdseed sites the recorder patched at this event (its info
        "rdrand": [address, original bytes (hex)] pairs), if any."""
        for addr, code in event.info.get("rdrand", ()):
            original = bytes.fromhex(code)
            if task.mem.write(addr, rdrand.patched_code(len(original))) != len(original):
                raise ReplayDivergence(event=event.seq, tid=event.tid,
                                       what=f"cannot patch the {original.hex()} (rdrand or "
                                            f"rdseed) at {addr:#x}: not mapped in replay")
            self.patched[addr] = original


class SyscallReplayer:
    def __init__(self, reader: TraceReader) -> None:
        self.reader = reader
        self._shared_dir: str | None = None
        self._shared: dict[str, str] = {}

    def _shared_copy(self, key: str, file_id: str) -> str:
        """A file the replay maps MAP_SHARED: a private, writable copy of the trace's copy
        (never the trace's own file), one per recorded file (`key`: its device and inode),
        so processes that shared the mapping when recorded (across fork) share it here.

        The recording holds the file's content at each such mmap (`file_id`). If the copy
        here differs, the file changed between mappings by other means (truncated, written,
        deleted and made again under the same inode number): the copy takes that content,
        in place, as the file did."""
        source = self.reader.file_path(file_id)
        path = self._shared.get(key)
        if path is None:
            if self._shared_dir is None:
                self._shared_dir = tempfile.mkdtemp(prefix="relive-shared-")
            path = os.path.join(self._shared_dir, key.replace(":", "-"))
            with open(source, "rb") as src, open(path, "wb") as dst:
                os.fchmod(dst.fileno(), 0o600)
                sparse.copy(src.fileno(), dst.fileno())  # holes stay holes
            self._shared[key] = path
        else:
            with open(source, "rb") as src, open(path, "r+b") as dst:
                if not sparse.same_content(src.fileno(), dst.fileno()):
                    dst.truncate(0)
                    sparse.copy(src.fileno(), dst.fileno())
        return path

    def close(self) -> None:
        if self._shared_dir is not None:
            shutil.rmtree(self._shared_dir, ignore_errors=True)
            self._shared_dir = None
            self._shared.clear()

    def kind(self, name: str) -> str:
        if name in IN_PLACE:
            return "in_place"
        if name in RUN_BY_REPLAY:
            return "execute"
        return "emulate"

    def execute(self, task: Task, proc: ProcessState, event: Event) -> None:
        """Run an address-space syscall for real at the recorded addresses; check the result."""
        name = name_of(event.nr)
        args = args_of(task.regs)
        result = event.result
        failed = -4096 < result < 0
        if name == "brk":
            self._brk(task, proc, result)
            got = result
        elif failed:
            got = result  # a call that failed in the recording changed nothing: emulate it
        elif name == "arch_prctl":
            got = self._arch_prctl(task, args, result)
        elif name == "mmap":
            got = self._mmap(task, proc, event, args)
        elif name == "mremap":
            got = self._mremap(task, proc, args, result)
        else:
            got = inject_syscall(task, event.nr, *args)
            self._track(proc, name, args)
        if got != result:
            raise ReplayDivergence(event=event.seq, tid=event.tid,
                                   what=f"{name} returned {got:#x} in replay, "
                                        f"{result:#x} when recorded")
        proc.patch_code(task, event)
        if "sysbuf" in event.info and not failed:  # the trampolines of libc's patched sites
            m = mapping_from_info(event.info["sysbuf"])  # (tracee.syscall_sites); the
            map_anonymous(task, m)                       # event's writes fill it
            proc.space.map(m)

    def _mmap(self, task: Task, proc: ProcessState, event: Event, args: tuple[int, ...]) -> int:
        m = mapping_from_info(event.info["map"])
        flags = args[3] & ~(MAP_FIXED_NOREPLACE | MAP_LOCKED)
        if m.file_id and flags & MAP_SHARED:
            key = event.info.get("inode", m.file_id)
            map_shared_copy(task, self._shared_copy(key, m.file_id), m)
        elif m.file_id:
            map_file(task, self.reader, m, flags & ~(MAP_SHARED | 0x3))
        else:
            extra = flags & ~(MAP_SHARED | 0x3 | MAP_ANONYMOUS | MAP_FIXED)
            map_anonymous(task, m, extra & ~0x100)
        proc.space.map(m)
        return m.start

    @staticmethod
    def _arch_prctl(task: Task, args: tuple[int, ...], result: int) -> int:
        """Set the segment bases directly: an injected arch_prctl would be undone when the
        task's saved registers are restored. A permission for an extended state component
        (AMX's tile data: oneDNN, PyTorch) is the process's, not a register: ask the kernel
        for it as the program did, or the first tile instruction dies with SIGILL."""
        if args[0] == ARCH_SET_FS:
            task.set_reg("fs_base", args[1])
        elif args[0] == ARCH_SET_GS:
            task.set_reg("gs_base", args[1])
        elif args[0] in (ARCH_REQ_XCOMP_PERM, ARCH_REQ_XCOMP_GUEST_PERM):
            return inject_syscall(task, nr("arch_prctl"), *args)
        return result

    def _mremap(self, task: Task, proc: ProcessState, args: tuple[int, ...], result: int) -> int:
        old, old_size, new_size, flags = args[:4]
        if result != old:
            flags |= MREMAP_MAYMOVE | MREMAP_FIXED
        clear_of_relive(result, result + page_up(new_size))
        got = inject_syscall(task, nr("mremap"), old, old_size, new_size, flags, result)
        if got == result:
            proc.space.move(old, page_up(old_size), result, page_up(new_size))
        return got

    def _brk(self, task: Task, proc: ProcessState, result: int) -> None:
        """The recorded heap break moved to `result`: map or unmap the pages in between."""
        if proc.brk is None:
            proc.brk = result
            return
        old, new = page_up(proc.brk), page_up(result)
        if new > old:
            m = Mapping(start=old, end=new, prot=3, path="[heap]")
            map_anonymous(task, m)
            proc.space.map(m)
        elif new < old:
            inject_syscall(task, remote.NR_MUNMAP, new, old - new)
            proc.space.unmap(new, old)
        proc.brk = result

    @staticmethod
    def _track(proc: ProcessState, name: str, args: tuple[int, ...]) -> None:
        if name == "munmap":
            proc.space.unmap(args[0], args[0] + page_up(args[1]))
        elif name == "mprotect":
            proc.space.protect(args[0], args[0] + page_up(args[1]), args[2])
