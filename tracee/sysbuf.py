"""The in-process syscall buffer: relive's version of rr's syscall buffer.

A recorded process gets, at every exec, two flagged mappings at fixed addresses beside the
relive page: HOOK_CODE (read+exec: the hook compiled from sysbuf_hook.c, then at TABLE_OFF the
table saying which syscall numbers the hook buffers and where their output goes, generated
from the catalogue's `buffered` entries) and HOOK_BUF (read+write: a header and the records,
then at FDS_OFF a bit per descriptor that is a regular file, which the recorder keeps up to
date, recorder.sysbuf_fds, and the hook clears when it closes one and sets when it opens a
regular file, then at WATCH_OFF the watched files' table the hook consults for that).
libc's `syscall; cmp $imm32,%rax` sites are patched to jump to the hook through trampolines
(tracee.syscall_sites). The hook makes a buffered call with its one untraced `syscall`
(UNTRACED_INSN, allowed by the seccomp filter: no ptrace stop) and keeps number, arguments,
result and a copy of the bytes the kernel wrote in a record; the recorder reads the records past its
cursor at the next ptrace stop (`Records.parse`) and writes them as BUFFERED events of the
thread that ran, before that stop's own event.

Replay maps the same bytes at the same address (they are in the EXEC event like any
anonymous mapping), so the hook runs there too: each BUFFERED event is a PTRACE_SYSEMU stop
at UNTRACED_INSN, checked by number and arguments; its result and the output are put in
place (where the kernel wrote them) and the hook copies them into its record as it did when
recorded.

The hook is built when the package is installed (setup.py: INSTALLED beside this module,
carrying the checksum of the sysbuf_hook.c it was built from, used only if that is the file
beside it and its addresses are this relive's); otherwise with gcc at first use (cached
like tracee.fastloop's build). Its layout constants are absolute `abi_*` symbols checked by
name against DECLARED here.
Shared by the recorder and the replayer; knows nothing of traces.
"""
from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path
from typing import NamedTuple

from tracee import sysbuf_build
from tracee.remote import RELIVE_AREA_SIZE, RELIVE_PAGE
from tracee.syscalls.catalogue import CATALOGUE
from tracee.syscalls.rules import (ArgIs, ArgValue, Effect, Fixed, Min, OnFile, OpensFile, Out,
                                   Result, WhenArg)
from tracee.sysnums import NAME_OF

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("sysbuf_hook.c")
INSTALLED = Path(__file__).with_name("_sysbuf_hook.o")  # setup.py's build
HOOK_CODE = RELIVE_PAGE + sysbuf_build.CODE_OFF  # beside the relive page (tracee.remote)
TABLE_OFF = 0x2000
CODE_SIZE = 0x6000
FDS_MAX = 0x8000
HOOK_BUF = RELIVE_PAGE + sysbuf_build.BUF_OFF
BUF_SIZE = 0xF0000  # 960 KiB (not a multiple of a scratch area: tests/test_scratch.py)
# The descriptor bitmap, a bit per descriptor below FDS_MAX, in the page after the records
# (HOOK_BUF's mapping is BUF_MAP long): the hook clears a bit when it closes a descriptor.
FDS_OFF = BUF_SIZE
FDS = HOOK_BUF + FDS_OFF
# The watched files' table (sysbuf_hook.c struct watch; recorder.sysbuf_fds keeps it): the
# pid whose descriptor table the bitmap is, a count, then (st_dev, st_ino) pairs.
WATCH_OFF = FDS_OFF + FDS_MAX // 8
WATCH = HOOK_BUF + WATCH_OFF
WATCH_MAX = 255
BUF_MAP = WATCH_OFF + 16 + WATCH_MAX * 16
MAX_OUT = 0x10000
HDR_SIZE = 64
REC_HEAD = 64
TABLE_NRS = 512
ENTRY_SIZE = 32
_ENTRY = struct.Struct("<BBBBBBBxIIIII4x")
NO_ARG = 0xFF
WAIT_PROBE = 1  # futex's entry flag: the hook probes its waits (tracee/sysbuf_hook.c)
FD_CLEAR = 2  # the entry's fd_arg must be a descriptor whose bit is clear (fcntl)
FD_FREES = 4  # the call frees fd_arg: the hook clears its bit first (close)
OPENS_FILE = 8  # an open the hook makes and whose bit it decides (openat: OpensFile)
PENDING = -(1 << 63)
DONE = 0x8000_0000
# Replay's feed (sysbuf_hook.c relive_hook_fed, replayer/sysbuf_feed.py): a control block
# in the code page (FEED_MAGIC says the hook has a replay mode, then the feed's address,
# which the replayer sets), and the feed: a mapping replay alone makes, left out of memory
# digests (tracee.digest) as the recording had none.
CTRL_OFF = 0x1FC0
FEED_MAGIC = b"RLVFEED1"
FEED = RELIVE_PAGE + 0x12_0000
FEED_SIZE = 0x10_0000
FEED_HEAD = 64
FEED_REC_HEAD = 88
if max(HOOK_BUF + BUF_MAP, FEED + FEED_SIZE) > RELIVE_PAGE + RELIVE_AREA_SIZE or (
        HOOK_BUF + BUF_MAP > FEED):
    # (memory digests leave that area out: tracee.digest)
    raise ImportError("the syscall buffer or the feed lies outside tracee.remote.RELIVE_AREA_SIZE")
