"""gdb/MI for the debug adapter: relive.api's Replay (the replay server in a subprocess, gdb
through pygdbmi), with gdb in MI async mode so that a running program can be paused, and
resumes that return at once and are finished by polling for the `*stopped` record.

gdb does symbols, types, expressions and stepping; this module only moves MI records.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from relive.api import END_OF_HISTORY, Replay, ScriptError

__all__ = ["Gdb", "GdbStop", "ScriptError", "quote"]


def quote(text: str) -> str:
    """An MI c-string argument."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@dataclass(frozen=True, slots=True)
class GdbStop:
    """A `*stopped` record (payload as gdb sent it) and the text gdb printed with it.
    error is gdb's message when a resume gave up after `^running` (no stop happened)."""
    payload: dict[str, Any]
    console: str
    error: str | None = None

    @property
    def end_of_history(self) -> bool:
        """gdb 13.1 gives this stop no reason; newer gdb says no-history."""
        reason = self.payload.get("reason")
        return reason == "no-history" or (reason is None and END_OF_HISTORY in self.console)


class Gdb(Replay):
    """A replay served by relive and a gdb connected to it, driven one MI command at a time
    from one thread."""

    gdb_settings = (*Replay.gdb_settings, "set mi-async on", "set print pretty off",
                    "set print elements 200")

    def mi(self, command: str) -> dict[str, Any]:
        """An MI command's result payload; ScriptError with gdb's message if it failed."""
        return self._mi(command)

    def records(self, command: str) -> list[dict[str, Any]]:
        """An MI command's records up to its result record."""
        return self._mi_records(command)

    def console(self, command: str) -> tuple[str, bool]:
        """A CLI command; returns what it printed and whether it resumed the program (then
        the caller polls for the stop)."""
        records = self._mi_records(f"-interpreter-exec console {quote(command)}")
        text = "".join(r["payload"] for r in records
                       if r["type"] in ("console", "target", "log")
                       and isinstance(r["payload"], str))
        running = any(r["message"] == "running" for r in records
                      if r["type"] in ("result", "notify"))
        if running:  # its *stopped may be queued already; poll_stop finds it
            self._pending[:0] = [r for r in records if r["type"] != "result"]
        return text, running

    def resume(self, command: str) -> None:
        """Start an execution command (gdb answers `^running` at once in async mode)."""
        records = self._mi_records(command)
        self._pending[:0] = [r for r in records if r["type"] != "result"]

    def poll_stop(self, wait: float) -> GdbStop | None:
        """The stop that ends the current resume if gdb reports it within `wait` seconds,
        else None. ScriptError if the replay server died meanwhile."""
        deadline = time.monotonic() + wait
        while True:
            for i, record in enumerate(self._pending):
                stopped = record["type"] == "notify" and record["message"] == "stopped"
                failed = record["type"] == "result" and record["message"] == "error"
                if stopped or failed:
                    taken, self._pending = self._pending[:i + 1], self._pending[i + 1:]
                    console = "".join(r["payload"] for r in taken
                                      if r["type"] in ("console", "target", "log")
                                      and isinstance(r["payload"], str))
                    payload = record["payload"] or {}
                    if failed:
                        return GdbStop({}, console, error=str(payload.get("msg", "failed")))
                    return GdbStop(payload, console)
            left = deadline - time.monotonic()
            if left < 0:
                return None
            if self._server is not None and self._server.poll() is not None:
                raise ScriptError(f"the replay server exited:\n{self.server_log()}")
            self._pending.extend(self._gdb.get_gdb_response(
                timeout_sec=max(0.0, min(left, 0.05)), raise_error_on_timeout=False))

    def drain_console(self) -> str:
        """Console text of records gdb sent outside any command (e.g. `Reading ... from
        remote target`), removed from the queue so it does not grow."""
        keep, text = [], []
        for record in self._pending:
            if record["type"] in ("console", "target") and isinstance(record["payload"], str):
                text.append(record["payload"])
            elif record["type"] != "notify" or record["message"] in ("stopped", "running"):
                keep.append(record)
        self._pending = keep
        return "".join(text)

    def interrupt(self) -> None:
        """Ask gdb to stop the running program (`-exec-interrupt`); its stop follows."""
        self._mi("-exec-interrupt")

    def output_files(self) -> tuple[str, str]:
        """Where the replay server's stdout (the program's recorded output) and stderr
        (the program's recorded stderr and relive's messages) go."""
        return str(self._server_out), str(self._server_err)

    @property
    def alive(self) -> bool:
        return self._gdb is not None
