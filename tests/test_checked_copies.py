"""A replay does not hash again the file copies an earlier replay checked and that have not
changed since (tracefile/checked_copies.py): the hash cost every start-up ~25 ms. A copy
changed after it was checked is hashed again, and its damage reported as before."""
from __future__ import annotations

import os
import time

import pytest
from conftest import describe, record

from tracefile import checked_copies, integrity
from tracefile.errors import TraceError
from tracefile.reader import TraceReader


@pytest.fixture
def hashes(monkeypatch, tmp_path, trace_root):
    """Count the copies hashed; notes in a cache of the test's own, made at once. The trace
    root (and so the file cache, whose inodes the trace's copies are) is the test's own too:
    the damage below would otherwise be linked into every later recording of the session."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(checked_copies, "RECENT_NS", 0)
    seen: list[str] = []
    real = integrity.content_id

    def counted(path):
        seen.append(path.name)
        return real(path)

    monkeypatch.setattr(integrity, "content_id", counted)
    return seen


def _map_all(trace) -> list[str]:
    r = TraceReader(trace)
    try:
        ids = sorted(r.file_ids())
        for file_id in ids:
            r.file_path(file_id)
        return ids
    finally:
        r.close()


def test_a_copy_checked_once_is_not_hashed_again_until_it_changes(tmp_path, hashes):
    trace = tmp_path / "t"
    rec = record(trace, "/bin/true")
    assert rec.returncode == 0, describe(rec)
    ids = _map_all(trace)
    assert ids and sorted(hashes) == ids  # the first replay hashes every copy
    hashes.clear()
    assert _map_all(trace) == ids
    assert hashes == []  # the next one none
    time.sleep(0.05)  # (past a tick of the filesystem's clock)
    copy = trace / "files" / ids[0]
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0x10
    copy.write_bytes(data)
    with pytest.raises(TraceError, match="is damaged"):
        _map_all(trace)
    assert hashes == [ids[0]]


def test_the_notes_stay_bounded_and_a_full_directory_is_not_scanned_at_every_note(
        monkeypatch, tmp_path):
    """Once the directory held MAX_NOTES notes, every note listed, stat'ed and sorted all of
    them: 0.4 s of a replay that noted 22 copies. The oldest quarter goes at once, and the
    count is looked at by one note in TRIM_EVERY."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(checked_copies, "RECENT_NS", 0)
    monkeypatch.setattr(checked_copies, "MAX_NOTES", 64)
    scans = 0
    real_trim = checked_copies._trim

    def counted(where):
        nonlocal scans
        scans += 1
        real_trim(where)

    monkeypatch.setattr(checked_copies, "_trim", counted)
    for i in range(640):
        copy = tmp_path / f"copy{i}"
        copy.write_bytes(b"%d" % i)
        checked_copies.note(copy, f"id{i}")
    where = tmp_path / "cache" / "relive" / "checked"
    assert scans < 640 // 4
    assert len(os.listdir(where)) <= 64 + 16 * checked_copies.TRIM_EVERY
    assert checked_copies.known(tmp_path / "copy639", "id639")
