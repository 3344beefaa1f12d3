"""The compiled inner loops (fastloop.c), loaded with ctypes.

Where the library comes from, first found first:
  1. the build made when the package was installed (setup.py builds tracee/_fastloop*.so,
     an optional extension: an install without a compiler still succeeds), used only if it
     was built from the fastloop.c beside it (its `relive_source_crc()`);
  2. a build made with gcc at first use, cached in $XDG_CACHE_HOME/relive (~/.cache/relive;
     a 0700 directory), named by a checksum of the source and kept with a copy of that
     source, which must match byte for byte: an edited source is rebuilt and two relive
     versions never share a build (a checksum and a comparison, not hashlib: importing
     hashlib costs every start-up ~5 ms);
  3. none: one line says why and `load()` returns None; callers then use the pure-Python
     paths, which do the same thing more slowly. `status()` says which, for `relive doctor`.
RELIVE_FASTPATH=0 disables the compiled loops (tests compare both paths this way).

The C side lists its constants and struct layouts by name (`relive_interface`); the Python
declarations of them (here, and the record/replay structs in recorder.fastpath and
replayer.fastpath) are checked against that list (`agrees`), so a copy that drifts turns the
compiled path off with a warning instead of being misread.

ctypes releases the GIL during a call; a signal arriving meanwhile (the recorder's SIGALRM
timeslice timer, Ctrl-C) interrupts the loop's waitpid (EINTR): the loop returns and the
Python handler runs then.
"""
from __future__ import annotations

import ctypes
import importlib.machinery
import logging
import os
import struct
import zlib
from pathlib import Path

from tracee import sysbuf
from tracee.ptrace_api import REGS_SIZE

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("fastloop.c")
INSTALLED_NAME = "_fastloop"  # setup.py's extension tracee._fastloop

# Why a loop returned (fastloop.c R_*).
STOP, EINTR, PARKED, ERROR, MATCH, SYSBUF = 1, 2, 3, 4, 5, 6
OUT_WORDS = 7
# Output size kinds of the record spec table (fastloop.c SIZE_*).
SIZE_FIXED, SIZE_RESULT, SIZE_ARG = 1, 2, 3
MAX_OUTS = 3
MAX_EXCEPT = 8
SPEC_HEAD = 4 + MAX_EXCEPT  # (fastloop.c SPEC_PATH is its last word)
SPEC_WORDS = SPEC_HEAD + 4 * MAX_OUTS
# The records the loops exchange with Python: struct rec (one syscall recorded), struct ev
# (one event to replay, after its registers) and struct wr (one memory write of it).
REC = struct.Struct(f"<{REGS_SIZE}sqQQ" + "QQQ" * MAX_OUTS)
EV = struct.Struct("<qqII")
WR = struct.Struct("<QQQ")
EFLAGS_IGNORED = 0x100 | 0x10000  # trap and resume flags: the debugger's, not the program's
EV_BUFFERED = 0x8000_0000  # in struct ev's nwrites: compare only a BUFFERED event's arguments
# A struct rec holding the syscall buffer's records (nwrites), their head's size, DONE bit
SYSBUF_CHUNK, SYSBUF_REC_HEAD, SYSBUF_DONE = 0x5B, 64, 0x8000_0000
OWN_SLOT = 3  # the debug register relive's own point search breaks with

# What this module declares of the C interface (fastloop.c `abi[]`).
DECLARED = {"R_STOP": STOP, "R_EINTR": EINTR, "R_PARKED": PARKED, "R_ERROR": ERROR,
            "R_MATCH": MATCH, "R_SYSBUF": SYSBUF, "OUT_WORDS": OUT_WORDS, "SIZE_FIXED": SIZE_FIXED,
            "SIZE_RESULT": SIZE_RESULT, "SIZE_ARG": SIZE_ARG, "MAX_OUTS": MAX_OUTS,
            "MAX_EXCEPT": MAX_EXCEPT, "SPEC_HEAD": SPEC_HEAD, "SPEC_WORDS": SPEC_WORDS,
            "REGS_SIZE": REGS_SIZE, "sizeof(struct user_regs_struct)": REGS_SIZE,
            "sizeof(struct rec)": REC.size,
            "offsetof(struct rec, result)": REGS_SIZE,
            "offsetof(struct rec, exit_rip)": REGS_SIZE + 8,
            "offsetof(struct rec, nwrites)": REGS_SIZE + 16,
            "offsetof(struct rec, w)": REGS_SIZE + 24,
            "sizeof(struct ev)": REGS_SIZE + EV.size,
            "offsetof(struct ev, nr)": REGS_SIZE,
            "offsetof(struct ev, result)": REGS_SIZE + 8,
            "offsetof(struct ev, nwrites)": REGS_SIZE + 16,
            "offsetof(struct ev, first_write)": REGS_SIZE + 20,
            "sizeof(struct wr)": WR.size,
            "EFLAGS_IGNORED": EFLAGS_IGNORED, "OWN_SLOT": OWN_SLOT,
            "EV_BUFFERED": EV_BUFFERED, "SYSBUF_CHUNK": SYSBUF_CHUNK,
            "SYSBUF_REC_HEAD": SYSBUF_REC_HEAD, "SYSBUF_DONE": SYSBUF_DONE,
            "FEED_HEAD": sysbuf.FEED_HEAD, "FEED_REC_HEAD": sysbuf.FEED_REC_HEAD,
            "FEED_SIZE": sysbuf.FEED_SIZE}
