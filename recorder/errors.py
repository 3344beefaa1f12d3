"""Errors the recorder reports at record time (never a trace that would replay wrongly)."""
from __future__ import annotations

from tracefile.errors import ReliveError


class UnsupportedError(ReliveError):
    """The program did something relive cannot record faithfully; the message names it."""
