"""What one syscall did, as the trace must remember it: memory written, mappings changed.

Table-driven for the regular syscalls (the catalogue, tracee.syscalls), with code for the
irregular ones (record=CODE in the catalogue). Runs at
the syscall-exit stop; raises UnsupportedError for a call it cannot describe, so a recording
never silently lacks a write.
"""
from __future__ import annotations

import os
import stat
from typing import Any

from recorder.code_patches import CodePatcher
from recorder.sysbuf_record import SyscallBuffer
from recorder.errors import UnsupportedError
from tracee.address_space import PROT_EXEC, AddressSpace, Mapping, mapping_info
from tracee.remote import MAP_ANONYMOUS, MAP_SHARED
from tracee.syscalls import outputs, queries
from tracee.syscalls.commands import (Ioctl, SemCtl, fcntl_outputs, ioctl_outputs,
                                      keyctl_outputs, msgctl_outputs, semctl_outputs,
                                      shmctl_outputs)
from tracee.syscalls.queries import COPIERS, FILE_WRITERS, SHOWN
from tracee.syscalls.rules import SEM_VALUE, Output, Record, Syscall
from tracee.sysnums import name_of
from tracee.task import MemoryAccessError, Task
from tracefile.records import MemoryWrite
from tracefile.writer import TraceWriter

PAGE = 4096
DEV_NULL = os.makedev(1, 3)

# The catalogue's FILE_WRITERS write file contents through a descriptor: a privately mapped
# file that changes under the mapping shows the change in the pages nobody wrote, so those pages
# are re-recorded. Its SHOWN ones' bytes are shown again by replay when they went to relive's
# stdout or stderr, and its COPIERS move bytes without passing them through the caller's
# memory, so the recording keeps the bytes.


def page_up(n: int) -> int:
    return (n + PAGE - 1) & ~(PAGE - 1)


class Effects:
    """What one finished syscall did: the memory it wrote and what replay must know of it."""
    __slots__ = ("writes", "info")

    def __init__(self) -> None:
        self.writes: list[MemoryWrite] = []
        self.info: dict[str, Any] = {}


