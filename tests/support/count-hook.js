'use strict';
// Reference event counter for asynctrace's end-to-end tests.
//
// Usage:
//   COUNT_HOOK_DIR=/tmp/out node --require /abs/path/tests/support/count-hook.js app.js
//   # or, to reach workers and child processes too:
//   COUNT_HOOK_DIR=/tmp/out NODE_OPTIONS="--require /abs/path/tests/support/count-hook.js" node app.js
//
// Registers exactly one async_hooks hook with all five callbacks at preload time (as the real agent
// does) and counts every event seen from the moment it is enabled. At process.on('exit') it writes,
// synchronously, `$COUNT_HOOK_DIR/<pid>-<threadId>.json`:
//
//   {"pid":1234,"thread":0,
//    "types":{"PROMISE":12,"Timeout":3,...},                       // inits per resource type
//    "events":{"init":n,"before":n,"after":n,"destroy":n,"promiseResolve":n},
//    "byType":{"PROMISE":{"init":n,"before":n,"after":n,"destroy":n,"promiseResolve":n},...}}
//
// byType attributes before/after/destroy/promiseResolve to the type remembered at init; events for
// ids whose init was not seen (resources created before the hook was enabled) go to "(unknown)".
//
// Rules this file keeps: it creates no async resources (no timers, no async fs, no promises), it
// never throws out of a hook callback or the exit listener, and it does nothing when COUNT_HOOK_DIR
// is unset (apart from counting).

const asyncHooks = require('async_hooks');
const fs = require('fs');
const path = require('path');

let threadId = 0;
try {
  threadId = require('worker_threads').threadId;
} catch (_) {
  threadId = 0;
}

const UNKNOWN = '(unknown)';
const typeById = new Map();
const inits = Object.create(null);
const byType = Object.create(null);
const events = { init: 0, before: 0, after: 0, destroy: 0, promiseResolve: 0 };

function slot(type) {
  let s = byType[type];
  if (s === undefined) {
    s = { init: 0, before: 0, after: 0, destroy: 0, promiseResolve: 0 };
    byType[type] = s;
  }
  return s;
}

function typeOf(asyncId) {
  const t = typeById.get(asyncId);
  return t === undefined ? UNKNOWN : t;
}

// What asynctrace's agent creates while it starts (its addon's CustomGC, its signal handles,
// a forked child's IPC tick) is its own, never the app's: counted under this type, so that a
// comparison can leave it out. The agent marks its start-up on globalThis.
const AGENT = Symbol.for('asynctrace.agent');
const AGENT_TYPE = '(asynctrace agent)';

const hook = asyncHooks.createHook({
  init(asyncId, resourceType) {
    try {
      const type = globalThis[AGENT] === 'starting' ? AGENT_TYPE : resourceType;
      events.init++;
      inits[type] = (inits[type] || 0) + 1;
      slot(type).init++;
      typeById.set(asyncId, type);
    } catch (_) { /* never throw from a hook */ }
  },
  before(asyncId) {
    try {
      events.before++;
      slot(typeOf(asyncId)).before++;
    } catch (_) { /* never throw from a hook */ }
  },
  after(asyncId) {
    try {
      events.after++;
      slot(typeOf(asyncId)).after++;
    } catch (_) { /* never throw from a hook */ }
  },
  destroy(asyncId) {
    try {
      events.destroy++;
      slot(typeOf(asyncId)).destroy++;
      typeById.delete(asyncId);
    } catch (_) { /* never throw from a hook */ }
  },
  promiseResolve(asyncId) {
    try {
      events.promiseResolve++;
      slot(typeOf(asyncId)).promiseResolve++;
    } catch (_) { /* never throw from a hook */ }
  },
});
// The exit listener goes in before the hook is enabled, as the agent does it: in a forked
// child, adding a process listener schedules a TickObject (IPC channel bookkeeping), and neither
// counter should count its own.
process.on('exit', function countHookWrite() {
  try {
    const dir = process.env.COUNT_HOOK_DIR;
    if (!dir) return;
    hook.disable();
    const out = {
      pid: process.pid,
      thread: threadId,
      types: inits,
      events,
      byType,
    };
    fs.writeFileSync(path.join(dir, process.pid + '-' + threadId + '.json'), JSON.stringify(out) + '\n');
  } catch (_) { /* never throw at exit */ }
});
hook.enable();
