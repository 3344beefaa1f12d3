"""Mapped files with holes (python's test_mmap maps sparse files of 2-6 GB): the trace's
copies keep the holes, their ids are still the hash of the plain content, and replay's own
copies of MAP_SHARED files keep them too. Before, each such file cost its whole apparent size
in disk and time: test_mmap (0.8 s natively) recorded in 100 s into 18 GB and replayed in
115 s."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from conftest import assert_faithful, describe, record, replay

from tracefile import sparse

PYTHON = "/usr/bin/python3"  # not the `python3` on PATH, which may be a pyenv shim script
GIB = 1 << 30


def _sparse_file(path: Path, pieces: dict[int, bytes], size: int) -> None:
    with open(path, "wb") as f:
        for offset, data in pieces.items():
            f.seek(offset)
            f.write(data)
        f.truncate(size)
    if os.stat(path).st_blocks * 512 > 1 << 20:
        pytest.skip(f"the filesystem of {path} keeps no holes")


def _allocated(directory: Path) -> int:
    return sum(os.lstat(p).st_blocks * 512 for p in directory.rglob("*") if p.is_file())


def test_copy_keeps_holes_and_hashes_the_plain_content(tmp_path):
    src = tmp_path / "src"
    pieces = {0: b"head", 3 << 20: b"x" * 70000, (9 << 20) + 5: b"tail"}
    _sparse_file(src, pieces, 12 << 20)
    plain = hashlib.sha256(src.read_bytes()).hexdigest()
    digest = hashlib.sha256()
    with open(src, "rb") as s, open(tmp_path / "dst", "wb") as d:
        assert sparse.copy(s.fileno(), d.fileno(), digest) == 12 << 20
    assert digest.hexdigest() == plain
    assert (tmp_path / "dst").read_bytes() == src.read_bytes()
    assert os.stat(tmp_path / "dst").st_blocks * 512 < 1 << 20
    with open(src, "rb") as a, open(tmp_path / "dst", "r+b") as b:
        assert sparse.same_content(a.fileno(), b.fileno())
        os.pwrite(b.fileno(), b"\1", 6 << 20)  # in a hole of both: still found
        assert not sparse.same_content(a.fileno(), b.fileno())


def test_mapping_a_sparse_gigabyte_file(tmp_path):
    """python3 maps a 1 GiB file holding 12 bytes, MAP_SHARED, twice (the second mapping
    makes replay compare its copy with the trace's), reads its ends and writes through the
    mapping. The trace takes a few MB of disk, not a GiB, and replays faithfully."""
    if not os.access(PYTHON, os.X_OK):
        pytest.skip(f"{PYTHON} is not installed")
    data = tmp_path / "big.bin"
    _sparse_file(data, {0: b"head", GIB - 8: b"tail-end"}, GIB)
    script = (
        "import mmap, sys\n"
        "f = open(sys.argv[1], 'r+b')\n"
        "for i in range(2):\n"
        "    m = mmap.mmap(f.fileno(), 0)\n"
        "    print(m[:4], m[-8:], m[1 << 29], m[1 << 20], len(m))\n"
        "    m[1 << 20] = 65 + i\n"
        "    m.close()\n")
    trace = tmp_path / "trace"
    rec = record(trace, PYTHON, "-c", script, data)
    assert rec.returncode == 0, describe(rec)
    assert rec.stdout == (b"b'head' b'tail-end' 0 0 1073741824\n"
                          b"b'head' b'tail-end' 0 65 1073741824\n"), describe(rec)
    assert _allocated(trace) < 200 << 20, "the trace's copy of the sparse file lost its holes"
    data.unlink()  # replay reads the trace's copies alone
    rep = replay(trace)
    assert_faithful(rec, rep)