MAX_INTERFACE = 64

_lib: ctypes.CDLL | None = None
_tried = False
_status = "not loaded yet"


def enabled() -> bool:
    return os.environ.get("RELIVE_FASTPATH", "1") != "0"


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "relive"


def source_crc(source: bytes) -> int:
    """The checksum an installed build carries of the source it was built from."""
    return zlib.crc32(source)


def library_path(source_path: Path, installed_name: str) -> tuple[Path, str]:
    """Where a compiled part's library is (this one, tracee.records'), and where it comes
    from: the build made at install if it was built from this very source, else one built
    with gcc at first use (cached by the source's checksum). Raises OSError."""
    source = source_path.read_bytes()
    path = _installed(source, source_path, installed_name)
    if path is not None:
        return path, "built when relive was installed"
    return _build(source, source_path), "built with gcc at first use"


def _installed(source: bytes, source_path: Path | None = None,
               installed_name: str = INSTALLED_NAME) -> Path | None:
    """The build made at install time, if it was built from this very source."""
    source_path = source_path or SOURCE
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = source_path.parent / f"{installed_name}{suffix}"
        if path.exists():
            try:
                lib = ctypes.CDLL(str(path))
                lib.relive_source_crc.restype = ctypes.c_int64
                if lib.relive_source_crc() == source_crc(source):
                    return path
            except (OSError, AttributeError):
                pass
            log.debug("%s was built from another %s: not used", path, source_path.name)
    return None


def _build(source: bytes, source_path: Path) -> Path:
    cache = _cache_dir()
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(cache, 0o700)
    target = cache / f"{source_path.stem}-{zlib.crc32(source):08x}-{len(source)}.so"
    built_from = target.with_suffix(".c")
    if target.exists() and built_from.exists() and built_from.read_bytes() == source:
        return target
    gcc_build(["-O2", "-shared", "-fPIC"], source_path, source, target, mode=0o700)
    return target


def gcc_build(flags: list[str], path: Path, source: bytes, target: Path, mode: int) -> None:
    """Compile `path` (whose text is `source`) with gcc into `target`, atomically (concurrent
    builders each install a whole file), with the source it was built from beside it as
    `target.with_suffix(".c")`, so a later edit is never run through a stale build. Raises
    OSError with gcc's last line."""
    import subprocess  # only to build: most runs find the build cached (start-up time)
    import tempfile
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".build-", suffix=target.suffix)
    os.close(fd)
    try:
        try:
            proc = subprocess.run(["gcc", *flags, "-o", tmp, str(path)],
                                  capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired as e:
            raise OSError(f"gcc took more than {e.timeout} s") from e
        if proc.returncode != 0:
            raise OSError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip()
                          else f"gcc exited with {proc.returncode}")
        os.chmod(tmp, mode)
        os.replace(tmp, target)
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(source)
        os.replace(tmp, target.with_suffix(".c"))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def trap_cpuid(on: bool) -> None:
    """Tell the loops whether the tracees' cpuid faults: they make it fault in the tracer's
    thread too while they run (see fastloop.c, trap_like_tracees)."""
    lib = load()
    if lib is not None:
        lib.relive_trap_cpuid(int(on))


def record_seccomp(on: bool, clocks: frozenset[int] = frozenset()) -> bool:
    """Tell the record loop whether the tracees stop at syscalls through the recorder's
    seccomp filter (tracee.seccomp): it then resumes them with PTRACE_CONT, and answers
    the clock reads numbered `clocks` at their seccomp stop (one stop instead of two).
    False if the loop does not know how to answer one of them (it then answers none)."""
    lib = load()
    if lib is None:
        return False
    lib.relive_record_seccomp(int(on))
    nrs = sorted(clocks) if on else []
    lib.relive_record_clocks.restype = ctypes.c_long
    return int(lib.relive_record_clocks((ctypes.c_int64 * max(len(nrs), 1))(*nrs),
                                        ctypes.c_long(len(nrs)))) == 0


def sysbuf_cursor(addr: int, cursor: int, resume: int = -1, hdr: int = 0,
                  size: int = 0) -> None:
    """Tell the record loop where the run task's syscall buffer position is (0: none), up
    to where its records are written (tracee.sysbuf) and the buffer's header and whole
    sizes: at an entry stop past the cursor, the loop takes the records into its batch
    (a SYSBUF_CHUNK record) when all are whole, else returns SYSBUF; `resume`: the status
    of that stop, where the next loop starts once Python wrote them (-1: it resumes the
    task)."""
    lib = load()
    if lib is not None:
        lib.relive_sysbuf_cursor(ctypes.c_uint64(addr), ctypes.c_uint64(cursor),
                                 ctypes.c_int(resume), ctypes.c_uint64(hdr),
                                 ctypes.c_uint64(size))


