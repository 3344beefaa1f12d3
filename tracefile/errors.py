"""relive's error base class and the trace-file errors (the lowest layer owns the base)."""
from __future__ import annotations


class ReliveError(Exception):
    """Base of every error relive reports to a user: the message says what, where, what to do."""


class TraceError(ReliveError):
    """A trace directory is missing, corrupt, truncated, or from an incompatible version."""
