"""How the compiled fast path is found and trusted: the build made at install time is used only
if it was built from the fastloop.c beside it; the C and Python sides of the interface agree
(constants and struct layouts, checked by name); `relive doctor` says whether it is on."""
from __future__ import annotations

import ctypes
import importlib.machinery
import os
import shutil
import subprocess

import pytest
from conftest import describe, run_relive

from tracee import fastloop

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


def _gcc(source, out, *defines):
    proc = subprocess.run(["gcc", "-O1", "-shared", "-fPIC", *defines, "-o", str(out),
                           str(source)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@needs_gcc
def test_the_c_and_python_sides_agree_on_the_interface(tmp_path):
    lib_path = tmp_path / "fastloop.so"
    _gcc(fastloop.SOURCE, lib_path)
    lib = ctypes.CDLL(str(lib_path))
    fastloop._declare(lib)
    assert fastloop.disagreements(lib, fastloop.DECLARED) == ""
    # ... and the check would see a copy that drifted, or a name C does not list.
    assert "R_STOP is 1 in C, 9 in Python" in fastloop.disagreements(lib, {"R_STOP": 9})
    assert "missing" in fastloop.disagreements(lib, {"sizeof(struct gone)": 8})


@needs_gcc
def test_an_installed_build_is_used_only_if_built_from_the_source_beside_it(tmp_path,
                                                                            monkeypatch):
    source = tmp_path / "fastloop.c"
    shutil.copy(fastloop.SOURCE, source)
    monkeypatch.setattr(fastloop, "SOURCE", source)
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    crc = fastloop.source_crc(source.read_bytes())
    _gcc(source, tmp_path / f"_fastloop{suffix}", f"-DFASTLOOP_SOURCE_CRC={crc}LL")
    assert fastloop._installed(source.read_bytes()) == tmp_path / f"_fastloop{suffix}"

    source.write_bytes(source.read_bytes() + b"/* edited after the install */\n")
    assert fastloop._installed(source.read_bytes()) is None


def test_doctor_says_whether_the_fast_path_is_on():
    on = run_relive("doctor", text=True, timeout=60)
    off = run_relive("doctor", text=True, timeout=60,
                     env=dict(os.environ, RELIVE_FASTPATH="0"))
    assert on.returncode == 0, describe(on)
    line = next(x for x in on.stdout.splitlines() if "fast path:" in x)
    assert ("on (" in line) == (fastloop.load() is not None), line
    assert "off (RELIVE_FASTPATH=0)" in off.stdout, describe(off)
    assert "ptrace:" in on.stdout and "a traced child runs" in on.stdout


def test_doctor_fails_naming_gdb_when_there_is_none(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    proc = run_relive("doctor", text=True, timeout=60,
                      env=dict(os.environ, PATH=str(bin_dir)))
    assert proc.returncode == 1, describe(proc)
    assert "FAIL  gdb:" in proc.stdout and "not found" in proc.stdout, describe(proc)
    assert "Traceback" not in proc.stderr
