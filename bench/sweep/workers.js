const { Worker, isMainThread, parentPort, workerData } = require('worker_threads');
if (isMainThread) {
  let done = 0, tot = 0;
  for (let i = 0; i < 2; i++) {
    const w = new Worker(__filename, { workerData: i });
    w.on('message', (v) => { tot += v; if (++done === 2) console.log(tot); });
  }
} else {
  let s = 0; for (let i = 0; i < 3e7; i++) s = (s + (i ^ workerData)) % 1000003;
  parentPort.postMessage(s);
}
