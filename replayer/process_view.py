"""What a debugger asks about the replayed processes beyond registers and memory: the loader's
library list (through the executable's DT_DEBUG entry), thread-local storage addresses, x87/SSE
registers decoded from the FXSAVE area, and (ProcessFacts) thread names and each process's
program image at any point of the trace. Reads tracee memory only; changes nothing.
"""
from __future__ import annotations

import os
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from replayer import registers
from replayer.errors import Refused
from replayer.tasks import CLONE_THREAD
from replayer.traps import is_clone
from tracee.syscalls import queries
from tracee.syscalls.rules import ARG_REGS
from tracee.sysnums import name_of
from tracee.task import Memory
from tracefile.records import Event, Kind

AT_PHDR, AT_PHNUM = 3, 5
PT_DYNAMIC, PT_PHDR = 2, 6
DT_NULL, DT_DEBUG = 0, 21
# offsetof(struct link_map, l_tls_modid) in glibc 2.36 (Debian 12); it changes rarely.
LINK_MAP_TLS_MODID = 1152


@dataclass(frozen=True, slots=True)
class Library:
    """One entry of the dynamic loader's link_map list."""

    name: str
    lm: int  # address of the struct link_map
    l_addr: int  # load bias
    l_ld: int  # address of the library's dynamic section


@dataclass(frozen=True, slots=True)
class Libraries:
    """The loader's library list and the executable's own link_map (None: not known yet)."""

    libraries: tuple[Library, ...] = ()
    main_lm: int | None = None


def libraries(mem: Memory, auxv_bytes: bytes) -> Libraries:
    """The loader's link_map list, found through the executable's DT_DEBUG entry."""
    auxv = dict(struct.iter_unpack("<QQ", auxv_bytes))
    phdr, phnum = auxv.get(AT_PHDR, 0), auxv.get(AT_PHNUM, 0)
    headers = [struct.unpack_from("<IIQQQQQQ", mem.read(phdr + 56 * i, 56))
               for i in range(phnum)]
    bias = next((phdr - h[3] for h in headers if h[0] == PT_PHDR), 0)
    dynamic = next((bias + h[3] for h in headers if h[0] == PT_DYNAMIC), 0)
    r_debug = 0
    for off in range(0, 16 * 512, 16):
        tag, value = struct.unpack("<QQ", mem.read(dynamic + off, 16))
        if tag == DT_NULL:
            break
        if tag == DT_DEBUG:
            r_debug = value
    if not r_debug:
        return Libraries()
    lm = mem.read_u64(r_debug + 8)
    main_lm, libs = lm, []
    for _ in range(4096):
        if not lm:
            break
        l_addr, l_name, l_ld, l_next = struct.unpack("<QQQQ", mem.read(lm, 32))
        name = mem.read_cstring(l_name).decode(errors="replace") if l_name else ""
        if lm != main_lm and name:
            libs.append(Library(name=name, lm=lm, l_addr=l_addr, l_ld=l_ld))
        lm = l_next
    return Libraries(tuple(libs), main_lm)


def tls_address(mem: Memory, fs_base: int, offset: int, lm: int) -> int:
    """Thread-local variable address: dtv[l_tls_modid].pointer + offset, the dtv being the
    second word of the thread control block at fs_base (x86-64 TLS ABI)."""
    modid = mem.read_u64(lm + LINK_MAP_TLS_MODID)
    if not 0 < modid < 1 << 16:
        raise Refused(f"cannot find the TLS module of link_map {lm:#x} (this glibc's "
                          "struct link_map layout is not known to relive)")
    dtv = mem.read_u64(fs_base + 8)
    block = mem.read_u64(dtv + 16 * modid)
    if block in (0, 0xFFFFFFFFFFFFFFFF):
        raise Refused("the thread's TLS block for that module is not allocated yet")
    return block + offset


def fp_registers(fx: bytes) -> dict[str, int]:
    """x87/SSE registers from the 512-byte FXSAVE image, named as gdb's target.xml."""
    cwd, swd, ftw, fop, rip, rdp, mxcsr = struct.unpack_from("<HHHHQQI", fx, 0)
    out = {"fctrl": cwd, "fstat": swd, "ftag": _full_tag(ftw, swd, fx), "fop": fop,
           "fioff": rip & 0xFFFFFFFF, "fiseg": (rip >> 32) & 0xFFFF,
           "fooff": rdp & 0xFFFFFFFF, "foseg": (rdp >> 32) & 0xFFFF, "mxcsr": mxcsr}
    for i in range(8):
        out[f"st{i}"] = int.from_bytes(fx[32 + 16 * i: 32 + 16 * i + 10], "little")
    for i in range(16):
        out[f"xmm{i}"] = int.from_bytes(fx[160 + 16 * i: 176 + 16 * i], "little")
    return out


