"""The recorder's side of the in-process syscall buffer (tracee.sysbuf says what it is).

- At every exec the hook's two mappings are made (flagged SYSBUF; the EXEC event holds them
  like any anonymous mapping, so replay gets the same bytes).
- When libc's code is mapped executable, its sites jump to trampolines in a page near it
  (tracee.syscall_sites): the page and the patched bytes are the mmap event's writes, its
  info "sysbuf" the page's mapping, so replay maps and patches exactly the same.
- At every ptrace stop, before that stop's event, `take` reads the buffer past the cursor
  of the address space (one read of the header, one of the records) and returns the new
  records, which the recorder writes as BUFFERED events of the thread that ran. A record
  claimed but without its result: if the thread stopped right after the hook's `syscall`,
  its result is in rax; if before, the claim is left for the next stop (the call has not
  been made). The cursor goes with the address space: a fork child starts from its
  parent's, an exec starts a fresh buffer.

Only while the seccomp filter is in (`on`): otherwise the hook's `syscall` would stop too
and every buffered call would be recorded twice; sites are then never patched.
"""
from __future__ import annotations

import functools
import logging
import struct
from array import array
from collections.abc import Callable
import weakref
from typing import TYPE_CHECKING, NamedTuple

from recorder.sysbuf_fds import NR_CLOSE, NR_FCNTL, NR_OPENAT, closes_or_makes
from tracee import records, remote, sysbuf, syscall_sites
from tracee.address_space import PROT_EXEC, PROT_READ, PROT_WRITE, AddressSpace, Flag, Mapping
from tracee.task import MemoryAccessError
from tracefile.columnar import Columns
from tracefile.records import Kind

if TYPE_CHECKING:
    from tracee.task import Task
    from tracefile.writer import TraceWriter

log = logging.getLogger(__name__)
NOTE = "sysbuf-sites3"  # the file cache's name for site scans
BufferedCall = tuple[int, int, bytes, list[tuple[int, bytes]]]  # nr, result, regs, writes
ARGS = struct.Struct("<7Q")  # a BUFFERED event's "registers": the six arguments, then rip
_HEAD = struct.Struct("<II6Qq")  # a record's head (tracee/sysbuf_hook.c struct rec)


class Taken:
    """What `SyscallBuffer.take` took: runs of BUFFERED events, as calls or as columns."""

    def __init__(self, runs: list[list[BufferedCall] | Columns]) -> None:
        self.runs = runs
        self.count = sum(r.events if isinstance(r, Columns) else len(r) for r in runs)

    def __bool__(self) -> bool:
        return self.count > 0

    def segments(self) -> list[tuple[Kind, int, Callable[[], list[BufferedCall] | Columns]]]:
        """The runs as the trace writer's add_runs takes them."""
        return [(Kind.BUFFERED, r.events if isinstance(r, Columns) else len(r),
                 functools.partial(_itself, r)) for r in self.runs]

    def closes_or_makes(self) -> bool:
        """Does one of them close or make a descriptor (recorder.sysbuf_fds)?"""
        for run in self.runs:
            if isinstance(run, Columns):
                nrs = array("q", run.nrs)
                if NR_CLOSE in nrs or NR_OPENAT in nrs or NR_FCNTL in nrs and any(
                        closes_or_makes(nr, run.regs[ARGS.size * i:ARGS.size * (i + 1)])
                        for i, nr in enumerate(nrs) if nr == NR_FCNTL):
                    return True
            elif any(closes_or_makes(nr, args) for nr, _, args, _ in run):
                return True
        return False


def _itself(run: list[BufferedCall] | Columns) -> list[BufferedCall] | Columns:
    return run