DECLARED = {"HOOK_CODE": HOOK_CODE, "CODE_SIZE": CODE_SIZE, "TABLE_OFF": TABLE_OFF,
            "HOOK_BUF": HOOK_BUF, "BUF_SIZE": BUF_SIZE, "MAX_OUT": MAX_OUT,
            "HDR_SIZE": HDR_SIZE, "REC_HEAD": REC_HEAD, "TABLE_NRS": TABLE_NRS,
            "ENTRY_SIZE": ENTRY_SIZE, "NO_ARG": NO_ARG, "DONE": DONE, "CTRL_OFF": CTRL_OFF,
            "FEED_HEAD": FEED_HEAD, "FEED_REC_HEAD": FEED_REC_HEAD, "FDS_OFF": FDS_OFF,
            "FDS_MAX": FDS_MAX, "WAIT_PROBE": WAIT_PROBE, "FD_CLEAR": FD_CLEAR,
            "FD_FREES": FD_FREES, "BUF_MAP": BUF_MAP, "OPENS_FILE": OPENS_FILE,
            "WATCH_OFF": WATCH_OFF, "WATCH_MAX": WATCH_MAX}
_REC = struct.Struct("<II6Qq")


class Hook(NamedTuple):
    """The built hook: its code and where its entry points are."""
    code: bytes
    entry: int           # address of relive_hook_entry (the trampolines call it)
    untraced_insn: int   # address of the untraced `syscall`
    traced_insn: int     # address of the traced one
    source_crc: int = 0  # of the sysbuf_hook.c it was built from, if it says (setup.py)


class Record(NamedTuple):
    """One buffered syscall as the hook left it."""
    nr: int
    args: tuple[int, ...]
    result: int          # PENDING if the call was claimed but its result not stored yet
    done: bool           # its output copied into data (else: still where the kernel wrote it)
    data_addr: int       # where the kernel wrote its output (inside the record)
    data: bytes


def enabled() -> bool:
    """The buffer is on unless RELIVE_SYSCALLBUF says otherwise: =seccomp is the filter
    alone, =0 neither. gdb is shown libc's code and a thread in the hook or a trampoline at
    its libc site (replayer.sysbuf_view, replayer.sysbuf_frames)."""
    return os.environ.get("RELIVE_SYSCALLBUF", "1") == "1"


def buffered_names() -> frozenset[str]:
    return frozenset(n for n, c in CATALOGUE.items() if c.buffered)


def waits_probed() -> bool:
    """Futex waits that will not sleep are made by the hook too (after a buffered probe:
    tracee/sysbuf_hook.c futex_wait), unless RELIVE_SYSCALLBUF_WAITS=0. The choice is in the
    table, so a replay follows the recording's."""
    return os.environ.get("RELIVE_SYSCALLBUF_WAITS", "1") != "0"


