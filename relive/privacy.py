"""What a trace gives away, and the one control over it relive offers before recording.

A trace holds everything the program saw: its initial stack (argv and the whole environment,
tokens included), every byte the kernel wrote into its memory (files read, network data) and
copies of the files it mapped. None of that can be scrubbed afterwards without breaking the
replay, which rebuilds exactly that memory. So the only honest control is before the program
starts: variables matching --env-exclude / $RELIVE_ENV_EXCLUDE are removed from the recorded
program's environment (the program runs without them), and the first recording tells the
user, once, what traces contain.
"""
from __future__ import annotations

import sys
from fnmatch import fnmatchcase
from pathlib import Path

ENV_EXCLUDE = "RELIVE_ENV_EXCLUDE"  # patterns separated by ':'
STAMP = ".privacy-notice-shown"

NOTICE = """\
relive: note (shown once): a trace holds the recorded program's environment variables (tokens
relive:   and keys included), what it read into memory and copies of the files it mapped.
relive:   Traces are readable by you alone (directories 0700); share one only as you would
relive:   share those secrets. `relive record --env-exclude 'PATTERN'` (or
relive:   RELIVE_ENV_EXCLUDE='PAT1:PAT2') runs the program without the matching variables,
relive:   so they are not in the trace. `relive rm NAME` deletes a trace."""


def exclusion_patterns(options: list[str], environ: dict[str, str]) -> list[str]:
    """The glob patterns given with --env-exclude and in $RELIVE_ENV_EXCLUDE."""
    from_env = [p for p in environ.get(ENV_EXCLUDE, "").split(":") if p]
    return [*options, *from_env]


def program_environment(environ: dict[str, str], patterns: list[str]) -> dict[str, str]:
    """`environ` without the variables whose names match one of `patterns`."""
    return {name: value for name, value in environ.items()
            if not any(fnmatchcase(name, p) for p in patterns)}


def notice_once(root: Path) -> None:
    """Print NOTICE the first time a recording ends for this trace directory."""
    stamp = root / STAMP
    try:
        if stamp.exists():
            return
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        stamp.touch(mode=0o600)
    except OSError:
        return  # a directory we cannot write: no stamp, and no notice at every recording
    print(NOTICE, file=sys.stderr)
