"""`python -m relive`."""
from __future__ import annotations

import sys

from relive.cli import main

sys.exit(main())
