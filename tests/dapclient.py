"""A small scripted DAP client for tests: `relive dap` as a subprocess on stdio (as editors
start it), requests answered in order, events collected while waiting."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from queue import Empty, Queue

REPO_ROOT = Path(__file__).resolve().parent.parent


class DapError(AssertionError):
    pass


class DapClient:
    def __init__(self, *extra: str, timeout: float = 60.0, root: Path = REPO_ROOT):
        """`root`: the relive checkout to run (benchmarks compare two)."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH"))
                                            if p)
        self.proc = subprocess.Popen([sys.executable, "-m", "relive", "dap", *extra],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        self.timeout = timeout
        self.seq = 0
        self.messages: Queue = Queue()
        self.events: list[dict] = []
        self.stderr = b""
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read(self):
        out = self.proc.stdout
        while True:
            header = b""
            while not header.endswith(b"\r\n\r\n"):
                byte = out.read(1)
                if not byte:
                    self.messages.put(None)
                    return
                header += byte
            length = int(header.split(b":")[1].split(b"\r\n")[0])
            self.messages.put(json.loads(out.read(length)))

    def _read_stderr(self):
        for line in self.proc.stderr:
            self.stderr += line

    def send(self, command: str, **arguments) -> int:
        self.seq += 1
        body = json.dumps({"seq": self.seq, "type": "request", "command": command,
                           "arguments": arguments}).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()
        return self.seq

    def _next(self, deadline: float) -> dict:
        try:
            message = self.messages.get(timeout=max(0.0, deadline - time.monotonic()))
        except Empty:
            raise DapError(f"timed out; events so far: {self.events[-5:]}\n"
                           f"stderr: {self.stderr.decode(errors='replace')}") from None
        if message is None:
            raise DapError(f"adapter closed; stderr: {self.stderr.decode(errors='replace')}")
        return message

    def response(self, seq: int, ok: bool = True) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            message = self._next(deadline)
            if message["type"] == "event":
                self.events.append(message)
            elif message.get("request_seq") == seq:
                if message["success"] != ok:
                    raise DapError(f"{message['command']}: {message}")
                return message

    def request(self, command: str, **arguments) -> dict:
        return self.response(self.send(command, **arguments)).get("body", {})

    def fail(self, command: str, **arguments) -> str:
        return self.response(self.send(command, **arguments), ok=False)["message"]

    def event(self, name: str) -> dict:
        """The next event called `name` (events that came earlier count)."""
        deadline = time.monotonic() + self.timeout
        for i, e in enumerate(self.events):
            if e["event"] == name:
                return self.events.pop(i).get("body", {})
        while True:
            message = self._next(deadline)
            if message["type"] == "event" and message["event"] == name:
                return message.get("body", {})
            if message["type"] == "event":
                self.events.append(message)

    def output(self, category: str) -> str:
        return "".join(e["body"]["output"] for e in self.events
                       if e["event"] == "output" and e["body"].get("category") == category)

    def run(self, command: str, **arguments) -> dict:
        """A request that runs the program; returns the stopped event's body."""
        self.request(command, **arguments)
        return self.event("stopped")

    def top(self, thread: int = 1) -> dict:
        return self.request("stackTrace", threadId=thread, startFrame=0, levels=20)[
            "stackFrames"][0]

    def close(self):
        """End the session as an editor that quits does: close the adapter's stdin."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
        self.proc.wait(timeout=10)