class SyscallBuffer:
    def __init__(self, writer: TraceWriter) -> None:
        self.writer = writer
        self.hook = sysbuf.hook() if sysbuf.enabled() else None
        self.on = False
        self._cursor: weakref.WeakKeyDictionary[AddressSpace, int] = (
            weakref.WeakKeyDictionary())
        self._scans: dict[str, list[tuple[int, int]]] = {}
        self._plans = _Plans()
        self.taken = 0  # records written as events, for --log debug and tests
        # The last `take` ended with a call whose result was still in rax: the thread is
        # stopped right where that call returned (a signal delivered there is delivered
        # "after_syscall", as after a stopped call).
        self.at_return: tuple[int, int] | None = None

    def untraced(self) -> tuple[int, ...]:
        return (self.hook.untraced_insn,) if self.hook is not None else ()

    # -- the hook's mappings ----------------------------------------------------------------
    def map_hook(self, task: Task) -> None:
        """In a freshly exec'd task (relive page mapped): the hook's code and buffer."""
        if self.hook is None:
            return
        for addr, size, prot in ((sysbuf.HOOK_CODE, sysbuf.CODE_SIZE, PROT_READ | PROT_EXEC),
                                 (sysbuf.HOOK_BUF, sysbuf.BUF_MAP, PROT_READ | PROT_WRITE)):
            remote.mmap_in_tracee(task, addr, size, prot, remote.MAP_PRIVATE
                                  | remote.MAP_ANONYMOUS | remote.MAP_FIXED_NOREPLACE)
        task.mem.write(sysbuf.HOOK_CODE, sysbuf.code_page())

    @staticmethod
    def fresh(start: int) -> bool:
        """The buffer's mapping, just made by `map_hook`: all zeros, as replay maps it (an
        EXEC event need not read its 960 KiB nor keep them)."""
        return start == sysbuf.HOOK_BUF

    @staticmethod
    def flags_at(start: int) -> Flag:
        return Flag.SYSBUF if start in (sysbuf.HOOK_CODE, sysbuf.HOOK_BUF) else Flag.NONE

    def moved_to(self, space: AddressSpace, cursor: int) -> None:
        """The compiled loop wrote the records up to `cursor`."""
        self._cursor[space] = cursor

    def cursor(self, space: AddressSpace) -> int:
        """The buffer position up to which `space`'s records are written (the compiled
        record loop hands a stop back to Python when the buffer is past it)."""
        return self._cursor.get(space, 0)

    def forked(self, parent: AddressSpace, child: AddressSpace) -> None:
        """fork copied the buffer: the child goes on from the parent's cursor."""
        if parent in self._cursor:
            self._cursor[child] = self._cursor[parent]

    # -- flushing ---------------------------------------------------------------------------
    def take(self, task: Task, space: AddressSpace) -> Taken:
        """The records `task`'s address space made since the last call, as runs of
        (nr, result, registers, writes), or of columns (the whole, done records before any
        other, converted in compiled code: tracee.records); `task` is the thread that ran
        them (stopped, or its pending claim is left for later)."""
        self.at_return = None
        if not self.on or self.hook is None:
            return Taken([])
        try:
            pos = task.mem.read_u64(sysbuf.HOOK_BUF)
        except (MemoryAccessError, OSError):
            return Taken([])
        cursor = self._cursor.get(space, 0)
        if pos == cursor:
            return Taken([])
        gen, end = pos >> 32, pos & 0xFFFF_FFFF
        start = cursor & 0xFFFF_FFFF if gen == cursor >> 32 else sysbuf.HDR_SIZE
        start = max(start, sysbuf.HDR_SIZE)
        if not start <= end <= sysbuf.BUF_SIZE:
            log.warning("relive: the syscall buffer's position %#x is out of bounds", pos)
            self._cursor[space] = pos
            return Taken([])
        try:
            raw = task.mem.read(sysbuf.HOOK_BUF + start, end - start)
        except (MemoryAccessError, OSError):
            return Taken([])
        rip = self.hook.untraced_insn + 2  # as a syscall stop shows it
        runs: list[list[BufferedCall] | Columns] = []
        lib = records.load()
        whole = 0
        if lib is not None:
            fields, whole = records.buffered_columns(lib, raw, rip, len(raw), whole=True)
            columns = Columns(*fields)
            if columns.events:
                runs.append(columns)
                self.taken += columns.events
        taken_to = start + whole
        out: list[BufferedCall] = []
        recs, _ = sysbuf.parse(raw[whole:], start + whole) if whole < len(raw) else ([], 0)
        for rec in recs:
            result = rec.result
            if result == sysbuf.PENDING:
                in_rax = self._result_in_rax(task)
                if in_rax is None:
                    break  # not made yet: the next stop takes it
                result = in_rax
                self.at_return = (rip, result)
            addr, n = sysbuf.output(rec.nr, rec.args, result)
            if n > len(rec.data):
                log.warning("relive: a buffered %d record is shorter than its output", rec.nr)
                n = len(rec.data)
            data = rec.data[:n]
            if n and not rec.done:  # stopped in the hook before it copied the output: no
                try:                # program code ran since the call, so it is as written
                    _ = task.regs   # (only if the thread is stopped: it may be running)
                    data = task.mem.read(addr, n)
                except (MemoryAccessError, OSError):
                    break
            writes = [(addr, data)] if n else []
            out.append((rec.nr, result, ARGS.pack(*rec.args, rip), writes))
            taken_to = rec.data_addr - sysbuf.HOOK_BUF + len(rec.data)
        if out:
            runs.append(out)
        self._cursor[space] = (gen << 32) | taken_to
        self.taken += len(out)
        return Taken(runs)

    def _result_in_rax(self, task: Task) -> int | None:
        """A claimed record's result, if `task` is stopped right after the hook's untraced
        `syscall` (before the instruction that stores it)."""
        assert self.hook is not None
        try:
            regs = task.regs
        except OSError:
            return None
        if regs.rip == self.hook.untraced_insn + 2:
            return api_signed(regs.rax)
        return None

    # -- libc's sites -----------------------------------------------------------------------
    def patch(self, task: Task, space: AddressSpace, lo: int, hi: int
              ) -> tuple[Mapping, list[tuple[int, bytes]]] | None:
        """Patch the sites of libc code mapped within [lo, hi): the trampoline page made
        (its mapping, in `space`) and the writes replay must make (page, then sites)."""
        if not self.on or self.hook is None:
            return None
        # Read and written a run of adjacent pages holding sites at a time, not a site at a
        # time (~500 sites: 2 ms an exec), nor the whole code (its pages faulted in: 1 ms);
        # what depends only on libc's bytes and the distances is made once (`_Plans`).
        runs: list[tuple[int, int, bytes, Checked]] = []  # (base, rel. start, image, sites)
        for m in space.overlapping(lo, hi):
            if not (m.prot & PROT_EXEC and m.file_id and not m.shared
                    and syscall_sites.is_libc(m.path)):
                continue
            base = m.start - m.offset
            first, last = max(lo, m.start), min(hi, m.end)
            for rel_start, rel_stop, run in self._plans.layout(
                    m.file_id, self._sites(m.file_id), first - base, last - base):
                try:
                    image = task.mem.read(base + rel_start, rel_stop - rel_start)
                except MemoryAccessError:
                    continue
                checked = self._plans.check(m.file_id, rel_start, image, run)
                if checked.sites:  # (else patched already)
                    runs.append((base, rel_start, image, checked))
        if not runs:
            return None
        count = sum(len(c.sites) for _, _, _, c in runs)
        low = runs[0][0] + runs[0][3].sites[0][0]
        high = runs[-1][0] + runs[-1][3].sites[-1][0] + 8
        size = syscall_sites.page_size_for(count)
        maps = [(m.start, m.end) for m in remote_maps(task.pid)]
        page = syscall_sites.free_near(maps, low, high, size)
        if page is None:
            log.debug("no room for trampolines near %#x: libc's calls stay traced", low)
            return None
        got = remote.inject_syscall(task, remote.NR_MMAP, page, size, PROT_READ | PROT_EXEC,
                                    remote.MAP_PRIVATE | remote.MAP_ANONYMOUS
                                    | remote.MAP_FIXED_NOREPLACE, -1, 0)
        if got != page:
            log.debug("trampoline page at %#x refused (%d): libc's calls stay traced", page, got)
            return None
        mapping = Mapping(start=page, end=page + size, prot=PROT_READ | PROT_EXEC,
                          flags=Flag.SYSBUF)
        space.map(mapping)
        made = self._plans.made(page - low, [(base - low, rel, image, checked)
                                             for base, rel, image, checked in runs],
                                self.hook.entry)
        writes = [(page, made.trampolines)]
        task.mem.write(page, made.trampolines)
        for (base, rel_start, _, _), patched, jumps in zip(runs, made.images, made.jumps):
            if task.mem.write(base + rel_start, patched) == len(patched):
                # (replay makes them one by one: 8 bytes a site in the trace)
                writes += [(base + rel, jump) for rel, jump in jumps]
                continue
            for rel, jump in jumps:  # a page refused: site by site, as far as they go
                if task.mem.write(base + rel, jump) == len(jump):
                    writes.append((base + rel, jump))
        log.debug("%d syscall sites of libc jump to the hook (trampolines at %#x)",
                  len(writes) - 1, page)
        return mapping, writes

    def _sites(self, file_id: str) -> list[tuple[int, int]]:
        found = self._scans.get(file_id)
        if found is None:
            kept = self.writer.cached_note(NOTE, file_id)
            try:
                found = syscall_sites.from_json(kept) if kept is not None else None
            except ValueError:
                found = None
            if found is None:
                found = syscall_sites.scan(self.writer.copy_of(file_id))
                self.writer.keep_note(NOTE, file_id, syscall_sites.to_json(found))
            self._scans[file_id] = found
        return found


