"""The compiled inner loops (fastloop.c): built with gcc at first use, loaded with ctypes.

The shared object is cached in $XDG_CACHE_HOME/relive (~/.cache/relive; a 0700 directory),
named by a checksum of the source and kept with a copy of that source, which must match byte
for byte: an edited source is rebuilt and two relive versions never share a build (a
checksum and a comparison, not hashlib: importing hashlib costs every start-up ~5 ms). If gcc
is missing or the build fails, one line says so and `load()` returns None: callers then use
the pure-Python paths, which do the same thing more slowly.
RELIVE_FASTPATH=0 disables the compiled loops (tests compare both paths this way).

ctypes releases the GIL during a call; a signal arriving meanwhile (the recorder's SIGALRM
timeslice timer, Ctrl-C) interrupts the loop's waitpid (EINTR): the loop returns and the
Python handler runs then.
"""
from __future__ import annotations

import ctypes
import logging
import os
import zlib
from pathlib import Path

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("fastloop.c")

# Why a loop returned (fastloop.c R_*).
STOP, EINTR, PARKED, ERROR, MATCH = 1, 2, 3, 4, 5
OUT_WORDS = 7
# Output size kinds of the record spec table (fastloop.c SIZE_*).
SIZE_FIXED, SIZE_RESULT, SIZE_ARG = 1, 2, 3
MAX_OUTS = 3
MAX_EXCEPT = 8
SPEC_HEAD = 4 + MAX_EXCEPT  # (fastloop.c SPEC_PATH is its last word)
SPEC_WORDS = SPEC_HEAD + 4 * MAX_OUTS

_lib: ctypes.CDLL | None = None
_tried = False


def enabled() -> bool:
    return os.environ.get("RELIVE_FASTPATH", "1") != "0"


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "relive"


def _build(source: bytes) -> Path:
    cache = _cache_dir()
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(cache, 0o700)
    target = cache / f"fastloop-{zlib.crc32(source):08x}-{len(source)}.so"
    built_from = target.with_suffix(".c")
    if target.exists() and built_from.exists() and built_from.read_bytes() == source:
        return target
    import subprocess  # only to build: most runs find the build cached (start-up time)
    import tempfile
    fd, tmp = tempfile.mkstemp(dir=cache, prefix=".fastloop-", suffix=".so")
    os.close(fd)
    try:
        try:
            proc = subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", tmp, str(SOURCE)],
                                  capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired as e:
            raise OSError(f"gcc took more than {e.timeout} s") from e
        if proc.returncode != 0:
            raise OSError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip()
                          else f"gcc exited with {proc.returncode}")
        os.chmod(tmp, 0o700)
        os.replace(tmp, target)  # atomic: concurrent builders each install a whole file
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(source)
        os.replace(tmp, built_from)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def trap_cpuid(on: bool) -> None:
    """Tell the loops whether the tracees' cpuid faults: they make it fault in the tracer's
    thread too while they run (see fastloop.c, trap_like_tracees)."""
    lib = load()
    if lib is not None:
        lib.relive_trap_cpuid(int(on))


def load() -> ctypes.CDLL | None:
    """The loaded library, or None (disabled, or it could not be built: said once)."""
    global _lib, _tried
    if not enabled():
        return None
    if _tried:
        return _lib
    _tried = True
    try:
        path = _build(SOURCE.read_bytes())
        lib = ctypes.CDLL(str(path))
    except FileNotFoundError as e:
        log.warning("compiled fast path unavailable (%s not found); using the slower Python "
                    "path", e.filename)
        return None
    except OSError as e:
        log.warning("compiled fast path unavailable (%s); using the slower Python path", e)
        return None
    lib.relive_record_run.restype = ctypes.c_long
    lib.relive_record_run.argtypes = [
        ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p,
        ctypes.c_long, ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p, ctypes.c_int64,
        ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]
    lib.relive_replay_run.restype = ctypes.c_long
    lib.relive_replay_run.argtypes = [
        ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_long, ctypes.c_char_p,
        ctypes.c_char_p, ctypes.c_int64, ctypes.c_void_p]
    lib.relive_find_point.restype = ctypes.c_long
    lib.relive_find_point.argtypes = [
        ctypes.c_int, ctypes.c_uint64, ctypes.c_char_p, ctypes.c_long, ctypes.c_int64,
        ctypes.c_void_p]
    lib.relive_trap_cpuid.restype = None
    lib.relive_trap_cpuid.argtypes = [ctypes.c_int]
    log.debug("compiled fast path loaded from %s", path)
    _lib = lib
    return lib
