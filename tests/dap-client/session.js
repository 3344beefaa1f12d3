// An editor session against `relive dap`, driven by Microsoft's DAP test client
// (@vscode/debugadapter-testsupport), as tests/test_dap_client.py runs it:
//   node session.js PYTHON TRACE SOURCE
// Prints one line per step; exits non-zero on the first failed assertion.
'use strict';
const assert = require('assert');
const path = require('path');
const { DebugClient } = require('@vscode/debugadapter-testsupport');

const [python, trace, source] = process.argv.slice(2);
const lineOf = (text) => require('fs').readFileSync(source, 'utf8').split('\n')
  .findIndex((l) => l.includes(text)) + 1;
const LINE_ADD = lineOf('add_score(a);');
const LINE_CALL = lineOf('int a = area2(s);');
const LINE_SCORE = lineOf('score += points;');

async function main() {
  const dc = new DebugClient(python, path.join(__dirname, 'adapter.py'), 'relive',
    { env: process.env }, true);
  dc.defaultTimeout = 60000;
  await dc.start();
  try {
    // launch and stop at a line breakpoint (the library's own scenario helper)
    await dc.hitBreakpoint({ trace }, { path: source, line: LINE_ADD });
    console.log('hit breakpoint at line', LINE_ADD);

    const frame = (await dc.stackTraceRequest({ threadId: 1 })).body.stackFrames[0];
    const a = await dc.evaluateRequest({ expression: 'a', frameId: frame.id, context: 'hover' });
    assert.strictEqual(a.body.result, '12');
    console.log('hover a =', a.body.result);

    // continue to its second hit (the second shape: a = 1)
    await Promise.all([dc.continueRequest({ threadId: 1 }),
      dc.assertStoppedLocation('breakpoint', { path: source, line: LINE_ADD })]);
    const valueOfA = async () => (await dc.evaluateRequest({ expression: 'a',
      frameId: (await dc.stackTraceRequest({ threadId: 1 })).body.stackFrames[0].id,
      context: 'watch' })).body.result;
    assert.strictEqual(await valueOfA(), '1');
    console.log('continue to its second hit, a =', 1);

    // stepBack: one line back, over the call
    await Promise.all([dc.stepBackRequest({ threadId: 1 }),
      dc.assertStoppedLocation('step', { path: source, line: LINE_CALL })]);
    console.log('stepBack to line', LINE_CALL);

    // reverseContinue to the breakpoint: its first hit, in the first shape
    await Promise.all([dc.reverseContinueRequest({ threadId: 1 }),
      dc.assertStoppedLocation('breakpoint', { path: source, line: LINE_ADD })]);
    assert.strictEqual(await valueOfA(), '12');
    console.log('reverseContinue to the breakpoint at line', LINE_ADD, '(its first hit), a =', 12);

    // reverseContinue to a data breakpoint on score
    const info = await dc.dataBreakpointInfoRequest({ name: 'score' });
    assert.ok(info.body.dataId, 'score can be watched');
    const set = await dc.setDataBreakpointsRequest({ breakpoints: [{ dataId: info.body.dataId }] });
    assert.ok(set.body.breakpoints[0].verified);
    await dc.setBreakpointsRequest({ source: { path: source }, breakpoints: [] });
    let [, stopped] = await Promise.all([dc.continueRequest({ threadId: 1 }),
      dc.waitForEvent('stopped')]);            // forwards: the first write (0 -> 12)
    assert.strictEqual(stopped.body.reason, 'data breakpoint');
    assert.strictEqual(stopped.body.description, 'score changed: 0 -> 12');
    [, stopped] = await Promise.all([dc.continueRequest({ threadId: 1 }),
      dc.waitForEvent('stopped')]);            // and the second (12 -> 13)
    assert.strictEqual(stopped.body.description, 'score changed: 12 -> 13');
    await Promise.all([dc.nextRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
    const [, back] = await Promise.all([dc.reverseContinueRequest({ threadId: 1 }),
      dc.assertStoppedLocation('data breakpoint', { path: source, line: LINE_SCORE })]);
    assert.ok(back.body.stackFrames[0].name === 'add_score');
    console.log('reverseContinue to the write of score at line', LINE_SCORE);
    const value = await dc.evaluateRequest({ expression: 'score', context: 'watch' });
    assert.strictEqual(value.body.result, '12');   // before the write

    // run to the end of the recording
    await dc.setDataBreakpointsRequest({ breakpoints: [] });
    [, stopped] = await Promise.all([dc.continueRequest({ threadId: 1 }),
      dc.waitForEvent('stopped')]);
    assert.strictEqual(stopped.body.reason, 'end of recording');
    console.log('end of recording:', stopped.body.description);
  } catch (e) {
    console.error(e && e.stack || e);
    process.exit(1);
  }
  await dc.disconnectRequest({});
  console.log('disconnected');
  finished = true;
  dc.stop();  // the adapter has exited; this only closes the pipes
}

let finished = false;
process.on('exit', () => { if (!finished) { console.error('session.js: ended before the session did'); process.exitCode = 1; } });
main().then(() => { finished = true; }).catch((e) => { console.error(e && e.stack || e); process.exit(1); });