def _full_tag(abridged: int, swd: int, fx: bytes) -> int:
    """FXSAVE keeps one bit per register; gdb shows the full two-bit tag word."""
    top = (swd >> 11) & 7
    tag = 0
    for phys in range(8):
        if not abridged & (1 << phys):
            t = 3  # empty
        else:
            st = (phys - top) & 7
            raw = fx[32 + 16 * st: 42 + 16 * st]
            exp = int.from_bytes(raw[8:10], "little") & 0x7FFF
            mant = int.from_bytes(raw[:8], "little")
            if exp == 0x7FFF:
                t = 2
            elif exp == 0:
                t = 1 if mant == 0 else 2
            else:
                t = 0 if mant >> 63 else 2
        tag |= t << (2 * phys)
    return tag


# -- thread names and program images -------------------------------------------------------------
COMM_LEN = 15  # TASK_COMM_LEN - 1
PR_SET_NAME, PR_GET_NAME = 15, 16
# Where thread names come from: prctl(PR_SET_NAME/PR_GET_NAME), and comm files opened,
# read, written and closed (the catalogue's plain reads and writes).
_FD_CALLS = queries.CLOSES | queries.READS | queries.WRITES
_NAMING = _FD_CALLS | frozenset(queries.OPENS) | {"prctl"}
_COMM_PATH = re.compile(rb"/proc/(self|thread-self|\d+)(?:/task/(\d+))?/comm")


@dataclass(frozen=True, slots=True)
class Image:
    """The program a process runs: what gdb reads its symbols and auxv from."""
    exe: str
    auxv: bytes


@dataclass(frozen=True, slots=True)
class _Fact:
    """What one event says: thread `tid` is now called `name` (and, for an exec, runs
    `image`), or (`parent` set) was created by `parent`, as a thread or a new process."""
    tid: int
    name: str | None = None
    image: Image | None = None
    parent: int | None = None
    thread: bool = False


def _comm(data: bytes) -> str:
    return data.split(b"\0", 1)[0][:COMM_LEN].decode(errors="replace")