def files_opened() -> bool:
    """Opens of regular files are made by the hook too (tracee/sysbuf_hook.c open_file),
    unless RELIVE_SYSCALLBUF_OPENS=0. The choice is in the table, so a replay follows the
    recording's."""
    return os.environ.get("RELIVE_SYSCALLBUF_OPENS", "1") != "0"


def table() -> bytes:
    """The hook's table (struct entry per syscall number), from the catalogue: a buffered
    call writes at most one output, a fixed-size struct or as many bytes as it returns (at
    most the argument after the buffer's: read, getdents64); a second output's pointer
    must be NULL for the call to be buffered (gettimeofday's timezone). `buffered` as an
    ArgIs: only for those commands (a bit each, 0-31, and at most one other value: fcntl's
    F_DUPFD_CLOEXEC, openat's O_DIRECTORY), for which its WhenArg outputs are none (futex:
    the wakes); an OnFile: only on a descriptor whose bit is set (read, write: regular
    files), or with regular=False only on one whose bit is clear (close, fcntl)."""
    out = bytearray(TABLE_NRS * ENTRY_SIZE)
    for nr, name in NAME_OF.items():
        call = CATALOGUE.get(name)
        if call is None or not call.buffered or nr >= TABLE_NRS:
            continue
        on_file = call.buffered if isinstance(call.buffered, OnFile) else None
        opens = call.buffered if isinstance(call.buffered, OpensFile) else None
        when = call.buffered if isinstance(call.buffered, ArgIs) else (
            on_file.when if on_file is not None else opens.dirs if opens is not None else None)
        fd_arg = on_file.arg if on_file is not None else NO_ARG
        extra = [v for v in when.values if not 0 <= v < 32] if when is not None else []
        if when is not None and (when.negate or len(extra) > 1 or any(
                not 0 < v < 1 << 32 for v in extra)):
            raise ValueError(f"catalogue: {name}'s buffered commands are not 0-31 and one "
                             "other (tracee.sysbuf)")
        outputs = [o for o in call.outputs if not (
            when is not None and isinstance(o, Out) and isinstance(o.size, WhenArg)
            and o.size.arg == when.arg and o.size.mask == when.mask
            and not o.size.values & when.values)]
        outs = [_capped(o) for o in outputs if isinstance(o, Out)]
        if len(outs) != len(outputs) or len(outs) > 2 or any(
                not isinstance(o.size, (Fixed, Result)) for o in outs[:1]):
            raise ValueError(f"catalogue: {name} is buffered but its outputs are not one "
                             "struct or result-sized buffer (tracee.sysbuf)")
        out_arg = outs[0].arg if outs else NO_ARG
        size = outs[0].size.nbytes if outs and isinstance(outs[0].size, Fixed) else 0
        cap_arg = out_arg + 1 if outs and isinstance(outs[0].size, Result) else NO_ARG
        null_arg = outs[1].arg if len(outs) == 2 else NO_ARG
        cmd_arg, cmd_mask, allowed = NO_ARG, 0, 0
        if when is not None:
            cmd_arg, cmd_mask = when.arg, when.mask
            allowed = sum(1 << v for v in when.values if 0 <= v < 32)
        flags = WAIT_PROBE if name == "futex" and waits_probed() else 0
        if on_file is not None and not on_file.regular:
            flags |= FD_CLEAR
        if call.effects & Effect.FD_CLOSE:  # (argument 0: close)
            fd_arg, flags = 0, flags | FD_FREES
        refused = 0
        if opens is not None and files_opened():
            flags, refused = flags | OPENS_FILE, opens.refused
        _ENTRY.pack_into(out, nr * ENTRY_SIZE, 1, out_arg, null_arg, cap_arg, cmd_arg, fd_arg,
                         flags, size, cmd_mask, allowed, extra[0] if extra else 0, refused)
    return bytes(out)


def _capped(out: Out) -> Out:
    """min(result, the next argument) bytes (getxattr, listxattr) is what the hook makes of
    a result-sized output anyway (at most the next argument's bytes)."""
    size = out.size
    if (isinstance(size, Min) and isinstance(size.a, Result)
            and size.b == ArgValue(out.arg + 1)):
        return out._replace(size=Result())
    return out


