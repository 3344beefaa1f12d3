"""The checks STYLE.md asks of the code run with the tests: ruff (pycodestyle errors and
warnings, pyflakes) over the whole tree and mypy --strict over the packages, configured in
pyproject.toml. Both are installed by the test extras at pinned versions, so a result does not
change under a developer's feet."""
from __future__ import annotations

import subprocess
import sys

from conftest import REPO_ROOT, describe


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600)


def test_ruff_finds_nothing():
    proc = _run("ruff", "check", "--output-format", "concise", ".")
    assert proc.returncode == 0, describe(proc)


def test_mypy_strict_finds_nothing():
    proc = _run("mypy")
    assert proc.returncode == 0, describe(proc)
