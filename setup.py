"""Builds relive's compiled fast path (tracee/fastloop.c) with the package.

The library is loaded with ctypes, not imported, so it is an extension only in name. It is
optional: where it cannot be built (no compiler) the install still succeeds, and relive
builds it at first use with gcc if it can, or else uses its Python path (tracee/fastloop.py).
The build carries the checksum of the source it was made from, so an edited fastloop.c is
never run through a stale build. Everything else about the package is in pyproject.toml.
"""
import zlib
from pathlib import Path

from setuptools import Extension, setup

SOURCE = "tracee/fastloop.c"
CRC = zlib.crc32((Path(__file__).parent / SOURCE).read_bytes())

setup(ext_modules=[Extension(
    "tracee._fastloop", sources=[SOURCE], optional=True, extra_compile_args=["-O2"],
    define_macros=[("FASTLOOP_SOURCE_CRC", f"{CRC}LL")])])
