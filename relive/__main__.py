"""`python -m relive`."""
from __future__ import annotations

import gc

gc.disable()  # while relive is imported (relive.cli.main turns it on again)

from relive.cli import run  # noqa: E402

run()
