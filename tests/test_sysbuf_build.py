"""Where the syscall buffer's hook comes from: built when the package is installed
(setup.py, with tracee/sysbuf_build.py's flags and the checksum of the sysbuf_hook.c it was
built from), used only if that is the source beside it and its addresses are this relive's;
otherwise built with gcc at first use. `relive doctor` says which."""
from __future__ import annotations

import shutil
import subprocess
import zlib

import pytest
from conftest import describe, run_relive

from tracee import sysbuf, sysbuf_build
from tracee.remote import RELIVE_PAGE

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


def _build(source, target, page=RELIVE_PAGE):
    crc = zlib.crc32(source.read_bytes())
    proc = subprocess.run(["gcc", *sysbuf_build.gcc_flags(page),
                           f"-DRELIVE_HOOK_SOURCE_CRC={crc}", "-o", str(target), str(source)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@needs_gcc
def test_an_installed_hook_is_used_only_if_built_from_the_source_beside_it(tmp_path,
                                                                           monkeypatch):
    source = tmp_path / "sysbuf_hook.c"
    shutil.copy(sysbuf.SOURCE, source)
    installed = tmp_path / "_sysbuf_hook.o"
    monkeypatch.setattr(sysbuf, "INSTALLED", installed)
    assert sysbuf._installed(source.read_bytes()) is None  # none installed
    _build(source, installed)
    hook = sysbuf._installed(source.read_bytes())
    assert hook is not None and hook.code == sysbuf.hook().code  # type: ignore[union-attr]
    assert hook.source_crc == zlib.crc32(source.read_bytes())

    source.write_bytes(source.read_bytes() + b"/* edited after the install */\n")
    assert sysbuf._installed(source.read_bytes()) is None


@needs_gcc
def test_an_installed_hook_for_other_addresses_is_not_used(tmp_path, monkeypatch):
    """RELIVE_PAGE_ADDRESS moves the relive page and the hook with it: a hook installed for
    the default addresses is then built again at first use."""
    source = tmp_path / "sysbuf_hook.c"
    shutil.copy(sysbuf.SOURCE, source)
    installed = tmp_path / "_sysbuf_hook.o"
    monkeypatch.setattr(sysbuf, "INSTALLED", installed)
    _build(source, installed, page=RELIVE_PAGE + (1 << 32))
    assert sysbuf._installed(source.read_bytes()) is None


def test_doctor_says_whether_the_buffer_is_on_and_where_its_hook_comes_from():
    doc = run_relive("doctor", text=True, timeout=60)
    assert doc.returncode == 0, describe(doc)
    line = next(x for x in doc.stdout.splitlines() if "syscall buffer:" in x)
    if sysbuf.hook() is None:
        assert "off (" in line, line
    else:
        assert "on (" in line and "built " in line, line
