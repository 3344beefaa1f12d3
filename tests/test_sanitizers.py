"""Programs built with sanitizers record and replay, and traces recorded with relive's page
elsewhere (before it moved out of ThreadSanitizer's shadow) still replay.

ThreadSanitizer aborts at start on any mapping inside the ranges it keeps for its shadow
("FATAL: ThreadSanitizer: unexpected memory mapping"): relive's page and the syscall buffer's
mappings must lie where TSan, ASan and plain programs all accept memory (tracee.remote)."""
from __future__ import annotations

import os
import sqlite3
import subprocess

import pytest
from conftest import REPO_ROOT, assert_faithful, describe, record, replay, run_native, run_relive
from tracee import remote
from tracefile.reader import TraceReader
from tracefile.records import Kind

PROGRAMS = REPO_ROOT / "tests" / "programs"
LEGACY = f"{remote.LEGACY_RELIVE_PAGE:#x}"


def _build(tmp_path_factory: pytest.TempPathFactory, sanitizer: str, source: str = "tsan_race"):
    out = tmp_path_factory.mktemp(sanitizer) / f"{sanitizer}_{source}"
    try:
        proc = subprocess.run(["g++", "-O1", "-g", f"-fsanitize={sanitizer}", "-pthread",
                               "-o", str(out), str(PROGRAMS / f"{source}.cc")],
                              capture_output=True, text=True, timeout=180)
    except FileNotFoundError:
        pytest.skip("no g++ here")
    if proc.returncode != 0:
        pytest.skip(f"g++ cannot build with -fsanitize={sanitizer} here: "
                    f"{proc.stderr.strip()[-300:]}")
    return out


@pytest.fixture(scope="module")
def tsan_race(tmp_path_factory):
    return _build(tmp_path_factory, "thread")


@pytest.fixture(scope="module")
def tsan_spin(tmp_path_factory):
    return _build(tmp_path_factory, "thread", "tsan_spin")


@pytest.fixture(scope="module")
def asan_race(tmp_path_factory):
    return _build(tmp_path_factory, "address")


@pytest.mark.parametrize("sysbuf", ["0", "1"], ids=["ptrace", "syscallbuf"])
def test_tsan_program_records_and_replays_its_race_report(tsan_race, tmp_path, sysbuf):
    env = {**os.environ, "RELIVE_SYSCALLBUF": sysbuf}
    native = run_native([tsan_race])
    if b"ThreadSanitizer: data race" not in native.stderr:  # (a kernel TSan cannot run on)
        pytest.skip(f"this TSan build does not run here natively: {describe(native)}")
    rec = record(tmp_path / "trace", tsan_race, env=env)
    assert b"unexpected memory mapping" not in rec.stderr, describe(rec)
    assert rec.returncode == native.returncode == 66, describe(rec)  # TSan's status on a race
    assert b"WARNING: ThreadSanitizer: data race" in rec.stderr, describe(rec)
    assert b"counter " in rec.stdout, describe(rec)
    rep = replay(tmp_path / "trace", env=env)
    assert_faithful(rec, rep)  # the race report too, byte for byte
    r = TraceReader(tmp_path / "trace")
    try:
        assert r.meta["relive_page"] == remote.RELIVE_PAGE
        if sysbuf == "1":  # (the hook's mappings beside the page: TSan accepts them too)
            assert r.meta.get("syscallbuf") is True
    finally:
        r.close()


def test_a_spinning_thread_in_a_tsan_program_is_preempted(tsan_spin, tmp_path):
    """The recorder tells a spin loop's iterations apart by a digest of the process's
    memory. Under ThreadSanitizer that memory is ~35 TB of mostly untouched shadow: the
    digest reads only the pages that are there (it used to read it all: MemoryError)."""
    native = run_native([tsan_spin])
    if native.returncode != 0:
        pytest.skip(f"this TSan build does not run here natively: {describe(native)}")
    rec = record(tmp_path / "trace", tsan_spin)
    assert rec.returncode == 0 and rec.stdout == native.stdout, describe(rec)
    r = TraceReader(tmp_path / "trace")
    try:
        digests = [ev.info["digest"] for ev in r.events()
                   if ev.kind == Kind.PREEMPT and "digest" in ev.info]
    finally:
        r.close()
    assert digests, "the spinner was never preempted at a point with a digest"
    assert_faithful(rec, replay(tmp_path / "trace"))


def test_asan_program_records_and_replays(asan_race, tmp_path):
    """ASan's shadow leaves the page's new place alone too. (Its leak check at exit ptraces
    the program from a clone(CLONE_VM) process, which relive refuses: docs/user-guide.md.)"""
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=0"}
    rec = record(tmp_path / "trace", asan_race, env=env)
    assert rec.returncode == 0 and b"counter " in rec.stdout, describe(rec)
    assert_faithful(rec, replay(tmp_path / "trace", env=env))


def _forget_page(trace) -> None:
    """Make the trace one from before the page moved: no `relive_page` in its meta."""
    db = sqlite3.connect(trace / "trace.db")
    try:
        with db:
            assert db.execute("DELETE FROM meta WHERE key = 'relive_page'").rowcount == 1
    finally:
        db.close()


@pytest.mark.parametrize("sysbuf", ["0", "1"], ids=["ptrace", "syscallbuf"])
def test_trace_recorded_at_the_old_page_still_replays(programs, tmp_path, sysbuf):
    trace = tmp_path / "trace"
    env = {**os.environ, "RELIVE_SYSCALLBUF": sysbuf}
    rec = record(trace, programs["threads_mutex"],
                 env={**env, "RELIVE_PAGE_ADDRESS": LEGACY})
    assert rec.returncode == 0, describe(rec)
    r = TraceReader(trace)
    try:
        assert r.meta["relive_page"] == remote.LEGACY_RELIVE_PAGE
        exec_maps = next(ev for ev in r.events() if ev.kind == Kind.EXEC).info["maps"]
        assert any(m["start"] == remote.LEGACY_RELIVE_PAGE for m in exec_maps)
    finally:
        r.close()
    _forget_page(trace)
    info = run_relive("info", trace, text=True)
    assert f"page:     {LEGACY} (relive's own; recorded before it moved)" in info.stdout, info
    assert_faithful(rec, replay(trace, env=env))


def test_a_mapping_over_this_relives_page_is_one_error_line(programs, tmp_path):
    """A trace whose program mapped memory where this relive keeps its page (possible for a
    trace recorded with the page elsewhere) is refused in one line, not replayed wrongly."""
    trace = tmp_path / "trace"
    rec = record(trace, programs["hello"], env={**os.environ, "RELIVE_PAGE_ADDRESS": LEGACY})
    assert rec.returncode == 0, describe(rec)
    r = TraceReader(trace)
    try:
        mapped = next(ev.info["map"]["start"] for ev in r.events() if "map" in ev.info)
    finally:
        r.close()
    rep = replay(trace, env={**os.environ, "RELIVE_PAGE_ADDRESS": f"{mapped:#x}"})
    assert rep.returncode != 0, describe(rep)
    lines = rep.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("relive: "), describe(rep)
    assert "where this relive keeps its page" in lines[0] and "RELIVE_PAGE_ADDRESS" in lines[0]