class EffectRecorder:
    """Turns a finished syscall into its writes and info, keeping the address space current."""

    def __init__(self, writer: TraceWriter, own_outputs: dict[int, tuple[int, int]]) -> None:
        self.writer = writer
        self.patcher = CodePatcher(writer)
        self.own_outputs = own_outputs  # recorder's fd -> (dev, ino) of its stdout/stderr
        # (dev, ino) -> ids of the copies of that file that were mapped (one per content)
        self.mapped_files: dict[tuple[int, int], set[str]] = {}
        self._watched: tuple[tuple[int, int], ...] | None = None
        self.sysbuf: SyscallBuffer | None = None  # patches libc's sites (the recorder's)

    def note_mapped_file(self, ident: tuple[int, int], file_id: str) -> None:
        """The file `ident` (dev, ino) was mapped; its copy in the trace is `file_id`."""
        ids = self.mapped_files.setdefault(ident, set())
        if file_id not in ids:
            ids.add(file_id)
            self._watched = None

    def watched_files(self) -> tuple[tuple[int, int], ...]:
        """The (dev, ino) of every file a write to which needs more than its result recorded:
        relive's own stdout and stderr, and the files ever mapped (the compiled loop leaves
        writes to these to the Python path)."""
        if self._watched is None:
            self._watched = tuple({*self.own_outputs.values(), *self.mapped_files})
        return self._watched

    def effects(self, task: Task, space: AddressSpace, nr: int, args: tuple[int, ...],
                result: int) -> Effects:
        name = name_of(nr)
        eff = Effects()
        failed = -4096 < result < 0
        read_int = task.mem.read_uint
        try:
            ranges = self._ranges(name, args, result, read_int)
        except MemoryAccessError as e:
            raise UnsupportedError(f"cannot read what {name} wrote: {e}") from None
        for addr, size in ranges:
            data = task.mem.read_upto(addr, size)
            if data:
                eff.writes.append(MemoryWrite(addr=addr, data=data))
        if not failed:
            handler = getattr(self, f"_on_{name}", None)
            if handler is not None:
                handler(task, space, args, result, eff)
            if name in FILE_WRITERS:
                self._file_written(task, space, args, name, result, eff)
        return eff

    def _ranges(self, name: str, args: tuple[int, ...], result: int,
                read_int: outputs.ReadInt) -> list[tuple[int, int]]:
        call = queries.entry(name)
        if call is None:
            raise UnsupportedError(f"syscall {name} is not supported by relive yet")
        if call.record is Record.TABLE:
            return outputs.output_ranges(call, args, result, read_int)
        failed = -4096 < result < 0
        if name == "ioctl":
            if args[1] & 0xFFFF_FFFF == Ioctl.SIOCGIFCONF:
                return outputs.ifconf_ranges(args[2], result, read_int)
            outs = ioctl_outputs(args[1])
            if outs is None:
                if failed:
                    return []
                raise UnsupportedError(f"ioctl request {args[1]:#x} on fd {args[0]} is not "
                                       "supported by relive yet")
            return outputs.output_ranges(Syscall(outputs=outs), args, result, read_int)
        if name == "semctl":
            return [] if failed else self._semctl_ranges(args, result, read_int)
        if name == "msgctl":
            return [] if failed else self._ctl_ranges("msgctl", msgctl_outputs(args), args[1],
                                                      args, result, read_int)
        if name == "shmctl":
            return [] if failed else self._ctl_ranges("shmctl", shmctl_outputs(args), args[1],
                                                      args, result, read_int)
        if name == "keyctl":
            return [] if failed else self._ctl_ranges("keyctl", keyctl_outputs(args), args[0],
                                                      args, result, read_int)
        if name == "fcntl":
            return outputs.output_ranges(Syscall(outputs=fcntl_outputs(args)), args, result,
                                         read_int)
        if name == "recvmsg":
            return [] if failed else outputs.msghdr_output_ranges(args[1], result, read_int)
        if name == "recvmmsg":
            return outputs.recvmmsg_output_ranges(args, result, read_int)
        if name == "sendmmsg":
            return outputs.sendmmsg_output_ranges(args, result)
        if name == "arch_prctl" and args[0] in (0x1003, 0x1004):  # ARCH_GET_FS / GET_GS
            return [] if failed else [(args[1], 8)]
        if name == "prctl":
            return [] if failed else self._prctl_ranges(args)
        return []  # the other irregular calls write nothing of the program's at their exit

    @staticmethod
    def _semctl_ranges(args: tuple[int, ...], result: int,
                       read_int: outputs.ReadInt) -> list[tuple[int, int]]:
        outs = semctl_outputs(args)
        if outs is None:
            raise UnsupportedError(f"semctl command {args[2] & 0xFFFF_FFFF} is not supported "
                                   "by relive yet")
        ranges = outputs.output_ranges(Syscall(outputs=outs), args, result, read_int)
        if args[2] & 0xFFFF_FFFF == SemCtl.GETALL and args[3]:
            ranges.append((args[3], SEM_VALUE * semaphores_in_set(args[0] & 0xFFFF_FFFF)))
        return ranges

    @staticmethod
    def _ctl_ranges(name: str, outs: tuple[Output, ...] | None, cmd: int,
                    args: tuple[int, ...], result: int,
                    read_int: outputs.ReadInt) -> list[tuple[int, int]]:
        """msgctl(id, cmd, buf), shmctl(id, cmd, buf), keyctl(cmd, ...): what the command
        writes."""
        if outs is None:
            raise UnsupportedError(f"{name} command {cmd & 0xFFFF_FFFF} is not supported "
                                   "by relive yet")
        return outputs.output_ranges(Syscall(outputs=outs), args, result, read_int)

    @staticmethod
    def _prctl_ranges(args: tuple[int, ...]) -> list[tuple[int, int]]:
        option = args[0]
        if option == 16:                      # PR_GET_NAME
            return [(args[1], 16)]
        if option in (2, 19, 25, 40):         # PR_GET_PDEATHSIG, _TIMING?, _TSC, _TID_ADDRESS
            return [(args[1], 8 if option == 40 else 4)]
        return []

    # -- address-space changes --------------------------------------------------------------
    def _on_mmap(self, task: Task, space: AddressSpace, args: tuple[int, ...], result: int,
                 eff: Effects) -> None:
        _, length, prot, flags, fd, offset = args
        path = file_id = None
        if not flags & MAP_ANONYMOUS:
            fd_path = f"/proc/{task.tid}/fd/{fd & 0xFFFFFFFF}"
            st = os.stat(fd_path)
            if stat.S_ISREG(st.st_mode):
                path = os.readlink(fd_path)
                if path.endswith(" (deleted)"):
                    path = path[:-len(" (deleted)")]
                # shared: its content now, which replay checks its own copy against
                file_id = self.writer.add_file(fd_path, name=path,
                                               fresh=bool(flags & MAP_SHARED))
                self.note_mapped_file((st.st_dev, st.st_ino), file_id)
            elif os.readlink(fd_path) != "/dev/zero":
                raise UnsupportedError(f"mmap of {os.readlink(fd_path)} (not a regular file) "
                                       "is not supported by relive")
        mapping = Mapping(start=result, end=result + page_up(length), prot=prot,
                          shared=bool(flags & MAP_SHARED), offset=offset,
                          path=path, file_id=file_id)
        space.map(mapping)
        eff.info["map"] = mapping_info(mapping)
        if prot & PROT_EXEC and (patched := self.patcher.patch(task, space, mapping.start,
                                                                mapping.end)):
            eff.info["rdrand"] = patched
        if prot & PROT_EXEC:
            self._patch_sites(task, space, mapping.start, mapping.end, eff)
        if file_id is not None and flags & MAP_SHARED:
            # which file it was (copies are named by content: two files may share one)
            eff.info["inode"] = "%d:%d" % (st.st_dev, st.st_ino)

    def _on_munmap(self, task: Task, space: AddressSpace, args: tuple[int, ...], result: int,
                   eff: Effects) -> None:
        space.unmap(args[0], args[0] + page_up(args[1]))

    def _on_mprotect(self, task: Task, space: AddressSpace, args: tuple[int, ...], result: int,
                     eff: Effects) -> None:
        space.protect(args[0], args[0] + page_up(args[1]), args[2])
        if args[2] & PROT_EXEC and (patched := self.patcher.patch(
                task, space, args[0], args[0] + page_up(args[1]))):
            eff.info["rdrand"] = patched
        if args[2] & PROT_EXEC:
            self._patch_sites(task, space, args[0], args[0] + page_up(args[1]), eff)

    def _patch_sites(self, task: Task, space: AddressSpace, lo: int, hi: int,
                     eff: Effects) -> None:
        """libc's syscall sites now jump to the in-process hook (recorder.sysbuf_record):
        replay maps the trampoline page (info "sysbuf") and writes what was written."""
        done = self.sysbuf.patch(task, space, lo, hi) if self.sysbuf is not None else None
        if done is not None:
            mapping, writes = done
            eff.info["sysbuf"] = mapping_info(mapping)
            eff.writes.extend(MemoryWrite(addr=a, data=d) for a, d in writes)

    def _on_mremap(self, task: Task, space: AddressSpace, args: tuple[int, ...], result: int,
                   eff: Effects) -> None:
        space.move(args[0], page_up(args[1]), result, page_up(args[2]))

    # -- file contents that mappings show ----------------------------------------------------
    def _file_written(self, task: Task, space: AddressSpace, args: tuple[int, ...], name: str,
                      result: int, eff: Effects) -> None:
        fd = args[FILE_WRITERS[name]]
        try:
            st = os.stat(f"/proc/{task.tid}/fd/{fd & 0xFFFFFFFF}")
        except OSError:
            return
        ident = (st.st_dev, st.st_ino)
        if name in SHOWN:
            out = self._output_stream(fd, ident)
            if out:
                eff.info["out"] = out
                if name in COPIERS:
                    eff.info["data"] = _copied_data(task.tid, name, args, result, st,
                                                    "stdout" if out == 1 else "stderr").hex()
        if not stat.S_ISREG(st.st_mode):
            return
        mapped = self.mapped_files.get(ident)
        if not mapped:
            return
        for m in space:
            if m.file_id in mapped:
                data = task.mem.read_upto(m.start, m.size)
                if data:
                    eff.writes.append(MemoryWrite(addr=m.start, data=data))

    def writes_own_output(self, tid: int, name: str, args: tuple[int, ...]) -> bool:
        """Is this a write to the file that is relive's stdout or stderr? The user sees
        those in the order they complete, so no other thread may run while one is made."""
        if name not in SHOWN:
            return False
        try:
            st = os.stat(f"/proc/{tid}/fd/{args[FILE_WRITERS[name]] & 0xFFFFFFFF}")
        except OSError:
            return False
        return (st.st_dev, st.st_ino) in self.own_outputs.values()

    def _output_stream(self, fd: int, ident: tuple[int, int]) -> int:
        """1 or 2 if the program wrote to the file that is relive's stdout or stderr (through
        any descriptor: `>&2`, a dup), else 0. When both are the same file (a terminal), the
        program's own fd number decides."""
        matches = [out for out, own in self.own_outputs.items() if own == ident]
        if not matches:
            return 0
        return fd if fd in matches else matches[0]


