"""One debugging session: DAP requests mapped to gdb/MI commands on a relive replay.

Theory of operation. The server hands requests to `handle()` one at a time, from one thread.
A request that runs the program (continue, next, stepBack, reverseContinue, ...) sends its
MI command, answers at once and leaves the session *running*; the server then calls
`poll()` until gdb reports `*stopped`, which becomes a `stopped` event. While running, only
pause, disconnect, terminate and threads are answered; other requests wait for the stop
(gdb in all-stop mode cannot look at a running program).

Direction is data: every resume is a `Resume` whose MI command carries `--reverse` or not;
stepBack is `-exec-next --reverse` (a whole line, stepping over calls: the mirror of next).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from relive.dap import machine
from relive.dap.breakpoints import Breakpoints
from relive.dap.gdb import Gdb, ScriptError
from relive.dap.inspect import Inspector, RequestError, StaleReference, frame_option
from relive.dap.output import OutputPump
from relive.dap.stops import END_OF_RECORDING, Resume, stopped_body
from tracefile.errors import ReliveError

__all__ = ["CAPABILITIES", "Session"]

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], None]

CAPABILITIES: dict[str, Any] = {
    "supportsConfigurationDoneRequest": True,
    "supportsFunctionBreakpoints": True,
    "supportsConditionalBreakpoints": True,
    "supportsHitConditionalBreakpoints": True,
    "supportsEvaluateForHovers": True,
    "supportsStepBack": True,
    "supportsDataBreakpoints": True,
    "supportsRestartRequest": True,
    "supportsTerminateRequest": True,
    "supportsSteppingGranularity": True,
    "supportsDelayedStackTraceLoading": True,
    "supportsDisassembleRequest": True,
    "supportsReadMemoryRequest": True,
    "supportsInstructionBreakpoints": True,
    "supportsValueFormattingOptions": False,
    "supportsGotoTargetsRequest": False,   # moving the pc would leave the recording
    "supportsSetVariable": False,          # so would writing memory
}
_STEPS = {  # request -> (line command, instruction command)
    "next": ("-exec-next", "-exec-next-instruction"),
    "stepIn": ("-exec-step", "-exec-step-instruction"),
    "stepOut": ("-exec-finish", "-exec-finish"),
    "stepBack": ("-exec-next --reverse", "-exec-step-instruction --reverse"),
}
_WHILE_RUNNING = {"pause", "disconnect", "terminate", "threads"}


class Session:
    def __init__(self, send: Send, *, gdb_timeout: float = 600.0) -> None:
        self.send = send
        self.gdb_timeout = gdb_timeout
        self.gdb: Gdb | None = None
        self.breakpoints: Breakpoints | None = None
        self.inspector: Inspector | None = None
        self.pump: OutputPump | None = None
        self.resume: Resume | None = None      # set while the program runs
        self.deferred: list[dict[str, Any]] = []
        self.stop_on_entry = False
        self.exit_code: int | None = None
        self.last_threads: list[dict[str, Any]] = []
        self.ended = False
        self.later: list[tuple[str, dict[str, Any]]] = []  # events due after the response

    @property
    def running(self) -> bool:
        return self.resume is not None

    # -- dispatch ---------------------------------------------------------------------------
    def handle(self, request: dict[str, Any]) -> None:
        command = str(request.get("command", ""))
        if request.get("type") != "request":
            return
        if self.running and command not in _WHILE_RUNNING:
            self.deferred.append(request)
            return
        handler = getattr(self, f"_on_{command}", None)
        if handler is None:
            self._respond(request, error=f"relive dap does not support {command!r}")
            return
        try:
            body = handler(request.get("arguments") or {})
        except StaleReference as e:
            self._respond(request, error=str(e), show=False)
            return
        except (RequestError, ScriptError, ReliveError, ValueError, KeyError, TypeError) as e:
            self._respond(request, error=str(e) or type(e).__name__)
            return
        except TimeoutError as e:
            self._respond(request, error=f"gdb did not answer: {e}")
            return
        except Exception as e:  # a relive bug: say so, keep the session
            log.exception("relive dap: %s failed", command)
            self._respond(request, error=f"internal error in relive dap ({command}): {e!r}")
            return
        self._respond(request, body)
        while self.later:
            self._event(*self.later.pop(0))
        self._after(command)

    def poll(self, wait: float) -> None:
        """While running: turn gdb's stop, if it came within `wait` s, into an event."""
        assert self.gdb is not None and self.resume is not None
        try:
            stop = self.gdb.poll_stop(wait)
        except ScriptError as e:
            self._lost(str(e))
            return
        if stop is None:
            return
        resume, self.resume = self.resume, None
        assert self.inspector is not None and self.breakpoints is not None
        self.inspector.reset()
        kinds = {n: self.breakpoints.kind(n) for n in
                 (*self.breakpoints.functions, *self.breakpoints.instructions,
                  *self.breakpoints.data)}
        body = stopped_body(stop, resume, kinds, self.breakpoints.data)
        if body["reason"] == END_OF_RECORDING and self.exit_code is not None:
            body["description"] += f"; the program exited with status {self.exit_code}"
        if self.pump is not None:
            self.pump.flush()
        self.send({"type": "event", "event": "stopped", "body": body})
        while self.deferred and not self.running:
            self.handle(self.deferred.pop(0))

    def close(self) -> None:
        """Quit gdb, stop the replay server and its replayed processes."""
        if self.pump is not None:
            self.pump.stop()
        if self.gdb is not None:
            self.gdb.close()
            self.gdb = None
        self.ended = True

    # -- replies ----------------------------------------------------------------------------
    def _respond(self, request: dict[str, Any], body: dict[str, Any] | None = None,
                 error: str | None = None, show: bool = True) -> None:
        response: dict[str, Any] = {"type": "response", "request_seq": request.get("seq", 0),
                                    "command": request.get("command", ""),
                                    "success": error is None}
        if error is not None:
            response["message"] = error
            response["body"] = {"error": {"id": 1, "format": error, "showUser": show}}
        elif body:
            response["body"] = body
        self.send(response)

    def _event(self, event: str, body: dict[str, Any] | None = None) -> None:
        self.send({"type": "event", "event": event, **({"body": body} if body else {})})

    def _after(self, command: str) -> None:
        if command == "launch":
            self._event("initialized")
        elif command in ("disconnect",):
            self.close()

    def _lost(self, why: str) -> None:
        self.resume = None
        self._event("output", {"category": "stderr", "output": f"relive: {why}\n"})
        self._event("exited", {"exitCode": self.exit_code if self.exit_code is not None else 1})
        self._event("terminated")
        self.close()

    # -- session ----------------------------------------------------------------------------
    def _on_initialize(self, args: dict[str, Any]) -> dict[str, Any]:
        return CAPABILITIES

    def _on_launch(self, args: dict[str, Any]) -> None:
        from relive import traces
        from tracefile.reader import TraceReader
        if self.gdb is not None:
            raise RequestError("already launched")
        trace = traces.resolve_trace(str(args["trace"]) if args.get("trace") else None)
        reader = TraceReader(trace)  # a bad trace is one clear message, before any process
        try:
            status = reader.meta.get("exit_status")
            tasks = reader.tasks()
        finally:
            reader.close()
        pids = sorted({t.pid for t in tasks})
        pid = args.get("pid")
        if pid is not None:
            if int(pid) not in pids:
                raise RequestError(f"process {pid} is not in {trace}; its processes: "
                                   f"{', '.join(map(str, pids))}")
            status = next((t.exit_status for t in tasks if t.tid == int(pid)), None)
        if isinstance(status, int):
            self.exit_code = (os.WEXITSTATUS(status) if os.WIFEXITED(status)
                              else 128 + os.WTERMSIG(status))
        self.stop_on_entry = bool(args.get("stopOnEntry", False))
        self.gdb = Gdb(trace, timeout=self.gdb_timeout, die_with_parent=True,
                       pid=int(pid) if pid is not None else None)
        self.breakpoints = Breakpoints(self.gdb)
        self.inspector = Inspector(self.gdb)
        self.pump = OutputPump(*self.gdb.output_files(), send=self._event)
        self.pump.start()
        self._event("output", {"category": "console",
                               "output": f"relive: replaying {trace}\n"})

    def _on_configurationDone(self, args: dict[str, Any]) -> None:
        self._start()

    def _start(self) -> None:
        """Where a session (or a restart) begins: at main for stopOnEntry, else run."""
        gdb = self.require_gdb()
        if self.stop_on_entry:
            try:
                entry = int(gdb.mi("-break-insert -t main")["bkpt"]["number"])
            except ScriptError:  # no main (a stripped program): stay at the first instruction
                self._event("stopped", {"reason": "entry", "threadId": self.first_thread(),
                                        "allThreadsStopped": True})
                return
            self._resume(Resume("-exec-continue", entry_breakpoint=entry))
        else:
            self._resume(Resume("-exec-continue"))

    def _on_restart(self, args: dict[str, Any]) -> None:
        """Back to the start of the recording: reverse-continue with every breakpoint
        disabled, then begin as a launch does."""
        gdb = self.require_gdb()
        gdb.console("disable")
        try:
            gdb.resume("-exec-continue --reverse")
            stop = gdb.poll_stop(self.gdb_timeout)
        finally:
            gdb.console("enable")
        if stop is None:
            raise TimeoutError("going back to the start of the recording")
        self.inspect().reset()
        self.require_breakpoints().reset_hit_counts()
        self._start()

    def _on_disconnect(self, args: dict[str, Any]) -> None:
        self.resume = None
        if self.pump is not None:  # the program's last output before the response
            self.pump.stop()

    def _on_terminate(self, args: dict[str, Any]) -> None:
        self._event("exited", {"exitCode": self.exit_code if self.exit_code is not None else 0})
        self._event("terminated")

    # -- breakpoints ------------------------------------------------------------------------
    def _on_setBreakpoints(self, args: dict[str, Any]) -> dict[str, Any]:
        path = str((args.get("source") or {}).get("path") or "")
        if not path:
            raise RequestError("setBreakpoints needs a source path")
        wanted = args.get("breakpoints")
        if wanted is None:  # the deprecated form: lines only
            wanted = [{"line": line} for line in args.get("lines", [])]
        return {"breakpoints": self.require_breakpoints().set_source(path, list(wanted))}

    def _on_setFunctionBreakpoints(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"breakpoints": self.require_breakpoints().set_functions(list(args["breakpoints"]))}

    def _on_setInstructionBreakpoints(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"breakpoints": self.require_breakpoints().set_instructions(
            list(args["breakpoints"]))}

    def _on_setExceptionBreakpoints(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"breakpoints": []}

    def _on_dataBreakpointInfo(self, args: dict[str, Any]) -> dict[str, Any]:
        expression, option = self.inspect().expression_of(
            args.get("variablesReference"), str(args["name"]))
        if not option and args.get("frameId"):
            frame = self.inspect().frame(int(args["frameId"]))
            option = frame_option(*frame) if frame else ""
        return self.require_breakpoints().data_info(expression, option)

    def _on_setDataBreakpoints(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"breakpoints": self.require_breakpoints().set_data(list(args["breakpoints"]))}

    # -- running ----------------------------------------------------------------------------
    def _on_continue(self, args: dict[str, Any]) -> dict[str, Any]:
        self._resume(Resume("-exec-continue"))
        return {"allThreadsContinued": True}

    def _on_reverseContinue(self, args: dict[str, Any]) -> None:
        self._resume(Resume("-exec-continue --reverse", reverse=True))

    def _on_next(self, args: dict[str, Any]) -> None:
        self._step("next", args)

    def _on_stepIn(self, args: dict[str, Any]) -> None:
        self._step("stepIn", args)

    def _on_stepOut(self, args: dict[str, Any]) -> None:
        self._step("stepOut", args)

    def _on_stepBack(self, args: dict[str, Any]) -> None:
        self._step("stepBack", args)

    def _step(self, request: str, args: dict[str, Any]) -> None:
        line, instruction = _STEPS[request]
        command = instruction if args.get("granularity") == "instruction" else line
        thread = f"--thread {int(args['threadId'])} " if self._choose_thread(args) else ""
        name, _, reverse = command.partition(" ")
        self._resume(Resume(f"{name} {thread}{reverse}".strip(), reverse=bool(reverse)))

    def _choose_thread(self, args: dict[str, Any]) -> bool:
        """Whether a step must name its thread: only with several threads. With `--thread`
        a reverse-next on bench_rev took 27 ms instead of 14 (gdb switches threads and
        reads the registers and the stack again), the first after a continue 178 ms
        instead of 105."""
        if not args.get("threadId"):
            return False
        try:  # (gdb's thread list, read at the stop: no packet)
            return int(self.require_gdb().mi("-thread-list-ids").get("number-of-threads", 2)) > 1
        except (ScriptError, ValueError):
            return True

    def _on_pause(self, args: dict[str, Any]) -> None:
        if self.resume is None:
            return
        self.resume = Resume(self.resume.command, self.resume.reverse,
                             self.resume.entry_breakpoint, pausing=True)
        self.require_gdb().interrupt()

    def _resume(self, resume: Resume) -> None:
        """Start the program; the stop comes later through poll()."""
        self.require_gdb().resume(resume.command)
        self.resume = resume

    # -- looking ----------------------------------------------------------------------------
    def _on_threads(self, args: dict[str, Any]) -> dict[str, Any]:
        if not self.running:
            info = self.require_gdb().mi("-thread-info")
            self.last_threads = [{"id": int(t["id"]),
                                  "name": f"{t.get('name', 'thread')} ({t.get('target-id')})"}
                                 for t in info.get("threads", [])]
        return {"threads": self.last_threads}

    def first_thread(self) -> int:
        threads = self._on_threads({})["threads"]
        return int(threads[0]["id"]) if threads else 1

    def _on_stackTrace(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.inspect().stack_trace(int(args["threadId"]),
                                             int(args.get("startFrame") or 0),
                                             int(args.get("levels") or 0))

    def _on_scopes(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"scopes": self.inspect().scopes(int(args["frameId"]))}

    def _on_variables(self, args: dict[str, Any]) -> dict[str, Any]:
        listed = self.inspect().variables(int(args["variablesReference"]))
        start, count = int(args.get("start") or 0), int(args.get("count") or 0)
        return {"variables": listed[start:start + count] if count else listed[start:]}

    def _on_evaluate(self, args: dict[str, Any]) -> dict[str, Any]:
        expression = str(args["expression"])
        frame_id = int(args["frameId"]) if args.get("frameId") else None
        if args.get("context") != "repl":
            return self.inspect().evaluate(expression, frame_id)
        from relive.dap.repl import repl
        return repl(self, expression, frame_id)

    def _on_disassemble(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"instructions": machine.disassemble(self.require_gdb(), args)}

    def _on_readMemory(self, args: dict[str, Any]) -> dict[str, Any]:
        return machine.read_memory(self.require_gdb(), args)

    # -- helpers ----------------------------------------------------------------------------
    def require_gdb(self) -> Gdb:
        if self.gdb is None:
            raise RequestError("no replay yet: send launch first")
        return self.gdb

    def inspect(self) -> Inspector:
        self.require_gdb()
        assert self.inspector is not None
        return self.inspector

    def require_breakpoints(self) -> Breakpoints:
        self.require_gdb()
        assert self.breakpoints is not None
        return self.breakpoints
