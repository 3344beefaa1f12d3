"""Builds relive's compiled fast path (tracee/fastloop.c, and tracee/records.c: the work per
buffered syscall) and the syscall buffer's hook (tracee/sysbuf_hook.c) with the package.

The library is loaded with ctypes, not imported, so it is an extension only in name. It is
optional: where it cannot be built (no compiler) the install still succeeds, and relive
builds it at first use with gcc if it can, or else uses its Python path (tracee/fastloop.py).
The build carries the checksum of the source it was made from, so an edited fastloop.c is
never run through a stale build. The hook is not a library but an object file whose code
relive copies into the recorded programs (tracee/sysbuf.py): it is built beside the
extension, with gcc and the flags tracee/sysbuf.py gives, also optional (relive then builds
it at first use). Everything else about the package is in pyproject.toml.
"""
import ast
import importlib.util
import subprocess
import zlib
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent
SOURCE = "tracee/fastloop.c"
CRC = zlib.crc32((HERE / SOURCE).read_bytes())
RECORDS = "tracee/records.c"  # the per-buffered-event work (tracee/records.py), the same way
RECORDS_CRC = zlib.crc32((HERE / RECORDS).read_bytes())
HOOK = "tracee/sysbuf_hook.c"
BUILD = "tracee/sysbuf_build.py"  # its flags (tracee/sysbuf.py builds it the same way)
PAGE = "tracee/remote.py"  # DEFAULT_RELIVE_PAGE, which its addresses follow


class BuildWithHook(build_ext):
    """build_ext, then the hook's object beside the extension (in place for `pip install
    -e`, in the build tree otherwise: installed with the package)."""

    def run(self) -> None:
        super().run()
        target = Path(self.get_ext_fullpath("tracee._fastloop")).with_name("_sysbuf_hook.o")
        try:  # (by path: the package's dependencies are not installed yet)
            spec = importlib.util.spec_from_file_location("sysbuf_build", HERE / BUILD)
            assert spec is not None and spec.loader is not None
            build = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(build)
            page = next(node.value.value for node in ast.parse((HERE / PAGE).read_text()).body
                        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                        and any(getattr(t, "id", "") == "DEFAULT_RELIVE_PAGE"
                                for t in node.targets))
            flags = build.gcc_flags(page)
        except Exception as e:  # noqa: BLE001 (optional: relive builds it at first use)
            print(f"relive: the syscall buffer's hook is built at first use ({e})")
            return
        crc = zlib.crc32((HERE / HOOK).read_bytes())
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            proc = subprocess.run(["gcc", *flags, f"-DRELIVE_HOOK_SOURCE_CRC={crc}", "-o",
                                   str(target), str(HERE / HOOK)], capture_output=True,
                                  text=True, timeout=120)
            why = proc.stderr.strip()[-200:] if proc.returncode else ""
        except (OSError, subprocess.TimeoutExpired) as e:
            why = str(e)
        if why:
            print(f"relive: the syscall buffer's hook is built at first use (gcc: {why})")


setup(cmdclass={"build_ext": BuildWithHook}, ext_modules=[Extension(
    "tracee._fastloop", sources=[SOURCE], optional=True, extra_compile_args=["-O2"],
    define_macros=[("FASTLOOP_SOURCE_CRC", f"{CRC}LL")]), Extension(
    "tracee._records", sources=[RECORDS], optional=True, extra_compile_args=["-O2"],
    define_macros=[("RECORDS_SOURCE_CRC", f"{RECORDS_CRC}LL")])])
