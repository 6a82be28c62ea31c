'use strict';
// asynctrace agent: preloaded into every Node process and worker thread by `asynctrace record`
// (NODE_OPTIONS=--require <this file>). It registers one async_hooks hook and writes fixed-size
// records into this thread's shared-memory ring. Record layout: tracer-core/src/record.rs.
//
// Rules this file lives by: it never throws into the app (a throw inside a hook kills the
// process), never blocks, never writes to stdout, creates no async resources of its own, and if
// anything fails at start-up the app runs untraced after one line on stderr.
(function asynctraceAgent() {
  const SESSION = process.env.ASYNCTRACE_SESSION;
  if (!SESSION) return;
  // Package-manager launchers (`npm start`, `npx`, `yarn`, `pnpm`) are node processes too, but
  // their async activity is not the app's: trace what they start, not them.
  const main = process.argv[1] || '';
  if (/[\\/](npm|npx|yarn|pnpm)(-cli)?(\.c?js)?$|[\\/]node_modules[\\/](npm|yarn|pnpm|corepack)[\\/]/.test(main)) return;
  const LOADED = Symbol.for('asynctrace.agent');
  if (globalThis[LOADED]) return;
  globalThis[LOADED] = true;

  const fs = require('fs');
  function say(msg) {
    try {
      fs.writeSync(2, `asynctrace: ${msg}\n`);
    } catch (_) {
      // stderr closed: nothing left to tell.
    }
  }
  function warn(msg) {
    say(`${msg}; the app runs untraced`);
  }
  // A process started after its recording ended (a detached job that inherited NODE_OPTIONS)
  // has nothing to write to: it runs untraced, quietly.
  function sessionGone() {
    try {
      return !fs.statSync(SESSION).isDirectory();
    } catch (e) {
      // Node's permission model may hide the session from JavaScript: the addon needs no
      // permission to reach it.
      return !(e && e.code === 'ERR_ACCESS_DENIED');
    }
  }
  if (sessionGone()) return;

  try {
    start();
  } catch (e) {
    // Under Node's permission model, native addons need --allow-addons.
    const hint = process.permission && !process.execArgv.includes('--allow-addons') ? ' (tracing needs --allow-addons)' : '';
    if (!sessionGone()) warn(`agent failed to start (${e && e.message ? e.message : e})${hint}`);
  }

  function start() {
    const asyncHooks = require('async_hooks');
    let threadId = 0;
    let isMainThread = true;
    // Node's own threads (the module loader hooks' worker) are stopped at exit without running
    // exit handlers: for them that is the normal end, not a termination. Node 22+ says so;
    // Node 20 starts them with a null workerData, which user workers rarely have.
    let internal = false;
    try {
      const wt = require('worker_threads');
      threadId = wt.threadId;
      isMainThread = wt.isMainThread;
      internal = wt.isInternalThread === true || (wt.isInternalThread === undefined && !isMainThread && wt.workerData === null);
    } catch (_) {
      // Runtimes without worker_threads have one thread.
    }

    const addonPath = process.env.ASYNCTRACE_ADDON;
    if (!addonPath) throw new Error('ASYNCTRACE_ADDON is not set');
    const addon = { exports: {} };
    process.dlopen(addon, addonPath);
    const native = addon.exports;
    const L = native.layout();

    const asked = Number(process.env.ASYNCTRACE_RING_RECORDS || 1 << 18);
    if (!(asked >= 16 && asked <= 1 << 30 && (asked & (asked - 1)) === 0)) {
      throw new Error(`ASYNCTRACE_RING_RECORDS must be a power of two from 16 to 2^30, got ${asked}`);
    }
    // The ring may come out smaller than asked when shared memory is short (see openRing).
    let capacity = asked;
    function shrunk() {
      if (capacity < asked) {
        say(`shared memory is short: thread ${threadId} of pid ${process.pid} records into ${capacity} records instead of ${asked}`);
      }
    }
    const tickUs = Number(process.env.ASYNCTRACE_CLOCK_US || 100);

    // Record kinds and word-0 packing: kind + 16 * a + 2^20 * b (see record.rs).
    const INIT = 1;
    const BEFORE = 2;
    const AFTER = 3;
    const DESTROY = 4;
    const PROMISE_RESOLVE = 5;
    const CLOCK = 6;
    const STRING = 7;
    const META = 8;
    const EXIT = 9;
    const LABEL = 10;
    const NOTE = 11;
    const B = 1048576;

    // Type names get ids 1..65535 (they travel in the 16-bit field a); other strings start above.
    let nextTypeId = 1;
    let nextStringId = 65536;
    const typeIds = new Map();

    let clockWord = null;
    if (process.env.ASYNCTRACE_FORCE_STAGED !== '1') {
      try {
        clockWord = new Float64Array(native.clockBuffer(tickUs));
      } catch (_) {
        clockWord = null; // External buffers refused (V8 sandbox): use the staged path.
      }
    }

    // Times come from the clock word (refreshed every ASYNCTRACE_CLOCK_US by a native thread):
    // reading a precise clock costs ~50 ns, more than the rest of the record. Quantised times
    // still sum without bias over many callbacks. With ASYNCTRACE_PRECISE=1 the callback
    // boundaries (before, after) read the precise clock, for exact per-callback times. All
    // times are CLOCK_MONOTONIC nanoseconds in whole microseconds (the native clock rounds
    // too), which is what the trace file encodes compactly.
    const { performance } = require('perf_hooks');
    // performance.now() counts from the same monotonic clock, so one offset converts it. Its
    // first call is slow (lazy set-up), and a pair of readings can be split by preemption:
    // warm it up and keep the offset of the tightest of a few bracketed readings. An offset
    // that ran behind would put precise times before the clock word's, and the reader (which
    // never lets time run backwards) would then hide short callbacks.
    performance.now();
    let perfBase = 0;
    let bestSpan = Infinity;
    for (let k = 0; k < 5; k++) {
      const p1 = performance.now();
      const m = native.monotonicNow();
      const p2 = performance.now();
      if (p2 - p1 < bestSpan) {
        bestSpan = p2 - p1;
        perfBase = Math.floor(m / 1000) * 1000 - Math.floor(((p1 + p2) / 2) * 1000) * 1000;
      }
    }
    function preciseNow() {
      return perfBase + Math.floor(performance.now() * 1000) * 1000;
    }
    const precise = process.env.ASYNCTRACE_PRECISE === '1';

    // --- the writer: `room(n)` reserves n slots, `put` fills one, `publish` makes them visible.
    let f64;
    let u8;
    let mask;
    let wpos = 0;
    let limit = 0;
    let seen = 0;
    let dropped = 0;
    let lastClock = -1;
    let room;
    let publish;
    let now;
    let setState;
    let countDrop;
    // The per-event path, specialised per mode: everything it touches is a constant of its
    // closure, so V8 inlines it whole into each hook (measured: helper calls here cost more
    // than the record itself).
    let event;

    if (clockWord !== null) {
      const buf = native.openRing(SESSION, asked, process.pid, threadId, process.version, internal);
      const hs = L.headerSize;
      capacity = (buf.byteLength - hs) / 32;
      shrunk();
      const i32 = new Int32Array(buf, 0, hs >> 2);
      const h64 = new Float64Array(buf, 0, hs >> 3);
      f64 = new Float64Array(buf, hs, capacity * 4);
      u8 = new Uint8Array(buf, hs, capacity * 32);
      mask = capacity - 1;
      limit = capacity;
      const W = L.write >> 2;
      const R = L.read >> 2; // low half of the u64 read position (little-endian)
      const DROPPED = L.dropped >> 3;
      const STATE = L.state >> 2;
      const EXIT_CODE = L.exitCode >> 2;
      room = function room(n) {
        if (wpos + n <= limit) return true;
        const used = (wpos - (Atomics.load(i32, R) >>> 0)) >>> 0;
        limit = wpos - used + capacity;
        return wpos + n <= limit;
      };
      publish = function publish() {
        Atomics.store(i32, W, wpos | 0);
      };
      now = function now() {
        return clockWord[0];
      };
      setState = function setState(state, code) {
        i32[EXIT_CODE] = code | 0;
        h64[DROPPED] = dropped;
        Atomics.store(i32, STATE, state);
      };
      countDrop = function countDrop() {
        dropped++;
        h64[DROPPED] = dropped;
      };
      const data = f64;
      const clock = clockWord;
      // Publishing the write position: x64 never reorders a store with earlier stores (TSO)
      // and V8 emits typed-array stores in program order, so a plain store publishes the
      // record written before it, at a fraction of the cost of Atomics.store (an xchg, and
      // measured at ~15 ns per event). Other architectures need the barrier.
      const tso = process.arch === 'x64';
      // t: a precise time, or -1 for the clock word.
      event = function directEvent(a, b, c, d, t0) {
        seen++;
        const t = t0 < 0 ? clock[0] : t0;
        const need = t !== lastClock ? 2 : 1;
        if (wpos + need > limit && !room(need)) {
          dropped++;
          h64[DROPPED] = dropped;
          return;
        }
        let i = (wpos & mask) << 2;
        if (need === 2) {
          lastClock = t;
          data[i] = CLOCK;
          data[i + 1] = t;
          data[i + 2] = 0;
          data[i + 3] = 0;
          wpos++;
          i = (wpos & mask) << 2;
        }
        data[i] = a;
        data[i + 1] = b;
        data[i + 2] = c;
        data[i + 3] = d;
        wpos++;
        if (tso) i32[W] = wpos | 0;
        else Atomics.store(i32, W, wpos | 0);
      };
    } else {
      // Staged fallback: records go to a V8-owned array and are copied into the ring by one
      // native call per batch. A SIGKILL loses at most the batch in hand. A batch is at most a
      // quarter of the ring, so a small ring still takes batches while the reader catches up.
      const handle = native.openStagedRing(SESSION, asked, process.pid, threadId, process.version, internal);
      capacity = native.stagedCapacity(handle);
      shrunk();
      const BATCH = Math.min(1024, capacity >> 2);
      f64 = new Float64Array(BATCH * 4);
      u8 = new Uint8Array(f64.buffer);
      mask = BATCH - 1;
      const flush = function flush() {
        if (wpos === 0) return;
        const lost = native.flushStaged(handle, f64, wpos);
        wpos = 0;
        if (lost > 0) {
          // The batch may have held string definitions: send every string again.
          dropped += lost;
          typeIds.clear();
          stackIds.clear();
          lastType = '';
        }
      };
      room = function room(n) {
        if (wpos + n > BATCH) flush();
        return true;
      };
      publish = function publish() {};
      now = preciseNow;
      setState = function setState(state, code) {
        flush();
        native.setStagedState(handle, state === 2, code | 0);
      };
      countDrop = function countDrop() {
        dropped++;
        native.countStagedDrops(handle, 1);
      };
    }

    function put(a, b, c, d) {
      const i = (wpos & mask) << 2;
      f64[i] = a;
      f64[i + 1] = b;
      f64[i + 2] = c;
      f64[i + 3] = d;
      wpos++;
    }

    // The staged path's event (the direct one is built with its ring above).
    function stagedEvent(a, b, c, d, t0) {
      seen++;
      const t = t0 < 0 ? now() : t0;
      if (t !== lastClock) {
        room(2);
        lastClock = t;
        put(CLOCK, t, 0, 0);
      } else {
        room(1);
      }
      put(a, b, c, d);
      publish();
    }
    if (event === undefined) event = stagedEvent;

    // Writes a string definition; false when the ring has no room (the caller drops its event).
    // A string must fit the ring (or the staging batch) whole, and stay under the reader's
    // limit (MAX_STRING_LEN, 1 MiB): longer ones are not sent (an argv of megabytes loses its
    // metadata, never the events).
    const maxStringRecords = Math.min(mask, 1 << 15);
    function defineString(id, text) {
      const bytes = Buffer.from(String(text), 'utf8');
      const n = (bytes.length + 31) >> 5;
      if (n > maxStringRecords || !room(1 + n)) return false;
      put(STRING + id * B, bytes.length, 0, 0);
      for (let k = 0; k < n; k++) {
        u8.set(bytes.subarray(k * 32, k * 32 + 32), (wpos & mask) * 32);
        wpos++;
      }
      return true;
    }

    let lastType = '';
    let lastTypeId = 0;
    function typeId(type) {
      if (type === lastType) return lastTypeId;
      let t = typeIds.get(type);
      if (t === undefined) {
        t = nextTypeId < 65536 ? nextTypeId++ : 65535;
        if (!defineString(t, type)) return 0;
        typeIds.set(type, t);
      }
      lastType = type;
      lastTypeId = t;
      return t;
    }

    // --- creation stacks. Capturing a stack costs ~10 us, 100x a promise. Each resource type
    // draws from its own token bucket: a start-up allowance (small apps get every stack) that
    // refills at a steady rate. Types created rarely (servers, sockets, intervals: what leaks
    // are made of) never run dry; types that come in floods (promises, ticks, per-request
    // objects) get a steady sample, so the cost stays bounded per type.
    const stackMode = process.env.ASYNCTRACE_STACKS || 'auto';
    const stacksOff = stackMode === 'off';
    const STACK_FRAMES = 8;
    const STACK_BURST = Number(process.env.ASYNCTRACE_STACK_BURST || 5000);
    const STACK_RATE = Number(process.env.ASYNCTRACE_STACK_RATE || 200); // per type per second
    const AGENT_FILE = __filename;
    const cwdPrefix = process.cwd() + '/';
    const stackIds = new Map();
    const tokens = [];
    const refilled = [];
    function budgetAllows(t) {
      let left = tokens[t];
      if (left === undefined) {
        left = STACK_BURST;
        refilled[t] = now();
      }
      if (left < 1) {
        const at = now();
        left = Math.min(STACK_BURST, left + ((at - refilled[t]) * STACK_RATE) / 1e9);
        refilled[t] = at;
        if (left < 1) {
          tokens[t] = left;
          return false;
        }
      }
      tokens[t] = left - 1;
      return true;
    }
    function structured(_, frames) {
      return frames;
    }
    // Formats our own CallSites: the app's Error.prepareStackTrace (source maps, custom
    // formats) is set aside for the capture and put back at once, so it neither sees our
    // capture nor changes what we record.
    //
    // The CallSites hold their frames' receivers and functions: they live only in this call's
    // locals, never in anything that outlives it, or the app's objects would never be collected.
    //
    // An app may harden Error (--frozen-intrinsics, Object.freeze(Error), a throwing
    // captureStackTrace, a read-only stackTraceLimit): then the capture fails and only the
    // stack is lost, never the event. A frozen Error stays frozen, so after the first failure
    // to set it up, stacks are given up rather than failing (and costing a throw) on every init.
    let stacksBroken = false;
    function stackOf(init) {
      const savedPrepare = Error.prepareStackTrace;
      const savedLimit = Error.stackTraceLimit;
      const holder = {};
      let frames;
      let setUp = false;
      try {
        Error.stackTraceLimit = STACK_FRAMES + 6;
      } catch (_) {
        // Read-only: the app's limit applies.
      }
      try {
        Error.prepareStackTrace = structured;
        setUp = Error.prepareStackTrace === structured;
        if (!setUp) stacksBroken = true;
        else {
          Error.captureStackTrace(holder, init);
          frames = holder.stack;
        }
      } catch (_) {
        if (!setUp) stacksBroken = true;
        frames = undefined;
      }
      try {
        Error.prepareStackTrace = savedPrepare;
      } catch (_) {}
      try {
        Error.stackTraceLimit = savedLimit;
      } catch (_) {}
      if (!Array.isArray(frames)) return '';
      let out = '';
      let n = 0;
      for (let i = 0; i < frames.length && n < STACK_FRAMES; i++) {
        const f = frames[i];
        let file = f.getFileName();
        if (!file || file.startsWith('node:') || file.startsWith('internal/') || file === AGENT_FILE) continue;
        if (file.startsWith('file://')) file = decodeURIComponent(file.slice(7));
        if (file.startsWith(cwdPrefix)) file = file.slice(cwdPrefix.length);
        const fn = f.getFunctionName() || '';
        out += (n === 0 ? '' : '\n') + fn + '\t' + file + ':' + f.getLineNumber() + ':' + f.getColumnNumber();
        n++;
      }
      return out;
    }
    function stackId(t, init) {
      if (stackMode === 'off' || stacksBroken) return 0;
      if (stackMode !== 'on' && !budgetAllows(t)) return 0;
      let text;
      try {
        text = stackOf(init);
      } catch (_) {
        return 0; // A CallSite method the app patched to throw: only the stack is lost.
      }
      if (text === '') return 0;
      let sid = stackIds.get(text);
      if (sid === undefined) {
        sid = nextStringId++;
        if (!defineString(sid, text)) return 0;
        stackIds.set(text, sid);
      }
      return sid;
    }

    const executionAsyncId = asyncHooks.executionAsyncId;

    // Writes a note (codes: tracer-core/src/trace/model.rs, `notes`) about resource `id` (0: the
    // thread as a whole), with operands a and b (non-negative integers below 2^53) and an
    // optional text. Outside the hot path: a note may define its text first.
    function note(code, id, a, b, text) {
      let sid = 0;
      if (text !== undefined) {
        sid = nextStringId++;
        if (!room(2) || !defineString(sid, text)) return false;
      }
      const t = now();
      if (t !== lastClock && room(1)) {
        lastClock = t;
        put(CLOCK, t, 0, 0);
      }
      if (!room(1)) return false;
      put(NOTE + code * 16 + sid * B, id, a, b);
      publish();
      return true;
    }
    // --- requests and outgoing calls, from Node's diagnostics channels (codes 1..=5 in
    // tracer-core/src/trace/model.rs, `notes`). Each request gets a number in this thread; the
    // numbers are kept in WeakMaps keyed by Node's own objects, so nothing of the app is held.
    // A subscriber runs inside Node's emit, in the app's context: it must never throw.
    const REQ_START = 1;
    const REQ_FINISH = 2;
    const TIMER = 3;
    const OUT_START = 4;
    const OUT_FINISH = 5;
    const requestNumbers = new WeakMap();
    let nextRequest = 1;
    const outgoingNumbers = new WeakMap();
    let nextOutgoing = 1;
    function socketId(socket) {
      const h = socket && socket._handle;
      return h && typeof h.getAsyncId === 'function' ? h.getAsyncId() : 0;
    }
    function onRequestStart(m) {
      try {
        const n = nextRequest++;
        requestNumbers.set(m.response, n);
        const req = m.request;
        // executionAsyncId(): the parser resource whose callback is handling the request.
        note(REQ_START, executionAsyncId(), n, socketId(m.socket), req.method + ' ' + String(req.url).slice(0, 512));
      } catch (_) {
        // The request's row is lost, not the app's request.
      }
    }
    function onResponseFinish(m) {
      try {
        const n = requestNumbers.get(m.response);
        if (n !== undefined) note(REQ_FINISH, executionAsyncId(), n, m.response.statusCode >>> 0);
      } catch (_) {}
    }
    function onClientStart(m) {
      try {
        const r = m.request;
        const n = nextOutgoing++;
        outgoingNumbers.set(r, n);
        note(OUT_START, executionAsyncId(), n, 0, r.method + ' ' + (r.host || '') + String(r.path).slice(0, 256));
      } catch (_) {}
    }
    function onClientFinish(m) {
      try {
        const n = outgoingNumbers.get(m.request);
        // executionAsyncId(): the client parser (HTTPCLIENTREQUEST) that received the response.
        if (n !== undefined) note(OUT_FINISH, executionAsyncId(), n, (m.response && m.response.statusCode) >>> 0);
      } catch (_) {}
    }
    function onFetchCreate(m) {
      try {
        const r = m.request;
        const n = nextOutgoing++;
        outgoingNumbers.set(r, n);
        note(OUT_START, executionAsyncId(), n, 0, r.method + ' ' + String(r.origin || '').replace(/^[a-z]+:\/\//, '') + String(r.path).slice(0, 256));
      } catch (_) {}
    }
    function onFetchHeaders(m) {
      try {
        const n = outgoingNumbers.get(m.request);
        if (n !== undefined) note(OUT_FINISH, executionAsyncId(), n, (m.response && m.response.statusCode) >>> 0);
      } catch (_) {}
    }
    function timerNote(id, timer) {
      const ms = timer && timer._idleTimeout;
      if (typeof ms === 'number' && ms >= 0) note(TIMER, id, Math.floor(ms * 1000), timer._repeat ? 1 : 0);
    }
    try {
      const dc = require('diagnostics_channel');
      if (typeof dc.subscribe === 'function') {
        dc.subscribe('http.server.request.start', onRequestStart);
        dc.subscribe('http.server.response.finish', onResponseFinish);
        dc.subscribe('http.client.request.start', onClientStart);
        dc.subscribe('http.client.response.finish', onClientFinish);
        dc.subscribe('undici:request:create', onFetchCreate);
        dc.subscribe('undici:request:headers', onFetchHeaders);
      }
    } catch (_) {
      // No channels (an old runtime): requests are not split, the events are all there.
    }

    // Never throw into the app; and an event a hook saw is recorded or counted as dropped, so
    // every catch below that may have lost its event counts it (`lost`).
    function lost() {
      try {
        seen++;
        countDrop();
      } catch (_) {}
    }
    const hooks = {
      init(id, type, trigger, resource) {
        try {
          const t = typeId(type);
          if (t === 0) return lost();
          const s = stacksOff ? 0 : stackId(t, hooks.init);
          event(INIT + t * 16 + s * B, id, trigger, executionAsyncId(), -1);
          // A timer's delay, so that a late one can be told from a long one (one note per
          // Timeout; promises and ticks, the floods, pay only this comparison).
          if (type === 'Timeout') timerNote(id, resource);
        } catch (_) {
          lost();
        }
      },
      before(id) {
        try {
          event(BEFORE, id, 0, 0, precise ? preciseNow() : -1);
        } catch (_) {
          return lost();
        }
      },
      after(id) {
        try {
          event(AFTER, id, 0, 0, precise ? preciseNow() : -1);
        } catch (_) {
          lost();
        }
      },
      destroy(id) {
        try {
          event(DESTROY, id, 0, 0, -1);
        } catch (_) {
          lost();
        }
      },
      promiseResolve(id) {
        try {
          // Who settled it: the wait-cause analyses blame a promise's wait on this resource.
          event(PROMISE_RESOLVE, id, executionAsyncId(), 0, -1);
        } catch (_) {
          lost();
        }
      },
    };
    const hook = asyncHooks.createHook(hooks);

    const meta = JSON.stringify({
      pid: process.pid,
      ppid: process.ppid,
      thread: threadId,
      isMainThread,
      argv: process.argv,
      execArgv: process.execArgv,
      cwd: process.cwd(),
      node: process.version,
      ring: clockWord !== null ? 'direct' : 'staged',
    });
    const metaId = nextStringId++;
    if (room(2) && defineString(metaId, meta)) put(META + metaId * B, 0, 0, 0);
    publish();

    let finished = false;
    function finish(code) {
      if (finished) return;
      finished = true;
      // The hook stays enabled: exit listeners registered after ours (and Node's own exit work)
      // still create resources, and the reader keeps draining until the thread is really gone.
      if (room(1)) put(EXIT, code | 0, seen, dropped);
      publish();
      setState(2, code);
    }
    process.on('exit', (code) => {
      try {
        finish(typeof code === 'number' ? code : process.exitCode | 0);
      } catch (_) {}
    });

    setState(1, 0);
    hook.enable();
  }
})();
