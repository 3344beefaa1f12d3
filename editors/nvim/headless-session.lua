-- A scripted nvim-dap session against `relive dap`, run headless (no terminal needed):
--
--   RELIVE_TRACE=/tmp/trace RELIVE_SOURCE=tests/programs/dap_target.c \
--   nvim --headless -u NONE --cmd 'set packpath+=DIR' -l editors/nvim/headless-session.lua
--
-- (nvim 0.7: `-c 'luafile editors/nvim/headless-session.lua'` instead of -l), DIR holding
-- nvim-dap as pack/*/start/nvim-dap. It does with nvim-dap's own functions what a user does
-- with its keys on tests/programs/dap_target.c: a breakpoint on `add_score(a);`, run to it,
-- continue to its second hit, step back a line, reverse-continue to the first hit, a data
-- breakpoint on `score` (through the session's requests: nvim-dap has no command for it),
-- continue to both writes (a forward stop is after the write, on the next line), reverse-
-- continue to the last one (stopped before it), run to the end, disconnect.
-- Each stop is printed as `STOP reason file:line`; nvim-dap's log (set_log_level TRACE)
-- and RELIVE_DAP_LOG hold the messages exchanged. Exits 0 if every stop was as expected.
local dap = require('dap')
dap.set_log_level('TRACE')
local python = os.getenv('RELIVE_PYTHON') or 'python3'
dap.adapters.relive = { type = 'executable', command = python, args = { '-m', 'relive', 'dap' } }

local source = vim.fn.fnamemodify(os.getenv('RELIVE_SOURCE'), ':p')
local lines = vim.fn.readfile(source)
local function line_of(text)
  for i, l in ipairs(lines) do
    if l:find(text, 1, true) then return i end
  end
  error('no line with ' .. text)
end
local ADD, SCORE = line_of('add_score(a);'), line_of('score += points;')

local stops = {}
dap.listeners.after.event_stopped['headless'] = function(_, body)
  table.insert(stops, body)
end
local failures = 0
local seen_frame = nil
local function wait_stop(what, want_reason, want_line)
  local n = #stops
  if not vim.wait(120000, function() return #stops > n end, 20) then
    print('TIMEOUT waiting for ' .. what)
    failures = failures + 1
    return
  end
  local body = stops[#stops]
  -- nvim-dap asks for the threads and the stack itself, then shows the frame: wait for that
  local session = dap.session()
  vim.wait(30000, function()
    return session.stopped_thread_id ~= nil and session.current_frame ~= nil
      and session.current_frame ~= seen_frame
  end, 20)
  local frame = session.current_frame
  seen_frame = frame
  local line = frame and frame.line or -1
  local ok = body.reason == want_reason and (want_line == nil or line == want_line)
  if not ok then failures = failures + 1 end
  print(string.format('STOP %-16s %s:%d  (%s)%s%s', body.reason,
    frame and frame.source and vim.fn.fnamemodify(frame.source.path or '', ':t') or '?',
    line, what, body.description and ('  "' .. body.description .. '"') or '',
    ok and '' or '  UNEXPECTED'))
end
local function run(fn) coroutine.wrap(fn)() end

vim.cmd('edit ' .. vim.fn.fnameescape(source))
vim.api.nvim_win_set_cursor(0, { ADD, 0 })
dap.set_breakpoint()

run(function()
  dap.run({ type = 'relive', request = 'launch', name = 'relive', trace = os.getenv('RELIVE_TRACE') })
end)
wait_stop('run to the breakpoint', 'breakpoint', ADD)
dap.continue()
wait_stop('continue: its second hit', 'breakpoint', ADD)
dap.step_back()
wait_stop('step back one line', 'step', ADD - 1)
dap.reverse_continue()
wait_stop('reverse-continue to the breakpoint', 'breakpoint', ADD)

dap.clear_breakpoints()
local session = dap.session()
run(function()
  local _, info = session:request('dataBreakpointInfo', { name = 'score' })
  session:request('setDataBreakpoints', { breakpoints = { { dataId = info.dataId } } })
  dap.continue()
end)
wait_stop('continue to the first write of score', 'data breakpoint', SCORE + 1)
dap.continue()
wait_stop('continue to the second write', 'data breakpoint', SCORE + 1)
dap.step_over()
wait_stop('step over', 'step', nil)
dap.reverse_continue()
wait_stop('reverse-continue to the data breakpoint', 'data breakpoint', SCORE)
run(function()
  session:request('setDataBreakpoints', { breakpoints = {} })
  dap.continue()
end)
wait_stop('run to the end', 'end of recording', nil)

local closed = false
dap.disconnect({ terminateDebuggee = true }, function() closed = true end)
vim.wait(20000, function() return closed end, 20)
print(failures == 0 and 'ALL STOPS AS EXPECTED' or (failures .. ' UNEXPECTED'))
vim.cmd(failures == 0 and 'qall!' or 'cquit!')
