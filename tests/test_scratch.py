"""Scratch areas and IS_SCRATCH clipping, end to end (DESIGN.md section 4).

The failure that motivated the design is built on purpose: two threads' scratch areas adjacent
and merged by the kernel, a signal frame written right below the boundary. The recorder's
guessed-size frame write must stop exactly at the boundary, and the replay must complete.
"""
from __future__ import annotations

import json
import os

import trace_rows
from conftest import assert_faithful, describe, record, replay

from recorder.scratch import SCRATCH_SIZE
from recorder.signals import FRAME_GUESS
from tracefile.records import Kind


def _events(trace, kind):
    db = trace_rows.connect(trace)
    try:
        rows = db.execute("SELECT seq, info FROM events WHERE kind = ? ORDER BY seq",
                          (int(kind),)).fetchall()
        return [(seq, json.loads(info) if info else {}) for seq, info in rows]
    finally:
        db.close()


def _writes(trace, seq):
    db = trace_rows.connect(trace)
    try:
        return db.execute("SELECT addr, size, conservative FROM writes WHERE seq = ?",
                          (seq,)).fetchall()
    finally:
        db.close()


def _scratch_areas(trace):
    maps = [info["map"] for _, info in _events(trace, Kind.MAPPING)]
    return sorted((m["start"], m["end"]) for m in maps if m["flags"] & 2)


def test_frame_at_a_merged_scratch_boundary_is_clipped_there(programs, tmp_path):
    env = dict(os.environ, RELIVE_SCRATCH_GUARD="0")
    rec = record(tmp_path / "t", programs["scratch_boundary"], str(SCRATCH_SIZE // 1024),
                 env=env)
    assert rec.returncode == 0, describe(rec)
    assert b"merged scratch region found; handler ran just below the boundary" in rec.stdout
    areas = _scratch_areas(tmp_path / "t")
    boundaries = {hi for (_, hi), (lo, _) in zip(areas, areas[1:]) if hi == lo}
    assert boundaries, f"no two adjacent scratch areas: {areas}"
    ((seq, _),) = _events(tmp_path / "t", Kind.SIGNAL)
    ((addr, size, conservative),) = _writes(tmp_path / "t", seq)
    assert conservative == 1
    assert addr + size in boundaries, "the frame write was not clipped at the scratch boundary"
    assert size < FRAME_GUESS
    assert_faithful(rec, replay(tmp_path / "t"))


def test_guard_pages_keep_scratch_areas_apart(programs, tmp_path):
    rec = record(tmp_path / "t", programs["scratch_boundary"], str(SCRATCH_SIZE // 1024))
    assert rec.returncode == 0, describe(rec)
    assert b"no merged scratch region" in rec.stdout
    areas = _scratch_areas(tmp_path / "t")
    assert len(areas) >= 2
    assert all(hi < lo for (_, hi), (lo, _) in zip(areas, areas[1:]))
    assert_faithful(rec, replay(tmp_path / "t"))


def test_blocked_reads_get_their_data_through_scratch(programs, tmp_path):
    rec = record(tmp_path / "t", programs["threads_pipes_signals"])
    assert rec.returncode == 0, describe(rec)
    assert len(_scratch_areas(tmp_path / "t")) == 3  # one per reader thread
    assert rec.stdout.count(b'read "message for reader') == 3
    assert_faithful(rec, replay(tmp_path / "t"))


def test_vfork_child_scratch_is_left_to_the_parent_and_reused(programs, tmp_path):
    rec = record(tmp_path / "t", programs["vfork_scratch"])
    assert rec.returncode == 0, describe(rec)
    assert [line for line in rec.stdout.splitlines() if b"got" in line] == [
        b"child 0 got X", b"child 1 got Y", b"child 2 got Z"]
    assert len(_scratch_areas(tmp_path / "t")) == 1  # made by the first child, reused after
    assert b"parent handled 1 signal(s)" in rec.stdout
    assert_faithful(rec, replay(tmp_path / "t"))


def test_signals_interrupting_blocked_calls_restart_or_fail_with_eintr(programs, tmp_path):
    rec = record(tmp_path / "t", programs["threads_sigrestart"])
    assert rec.returncode == 0, describe(rec)
    assert rec.stdout.splitlines() == [
        b'reader: 1 SIGUSR1, read "after restart"',
        b"sleeper: 1 SIGUSR2, nanosleep -1 (Interrupted system call), rem about 5 s"]
    assert_faithful(rec, replay(tmp_path / "t"))
