"""`relive dap`: a debug adapter on stdin/stdout, or on a TCP port of 127.0.0.1.

Three threads: the reader cuts the editor's bytes into requests and queues them; the main
thread handles them one by one and, while the program runs, polls gdb between requests (so
pause works); the output pump sends the program's output. Every message goes through one
locked writer that numbers it.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

from relive.dap.codec import Codec, ProtocolError, encode
from relive.dap.session import Session

__all__ = ["serve_stdio", "serve_tcp"]

log = logging.getLogger(__name__)
POLL = 0.02  # how often a running session looks for a request (pause) between gdb reads


def _exit_on_signals() -> None:
    """An editor that gives up on the adapter sends SIGTERM (or its terminal SIGHUP): unwind,
    so that the session's `finally` stops gdb, the replay server and the replayed process."""
    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, leave)


def serve_stdio() -> int:
    """Speak DAP on fd 0/1. Anything else that writes to fd 1 goes to stderr instead."""
    _exit_on_signals()
    out = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(out, view):]

    return 0 if run_session(lambda: os.read(0, 65536), write) else 1


def serve_tcp(port: int, *, once: bool = False) -> int:
    """Listen on 127.0.0.1:PORT (0: any free port, printed) and serve one editor at a
    time."""
    _exit_on_signals()
    with socket.create_server(("127.0.0.1", port)) as server:
        print(f"relive: DAP adapter listening on 127.0.0.1:{server.getsockname()[1]}",
              file=sys.stderr, flush=True)
        while True:
            conn, _ = server.accept()
            with conn:
                run_session(lambda: conn.recv(65536), conn.sendall)
            if once:
                return 0


def run_session(read: Callable[[], bytes], write: Callable[[bytes], None]) -> bool:
    """Serve one editor until it disconnects or its stream ends; False if it sent something
    that is not DAP."""
    requests: queue.Queue[dict[str, Any] | None] = queue.Queue()
    garbled: list[ProtocolError] = []
    lock = threading.Lock()
    seq = 0
    trace_to = os.environ.get("RELIVE_DAP_LOG")  # a file to log the traffic to
    traffic = open(trace_to, "a", encoding="utf-8") if trace_to else None  # noqa: SIM115

    def send(message: dict[str, Any]) -> None:
        nonlocal seq
        with lock:
            seq += 1
            message = {"seq": seq, **message}
            if traffic is not None:
                traffic.write(f"<- {json.dumps(message)}\n")
                traffic.flush()
            try:
                write(encode(message))
            except OSError:  # the editor went away; the reader sees the end too
                pass

    threading.Thread(target=_read, args=(read, requests, garbled), name="relive-dap-reader",
                     daemon=True).start()
    session = Session(send)
    try:
        while not session.ended:
            if session.running:
                try:
                    request = requests.get_nowait()
                except queue.Empty:
                    session.poll(POLL)
                    continue
            else:
                request = requests.get()
            if request is None:
                break
            if traffic is not None:
                with lock:
                    traffic.write(f"-> {json.dumps(request)}\n")
                    traffic.flush()
            session.handle(request)
    finally:
        session.close()
        if traffic is not None:
            traffic.close()
    return not garbled


def _read(read: Callable[[], bytes], requests: queue.Queue[dict[str, Any] | None],
          garbled: list[ProtocolError]) -> None:
    codec = Codec()
    try:
        while data := read():
            codec.receive_data(data)
            while (message := codec.next_message()) is not None:
                requests.put(message)
    except ProtocolError as e:
        print(f"relive: {e}", file=sys.stderr)
        garbled.append(e)
    except OSError as e:
        log.debug("DAP input closed: %s", e)
    requests.put(None)
