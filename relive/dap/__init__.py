"""relive as a Debug Adapter Protocol server (`relive dap`): editors drive a replay, forwards
and backwards, through gdb/MI.

codec (framing, no I/O) <- server (stdio/TCP, threads) -> session (requests -> MI) ->
breakpoints, inspect (frames, variables), repl, stops (stopped events), output (the
program's output) -> gdb (relive.api's Replay in MI async mode).
"""
