"""Frames, scopes and variables of the stopped program, through gdb variable objects.

DAP refers to frames and expandable values by integer handles that are valid until the
program runs again. `Inspector.reset()` (at every stop) forgets them and deletes gdb's
variable objects. A struct, array or pointer is a variable object with children
(`-var-list-children`), so gdb decides what expands and how values print.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from relive.dap.gdb import Gdb, ScriptError, quote

__all__ = ["Inspector", "RequestError"]

MAX_CHILDREN = 1000   # one expansion lists at most this many (a 1 MB array is not useful)
REGISTERS = ("rip", "rsp", "rbp", "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9",
             "r10", "r11", "r12", "r13", "r14", "r15", "eflags", "fs_base", "gs_base")


_TEXT = re.compile(r"^(const )?(unsigned |signed )?char \[\d+\]$")


class RequestError(Exception):
    """The editor asked for something that does not exist (any more): the request fails
    with this message."""


class StaleReference(RequestError):
    """A frame or variable of an earlier stop: editors ask for them while a step runs
    (nvim-dap fetches the variables it showed), and the answer comes after the next stop.
    Not the user's doing, so not shown to them."""


@dataclass(frozen=True, slots=True)
class _Scope:
    kind: str          # "locals" or "registers"
    thread: int
    level: int


@dataclass(slots=True)
class _Var:
    name: str                                  # gdb's variable object
    children: dict[str, str] = field(default_factory=dict)  # shown name -> varobj


def frame_option(thread: int, level: int) -> str:
    return f"--thread {thread} --frame {level} "