def _page_runs(sites: list[tuple[int, int]]) -> list[tuple[int, int, list[tuple[int, int]]]]:
    """Sites (address, length; sorted) grouped by runs of adjacent pages holding them:
    (first page, end of the last, the run's sites)."""
    runs: list[tuple[int, int, list[tuple[int, int]]]] = []
    for addr, length in sites:
        if runs and addr & ~4095 <= runs[-1][1]:
            runs[-1][2].append((addr, length))
            runs[-1] = (runs[-1][0], max(runs[-1][1], _page_up(addr + length)), runs[-1][2])
        else:
            runs.append((addr & ~4095, _page_up(addr + length), [(addr, length)]))
    return runs


class Checked(NamedTuple):
    """A run of libc's pages as read, and its sites that hold what a site must (offsets
    from libc's start, original bytes); `gen` names this content."""
    image: bytes
    sites: list[tuple[int, bytes]]
    gen: int


class Made(NamedTuple):
    trampolines: bytes
    images: list[bytes]                   # each run with its sites' jumps
    jumps: list[list[tuple[int, bytes]]]  # each run's (offset from libc's start, jump)


class _Plans:
    """What patching libc's sites computes from libc's bytes and distances alone, kept
    across execs (every program maps the same libc, its trampolines next to it): ~500 sites
    sorted, grouped, checked and turned into trampolines and jumps cost ~1.5 ms of Python an
    exec. Keyed by content and offsets, never by address; bounded."""

    def __init__(self) -> None:
        self._layouts: dict[tuple[str, int, int], list[tuple[int, int, list[tuple[int, int]]]]]
        self._layouts = {}
        self._checked: dict[tuple[str, int], Checked] = {}
        self._made: dict[tuple[int, tuple[tuple[int, int], ...]], Made] = {}
        self._gen = 0

    def layout(self, file_id: str, sites: list[tuple[int, int]], first: int, last: int
               ) -> list[tuple[int, int, list[tuple[int, int]]]]:
        """The page runs of `sites` (file offsets) within [first, last) of the file."""
        key = (file_id, first, last)
        runs = self._layouts.get(key)
        if runs is None:
            if len(self._layouts) >= 64:
                self._layouts.clear()
            runs = self._layouts[key] = _page_runs(
                sorted((a, n) for a, n in sites if first <= a and a + n <= last))
        return runs

    def check(self, file_id: str, start: int, image: bytes, run: list[tuple[int, int]]
              ) -> Checked:
        """The sites of a run (read as `image` from offset `start`) not patched yet."""
        key = (file_id, start)
        checked = self._checked.get(key)
        if checked is None or checked.image != image:
            if len(self._checked) >= 4096:
                self._checked.clear()
            here = [(a, image[a - start:a - start + n]) for a, n in run]
            self._gen += 1
            checked = self._checked[key] = Checked(
                image, [(a, code) for a, code in here if syscall_sites.matches(code)],
                self._gen)
        return checked

    def made(self, page: int, runs: list[tuple[int, int, bytes, Checked]], entry: int
             ) -> Made:
        """The trampolines and the patched runs; `page` and each run's libc start as
        distances from the first site, runs as (libc start, run start from it, image,
        checked)."""
        key = (page, tuple((base, checked.gen) for base, _, _, checked in runs))
        made = self._made.get(key)
        if made is None:
            if len(self._made) >= 16:
                self._made.clear()
            sites = [(base + a, code) for base, _, _, checked in runs
                     for a, code in checked.sites]
            tramp = syscall_sites.trampolines(page, sites, entry)
            images, jumps = [], []
            k = 0
            for base, start, image, checked in runs:
                patched = bytearray(image)
                run_jumps = []
                for a, code in checked.sites:
                    jump = syscall_sites.jump(base + a, syscall_sites.trampoline_at(page, k),
                                              len(code))
                    patched[a - start:a - start + len(jump)] = jump
                    run_jumps.append((a, jump))
                    k += 1
                images.append(bytes(patched))
                jumps.append(run_jumps)
            made = self._made[key] = Made(tramp, images, jumps)
        return made


