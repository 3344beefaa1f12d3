"""`python -m relive`."""
from __future__ import annotations

from relive.cli import run

run()