def semaphores_in_set(semid: int) -> int:
    """How many semaphores SysV set `semid` has (what semctl GETALL wrote one unsigned short
    for): from /proc/sysvipc/sem, which lists every set of relive's IPC namespace whatever
    its permissions. A set of another namespace (a program that unshared its own) is not
    there: refused."""
    try:
        with open("/proc/sysvipc/sem") as f:
            next(f, None)  # the header
            for line in f:
                fields = line.split()  # key semid perms nsems uid gid ...
                if len(fields) > 3 and fields[1] == str(semid):
                    return int(fields[3])
    except (OSError, ValueError):
        pass
    raise UnsupportedError(f"semctl GETALL on semaphore set {semid}, which relive cannot "
                           "find in /proc/sysvipc/sem (another IPC namespace?): not supported")


def _copied_data(tid: int, name: str, args: tuple[int, ...], result: int,
                 out_st: os.stat_result, stream: str) -> bytes:
    """The `result` bytes a copying call (COPIERS) just wrote to relive's stdout or stderr:
    read back from that file if it is a regular one, else re-read from the input file (none
    if it is /dev/null, where nobody saw them). A copy
    from a pipe or socket to a pipe or terminal leaves the bytes nowhere to read: refused."""
    in_arg, in_offset_arg, out_offset_arg = COPIERS[name]  # (a Copy)
    if stat.S_ISCHR(out_st.st_mode) and out_st.st_rdev == DEV_NULL:
        return b""  # (gone, unseen: grep -c drains its input so; replay shows nothing of it)
    try:
        if stat.S_ISREG(out_st.st_mode):
            out_offset = args[out_offset_arg] if out_offset_arg is not None else 0
            return _moved_bytes(tid, args[FILE_WRITERS[name]], out_offset, result)
        in_fd = args[in_arg] & 0xFFFFFFFF
        if in_offset_arg is not None and stat.S_ISREG(os.stat(f"/proc/{tid}/fd/{in_fd}").st_mode):
            return _moved_bytes(tid, in_fd, args[in_offset_arg], result)
    except OSError as e:
        raise UnsupportedError(f"cannot read what {name} wrote to relive's {stream}: {e}"
                               ) from None
    raise UnsupportedError(f"{name} from a pipe or socket to relive's {stream} (a pipe or "
                           f"terminal) is not supported by relive: redirect the program's "
                           f"{stream} to a file")


def _moved_bytes(tid: int, fd: int, offset_ptr: int, count: int) -> bytes:
    """The `count` bytes a call just moved through `fd` of thread `tid`, whose offset
    (*offset_ptr if not NULL, else the file position) the call advanced past them."""
    fd &= 0xFFFFFFFF
    if offset_ptr:
        with open(f"/proc/{tid}/mem", "rb") as mem:
            mem.seek(offset_ptr)
            end = int.from_bytes(mem.read(8), "little")
    else:
        with open(f"/proc/{tid}/fdinfo/{fd}") as info:
            end = next(int(line.split()[1]) for line in info if line.startswith("pos:"))
    readable = os.open(f"/proc/{tid}/fd/{fd}", os.O_RDONLY)
    try:
        return os.pread(readable, count, end - count)
    finally:
        os.close(readable)