def _page_up(addr: int) -> int:
    return (addr + 4095) & ~4095


def columns_from(chunk: bytes, addr: int) -> list[BufferedCall] | Columns:
    """`calls_from`, made in compiled code as the columns a trace chunk stores
    (tracefile.columnar): the writer adds them without a Python step per call."""
    lib = records.load()
    hook = sysbuf.hook()
    if lib is None or hook is None:
        return calls_from(chunk, addr)
    return Columns(*records.buffered_columns(lib, chunk, hook.untraced_insn + 2, len(chunk))[0])


def calls_from(chunk: bytes, addr: int) -> list[BufferedCall]:
    """The BUFFERED events of a run of whole records that was at `addr` in the buffer (the
    compiled loop took and counted it: tracee/fastloop.c sysbuf_take), as `take` makes
    them. On the trace writer's thread, once per buffered call: kept tight."""
    hook = sysbuf.hook()
    assert hook is not None
    rip = hook.untraced_insn + 2
    entries = sysbuf.entries()
    unpack, pack = _HEAD.unpack_from, ARGS.pack
    out: list[BufferedCall] = []
    pos, end = 0, len(chunk)
    while pos + sysbuf.REC_HEAD <= end:
        size, nr, a0, a1, a2, a3, a4, a5, result = unpack(chunk, pos)
        if size < sysbuf.REC_HEAD:
            break
        nr &= ~sysbuf.DONE
        writes: list[tuple[int, bytes]] = []
        entry = entries.get(nr)
        if entry is not None and entry[0] != sysbuf.NO_ARG and not -4096 < result < 0:
            args = (a0, a1, a2, a3, a4, a5)
            where = args[entry[0]]
            n = entry[3] if entry[2] == sysbuf.NO_ARG else (
                result if 0 < result <= min(args[entry[2]], sysbuf.MAX_OUT) else 0)
            n = min(n, size - sysbuf.REC_HEAD)
            if where and n:
                data_at = pos + sysbuf.REC_HEAD
                writes = [(where, chunk[data_at:data_at + n])]
        out.append((nr, result, pack(a0, a1, a2, a3, a4, a5, rip), writes))
        pos += size
    return out


def remote_maps(pid: int) -> list[Mapping]:
    from tracee.address_space import read_proc_maps
    return read_proc_maps(pid)


def api_signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value
