"""`relive dap` driven by a DAP client nobody here wrote: Microsoft's DebugClient from
@vscode/debugadapter-testsupport (the library VS Code's own adapters are tested with), run
by node over stdio. tests/dap-client/ pins it (package-lock.json); the fixture installs it
with `npm ci` into a cache directory once per lockfile."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PROGRAMS_DIR, REPO_ROOT, run_relive

CLIENT = Path(__file__).resolve().parent / "dap-client"


@pytest.fixture(scope="session")
def node_modules() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node and npm are needed for Microsoft's DAP test client")
    lock = (CLIENT / "package-lock.json").read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "relive-tests"
    target = cache / f"dap-client-{hashlib.sha256(lock).hexdigest()[:16]}"
    if not (target / "node_modules" / "@vscode" / "debugadapter-testsupport").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(CLIENT / name, target / name)
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--prefer-offline"],
                              cwd=target, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return target / "node_modules"


def test_microsofts_debug_client_breaks_steps_back_and_reverse_continues(
        programs, tmp_path, node_modules):
    trace = tmp_path / "trace"
    assert run_relive("record", "-o", trace, programs["dap_target"]).returncode == 0
    env = dict(os.environ, NODE_PATH=str(node_modules),  # (RELIVE_DAP_LOG: docs/editors.md)
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT),
                                                      os.environ.get("PYTHONPATH")) if p))
    done = subprocess.run(["node", str(CLIENT / "session.js"), sys.executable, str(trace),
                           str(PROGRAMS_DIR / "dap_target.c")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert done.stdout.splitlines() == [
        "hit breakpoint at line 46",
        "hover a = 12",
        "continue to its second hit, a = 1",
        "stepBack to line 45",
        "reverseContinue to the breakpoint at line 46 (its first hit), a = 12",
        "reverseContinue to the write of score at line 30",
        "end of recording: End of recording (no more history in this direction); "
        "the program exited with status 0",
        "disconnected",
    ], done.stdout
