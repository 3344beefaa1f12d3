"""`relive dap` driven as an editor drives it: Content-Length framed DAP on stdin/stdout,
a real replay server and a real gdb underneath (tests/dapclient.py is the scripted client;
tests/test_dap_client.py drives the same adapter with Microsoft's DAP test client)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from dapclient import DapClient
from hypothesis import given
from hypothesis import strategies as st

from conftest import PROGRAMS_DIR, run_relive
from relive.dap.codec import Codec, ProtocolError, encode

SOURCE = str(PROGRAMS_DIR / "dap_target.c")
LINE_CALL = 45      # int a = area2(s);
LINE_ADD = 46       # add_score(a);
LINE_PRINT = 48     # printf(...)
LINE_FOR = 44
LINE_SCORE = 30     # score += points;  (in add_score)


def _line(pattern: str) -> int:
    lines = Path(SOURCE).read_text().splitlines()
    return next(i + 1 for i, text in enumerate(lines) if pattern in text)


def test_line_constants_match_the_source():
    assert _line("int a = area2(s);") == LINE_CALL
    assert _line("add_score(a);") == LINE_ADD
    assert _line('printf("%s: area2') == LINE_PRINT
    assert _line("for (struct shape *s = head") == LINE_FOR
    assert _line("score += points;") == LINE_SCORE


@pytest.fixture(scope="module")
def trace(programs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dap") / "trace"
    rec = run_relive("record", "-o", out, programs["dap_target"])
    assert rec.returncode == 0, rec.stderr
    return out


@pytest.fixture
def dap():
    clients: list[DapClient] = []

    def start(*extra: str) -> DapClient:
        client = DapClient(*extra)
        clients.append(client)
        return client
    yield start
    for client in clients:
        client.close()


def _launch(c: DapClient, trace: Path, breakpoints: list[int], **launch) -> dict:
    caps = c.request("initialize", adapterID="relive", linesStartAt1=True,
                     columnsStartAt1=True, pathFormat="path")
    assert caps["supportsStepBack"] and caps["supportsDataBreakpoints"]
    c.request("launch", trace=str(trace), **launch)
    c.event("initialized")
    answer = c.request("setBreakpoints", source={"path": SOURCE},
                       breakpoints=[{"line": n} for n in breakpoints])
    assert all(b["verified"] for b in answer["breakpoints"]), answer
    c.request("configurationDone")
    return c.event("stopped")


def _locals(c: DapClient) -> dict[str, dict]:
    frame = c.top()
    scopes = c.request("scopes", frameId=frame["id"])["scopes"]
    listed = c.request("variables", variablesReference=scopes[0]["variablesReference"])
    return {v["name"]: v for v in listed["variables"]}


def _children(c: DapClient, reference: int) -> dict[str, dict]:
    listed = c.request("variables", variablesReference=reference)["variables"]
    return {v["name"]: v for v in listed}


# -- the codec --------------------------------------------------------------------------------

@given(st.lists(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=8),
                                max_size=4), max_size=4))
def test_codec_gives_the_same_messages_fed_whole_or_byte_by_byte(messages):
    data = b"".join(encode(m) for m in messages)
    whole, single = Codec(), Codec()
    whole.receive_data(data)
    got_whole = list(iter(whole.next_message, None))
    got_single = []
    for i in range(len(data)):
        single.receive_data(data[i:i + 1])
        got_single += list(iter(single.next_message, None))
    assert got_whole == got_single == messages


@pytest.mark.parametrize("garbage", [b"Content-Length: x\r\n\r\n", b"Nope\r\n\r\n",
                                     b"Content-Length: 2\r\n\r\n[]",
                                     b"Content-Length: 3\r\n\r\n{x}", b"X" * 9000])
def test_codec_rejects_garbage_with_a_protocol_error(garbage):
    codec = Codec()
    codec.receive_data(garbage)
    with pytest.raises(ProtocolError):
        codec.next_message()


# -- sessions -----------------------------------------------------------------------------------

def test_break_inspect_and_step_back_by_line(dap, trace):
    c = dap()
    stop = _launch(c, trace, [LINE_ADD])
    assert stop["reason"] == "breakpoint" and stop["hitBreakpointIds"], stop
    frame = c.top()
    assert (frame["name"], frame["line"], frame["source"]["path"]) == ("main", LINE_ADD, SOURCE)

    names = _locals(c)
    assert names["a"]["value"] == "12"
    shape = _children(c, names["s"]["variablesReference"])          # a pointer expands
    assert set(shape) == {"name", "corners", "next"}
    corners = _children(c, shape["corners"]["variablesReference"])  # an array expands
    assert list(corners) == ["0", "1", "2"]
    assert _children(c, corners["1"]["variablesReference"])["x"]["value"] == "4"  # a struct
    name = _children(c, shape["name"]["variablesReference"])
    assert name["0"]["value"] == "116 't'"

    hover = c.request("evaluate", expression="s->corners[2].y", frameId=frame["id"],
                      context="hover")
    assert hover["result"] == "3"
    watch = c.request("evaluate", expression="*s->next", frameId=frame["id"], context="watch")
    assert watch["variablesReference"] > 0
    assert "nosuch" in c.fail("evaluate", expression="nosuch", frameId=frame["id"],
                              context="watch")

    # an editor asks for the variables it showed while the step runs (nvim-dap does): they
    # belong to the earlier stop, and the error says so without bothering the user
    scope = c.request("scopes", frameId=c.top()["id"])["scopes"][0]["variablesReference"]
    step = c.send("stepBack", threadId=1)  # over area2(): one line, not into the callee
    old = c.send("variables", variablesReference=scope)
    c.response(step)
    assert c.event("stopped")["reason"] == "step"
    stale = c.response(old, ok=False)
    assert stale["body"]["error"]["showUser"] is False, stale
    assert (c.top()["name"], c.top()["line"]) == ("main", LINE_CALL)
    c.run("stepBack", threadId=1)
    assert c.top()["line"] == LINE_FOR
    c.run("next", threadId=1)
    c.run("next", threadId=1)
    assert c.top()["line"] == LINE_ADD and _locals(c)["a"]["value"] == "12"

    before = c.request("evaluate", expression="$pc", context="watch")["result"]
    c.run("stepBack", threadId=1, granularity="instruction")
    after = c.request("evaluate", expression="$pc", context="watch")["result"]
    assert before != after and c.top()["line"] == LINE_CALL   # one instruction: still in 45

    when = c.request("evaluate", expression="monitor when", context="repl")["result"]
    assert when.startswith("Current event:"), when
    bt = c.request("evaluate", expression="-exec bt", context="repl")["result"]
    assert "main" in bt

    # a command typed in the console that runs the program stops like a button would
    c.request("evaluate", expression="reverse-next", context="repl")
    assert c.event("stopped")["reason"] == "step"
    assert c.top()["line"] == LINE_CALL       # the start of the line, before the call
    c.request("evaluate", expression="reverse-next", context="repl")
    assert c.event("stopped")["reason"] == "step" and c.top()["line"] == LINE_FOR


def test_reverse_continue_to_a_breakpoint_and_to_a_data_breakpoint(dap, trace):
    c = dap()
    stop = _launch(c, trace, [], stopOnEntry=True)
    assert stop["reason"] == "entry" and c.top()["name"] == "main"

    end = c.run("continue", threadId=1)
    assert end["reason"] == "end of recording", end
    assert "exited with status 0" in end["description"]
    assert c.output("stdout") == ("triangle: area2=12 score=12\n"
                                  "sliver: area2=1 score=13\n")
    assert "done after 2 rounds\n" in c.output("stderr")

    c.request("setBreakpoints", source={"path": SOURCE}, breakpoints=[{"line": LINE_PRINT}])
    stop = c.run("reverseContinue", threadId=1)
    assert stop["reason"] == "breakpoint" and c.top()["line"] == LINE_PRINT
    assert c.request("evaluate", expression="score", context="watch")["result"] == "13"
    c.request("setBreakpoints", source={"path": SOURCE}, breakpoints=[])

    info = c.request("dataBreakpointInfo", name="score")
    assert info["dataId"] and "write" in info["accessTypes"], info
    answer = c.request("setDataBreakpoints", breakpoints=[{"dataId": info["dataId"]}])
    assert answer["breakpoints"][0]["verified"]
    stop = c.run("reverseContinue", threadId=1)
    assert stop["reason"] == "data breakpoint", stop
    assert stop["description"] == "score changed: 12 -> 13", stop
    assert (c.top()["name"], c.top()["line"]) == ("add_score", LINE_SCORE)
    assert c.request("evaluate", expression="score", context="watch")["result"] == "12"
    stop = c.run("reverseContinue", threadId=1)
    assert stop["description"] == "score changed: 0 -> 12", stop
    stop = c.run("continue", threadId=1)       # forwards: the first write again
    assert stop["reason"] == "data breakpoint"
    assert c.request("evaluate", expression="score", context="watch")["result"] == "12"

    c.request("setDataBreakpoints", breakpoints=[])
    start = c.run("reverseContinue", threadId=1)
    assert start["reason"] == "start of recording", start

    c.request("restart")                            # back to the start, then to main
    assert c.event("stopped")["reason"] == "entry"
    assert c.top()["name"] == "main"


def test_conditions_hit_counts_and_function_breakpoints(dap, trace):
    c = dap()
    c.request("initialize", adapterID="relive")
    c.request("launch", trace=str(trace))
    c.event("initialized")
    answer = c.request("setBreakpoints", source={"path": SOURCE},
                       breakpoints=[{"line": LINE_ADD, "condition": "a == 1"}])
    assert answer["breakpoints"][0]["verified"]
    bad = c.request("setFunctionBreakpoints",
                    breakpoints=[{"name": "area2", "hitCondition": "2"}, {"name": "nosuch"}])
    assert [b["verified"] for b in bad["breakpoints"]] == [True, False]
    c.request("configurationDone")
    stop = c.event("stopped")
    assert stop["reason"] == "function breakpoint" and c.top()["name"] == "area2"
    assert c.request("evaluate", expression="s->name", context="watch",
                     frameId=c.top()["id"])["result"].startswith('"sliver')
    stop = c.run("continue", threadId=1)
    assert stop["reason"] == "breakpoint" and c.top()["line"] == LINE_ADD
    assert c.request("evaluate", expression="a", context="watch")["result"] == "1"


def test_pause_stops_a_running_replay(dap, programs, tmp_path):
    out = tmp_path / "loop"
    assert run_relive("record", "-o", out, programs["cpu_loop"], "3000000000").returncode == 0
    c = dap()
    c.request("initialize", adapterID="relive")
    c.request("launch", trace=str(out))
    c.event("initialized")
    c.request("configurationDone")
    time.sleep(1.0)
    c.request("threads")                   # answered while the program runs
    sent = time.monotonic()
    c.request("pause", threadId=1)
    stop = c.event("stopped")
    assert stop["reason"] == "pause" and time.monotonic() - sent < 5, stop


def test_launch_errors_are_one_clear_message(dap, tmp_path):
    c = dap()
    c.request("initialize", adapterID="relive")
    assert c.fail("launch", trace=str(tmp_path / "none")) == f"no trace at {tmp_path / 'none'}"
    assert "launch first" in c.fail("threads")
    assert "not support" in c.fail("gotoTargets", source={"path": SOURCE}, line=1)


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


@pytest.mark.parametrize("end", ["disconnect", "SIGTERM", "SIGKILL", "closed stdin"])
def test_the_end_of_a_session_leaves_no_process_behind(dap, trace, end):
    c = dap()
    _launch(c, trace, [LINE_ADD])
    spawned = _descendants(c.proc.pid)
    assert len(spawned) >= 3, spawned  # the replay server, gdb, the replayed program
    if end == "disconnect":
        c.request("disconnect")
    elif end == "SIGTERM":
        c.proc.terminate()
    elif end == "SIGKILL":  # no clean-up in the adapter: its children must notice
        c.proc.kill()
    else:
        c.proc.stdin.close()
    assert c.proc.wait(timeout=20) in (0, 128 + 15, -9)
    deadline = time.monotonic() + 10
    while (alive := {p for p in spawned if _alive(p)}) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive, f"left behind: {alive}"


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_vscode_extension_declares_the_adapter_and_its_launch_arguments():
    import json
    root = PROGRAMS_DIR.parent.parent / "editors" / "vscode"
    manifest = json.loads((root / "package.json").read_text())
    debugger = manifest["contributes"]["debuggers"][0]
    assert debugger["type"] == "relive"
    assert set(debugger["configurationAttributes"]["launch"]["properties"]) == {
        "trace", "stopOnEntry", "pid"}
    assert "'dap'" in (root / "extension.js").read_text()  # runs `relive dap`


def test_pid_debugs_one_process_of_a_multi_process_recording(dap, programs, tmp_path):
    from tracefile.reader import TraceReader
    trace = tmp_path / "fork"
    assert run_relive("record", "-o", trace, programs["fork_pipe"]).returncode == 0
    reader = TraceReader(trace)
    pids = sorted({t.pid for t in reader.tasks()})
    reader.close()
    parent, child = pids[0], pids[1]
    source = str(PROGRAMS_DIR / "fork_pipe.c")
    line = next(i + 1 for i, text in enumerate(Path(source).read_text().splitlines())
                if "int len = snprintf" in text)
    c = dap()
    c.request("initialize", adapterID="relive")
    assert str(parent) in c.fail("launch", trace=str(trace), pid=999999999)
    c.request("launch", trace=str(trace), pid=child)
    c.event("initialized")
    c.request("setBreakpoints", source={"path": source}, breakpoints=[{"line": line}])
    c.request("configurationDone")
    stop = c.event("stopped")
    assert stop["reason"] == "breakpoint" and c.top()["line"] == line  # only the child gets here
    assert c.request("evaluate", expression="n", context="watch")["result"] == "338350"
    c.request("setBreakpoints", source={"path": source}, breakpoints=[])
    end = c.run("continue", threadId=stop["threadId"])
    assert end["reason"] == "end of recording" and "exited with status 7" in end["description"]


def test_port_serves_dap_on_tcp_one_editor_after_another(trace):
    import re
    import socket
    import subprocess
    import sys
    env = dict(os.environ, PYTHONPATH=str(PROGRAMS_DIR.parent.parent))
    proc = subprocess.Popen([sys.executable, "-m", "relive", "dap", "--port", "0"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()
        match = re.match(r"relive: DAP adapter listening on 127\.0\.0\.1:(\d+)$", line.strip())
        assert match, line
        for _ in range(2):  # a second editor after the first one left
            with socket.create_connection(("127.0.0.1", int(match.group(1))), timeout=60) as s:
                codec, answers = Codec(), []

                def request(seq: int, command: str, **arguments: object) -> dict:
                    s.sendall(encode({"seq": seq, "type": "request", "command": command,
                                      "arguments": arguments}))
                    while True:
                        while (message := codec.next_message()) is None:
                            codec.receive_data(s.recv(65536))
                        answers.append(message)
                        if message.get("request_seq") == seq:
                            return message
                assert request(1, "initialize")["body"]["supportsStepBack"] is True
                assert request(2, "launch", trace=str(trace), stopOnEntry=True)["success"]
                request(3, "configurationDone")
                assert request(4, "stackTrace", threadId=1)["body"]["stackFrames"][0][
                    "name"] == "main"
                assert request(5, "disconnect")["success"]
                assert [m["body"]["reason"] for m in answers
                        if m.get("event") == "stopped"] == ["entry"]
        assert proc.poll() is None  # still listening
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_threads_each_have_a_stack_and_reverse_continue_finds_the_thread(dap, programs,
                                                                       tmp_path):
    trace = tmp_path / "threads"
    assert run_relive("record", "-o", trace, programs["threads_mutex"]).returncode == 0
    source = str(PROGRAMS_DIR / "threads_mutex.c")
    text = Path(source).read_text().splitlines()
    line = next(i + 1 for i, t in enumerate(text) if "tls_result[idx] = tls_count;" in t)
    c = dap()
    c.request("initialize", adapterID="relive")
    c.request("launch", trace=str(trace))
    c.event("initialized")
    c.request("setBreakpoints", source={"path": source},
              breakpoints=[{"line": line, "condition": "idx == 2"}])
    c.request("configurationDone")
    stop = c.event("stopped")
    assert stop["reason"] == "breakpoint", stop
    threads = c.request("threads")["threads"]
    assert len(threads) >= 2 and stop["threadId"] in {t["id"] for t in threads}
    tid = stop["threadId"]
    frame = c.top(tid)
    assert (frame["name"], frame["line"]) == ("worker", line)
    assert c.request("evaluate", expression="tls_count", frameId=frame["id"],
                     context="watch")["result"] == "20000"
    for t in threads:  # every thread's stack can be shown
        assert c.request("stackTrace", threadId=t["id"])["stackFrames"]
    entry = next(i + 1 for i, t in enumerate(text) if "long idx = (long)arg;" in t)
    c.request("setBreakpoints", source={"path": source},
              breakpoints=[{"line": entry, "condition": "(long)arg == 2"}])
    back = c.run("reverseContinue", threadId=tid)
    assert back["reason"] == "breakpoint" and back["threadId"] == tid, back
    assert (c.top(tid)["name"], c.top(tid)["line"]) == ("worker", entry)


def test_garbage_on_stdin_is_one_line_and_a_failure():
    done = run_relive("dap", input=b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=30)
    assert done.returncode == 1
    assert done.stderr.decode().splitlines() == [
        "relive: malformed DAP header line b'GET / HTTP/1.1'"]
    assert done.stdout == b""


def test_disassembly_memory_and_instruction_breakpoints(dap, trace):
    import base64
    c = dap()
    _launch(c, trace, [LINE_ADD])
    pc = c.top()["instructionPointerReference"]
    window = c.request("disassemble", memoryReference=pc, instructionOffset=-3,
                       instructionCount=6)["instructions"]
    assert len(window) == 6 and int(window[3]["address"], 16) == int(pc, 16)
    assert [i["line"] for i in window] == [LINE_CALL] * 3 + [LINE_ADD] * 3
    call = window[1]
    assert "call" in call["instruction"] and "area2" in call["instruction"]
    assert "add_score" in window[5]["instruction"]
    memory = c.request("readMemory", memoryReference=pc, count=len(window[3][
        "instructionBytes"].split()))
    assert base64.b64decode(memory["data"]).hex(" ") == window[3]["instructionBytes"]
    assert c.request("readMemory", memoryReference="0x10", count=4)["unreadableBytes"] == 4
    assert "instructionCount" in c.fail("disassemble", memoryReference=pc,
                                        instructionOffset=-100000, instructionCount=2)
    c.request("setBreakpoints", source={"path": SOURCE}, breakpoints=[])
    answer = c.request("setInstructionBreakpoints",
                       breakpoints=[{"instructionReference": call["address"]}])
    assert answer["breakpoints"][0]["verified"]
    stop = c.run("reverseContinue", threadId=1)   # back to the call of area2 in line 45
    assert stop["reason"] == "instruction breakpoint", stop
    assert c.top()["instructionPointerReference"] == call["address"]
