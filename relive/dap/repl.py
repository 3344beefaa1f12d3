"""The debug console: what the user types is an expression if gdb can evaluate it, else a
gdb command (`info threads`, `x/4xg $sp`, `monitor when`, `reverse-finish`); `-exec CMD`
always runs CMD as a command, as in VS Code's cppdbg.

A command that runs the program (`reverse-finish`, `until 42`) leaves the session running
and its stop is reported like any other. `monitor goto N` moves the replay behind gdb's
back: gdb's caches are flushed and the editor is told the program is somewhere else.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from relive.dap.gdb import ScriptError
from relive.dap.stops import Resume

if TYPE_CHECKING:
    from relive.dap.session import Session

__all__ = ["repl"]

_IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
_REVERSE = {"rc", "rn", "rs", "rsi", "rni"}


def repl(session: Session, text: str, frame_id: int | None) -> dict[str, Any]:
    text = text.strip()
    if text.startswith("-exec "):
        return _command(session, text[len("-exec "):].strip(), frame_id)
    try:
        return session.inspect().evaluate(text, frame_id)
    except ScriptError as not_an_expression:
        try:
            return _command(session, text, frame_id)
        except ScriptError:
            if _IDENTIFIER.match(text):  # a misspelt variable, not a command
                raise not_an_expression from None
            raise


def _command(session: Session, command: str, frame_id: int | None) -> dict[str, Any]:
    gdb = session.require_gdb()
    frame = session.inspect().frame(frame_id)
    if frame is not None:
        gdb.mi(f"-thread-select {frame[0]}")
        gdb.mi(f"-stack-select-frame {frame[1]}")
    output, running = gdb.console(command)
    words = command.split()
    if running:
        reverse = bool(words) and (words[0].startswith("reverse") or words[0] in _REVERSE)
        session.resume = Resume(command, reverse=reverse)
    elif words[:1] == ["monitor"]:
        # the replay may have moved (monitor goto): gdb must not trust what it cached
        gdb.console("maintenance flush register-cache")
        gdb.console("maintenance flush dcache")
        if len(words) > 1 and words[1] == "goto":
            session.inspect().reset()
            session.later.append(("stopped", {"reason": "goto", "allThreadsStopped": True,
                                              "threadId": session.first_thread(),
                                              "description": "moved to another event"}))
    return {"result": output.rstrip("\n"), "variablesReference": 0}
