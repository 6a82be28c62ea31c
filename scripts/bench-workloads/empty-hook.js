'use strict';
// scripts/bench-workloads/empty-hook.js: a preload registering an async_hooks hook with all five
// callbacks, each empty: the floor any async_hooks tracer pays (DESIGN.md section 4).
//
//   node --require scripts/bench-workloads/empty-hook.js scripts/bench-workloads/promises.js
//
// Set EMPTY_HOOK_NO_DESTROY=1 to leave out `destroy` (which alone turns on GC tracking of every
// promise), for comparison.

const asyncHooks = require('async_hooks');

function noop() {}

const callbacks = { init: noop, before: noop, after: noop, destroy: noop, promiseResolve: noop };
if (process.env.EMPTY_HOOK_NO_DESTROY === '1') delete callbacks.destroy;
asyncHooks.createHook(callbacks).enable();