# -- the buffer -----------------------------------------------------------------------------
def parse(raw: bytes, start: int) -> tuple[list[Record], int]:
    """The records in `raw` (the buffer's bytes from offset `start` on); returns them and
    the offset after the last whole one. Bounded by the bytes given: a record whose size
    is not a multiple of 8, is shorter than its head or runs past them ends the list."""
    recs: list[Record] = []
    pos = 0
    while pos + REC_HEAD <= len(raw):
        size, nr, a0, a1, a2, a3, a4, a5, result = _REC.unpack_from(raw, pos)
        if size < REC_HEAD or size % 8 or pos + size > len(raw):
            break
        data_addr = HOOK_BUF + start + pos + REC_HEAD
        recs.append(Record(nr=nr & ~DONE, args=(a0, a1, a2, a3, a4, a5), result=result,
                           done=bool(nr & DONE), data_addr=data_addr,
                           data=raw[pos + REC_HEAD:pos + size]))
        pos += size
    return recs, start + pos


def output(nr: int, args: tuple[int, ...], result: int) -> tuple[int, int]:
    """Where a buffered call's output went and how many bytes (the first ones of its
    record's data are a copy): (0, 0) for none."""
    entry = _entries().get(nr)
    if entry is None or entry[0] == NO_ARG or not args[entry[0]] or -4096 < result < 0:
        return 0, 0
    out_arg, _, cap_arg, size = entry
    if cap_arg != NO_ARG:
        size = result if 0 < result <= min(args[cap_arg], MAX_OUT) else 0
    return args[out_arg], size


def entries() -> dict[int, tuple[int, int, int, int]]:
    """The table, by syscall number: (out_arg, null_arg, cap_arg, fixed size)."""
    return _entries()


def _entries() -> dict[int, tuple[int, int, int, int]]:
    global _ENTRIES
    if _ENTRIES is None:
        raw = table()
        _ENTRIES = {}
        for nr in range(TABLE_NRS):
            on, out_arg, null_arg, cap_arg, _, _, _, size, _, _, _, _ = _ENTRY.unpack_from(
                raw, nr * ENTRY_SIZE)
            if on:
                _ENTRIES[nr] = (out_arg, null_arg, cap_arg, size)
    return _ENTRIES


_ENTRIES: dict[int, tuple[int, int, int, int]] | None = None


# -- building the hook ------------------------------------------------------------------------
_hook: Hook | None = None
_why = "not built yet"
_origin = ""


def hook() -> Hook | None:
    """The built hook, or None (no gcc, a build that disagrees: said once)."""
    global _hook, _why, _origin
    if _hook is not None or _why != "not built yet":
        return _hook
    try:
        source = SOURCE.read_bytes()
        _hook = _installed(source)
        if _hook is None:
            target = _build(source)
            _hook = _from_object(target.read_bytes())
            _origin = f"built with gcc at first use: {target}"
        _why = ""
    except (OSError, ValueError) as e:
        _why = str(e)
        log.warning("relive: recording without the syscall buffer: %s", e)
    return _hook


def status() -> str:
    """For `relive doctor`: whether the buffer is on."""
    if not enabled():
        return "off (RELIVE_SYSCALLBUF=seccomp; unset or =1 turns it on)"
    h = hook()
    return (f"on (hook at {HOOK_CODE:#x}, {len(h.code)} bytes, {_origin}; buffers "
            f"{', '.join(sorted(buffered_names()))})" if h else f"off ({_why})")


def _installed(source: bytes) -> Hook | None:
    """The build made at install time, if it was made from `source` at these addresses."""
    global _origin
    try:
        obj = INSTALLED.read_bytes()
    except OSError:
        return None
    try:
        built = _from_object(obj)
    except ValueError as e:
        log.debug("%s not used: %s", INSTALLED, e)
        return None
    if built.source_crc != zlib.crc32(source):
        log.debug("%s was built from another sysbuf_hook.c: not used", INSTALLED)
        return None
    _origin = f"built when relive was installed: {INSTALLED}"
    return built


