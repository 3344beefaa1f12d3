"""Managing traces by name: `relive ls`, `relive rm`, names looked up in the trace directory,
`latest` after a removal, a recording in progress (never reported as cut off, never deleted or
overwritten), `--version`, the line that says the program was killed by a signal, and what a
trace holds of the environment (`--env-exclude`, the one-time notice)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import REPO_ROOT, assert_faithful, describe, run_relive
from tracefile.reader import TraceReader


def relive_ok(*args, **kw):
    proc = run_relive(*args, text=True, **kw)
    assert proc.returncode == 0, describe(proc)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def clean_failure(proc, *needles):
    assert proc.returncode != 0, describe(proc)
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("relive: "), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)


def ls_rows(cwd=None):
    lines = relive_ok("ls", cwd=cwd).stdout.splitlines()
    assert lines[0].split() == ["NAME", "PROGRAM", "WHEN", "SIZE", "STATE", "STATUS"]
    return {line.split()[0]: line for line in lines[1:]}


def test_ls_lists_traces_with_program_size_state_and_status(programs, trace_root):
    assert run_relive("record", programs["hello"], "one").returncode == 0
    assert run_relive("record", programs["exit_status"], "3").returncode == 3
    killed = run_relive("record", "sh", "-c", "kill -SEGV $$", text=True)
    assert killed.returncode == 128 + 11
    rows = ls_rows()
    assert set(rows) == {"hello-0", "exit_status-0", "sh-0*"}  # `*`: the latest
    assert "hello one" in rows["hello-0"] and rows["hello-0"].endswith("complete  exit 0")
    assert rows["exit_status-0"].endswith("exit 3")
    assert rows["sh-0*"].endswith("complete  killed by SIGSEGV")
    size = re.search(r"\s(\d+\.\d) (KiB|MiB)\s", rows["hello-0"])
    assert size, rows["hello-0"]  # human units
    when = re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", rows["hello-0"])
    assert when, rows["hello-0"]
    # the recording itself said how the program ended
    assert "relive: sh was killed by SIGSEGV\n" in killed.stderr, killed.stderr
    info = relive_ok("info", "sh-0").stdout
    assert "status:   killed by SIGSEGV" in info and re.search(r"size: +\d+\.\d MiB", info)


def test_names_are_looked_up_in_the_trace_directory(programs, trace_root, tmp_path):
    assert run_relive("record", programs["hello"], "named").returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for command in (["info"], ["ps"], ["dump"]):
        relive_ok(*command, "hello-0", cwd=elsewhere)
    rep = run_relive("replay", "-a", "hello-0", cwd=elsewhere)
    assert rep.returncode == 0 and b"argv[1]: named\n" in rep.stdout, describe(rep)
    clean_failure(run_relive("info", "bug-0", text=True, cwd=elsewhere),
                  "no trace at bug-0", str(trace_root))


def test_rm_removes_traces_and_latest_follows(programs, trace_root):
    for word in ("first", "second", "third"):
        assert run_relive("record", programs["hello"], word).returncode == 0
    relive_ok("rm", "hello-2")  # the latest
    assert not (trace_root / "hello-2").exists()
    assert set(ls_rows()) == {"hello-0", "hello-1*"}
    rep = run_relive("replay", "-a")
    assert rep.returncode == 0 and b"argv[1]: second\n" in rep.stdout, describe(rep)
    clean_failure(run_relive("rm", "hello-9", text=True), "hello-9")
    (trace_root / "notes").mkdir()
    clean_failure(run_relive("rm", trace_root / "notes", text=True), "not a relive trace")
    assert (trace_root / "notes").exists()
    relive_ok("rm", "hello-0", "latest")
    assert not (trace_root / "latest").is_symlink()
    assert "no traces in" in relive_ok("ls").stdout


def test_latest_removed_by_hand_falls_back_to_the_newest_trace(programs, trace_root):
    for word in ("older", "newer"):
        assert run_relive("record", programs["hello"], word).returncode == 0
    import shutil
    shutil.rmtree(trace_root / "hello-1")
    for command in (["info"], ["replay", "-a"]):
        proc = run_relive(*command)
        assert proc.returncode == 0, describe(proc)
    assert b"argv[1]: older\n" in run_relive("replay", "-a").stdout


def test_a_recording_in_progress_is_not_cut_off_and_is_not_deleted(trace_root):
    recorder = subprocess.Popen(
        [sys.executable, "-m", "relive", "record", "sh", "-c", "echo started; read x; echo $x"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        assert recorder.stdout.readline() == b"started\n"
        trace = trace_root / "sh-0"
        info = relive_ok("info", "sh-0").stdout
        assert "still being recorded" in info and "cut off" not in info, info
        assert ls_rows()["sh-0*"].split()[-2:] == ["recording", "-"]
        clean_failure(run_relive("replay", "-a", text=True), "still being recorded")
        clean_failure(run_relive("rm", "sh-0", text=True), "still being recorded")
        clean_failure(run_relive("record", "--force", "-o", trace, "true", text=True),
                      "being recorded")
        assert (trace / "trace.db").exists()
        out, err = recorder.communicate(b"finished\n", timeout=120)
    finally:
        recorder.kill()
        recorder.wait()
    assert recorder.returncode == 0, err
    assert out == b"finished\n"
    assert "complete: yes" in relive_ok("info", "sh-0").stdout
    rep = run_relive("replay", "-a", "sh-0")
    assert rep.returncode == 0 and rep.stdout == b"started\nfinished\n", describe(rep)


def test_version_is_the_package_version():
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    proc = relive_ok("--version")
    assert proc.stdout == f"relive {version}\n"


def _recorded_bytes(trace: Path) -> bytes:
    """Every byte the trace holds of the program's memory, decompressed."""
    reader = TraceReader(trace)
    try:
        return b"".join(w.data for ev in reader.events() for w in ev.writes)
    finally:
        reader.close()


@pytest.mark.parametrize("how", ["option", "variable"])
def test_env_exclude_keeps_variables_out_of_the_trace(trace_root, tmp_path, how):
    secret = "tok-5f0e1c-relive-test"
    env = {**os.environ, "MY_API_TOKEN": secret, "KEEP_ME": "visible-value"}
    plain = run_relive("record", "-o", tmp_path / "plain", "env", env=env)
    assert plain.returncode == 0 and secret.encode() in plain.stdout
    assert secret.encode() in _recorded_bytes(tmp_path / "plain")  # what the option is for
    if how == "option":
        rec = run_relive("record", "--env-exclude", "*_TOKEN", "--env-exclude", "NOPE",
                         "-o", tmp_path / "kept", "env", env=env)
    else:
        rec = run_relive("record", "-o", tmp_path / "kept", "env",
                         env={**env, "RELIVE_ENV_EXCLUDE": "NOPE:MY_API_*"})
    assert rec.returncode == 0, describe(rec)
    assert secret.encode() not in rec.stdout and b"KEEP_ME=visible-value" in rec.stdout
    assert secret.encode() not in _recorded_bytes(tmp_path / "kept")
    assert_faithful(rec, run_relive("replay", "-a", tmp_path / "kept"))


def test_first_recording_says_once_what_traces_hold(trace_root):
    first = run_relive("record", "true", text=True)
    second = run_relive("record", "true", text=True)
    assert first.returncode == second.returncode == 0
    assert "environment variables" in first.stderr and "--env-exclude" in first.stderr
    assert "environment variables" not in second.stderr
