"""The CPUs the recorded program sees: the set it would have natively, not relive's pin.

relive runs itself and every tracee on one CPU (tracee.spawn.pin_to_one_cpu: a ptrace round
trip is several times dearer across CPUs). Natively the program would see every CPU it may
use, and runtimes size their thread pools from that (Go, the JVM, OpenMP, make -j$(nproc),
xz -T0, test runners). So each recorded thread has a *virtual* CPU set: at first the set
relive was allowed before it pinned itself, inherited by threads and children (clone, fork)
and kept across exec, changed by the program's own sched_setaffinity. What shows it is
rewritten to that set, and recorded as rewritten (replay returns the recorded bytes):
  - sched_getaffinity: the mask the kernel wrote is replaced;
  - sched_setaffinity on a recorded thread is answered, not run (the thread stays pinned):
    the new set is the mask within the CPUs the cpuset allows, EINVAL if none is left,
    EFAULT if the mask cannot be read, as the kernel would;
  - getcpu: a CPU of the set (the pinned one if it is in it, else the set's first);
  - /proc/PID/status and /proc/PID/task/TID/status: the Cpus_allowed and Cpus_allowed_list
    lines of what read or pread64 return. Opens of paths under /proc/ are looked at (the
    compiled loop leaves them to Python: fastpath), and the descriptors of status files are
    watched per process; a read of one is served from the rewritten text.
/proc/cpuinfo and /sys/devices/system/cpu/online (sysconf) do not depend on affinity.
rdtscp's TSC_AUX (the CPU number in ecx) is a CPU of the set too (recorder.signals).
Not covered: rdpid (the CPU number; cannot be trapped), the
"processor" field of /proc/PID/stat, status files opened relative to a directory fd.
"""
from __future__ import annotations

import ctypes
import os
import re
from typing import NamedTuple

from tracee.syscalls.queries import CPU_VIEW, DUPS_FD, OPENS, READS_FD
from tracee.task import MemoryAccessError, Task

EFAULT, EINVAL = 14, 22
MAX_MASK = 1024  # bytes: the kernel's largest cpumask (8192 CPUs)
NR_SCHED_GETAFFINITY = 204
_STATUS = re.compile(r"/proc/(\d+)/(?:task/(\d+)/)?status")


class View(NamedTuple):
    """What to do with a call at its entry: answer it with `answer` (not run), or, with
    None, run it and rewrite what it shows at its exit (`CpuView.on_exit`)."""
    answer: int | None


AT_EXIT = View(None)


def parse_list(text: str) -> frozenset[int]:
    """'0-3,8' -> {0, 1, 2, 3, 8} (the kernel's CPU list format)."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if part:
            lo, _, hi = part.partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
    return frozenset(cpus)


def format_list(cpus: frozenset[int]) -> str:
    """{0, 1, 2, 3, 8} -> '0-3,8'."""
    parts, run = [], list[int]()
    for cpu in sorted(cpus):
        if run and cpu != run[-1] + 1:
            parts.append(_run_text(run))
            run = []
        run.append(cpu)
    if run:
        parts.append(_run_text(run))
    return ",".join(parts)


def _run_text(run: list[int]) -> str:
    return str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}"


def mask_bytes(cpus: frozenset[int], size: int) -> bytes:
    return sum(1 << c for c in cpus if c < 8 * size).to_bytes(size, "little")


def format_mask(cpus: frozenset[int], like: str) -> str:
    """The hex mask in the kernel's format, as wide as `like` (the real line's value: its
    width depends only on the number of CPUs) with its commas in the same places."""
    digits = sum(ch != "," for ch in like)
    text = format(sum(1 << c for c in cpus), "x").rjust(digits, "0")[-digits:]
    out, k = [], 0
    for ch in like:
        if ch == ",":
            out.append(",")
        else:
            out.append(text[k])
            k += 1
    return "".join(out)


def rewrite_status(text: bytes, cpus: frozenset[int]) -> bytes:
    """A /proc/PID/status text with Cpus_allowed and Cpus_allowed_list showing `cpus`."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.startswith(b"Cpus_allowed:\t"):
            value = line[len(b"Cpus_allowed:\t"):].rstrip(b"\n").decode()
            lines[i] = f"Cpus_allowed:\t{format_mask(cpus, value)}\n".encode()
        elif line.startswith(b"Cpus_allowed_list:\t"):
            lines[i] = f"Cpus_allowed_list:\t{format_list(cpus)}\n".encode()
    return b"".join(lines)


def allowed_cpus() -> frozenset[int]:
    """The CPUs sched_setaffinity may grant: the online ones within the cgroup's cpuset."""
    online = _read_list("/sys/devices/system/cpu/online") or frozenset(os.sched_getaffinity(0))
    try:
        with open("/proc/self/cgroup") as f:
            path = next((ln.split(":", 2)[2].strip() for ln in f if ln.startswith("0::")), None)
    except OSError:
        path = None
    if path is not None:
        effective = _read_list(f"/sys/fs/cgroup{path}/cpuset.cpus.effective")
        if effective and effective & online:
            return effective & online
    return online


