"""gdb's `*stopped` records as DAP `stopped` event bodies.

What the editor shows: why the program stopped ("breakpoint", "data breakpoint", "step",
"pause", "entry", a recorded signal as "exception", or one of the two ends of the recording)
and a description. Going backwards gdb names the later value of a watched location "old";
the description gives the write in program order instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from relive.dap.gdb import GdbStop

__all__ = ["END_OF_RECORDING", "START_OF_RECORDING", "Resume", "stopped_body"]

END_OF_RECORDING = "end of recording"
START_OF_RECORDING = "start of recording"
_STEPS = {"end-stepping-range", "function-finished", "location-reached"}
_WATCH = {"watchpoint-trigger", "read-watchpoint-trigger", "access-watchpoint-trigger"}


@dataclass(frozen=True, slots=True)
class Resume:
    """What the program was told to do: the MI command, its direction, and what a plain
    stop at a breakpoint means (the temporary breakpoint of stopOnEntry is an "entry")."""
    command: str
    reverse: bool = False
    entry_breakpoint: int | None = None
    pausing: bool = False


def stopped_body(stop: GdbStop, resume: Resume, kinds: dict[int, str],
                 watched: dict[int, str]) -> dict[str, Any]:
    """The body of the stopped event for `stop`; kinds maps gdb breakpoint numbers to DAP
    reasons ("breakpoint", "function breakpoint", "data breakpoint"), watched maps
    watchpoint numbers to the expressions the user watched."""
    payload = stop.payload
    reason, description, ids = _reason(stop, resume, kinds, watched)
    body: dict[str, Any] = {"reason": reason, "allThreadsStopped": True,
                            "preserveFocusHint": False}
    tid = payload.get("thread-id")
    if tid not in (None, "all"):
        body["threadId"] = int(tid)
    if description:
        body["description"] = description
        body["text"] = description
    if ids:
        body["hitBreakpointIds"] = ids
    return body


def _reason(stop: GdbStop, resume: Resume, kinds: dict[int, str], watched: dict[int, str]
            ) -> tuple[str, str | None, list[int]]:
    payload = stop.payload
    reason = payload.get("reason")
    if stop.error is not None or "Remote failure reply" in stop.console:
        said = [line for line in stop.console.splitlines() if line.startswith("relive:")]
        return "exception", " ".join([stop.error or "relive could not do it", *said]), []
    if stop.end_of_history or str(reason).startswith("exited"):
        where = START_OF_RECORDING if resume.reverse else END_OF_RECORDING
        return where, f"{where[0].upper()}{where[1:]} (no more history in this direction)", []
    if reason == "breakpoint-hit":
        number = int(payload.get("bkptno", 0))
        if number == resume.entry_breakpoint:
            return "entry", None, []
        return kinds.get(number, "breakpoint"), None, [number]
    if reason in _WATCH:
        ids = _watch_ids(payload)
        name = watched.get(ids[0]) if ids else None
        return "data breakpoint", _watch_text(payload, resume.reverse, name), ids
    if reason == "signal-received":
        name = str(payload.get("signal-name", "signal"))
        if resume.pausing and name in ("SIGINT", "0"):
            return "pause", None, []
        return "exception", f"{name}: {payload.get('signal-meaning', '')}".rstrip(": "), []
    if reason in _STEPS:
        return "step", None, []
    return ("pause" if resume.pausing else "step"), None, []


def _watch_ids(payload: dict[str, Any]) -> list[int]:
    for key in ("wpt", "hw-rwpt", "hw-awpt"):
        if isinstance(payload.get(key), dict) and "number" in payload[key]:
            return [int(payload[key]["number"])]
    return []


def _watch_text(payload: dict[str, Any], reverse: bool, name: str | None) -> str:
    exp = name or next((payload[k].get("exp", "") for k in ("wpt", "hw-rwpt", "hw-awpt")
                        if isinstance(payload.get(k), dict)), "")
    value = payload.get("value") or {}
    if "old" in value and "new" in value:
        before, after = (value["new"], value["old"]) if reverse else (value["old"], value["new"])
        return f"{exp} changed: {before} -> {after}"
    if "value" in value:
        return f"{exp} accessed, value {value['value']}"
    return f"{exp} changed: = {value.get('new', '?')}"