@dataclass(slots=True)
class Inspector:
    gdb: Gdb
    frames: list[tuple[int, int]] = field(default_factory=list)   # frame id - 1 -> (T, L)
    handles: list[_Scope | _Var] = field(default_factory=list)    # reference - 1 -> what
    roots: list[str] = field(default_factory=list)                # varobjs to delete
    root_frames: dict[str, str] = field(default_factory=dict)     # root varobj -> frame option

    def reset(self) -> None:
        for name in self.roots:
            try:
                self.gdb.mi(f"-var-delete {name}")
            except ScriptError:
                pass
        self.frames.clear()
        self.handles.clear()
        self.roots.clear()
        self.root_frames.clear()

    def frame(self, frame_id: int | None) -> tuple[int, int] | None:
        if frame_id is None:
            return None
        if not 0 < frame_id <= len(self.frames):
            raise StaleReference(f"frame {frame_id} is no longer valid (the program moved)")
        return self.frames[frame_id - 1]

    def stack_trace(self, thread: int, start: int, levels: int) -> dict[str, Any]:
        depth = int(self.gdb.mi(f"-stack-info-depth --thread {thread}")["depth"])
        end = depth if levels <= 0 else min(depth, start + levels)
        frames = []
        if start < end:
            listed = self.gdb.mi(f"-stack-list-frames --thread {thread} {start} {end - 1}")
            for entry in listed.get("stack", []):
                frames.append(self._frame(thread, entry))
        return {"stackFrames": frames, "totalFrames": depth}

    def _frame(self, thread: int, entry: dict[str, Any]) -> dict[str, Any]:
        self.frames.append((thread, int(entry["level"])))
        name = entry.get("func") or entry.get("from") or "??"
        out: dict[str, Any] = {"id": len(self.frames), "name": name, "line": 0, "column": 0,
                               "instructionPointerReference": entry.get("addr", "0x0")}
        path = entry.get("fullname")
        if path and entry.get("line") and os.path.exists(path):
            out.update(source={"name": os.path.basename(path), "path": path},
                       line=int(entry["line"]), column=1)
        else:
            out["presentationHint"] = "subtle"
        return out

    def scopes(self, frame_id: int) -> list[dict[str, Any]]:
        location = self.frame(frame_id)
        assert location is not None
        thread, level = location
        return [{"name": "Locals", "presentationHint": "locals", "expensive": False,
                 "variablesReference": self._handle(_Scope("locals", thread, level))},
                {"name": "Registers", "presentationHint": "registers", "expensive": False,
                 "variablesReference": self._handle(_Scope("registers", thread, level))}]

    def variables(self, reference: int) -> list[dict[str, Any]]:
        what = self._lookup(reference)
        if isinstance(what, _Var):
            return self._children(what)
        if what.kind == "registers":
            return self._registers(what)
        listed = self.gdb.mi(f"-stack-list-variables {frame_option(what.thread, what.level)}"
                             "--no-values")
        out = []
        for entry in listed.get("variables", []):
            name = entry["name"]
            try:
                out.append(self._root(name, frame_option(what.thread, what.level), name))
            except ScriptError as e:
                out.append({"name": name, "value": f"<{e}>", "variablesReference": 0})
        return out

    def evaluate(self, expression: str, frame_id: int | None) -> dict[str, Any]:
        """An expression's value and, if it has parts, a reference to expand it."""
        location = self.frame(frame_id)
        option = frame_option(*location) if location else ""
        try:
            shown = self._root(expression, option, expression)
        except ScriptError:
            # var-create says only "unable to create variable object": ask for gdb's reason
            self.gdb.mi(f"-data-evaluate-expression {option}{quote(expression)}")
            raise
        value = self.gdb.mi(f"-data-evaluate-expression {option}{quote(expression)}")["value"]
        return {"result": value, "type": shown.get("type"),
                "variablesReference": shown["variablesReference"]}

    def expression_of(self, reference: int | None, name: str) -> tuple[str, str]:
        """The C expression for variable `name` shown under `reference` (a scope or an
        expanded value) and the frame option to evaluate it in."""
        if not reference:
            return name, ""
        what = self._lookup(reference)
        if isinstance(what, _Scope):
            return name, frame_option(what.thread, what.level)
        child = what.children.get(name)
        if child is None:
            raise RequestError(f"no variable {name!r} here")
        path = self.gdb.mi(f"-var-info-path-expression {child}")["path_expr"]
        return str(path), self.root_frames.get(what.name.split(".", 1)[0], "")

    def _root(self, expression: str, option: str, shown: str) -> dict[str, Any]:
        var = self.gdb.mi(f"-var-create {option}- * {quote(expression)}")
        self.roots.append(var["name"])
        self.root_frames[var["name"]] = option
        return self._shown(shown, var, evaluate_name=expression)

    def _children(self, var: _Var) -> list[dict[str, Any]]:
        listed = self.gdb.mi(f"-var-list-children --all-values {var.name} 0 {MAX_CHILDREN}")
        out = []
        for child in listed.get("children", []):
            exp = str(child.get("exp", child["name"]))
            var.children[exp] = child["name"]
            out.append(self._shown(exp, child))
        return out

    def _shown(self, name: str, var: dict[str, Any], evaluate_name: str | None = None
               ) -> dict[str, Any]:
        expandable = int(var.get("numchild", "0")) > 0 or var.get("dynamic") == "1"
        value = str(var.get("value", ""))
        if _TEXT.match(str(var.get("type", ""))):  # a char array reads as its string
            path = self.gdb.mi(f"-var-info-path-expression {var['name']}")["path_expr"]
            option = self.root_frames.get(var["name"].split(".", 1)[0], "")
            try:
                value = self.gdb.mi(f"-data-evaluate-expression {option}{quote(path)}")["value"]
            except ScriptError:
                pass
        out: dict[str, Any] = {
            "name": name, "value": value, "type": var.get("type", ""),
            "variablesReference": self._handle(_Var(var["name"])) if expandable else 0}
        if evaluate_name is not None:
            out["evaluateName"] = evaluate_name
        return out

    def _registers(self, scope: _Scope) -> list[dict[str, Any]]:
        names = self.gdb.mi("-data-list-register-names")["register-names"]
        wanted = {i: n for i, n in enumerate(names) if n in REGISTERS}
        values = self.gdb.mi(f"-data-list-register-values {frame_option(scope.thread, scope.level)}"
                             "x " + " ".join(map(str, wanted)))["register-values"]
        shown = {wanted[int(v["number"])]: v["value"] for v in values}
        return [{"name": n, "value": shown[n], "evaluateName": f"${n}", "variablesReference": 0}
                for n in REGISTERS if n in shown]

    def _handle(self, what: _Scope | _Var) -> int:
        self.handles.append(what)
        return len(self.handles)

    def _lookup(self, reference: int) -> _Scope | _Var:
        if not 0 < reference <= len(self.handles):
            raise StaleReference(f"variable reference {reference} is no longer valid")
        return self.handles[reference - 1]