def sysbuf_fds(addr: int, may_set: bool) -> None:
    """Where the run task's descriptor bitmap is (0: none; recorder.sysbuf_fds), and whether
    its calls may set bits: the loop keeps it as FdBits.after_call does."""
    lib = load()
    if lib is not None:
        lib.relive_sysbuf_fds(ctypes.c_uint64(addr), ctypes.c_int(int(may_set)))


def sysbuf_state() -> tuple[int, int]:
    """(buffer chunks the last record loop took, the cursor it left)."""
    lib = load()
    if lib is None:
        return 0, 0
    cursor = ctypes.c_uint64()
    return int(lib.relive_sysbuf_state(ctypes.byref(cursor))), cursor.value


def sysbuf_fd_calls() -> int:
    """How many buffered calls the last record loop took closed or made a descriptor."""
    lib = load()
    return int(lib.relive_sysbuf_fd_calls()) if lib is not None else 0


def load() -> ctypes.CDLL | None:
    """The loaded library, or None (disabled, or it could not be built: said once)."""
    global _lib, _tried, _status
    if not enabled():
        _status = "off (RELIVE_FASTPATH=0)"
        return None
    if _tried:
        return _lib
    _tried = True
    try:
        path, origin = library_path(SOURCE, INSTALLED_NAME)
        lib = ctypes.CDLL(str(path))
    except FileNotFoundError as e:
        _unavailable(f"{e.filename} not found")
        return None
    except OSError as e:
        _unavailable(str(e))
        return None
    _declare(lib)
    differ = disagreements(lib, DECLARED)
    if differ:
        _unavailable(f"{path} does not match relive's Python code: {differ}")
        return None
    log.debug("compiled fast path loaded from %s", path)
    _status = f"on ({origin}: {path})"
    _lib = lib
    return lib


def status() -> str:
    """Whether the compiled loops are on, and where they come from or why not."""
    load()
    return _status


def _unavailable(why: str) -> None:
    global _status
    _status = f"off ({why}; the Python path does the same work more slowly)"
    log.warning("compiled fast path unavailable (%s); using the slower Python path", why)


def _declare(lib: ctypes.CDLL) -> None:
    lib.relive_record_run.restype = ctypes.c_long
    lib.relive_record_run.argtypes = [
        ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p,
        ctypes.c_long, ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p, ctypes.c_int64,
        ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]
    lib.relive_replay_run.restype = ctypes.c_long
    lib.relive_replay_run.argtypes = [
        ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_long, ctypes.c_char_p,
        ctypes.c_char_p, ctypes.c_int64, ctypes.c_void_p]
    lib.relive_replay_feed.restype = None
    lib.relive_replay_feed.argtypes = [ctypes.c_uint64, ctypes.c_int, ctypes.c_uint64,
                                          ctypes.c_uint64]
    lib.relive_find_point.restype = ctypes.c_long
    lib.relive_find_point.argtypes = [
        ctypes.c_int, ctypes.c_uint64, ctypes.c_char_p, ctypes.c_long, ctypes.c_int64,
        ctypes.c_void_p]
    lib.relive_interface.restype = ctypes.c_long
    lib.relive_interface.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long]
    lib.relive_sysbuf_cursor.restype = None
    lib.relive_sysbuf_cursor.argtypes = [ctypes.c_uint64, ctypes.c_uint64, ctypes.c_int,
                                         ctypes.c_uint64, ctypes.c_uint64]
    lib.relive_sysbuf_state.restype = ctypes.c_long
    lib.relive_sysbuf_fds.restype = None
    lib.relive_sysbuf_fds.argtypes = [ctypes.c_uint64, ctypes.c_int]
    lib.relive_sysbuf_state.argtypes = [ctypes.c_void_p]
    lib.relive_sysbuf_fd_calls.restype = ctypes.c_long
    lib.relive_sysbuf_fd_calls.argtypes = []
    lib.relive_trap_cpuid.restype = None
    lib.relive_trap_cpuid.argtypes = [ctypes.c_int]


def interface(lib: ctypes.CDLL, listing: str = "relive_interface") -> dict[str, int]:
    """The C side's constants and struct layouts, by name, as its function `listing` lists
    them (fastloop.c `abi[]`; the hand-off loops list theirs apart)."""
    names = (ctypes.c_char_p * MAX_INTERFACE)()
    values = (ctypes.c_int64 * MAX_INTERFACE)()
    fn = getattr(lib, listing)
    fn.restype = ctypes.c_long
    count = min(fn(names, values, MAX_INTERFACE), MAX_INTERFACE)
    return {(names[i] or b"").decode(): values[i] for i in range(count)}


def disagreements(lib: ctypes.CDLL, declared: dict[str, int],
                  listing: str = "relive_interface") -> str:
    """What of `declared` (name -> the value Python uses) the library says otherwise; empty
    if they agree. A name the library does not list disagrees too."""
    c_side = interface(lib, listing)
    wrong = [f"{name} is {c_side.get(name, 'missing')} in C, {value} in Python"
             for name, value in declared.items() if c_side.get(name) != value]
    return "; ".join(wrong)
