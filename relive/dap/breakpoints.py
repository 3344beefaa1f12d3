"""Editor breakpoints as gdb breakpoints: per source file, function and data (watchpoints).

DAP sends the whole list of a source's breakpoints (or of all function or data breakpoints)
every time; gdb has numbered breakpoints. Each `set_*` deletes the gdb breakpoints of the
previous list and inserts the new one, so gdb holds exactly what the editor shows. The DAP
id of a breakpoint is gdb's number, which is also what `*stopped` names.

Hit conditions (`N`, `>= N`, `> N`, `== N`) become gdb ignore counts, which gdb spends as it
passes hits; `reset_hit_counts` restores them when the replay goes back to its start.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from relive.dap.gdb import Gdb, ScriptError, quote

__all__ = ["Breakpoints", "HitConditionError"]

_HIT = re.compile(r"^\s*(>=|>|==)?\s*(\d+)\s*$")
_ADDRESS = re.compile(r"^(?P<addr>0x[0-9a-f]+)")
ACCESS = {"write": "", "read": "-r ", "readWrite": "-a "}


class HitConditionError(ValueError):
    pass


def ignore_count(hit_condition: str | None) -> int:
    """gdb's ignore count for a DAP hit condition: stop from the Nth hit on."""
    if not hit_condition:
        return 0
    match = _HIT.match(hit_condition)
    if not match:
        raise HitConditionError(f"hit condition {hit_condition!r} is not N, >= N, > N or == N")
    n = int(match.group(2))
    return n if match.group(1) == ">" else max(0, n - 1)


@dataclass(slots=True)
class Breakpoints:
    gdb: Gdb
    by_source: dict[str, list[int]] = field(default_factory=dict)
    functions: set[int] = field(default_factory=set)
    instructions: set[int] = field(default_factory=set)
    data: dict[int, str] = field(default_factory=dict)     # gdb number -> description
    ignore: dict[int, int] = field(default_factory=dict)   # gdb number -> ignore count
    names: dict[str, str] = field(default_factory=dict)    # watched location -> expression

    def set_source(self, path: str, wanted: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self._delete(self.by_source.pop(path, []))
        numbers, answers = [], []
        for bp in wanted:
            line = int(bp.get("line", 0))
            answer = self._insert(f"{path}:{line}", bp, line)
            if "id" in answer:
                numbers.append(answer["id"])
            answers.append(answer)
        self.by_source[path] = numbers
        return answers

    def set_functions(self, wanted: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self._delete(sorted(self.functions))
        self.functions.clear()
        answers = []
        for bp in wanted:
            answer = self._insert(str(bp.get("name", "")), bp, None)
            if "id" in answer:
                self.functions.add(answer["id"])
            answers.append(answer)
        return answers

    def set_instructions(self, wanted: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Breakpoints on addresses (the disassembly view): `*ADDRESS`."""
        self._delete(sorted(self.instructions))
        self.instructions.clear()
        answers = []
        for bp in wanted:
            try:
                address = int(str(bp["instructionReference"]), 0) + int(bp.get("offset") or 0)
            except (KeyError, ValueError):
                answers.append({"verified": False, "message": "no instruction reference"})
                continue
            answer = self._insert(f"*{address:#x}", bp, None)
            if "id" in answer:
                self.instructions.add(answer["id"])
                answer["instructionReference"] = hex(address)
            answers.append(answer)
        return answers

    def set_data(self, wanted: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Watchpoints on locations that data_info() described (dataId is `*(T *) ADDR`,
        valid in any frame and in both directions)."""
        self._delete(sorted(self.data))
        self.data.clear()
        answers = []
        for bp in wanted:
            expression = str(bp.get("dataId", ""))
            access = ACCESS.get(str(bp.get("accessType") or "write"), "")
            number = 0
            try:
                count = ignore_count(bp.get("hitCondition"))
                wpt = self.gdb.mi(f"-break-watch {access}{quote(expression)}")
                number = int((wpt.get("wpt") or wpt.get("hw-rwpt") or wpt.get("hw-awpt")
                              or {}).get("number", 0))
                self._conditions(number, bp.get("condition"), count)
            except (ScriptError, HitConditionError) as e:
                self._delete([number] if number else [])
                answers.append({"verified": False, "message": str(e)})
                continue
            self.data[number] = self.names.get(expression, expression)
            answers.append({"id": number, "verified": True})
        return answers

    def data_info(self, expression: str, frame: str) -> dict[str, Any]:
        """dataBreakpointInfo: the address and type of `expression` in the frame (`--thread
        T --frame L` options), as a location expression for set_data."""
        try:
            var = self.gdb.mi(f"-var-create {frame}- * {quote(f'&({expression})')}")
        except ScriptError as e:
            return {"dataId": None, "description": f"cannot watch {expression}: {e}"}
        try:
            self.gdb.mi(f"-var-delete {var['name']}")
        except ScriptError:
            pass
        pointer, match = str(var.get("type", "")), _ADDRESS.match(str(var.get("value", "")))
        if not match or not (pointer.endswith("*") or "(*)" in pointer):
            return {"dataId": None, "description": f"{expression} has no address"}
        location = f"*({pointer}) {match['addr']}"
        self.names[location] = expression
        return {"dataId": location, "description": f"{expression} ({location})",
                "accessTypes": list(ACCESS), "canPersist": False}

    def reset_hit_counts(self) -> None:
        for number, count in self.ignore.items():
            if count:
                try:
                    self.gdb.mi(f"-break-after {number} {count}")
                except ScriptError:
                    pass

    def kind(self, number: int) -> str:
        if number in self.functions:
            return "function breakpoint"
        if number in self.instructions:
            return "instruction breakpoint"
        if number in self.data:
            return "data breakpoint"
        return "breakpoint"

    def _insert(self, location: str, bp: dict[str, Any], line: int | None) -> dict[str, Any]:
        number = 0
        try:
            count = ignore_count(bp.get("hitCondition"))
            result = self.gdb.mi(f"-break-insert -f {quote(location)}")["bkpt"]
            number = int(result["number"])
            self._conditions(number, bp.get("condition"), count)
        except (ScriptError, HitConditionError) as e:
            self._delete([number] if number else [])
            answer: dict[str, Any] = {"verified": False, "message": str(e)}
            if line is not None:
                answer["line"] = line
            return answer
        first = (result.get("locations") or [result])[0]
        pending = "pending" in result or first.get("addr") == "<PENDING>"
        answer = {"id": number, "verified": not pending}
        if pending:
            answer["message"] = "not resolved yet (pending until its library is loaded)"
        if first.get("line"):
            answer["line"] = int(first["line"])
        if first.get("fullname"):
            answer["source"] = {"name": first["fullname"].rsplit("/", 1)[-1],
                                "path": first["fullname"]}
        return answer

    def _conditions(self, number: int, condition: object, count: int) -> None:
        if condition:
            self.gdb.mi(f"-break-condition {number} {condition}")
        if count:
            self.gdb.mi(f"-break-after {number} {count}")
        self.ignore[number] = count

    def _delete(self, numbers: list[int]) -> None:
        for number in numbers:
            self.ignore.pop(number, None)
        if numbers:
            try:
                self.gdb.mi("-break-delete " + " ".join(map(str, numbers)))
            except ScriptError:  # already gone (gdb deletes a local's watchpoint itself)
                for number in numbers:
                    try:
                        self.gdb.mi(f"-break-delete {number}")
                    except ScriptError:
                        pass
