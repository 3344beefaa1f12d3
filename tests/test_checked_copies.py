"""A replay does not hash again the file copies an earlier replay checked and that have not
changed since (tracefile/checked_copies.py): the hash cost every start-up ~25 ms. A copy
changed after it was checked is hashed again, and its damage reported as before. Where the
filesystem's ctimes are fine, the recorder notes the copies it made, and a replay notes what
it hashed at once."""
from __future__ import annotations

import os
import shutil
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


def _forget_notes(tmp_path) -> None:
    shutil.rmtree(tmp_path / "cache" / "relive" / "checked", ignore_errors=True)


def test_a_copy_checked_once_is_not_hashed_again_until_it_changes(tmp_path, hashes):
    trace = tmp_path / "t"
    rec = record(trace, "/bin/true")
    assert rec.returncode == 0, describe(rec)
    _forget_notes(tmp_path)  # (what the recorder noted: below)
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


@pytest.fixture
def fine_hashes(monkeypatch, tmp_path, trace_root):
    """`hashes`, with the notes' own rule for recent changes (no RECENT_NS of 0); only where
    the filesystem's ctimes are fine (multigrain timestamps: Linux 6.13 and later)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    if not checked_copies._fine_ctimes(os.stat(tmp_path).st_dev):
        pytest.skip("this filesystem's ctimes move by ticks")
    seen: list[str] = []
    real = integrity.content_id
    monkeypatch.setattr(integrity, "content_id", lambda path: seen.append(path.name)
                        or real(path))
    return seen


def _damage(copy) -> None:
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0x10
    copy.write_bytes(data)


def test_the_first_replay_of_a_recording_hashes_no_copy_and_a_damaged_one_still(
        tmp_path, fine_hashes):
    """The recorder notes the copies it wrote (it hashed them as it wrote them); a copy
    damaged afterwards, at once, is hashed by the replay and reported."""
    trace = tmp_path / "t"
    rec = record(trace, "/bin/true")
    assert rec.returncode == 0, describe(rec)
    ids = _map_all(trace)
    assert ids and fine_hashes == []
    _damage(trace / "files" / ids[-1])
    with pytest.raises(TraceError, match="is damaged"):
        _map_all(trace)
    assert fine_hashes == [ids[-1]]


def test_recording_again_over_a_trace_keeps_the_copies_checked(tmp_path, fine_hashes):
    """The second recording links the file cache's copies (the same inodes as the first
    trace's, checked) and removes the first trace's: both change the inodes' ctimes, and
    neither leaves the next replay hashing. A cached copy damaged in between is hashed."""
    trace = tmp_path / "t"
    for _ in range(2):
        rec = record(trace, "--force", "/bin/true")
        assert rec.returncode == 0, describe(rec)
        ids = _map_all(trace)
        assert ids and fine_hashes == []
    _damage(trace / "files" / ids[0])  # (the file cache's inode too)
    with pytest.raises(TraceError, match="is damaged"):
        _map_all(trace)
    assert fine_hashes == [ids[0]]


def test_a_replay_notes_what_it_hashed_without_waiting_for_the_copy_to_settle(
        tmp_path, fine_hashes):
    trace = tmp_path / "t"
    rec = record(trace, "/bin/true")
    assert rec.returncode == 0, describe(rec)
    _forget_notes(tmp_path)
    ids = _map_all(trace)
    assert ids and sorted(fine_hashes) == ids
    fine_hashes.clear()
    assert _map_all(trace) == ids
    assert fine_hashes == []
