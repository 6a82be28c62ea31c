'use strict';
// scripts/bench-workloads/promises.js: the promise-heavy workload of DESIGN.md section 4.
//
//   node scripts/bench-workloads/promises.js                     # untraced baseline
//   node --require scripts/bench-workloads/empty-hook.js ...     # the floor
//   asynctrace record -o t.bin -- node scripts/bench-workloads/promises.js
//
// Work, in order: 200,000 awaited async calls (each awaits once inside); 2,000 `Promise.all` of 50
// async calls each; 20,000 sequential setImmediate hops. Under a hook with all five callbacks that
// is ~4.1 M events (DESIGN.md's prototype had ~4.25 M). Counted by tests/support/count-hook.js on
// Node 20: init 1,024,007 (1,004,007 PROMISE + 20,000 Immediate); before/after 522,003 each;
// promiseResolve 1,004,007; destroy ~1,022,000 (GC-dependent).
//
// Prints nothing to stdout. On stderr prints one JSON line with its own elapsed wall time from the
// start of the work to its end (module loading and process start excluded): {"ms":123.4}

const { performance } = require('perf_hooks');

const AWAITED = 200000;
const ALLS = 2000;
const ALL_WIDTH = 50;
const HOPS = 20000;

// One awaited async call that itself awaits once (4 PROMISE inits, 2 PROMISE callbacks each).
async function step(i) {
  await null;
  return i;
}

// The fan-out leaf: an async function that returns at once.
async function leaf(i) {
  return i;
}

async function awaited() {
  let sum = 0;
  for (let i = 0; i < AWAITED; i++) sum += await step(i);
  return sum;
}

async function fanOut() {
  let n = 0;
  const batch = new Array(ALL_WIDTH);
  for (let r = 0; r < ALLS; r++) {
    for (let i = 0; i < ALL_WIDTH; i++) batch[i] = leaf(i);
    n += (await Promise.all(batch)).length;
  }
  return n;
}

function hops() {
  return new Promise((resolve) => {
    let left = HOPS;
    const hop = () => (--left > 0 ? setImmediate(hop) : resolve());
    setImmediate(hop);
  });
}

const t0 = performance.now();
(async () => {
  await awaited();
  await fanOut();
  await hops();
  const ms = performance.now() - t0;
  process.stderr.write(JSON.stringify({ ms: Math.round(ms * 10) / 10 }) + '\n');
})();
