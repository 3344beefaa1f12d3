"""The front-end layer: what a debugger front end drives, above the replay core.

``protocol`` (the Target protocol and its value types) and ``errors`` are all a front end
needs to know; ``engine`` is the one thread every Target call runs on (ptrace's rule);
``replay`` serves a replay (replayer.debuggee) as a Target, with ``monitor`` (the text
commands) and ``trace_files`` (the trace's file copies gdb reads). gdb's stub (gdbstub/)
builds on ``protocol``, ``errors`` and ``engine`` only; the application (relive/serve.py)
plugs ``replay`` into it.
"""