def _build(source: bytes) -> Path:
    from tracee.fastloop import _cache_dir, gcc_build
    cache = _cache_dir()
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    source += f"/* -DRELIVE_HOOK_CODE={HOOK_CODE:#x} -DRELIVE_HOOK_BUF={HOOK_BUF:#x} */".encode()
    target = cache / f"sysbuf-hook-{zlib.crc32(source):08x}-{len(source)}.o"
    built_from = target.with_suffix(".c")
    if target.exists() and built_from.exists() and built_from.read_bytes() == source:
        return target
    gcc_build(sysbuf_build.gcc_flags(RELIVE_PAGE), SOURCE, source, target, mode=0o600)
    return target


def _from_object(obj: bytes) -> Hook:
    """The .text of a relocatable ELF object and its symbols, checked self-contained (no
    relocations, nothing in another allocated section) and against DECLARED."""
    if obj[:5] != b"\x7fELF\x02":
        raise ValueError("the hook's build is not a 64-bit ELF object")
    shoff, = struct.unpack_from("<Q", obj, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", obj, 0x3A)
    secs = [struct.unpack_from("<IIQQQQIIQQ", obj, shoff + i * shentsize) for i in range(shnum)]
    names_off = secs[shstrndx][4]

    def name(off: int, base: int) -> str:
        return obj[base + off:obj.index(b"\0", base + off)].decode()

    text = sym = -1
    for i, (nm, typ, flags, _, off, size, link, _, _, _) in enumerate(secs):
        sname = name(nm, names_off)
        if typ in (4, 9):  # SHT_RELA, SHT_REL
            raise ValueError(f"the hook's build has relocations ({sname})")
        if sname == ".text":
            text = i
        elif typ == 2:
            sym = i
        elif flags & 2 and size:  # SHF_ALLOC
            raise ValueError(f"the hook's build has data ({sname})")
    if text < 0 or sym < 0:
        raise ValueError("the hook's build has no .text or no symbols")
    code = obj[secs[text][4]:secs[text][4] + secs[text][5]]
    symbols: dict[str, int] = {}
    _, _, _, _, off, size, link, _, _, entsize = secs[sym]
    for k in range(size // entsize):
        st_name, _, _, shndx, value, _ = struct.unpack_from("<IBBHQQ", obj, off + k * entsize)
        if st_name and shndx in (text, 0xFFF1):
            symbols[name(st_name, secs[link][4])] = value
    wrong = [f"{k} is {symbols.get('abi_' + k, 'missing')} in C, {v} in Python"
             for k, v in DECLARED.items() if symbols.get("abi_" + k) != v]
    if wrong:
        raise ValueError("the hook does not match relive's Python code: " + "; ".join(wrong))
    if len(code) > CTRL_OFF:
        raise ValueError(f"the hook's code ({len(code)} bytes) runs into its control block")
    try:
        return Hook(code=code, entry=HOOK_CODE + symbols["relive_hook_entry"],
                    untraced_insn=HOOK_CODE + symbols["relive_hook_untraced_insn"],
                    traced_insn=HOOK_CODE + symbols["relive_hook_traced_insn"],
                    source_crc=symbols.get("abi_SOURCE_CRC", 0))
    except KeyError as e:
        raise ValueError(f"the hook's build lacks the symbol {e}") from None


def code_page() -> bytes:
    """What HOOK_CODE holds: the code, the control block (the feed's magic, its address:
    0), the table; made once (every exec maps it)."""
    global _code_page
    if _code_page is None:
        h = hook()
        assert h is not None
        ctrl = (FEED_MAGIC + bytes(8)).ljust(TABLE_OFF - CTRL_OFF, b"\0")
        page = (h.code.ljust(CTRL_OFF, b"\xcc") + ctrl
                + table().ljust(CODE_SIZE - TABLE_OFF, b"\0"))
        zero = TABLE_OFF + TABLE_NRS * ENTRY_SIZE - 4
        assert page[zero:zero + 4] == bytes(4), "the hook's ZERO_WORD (the last entry's padding)"
        _code_page = page
    return _code_page


_code_page: bytes | None = None


def fd_word(fd: int) -> int:
    """The address of the bitmap's word holding descriptor `fd`'s bit (fd < FDS_MAX)."""
    return FDS + fd // 64 * 8