class ProcessFacts:
    """Thread names (what `comm` would say) and program images at any position.

    Replay emulates prctl and writes to /proc/.../comm, so the kernel's comm of a replayed
    task is never the program's. Names are learned from events as they replay: an exec names
    the thread after the program (argv[0]'s base name, as the kernel does with the path
    run); a clone gives the new task its creator's name; prctl(PR_SET_NAME) (how
    pthread_setname_np names its own thread) takes the name from the program's memory at
    that moment; a write to a file opened as /proc/P/task/T/comm, /proc/P/comm or
    /proc/thread-self/comm (pthread_setname_np on another thread) takes the written bytes;
    and what the recording read back (prctl(PR_GET_NAME), a read of a comm file) is the
    name at that time. Each fact belongs to an event number, so nothing is undone when the
    replay goes back: the state at a position is the facts of the events before it.
    """

    def __init__(self, pid_of: Mapping[int, int]) -> None:
        self.pid_of = dict(pid_of)  # recorded tid -> recorded pid
        self._facts: dict[int, _Fact] = {}
        # (recorded pid, fd) -> [(seq, recorded tid whose comm it opened, or None)]
        self._fds: dict[tuple[int, int], list[tuple[int, int | None]]] = {}
        self._comm_users: set[int] = set()  # recorded pids that opened a comm file

    # -- learning ---------------------------------------------------------------------------
    def learn(self, ev: Event, mem: Memory | None) -> None:
        """Take note of what the just-replayed event `ev` says; `mem` is its process's memory
        (None once the task is gone)."""
        if ev.kind == Kind.EXEC:
            argv = ev.info.get("argv") or [ev.info.get("exe", "")]
            name = _comm(os.fsencode(os.path.basename(str(argv[0]))))  # bytes, as comm is
            image = Image(exe=str(ev.info.get("exe", "")), auxv=bytes.fromhex(ev.info["auxv"]))
            self._facts[ev.seq] = _Fact(ev.tid, name=name, image=image)
            return
        if ev.kind != Kind.SYSCALL:
            return
        if is_clone(ev):
            thread = bool(int(ev.info.get("flags", 0)) & CLONE_THREAD)
            self._facts[ev.seq] = _Fact(ev.result, parent=ev.tid, thread=thread)
            return
        name = name_of(ev.nr)
        if name not in _NAMING or ev.result < 0 or ev.result >= 1 << 63:
            return
        if name in _FD_CALLS and self.pid_of.get(ev.tid, ev.tid) not in self._comm_users:
            return  # (the common case, kept cheap: no comm file was ever opened)
        try:
            self._learn_syscall(ev, name, mem)
        except (OSError, UnicodeError):
            pass  # a name is a nicety: never let it break a replay

    def _learn_syscall(self, ev: Event, name: str, mem: Memory | None) -> None:
        args = registers.unpack(ev.regs)
        a0, a1 = args["rdi"], args["rsi"]
        pid = self.pid_of.get(ev.tid, ev.tid)
        if name == "prctl" and a0 == PR_SET_NAME and mem is not None:
            self._name(ev, ev.tid, _comm(mem.read_cstring(a1, 16)))
        elif name == "prctl" and a0 == PR_GET_NAME and ev.writes:
            self._name(ev, ev.tid, _comm(ev.writes[0].data))
        elif name in queries.OPENS and mem is not None:
            path = mem.read_cstring(args[ARG_REGS[queries.OPENS[name]]])
            tid = self._comm_of(ev, path)
            if tid is not None:
                self._comm_users.add(pid)
            if tid is not None or (pid, ev.result) in self._fds:
                self._fds.setdefault((pid, ev.result), []).append((ev.seq, tid))
        elif name in queries.CLOSES and (pid, a0) in self._fds:
            self._fds[(pid, a0)].append((ev.seq, None))
        elif name in queries.WRITES and mem is not None:
            tid = self._comm_fd(pid, a0, ev.seq)
            if tid is not None and ev.result > 0:
                self._name(ev, tid, _comm(mem.read_upto(a1, min(ev.result, COMM_LEN))))
        elif name in queries.READS and ev.writes:
            tid = self._comm_fd(pid, a0, ev.seq)
            if tid is not None:
                self._name(ev, tid, _comm(ev.writes[0].data.split(b"\n", 1)[0]))

    def _name(self, ev: Event, tid: int, name: str) -> None:
        self._facts[ev.seq] = _Fact(tid, name=name)

    def _comm_of(self, ev: Event, path: bytes) -> int | None:
        """The recorded tid whose name a path names, if it is a comm file."""
        m = _COMM_PATH.fullmatch(path)
        if m is None:
            return None
        who, task = m.group(1), m.group(2)
        if task is not None:
            return int(task)
        if who == b"thread-self":
            return ev.tid
        return self.pid_of.get(ev.tid, ev.tid) if who == b"self" else int(who)

    def _comm_fd(self, pid: int, fd: int, seq: int) -> int | None:
        opened = [t for s, t in self._fds.get((pid, fd), ()) if s < seq]
        return opened[-1] if opened else None

    # -- asking -----------------------------------------------------------------------------
    def _replay(self, position: int) -> tuple[dict[int, str], dict[int, Image]]:
        names: dict[int, str] = {}
        images: dict[int, Image] = {}
        for seq in sorted(s for s in self._facts if s < position):
            fact = self._facts[seq]
            pid = self.pid_of.get(fact.tid, fact.tid)
            if fact.parent is not None:
                names[fact.tid] = names.get(fact.parent, "")
                ppid = self.pid_of.get(fact.parent, fact.parent)
                if not fact.thread and ppid in images:
                    images[pid] = images[ppid]
            if fact.name is not None:
                names[fact.tid] = fact.name
            if fact.image is not None:
                images[pid] = fact.image
        return names, images

    def names_at(self, position: int) -> dict[int, str]:
        """Recorded tid -> thread name, after the events before `position`."""
        return self._replay(position)[0]

    def last_exec(self, pid: int, position: int) -> int | None:
        """The seq of the last EXEC event of process `pid` before `position` (its exec of a
        new program; the recording's first image is not one), if any."""
        return max((seq for seq, fact in self._facts.items()
                    if 0 < seq < position and fact.image is not None
                    and self.pid_of.get(fact.tid, fact.tid) == pid), default=None)

    def image_at(self, pid: int, position: int) -> Image | None:
        """The program recorded process `pid` runs after the events before `position`."""
        return self._replay(position)[1].get(pid)
