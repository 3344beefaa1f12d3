"""The replayed program's output as DAP `output` events.

The replay server re-emits what the recorded program wrote to stdout and stderr on its own
stdout and stderr, which relive.api sends to two files; this thread tails them. relive's own
lines on stderr about serving gdb are left out (the editor did not ask for a server).
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["OutputPump"]

_OWN = (b"relive: serving ", b"relive: connect with:")
PERIOD = 0.05


class OutputPump:
    def __init__(self, stdout_path: str, stderr_path: str,
                 send: Callable[[str, dict[str, Any]], None]) -> None:
        self._paths = {"stdout": stdout_path, "stderr": stderr_path}
        self._offsets = {"stdout": 0, "stderr": 0}
        self._partial = b""  # stderr is filtered by line
        self._send = send
        self._done = threading.Event()
        self._lock = threading.Lock()  # one pass at a time: the thread's or flush()'s
        self._thread = threading.Thread(target=self._run, name="relive-dap-output",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Send what is left, then stop."""
        if self._thread.is_alive():
            self._done.set()
            self._thread.join(timeout=2)

    def flush(self) -> None:
        """Send what the program wrote so far now (before a stopped event, so that the
        editor shows the output that led to the stop)."""
        self._pass(final=False)

    def _run(self) -> None:
        while not self._done.wait(PERIOD):
            self._pass(final=False)
        self._pass(final=True)

    def _pass(self, final: bool) -> None:
        with self._lock:
            self._read_all(final)

    def _read_all(self, final: bool) -> None:
        for category, path in self._paths.items():
            try:
                with open(path, "rb") as f:
                    f.seek(self._offsets[category])
                    data = f.read(1 << 20)
            except OSError:
                continue
            self._offsets[category] += len(data)
            if category == "stderr":
                data = self._filter(data, final)
            if data:
                self._send("output", {"category": category,
                                      "output": data.decode(errors="replace")})

    def _filter(self, data: bytes, final: bool) -> bytes:
        """Whole lines of stderr but relive's own serving lines (a partial last line waits
        for its end, or for the end of the session)."""
        data = self._partial + data
        cut = len(data) if final else data.rfind(b"\n") + 1
        complete, self._partial = data[:cut], data[cut:]
        return b"".join(line for line in complete.splitlines(keepends=True)
                        if not line.startswith(_OWN))
