"""Shared fixtures: compiled test programs, a per-test trace directory, and a
helper to run the relive CLI as a subprocess (``python -m relive``)."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PROGRAMS_DIR = Path(__file__).resolve().parent / "programs"


def run_relive(*args, **kw):
    """Run ``python -m relive ARGS`` and return the CompletedProcess.

    Output is captured as bytes (pass text=True for str); the default timeout
    is 120 s.  Any subprocess.run keyword may be overridden.  The repo root is
    put on PYTHONPATH so this works without an editable install.
    """
    env = dict(kw.pop("env", None) or os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    kw.setdefault("capture_output", True)
    kw.setdefault("timeout", 120)
    return subprocess.run([sys.executable, "-m", "relive", *map(str, args)],
                          env=env, **kw)


def _compile(src, out_dir):
    binary = out_dir / src.stem
    proc = subprocess.run(["gcc", "-O0", "-g", "-o", str(binary), str(src)],
                          capture_output=True, text=True)
    return src.name, binary, proc


@pytest.fixture(scope="session")
def programs(tmp_path_factory):
    """Compile every tests/programs/*.c; return {name: Path to binary}."""
    out_dir = tmp_path_factory.mktemp("programs")
    sources = sorted(PROGRAMS_DIR.glob("*.c"))
    if not sources:
        pytest.fail(f"no C programs found in {PROGRAMS_DIR}", pytrace=False)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(pool.map(lambda s: _compile(s, out_dir), sources))
    errors = [f"{name}:\n{proc.stderr}" for name, _, proc in results
              if proc.returncode != 0]
    if errors:
        pytest.fail("compiling test programs failed:\n" + "\n".join(errors),
                    pytrace=False)
    return {binary.name: binary for _, binary, _ in results}


@pytest.fixture
def trace_root(tmp_path, monkeypatch):
    """A fresh directory, also exported as RELIVE_TRACE_DIR to subprocesses."""
    root = tmp_path / "traces"
    root.mkdir()
    monkeypatch.setenv("RELIVE_TRACE_DIR", str(root))
    return root


@pytest.fixture
def relive():
    """The run_relive helper, for tests that prefer a fixture to an import."""
    return run_relive