def _read_list(path: str) -> frozenset[int]:
    try:
        with open(path) as f:
            return parse_list(f.read())
    except (OSError, ValueError):
        return frozenset()


class StatusFile(NamedTuple):
    tid: int      # whose status it is
    path: str     # what /proc/PID/fd/N linked to when it was opened


class _Served:
    """A status text served rewritten: the rest of it, and the kernel's file position after
    the real read (reads while it is still there get the rest)."""
    __slots__ = ("rest", "pos", "text")

    def __init__(self, rest: bytes, pos: int, text: bytes) -> None:
        self.rest, self.pos, self.text = rest, pos, text


class CpuView:
    """Each recorded thread's virtual CPU set and the status files open in each process.
    Disabled (every call runs as it is) when relive does not pin (RELIVE_CPU=none)."""

    def __init__(self, native: frozenset[int], pinned: int | None) -> None:
        self.enabled = pinned is not None
        self.native = native
        self.pinned = pinned
        self.allowed = allowed_cpus() if self.enabled else native
        self.mask_size = _kernel_mask_size() if self.enabled else MAX_MASK
        self.masks: dict[int, frozenset[int]] = {}
        self.status_fds: dict[int, dict[int, StatusFile]] = {}   # pid -> fd -> file
        self._served: dict[tuple[int, int], _Served] = {}
        self._names = CPU_VIEW | frozenset(OPENS) | frozenset(READS_FD) | frozenset(DUPS_FD)

    # -- threads ------------------------------------------------------------------------------
    def add_task(self, tid: int, pid: int, parent: int | None, parent_pid: int | None) -> None:
        """A new thread: its set is its parent's (the native set for the first one); a new
        process gets a copy of its parent's open status files."""
        self.masks[tid] = self.masks.get(parent, self.native) if parent else self.native
        if parent_pid is not None and pid != parent_pid and parent_pid in self.status_fds:
            self.status_fds[pid] = dict(self.status_fds[parent_pid])

    def remove_task(self, tid: int) -> None:
        """(A process's status files are kept: its leader may end before its threads, and
        each descriptor is checked again at its next read anyway.)"""
        self.masks.pop(tid, None)

    def cpu_of(self, tid: int) -> int:
        """The CPU thread `tid` is shown to run on: relive's if in its set, else the set's
        first (getcpu, rdtscp)."""
        cpus = self.masks.get(tid, self.native)
        return self.pinned if self.pinned in cpus else min(cpus, default=0)

    def watched_fds(self, pid: int) -> tuple[int, ...]:
        """The descriptors of process `pid` a read of which the compiled loop leaves to
        Python (it may be a status file)."""
        fds = self.status_fds.get(pid)
        return tuple(sorted(fds)) if fds else ()

    # -- syscalls -----------------------------------------------------------------------------
    def on_entry(self, task: Task, name: str, args: tuple[int, ...]) -> View | None:
        """What to do with this call (None: nothing, it runs as it is)."""
        if not self.enabled or name not in self._names:
            return None
        if name == "sched_setaffinity":
            return self._set_affinity(task, args)
        if name in CPU_VIEW:
            return AT_EXIT
        if name in OPENS:
            path = args[OPENS[name]]
            try:
                return AT_EXIT if path and task.mem.read_upto(path, 6) == b"/proc/" else None
            except MemoryAccessError:
                return None
        if name in DUPS_FD:
            return AT_EXIT if self._status_of(task, args[DUPS_FD[name]] & 0xFFFF_FFFF) else None
        return self._read_entry(task, name, args)

    def on_exit(self, task: Task, name: str, args: tuple[int, ...], result: int) -> int:
        """Rewrite what the call showed; returns the result the program gets (set in rax)."""
        if -4096 < result < 0:
            return result
        if name == "sched_getaffinity":
            cpus = self.masks.get(args[0] or task.tid)
            if cpus is not None and result > 0:
                task.mem.write(args[2], mask_bytes(cpus, result))
        elif name == "getcpu":
            cpus = self.masks.get(task.tid, self.native)
            if args[0] and task.mem.read_uint(args[0], 4) not in cpus:
                task.mem.write(args[0], self.cpu_of(task.tid).to_bytes(4, "little"))
        elif name in OPENS or name in DUPS_FD:
            self._opened(task, result)
        else:
            result = self._read_exit(task, name, args, result)
            task.set_reg("rax", result)
        return result

    def _set_affinity(self, task: Task, args: tuple[int, ...]) -> View | None:
        target = args[0] & 0xFFFF_FFFF or task.tid
        if target not in self.masks:
            return None  # not a recorded thread: the kernel answers
        try:
            # (the kernel reads at most its own mask's size, and a shorter mask is enough)
            raw = task.mem.read(args[2], min(args[1], self.mask_size)) if args[1] else b""
        except MemoryAccessError:
            return View(-EFAULT)
        bits = int.from_bytes(raw, "little")
        wanted = frozenset(c for c in self.allowed if bits >> c & 1)
        if not wanted:
            return View(-EINVAL)
        self.masks[target] = wanted
        return View(0)

    # -- status files -------------------------------------------------------------------------
    def copies_made(self, task: Task) -> None:
        """Calls made without a stop (tracee.sysbuf: fcntl F_DUPFD) may have copied a status
        file's descriptor: look for the copies (only while one is open: rare)."""
        fds = self.status_fds.get(task.pid)
        if not fds:
            return
        try:
            numbers = [int(n) for n in os.listdir(f"/proc/{task.tid}/fd")]
        except (OSError, ValueError):
            return
        for fd in numbers:
            if fd not in fds:
                self._opened(task, fd)

    def _opened(self, task: Task, fd: int) -> None:
        try:
            path = os.readlink(f"/proc/{task.tid}/fd/{fd}")
        except OSError:
            return
        fds = self.status_fds.setdefault(task.pid, {})
        m = _STATUS.fullmatch(path)
        if m is None:
            fds.pop(fd, None)
            return
        fds[fd] = StatusFile(tid=int(m.group(2) or m.group(1)), path=path)
        self._served.pop((task.pid, fd), None)

    def _status_of(self, task: Task, fd: int) -> StatusFile | None:
        """The status file open as `fd`, if it still is (the compiled loop does not tell
        Python about close)."""
        fds = self.status_fds.get(task.pid)
        f = fds.get(fd) if fds else None
        if f is None:
            return None
        try:
            still = os.readlink(f"/proc/{task.tid}/fd/{fd}") == f.path
        except OSError:
            still = False
        if not still:
            del fds[fd]  # type: ignore[union-attr]
            self._served.pop((task.pid, fd), None)
            return None
        return f

    def _read_entry(self, task: Task, name: str, args: tuple[int, ...]) -> View | None:
        fd = args[0] & 0xFFFF_FFFF
        if self._status_of(task, fd) is None:
            return None
        served = self._served.get((task.pid, fd))
        count = args[2]
        if name == "pread64":
            if args[3] == 0 or served is None:
                return AT_EXIT
            chunk = served.text[args[3]:args[3] + count]
        else:
            pos = _position(task.tid, fd)
            if served is None or pos != served.pos:
                self._served.pop((task.pid, fd), None)
                # from the start (just opened, or seeked back): read for real, then rewrite
                return AT_EXIT if pos == 0 else None
            chunk, served.rest = served.rest[:count], served.rest[count:]
        if chunk and task.mem.write(args[1], chunk) != len(chunk):
            return View(-EFAULT)
        return View(len(chunk))

    def _read_exit(self, task: Task, name: str, args: tuple[int, ...], result: int) -> int:
        """The first read of a status text (from its start): rewrite what it returned."""
        fd, buf, count = args[0] & 0xFFFF_FFFF, args[1], args[2]
        f = self._status_of(task, fd)
        if f is None or result <= 0:
            return result
        offset = args[3] if name == "pread64" else None
        text = task.mem.read_upto(buf, result)
        if result >= count:  # not the whole text: the rest as relive reads it now
            text = _complete(text, _read_file(f"/proc/{f.tid}/status"))
            if f.tid == task.tid:  # its own status: it reads it running, not stopped
                text = text.replace(b"State:\tt (tracing stop)\n", b"State:\tR (running)\n")
        cpus = self.masks.get(f.tid)
        if cpus is None:
            return result
        text = rewrite_status(text, cpus)
        chunk = text[:count]
        task.mem.write(buf, chunk)
        pos = result if offset is None else -1
        self._served[(task.pid, fd)] = _Served(text[count:], pos, text)
        return len(chunk)


def _complete(head: bytes, full: bytes) -> bytes:
    """`head`, the start of a status text, completed from `full`, the whole text read a
    little later (by relive: its State line differs in length), line by line."""
    lines = full.split(b"\n")
    k = head.count(b"\n")
    if k >= len(lines):
        return head
    tail = len(head) - (head.rfind(b"\n") + 1)
    return head + b"\n".join([lines[k][tail:], *lines[k + 1:]])


def _kernel_mask_size() -> int:
    """The bytes of the kernel's cpumask (what sched_getaffinity returns)."""
    buf = ctypes.create_string_buffer(MAX_MASK)
    size = int(ctypes.CDLL(None).syscall(NR_SCHED_GETAFFINITY, 0, MAX_MASK, buf))
    return size if 0 < size <= MAX_MASK else MAX_MASK


def _position(tid: int, fd: int) -> int:
    try:
        with open(f"/proc/{tid}/fdinfo/{fd}") as f:
            return int(f.readline().split()[1])  # "pos:\t<n>"
    except (OSError, IndexError, ValueError):
        return -1


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""
