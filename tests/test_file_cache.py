"""The cache of mapped files (tracefile.file_cache): a file unchanged since an earlier
recording is hard-linked into the new trace, a changed one is copied again, any trouble with
the cache still gives a correct trace, and traces never depend on the cache."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from conftest import assert_faithful, record, replay, run_native, run_relive

from tracefile import file_cache
from tracefile.reader import TraceReader
from tracefile.writer import TraceWriter


@pytest.fixture
def settled(monkeypatch):
    """Files just written count as settled (the tests' files are all seconds old at most)."""
    monkeypatch.setattr(file_cache, "RECENT_NS", 0)


def traced(trace: Path, cache: Path | None, *files: Path) -> list[Path]:
    """Record `files` into a new trace using `cache`; the trace's copies, in order."""
    w = TraceWriter(trace, file_cache=cache)
    ids = [w.add_file(str(f)) for f in files]
    w.close()
    return [trace / "files" / i for i in ids]


def test_unchanged_file_is_linked_not_copied(tmp_path, settled):
    src = tmp_path / "libfoo.so"
    src.write_bytes(os.urandom(100_000))
    cache = tmp_path / "cache"
    first, = traced(tmp_path / "t1", cache, src)
    second, = traced(tmp_path / "t2", cache, src)
    assert second.name == first.name
    assert second.stat().st_ino == first.stat().st_ino
    assert first.stat().st_nlink == 3  # two traces and the cache
    assert second.read_bytes() == src.read_bytes()


def test_file_changed_in_place_is_copied_again(tmp_path, settled):
    src = tmp_path / "prog"
    src.write_bytes(b"A" * 4096)
    cache = tmp_path / "cache"
    first, = traced(tmp_path / "t1", cache, src)
    before = src.stat()
    time.sleep(0.05)  # more than a tick of the filesystem's clock
    with open(src, "r+b") as f:  # same inode, same size, new bytes
        f.write(b"B" * 4096)
    os.utime(src, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the old mtime (`cp -p`)
    after = src.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino, before.st_size, before.st_mtime_ns)
    assert after.st_ctime_ns != before.st_ctime_ns
    second, = traced(tmp_path / "t2", cache, src)
    assert second.name != first.name
    assert second.read_bytes() == b"B" * 4096
    assert first.read_bytes() == b"A" * 4096


def test_a_trace_copy_damaged_in_place_is_not_linked_into_later_traces(tmp_path, settled):
    """A trace's copy is the cache's inode: writing into one trace's files/<id> (a test did,
    and every later recording of the machine mapped a 'damaged' ld.so) must not reach the
    next recordings."""
    src = tmp_path / "libfoo.so"
    src.write_bytes(b"A" * 8192)
    cache = tmp_path / "cache"
    first, = traced(tmp_path / "t1", cache, src)
    time.sleep(0.05)  # (past a tick of the filesystem's clock)
    with open(first, "r+b") as f:
        f.write(b"X")
    second, = traced(tmp_path / "t2", cache, src)
    assert second.stat().st_ino != first.stat().st_ino
    assert second.read_bytes() == b"A" * 8192
    third, = traced(tmp_path / "t3", cache, src)  # and the fresh copy is cached again
    assert third.stat().st_ino == second.stat().st_ino


def test_file_changed_just_now_is_not_indexed(tmp_path):
    """Two changes within one tick of the clock leave the same ctime: a fresh file is copied
    every time until it has settled."""
    src = tmp_path / "fresh"
    src.write_bytes(b"new")
    cache = tmp_path / "cache"
    first, = traced(tmp_path / "t1", cache, src)
    second, = traced(tmp_path / "t2", cache, src)
    assert second.stat().st_ino != first.stat().st_ino
    assert list((cache / "by-stat").iterdir()) == []


def test_trace_on_another_filesystem_is_a_plain_copy(tmp_path, settled):
    if not os.path.isdir("/dev/shm") or os.stat("/dev/shm").st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the tests' temporary files")
    src = tmp_path / "lib.so"
    src.write_bytes(os.urandom(5000))
    cache = tmp_path / "cache"
    traced(tmp_path / "t1", cache, src)
    other = Path("/dev/shm") / f"relive-test-{os.getpid()}"
    try:
        copy, = traced(other, cache, src)
        assert copy.read_bytes() == src.read_bytes()
        assert copy.stat().st_nlink == 1
    finally:
        shutil.rmtree(other, ignore_errors=True)


def test_unusable_cache_path_still_gives_a_trace(tmp_path, settled):
    src = tmp_path / "lib.so"
    src.write_bytes(b"content")
    cache = tmp_path / "cache"
    cache.write_text("not a directory")
    copy, = traced(tmp_path / "t1", cache, src)
    assert copy.read_bytes() == b"content"


def test_failing_link_falls_back_to_a_copy(tmp_path, settled, monkeypatch):
    src = tmp_path / "lib.so"
    src.write_bytes(b"content")
    cache = tmp_path / "cache"
    traced(tmp_path / "t1", cache, src)

    def refuse(*args: object, **kw: object) -> None:
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(os, "link", refuse)
    copy, = traced(tmp_path / "t2", cache, src)
    assert copy.read_bytes() == b"content"
    assert copy.stat().st_nlink == 1


def test_index_left_dangling_is_repaired(tmp_path, settled):
    src = tmp_path / "lib.so"
    src.write_bytes(b"content")
    cache = tmp_path / "cache"
    first, = traced(tmp_path / "t1", cache, src)
    (cache / "by-id" / first.name).unlink()  # as a sweep racing with this recorder would
    second, = traced(tmp_path / "t2", cache, src)
    assert second.read_bytes() == b"content"
    third, = traced(tmp_path / "t3", cache, src)
    assert third.stat().st_ino == second.stat().st_ino


def test_sweep_removes_only_what_no_trace_uses(tmp_path, settled):
    kept, dropped = tmp_path / "kept.so", tmp_path / "dropped.so"
    kept.write_bytes(b"kept")
    dropped.write_bytes(b"dropped")
    cache = tmp_path / "cache"
    kept_copy, = traced(tmp_path / "t1", cache, kept)
    dropped_copy, = traced(tmp_path / "t2", cache, dropped)
    shutil.rmtree(tmp_path / "t2")  # the user deletes a trace
    traced(tmp_path / "t3", cache, kept)  # t1 swept (nothing to do): not again for an hour
    assert dropped_copy.name in os.listdir(cache / "by-id")
    hour_ago = time.time() - file_cache.SWEEP_EVERY_S - 1
    os.utime(cache / ".swept", (hour_ago, hour_ago))
    traced(tmp_path / "t4", cache, kept)  # an hour later: the next recording sweeps
    assert sorted(p.name for p in (cache / "by-id").iterdir()) == [kept_copy.name]
    index = [os.readlink(p) for p in (cache / "by-stat").iterdir()]
    assert index == [f"../by-id/{kept_copy.name}"]
    assert dropped_copy.name not in str(index)


def test_cache_is_private(tmp_path, settled):
    src = tmp_path / "lib.so"
    src.write_bytes(b"content")
    src.chmod(0o644)
    cache = tmp_path / "cache"
    traced(tmp_path / "t1", cache, src)
    assert cache.stat().st_mode & 0o777 == 0o700
    for p in cache.rglob("*"):
        assert p.lstat().st_mode & 0o077 == 0 or p.is_symlink(), p


def _libc_copy(trace: Path) -> Path:
    reader = TraceReader(trace)
    try:
        ids = [i for i, path in reader.file_ids().items() if "/libc.so" in path]
    finally:
        reader.close()
    assert len(ids) == 1, ids
    return trace / "files" / ids[0]


def test_second_recording_links_libc_and_traces_outlive_the_cache(tmp_path, programs,
                                                                  trace_root):
    prog = tmp_path / "prog"
    shutil.copy2(programs["hello"], prog)
    recs = [record(tmp_path / name, prog) for name in ("t1", "t2")]
    assert [r.returncode for r in recs] == [0, 0]
    libc1, libc2 = _libc_copy(tmp_path / "t1"), _libc_copy(tmp_path / "t2")
    assert libc2.stat().st_ino == libc1.stat().st_ino
    info = run_relive("info", tmp_path / "t2", text=True)
    assert "in files shared with other traces" in info.stdout, info.stdout  # du would say less

    shutil.rmtree(trace_root / ".files")
    shutil.copy2("/bin/true", prog)  # the program is rebuilt into something else
    assert run_native([prog]).stdout == b""
    for name, rec in zip(("t1", "t2"), recs):
        assert_faithful(rec, replay(tmp_path / name))


def test_notes_last_as_long_as_the_content(tmp_path, settled):
    """What a recorder learned about a file (its rdrand scan) is found by the next recording,
    and swept with the content."""
    src = tmp_path / "libfoo.so"
    src.write_bytes(os.urandom(10_000))
    cache = tmp_path / "cache"
    w = TraceWriter(tmp_path / "t1", file_cache=cache)
    file_id = w.add_file(str(src))
    w.keep_note("scan", file_id, "what was found")
    w.keep_note("scan", "0" * 32, "about content the cache does not hold")  # not kept
    w.close()
    w = TraceWriter(tmp_path / "t2", file_cache=cache)
    assert w.cached_note("scan", file_id) == "what was found"
    assert w.cached_note("scan", "0" * 32) is None
    assert w.cached_note("other", file_id) is None
    w.close()
    shutil.rmtree(tmp_path / "t1")
    shutil.rmtree(tmp_path / "t2")
    file_cache.FileCache(cache).sweep()
    assert not list((cache / "notes").iterdir())
