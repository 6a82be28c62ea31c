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
  // 'starting' while the agent sets up (what it creates meanwhile is its own), then true.
  globalThis[LOADED] = 'starting';

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
  globalThis[LOADED] = true;

  function start() {
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

    // The promise mode is settled before the ring is opened: a thread following promises
    // through V8's hooks makes events about twice as fast, in bursts, and takes its own ring
    // size (ASYNCTRACE_RING_RECORDS_V8).
    const asyncHooks = require('async_hooks');
    const promisesAsked = process.env.ASYNCTRACE_PROMISES || 'async-hooks';
    const promisesV8 = promisesAsked !== 'async-hooks' && v8PromisesWork(asyncHooks);
    if (!promisesV8 && promisesAsked === 'v8') {
      say(`thread ${threadId} of pid ${process.pid} records promises through async_hooks: --promises v8 needs async_hooks' trackPromises (Node 24.21, 25.9, 26 or later)`);
    }
    const ringVar = promisesV8 && process.env.ASYNCTRACE_RING_RECORDS_V8 ? 'ASYNCTRACE_RING_RECORDS_V8' : 'ASYNCTRACE_RING_RECORDS';
    const asked = Number(process.env[ringVar] || 1 << 18);
    if (!(asked >= 16 && asked <= 1 << 30 && (asked & (asked - 1)) === 0)) {
      throw new Error(`${ringVar} must be a power of two from 16 to 2^30, got ${asked}`);
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
    // `once`: only the next record uses this id, so the reader need not remember it (a label
    // per request would otherwise grow the reader's table for as long as the app runs).
    // A string must fit the ring (or the staging batch) whole, and stay under the reader's
    // limit (MAX_STRING_LEN, 1 MiB): longer ones are not sent (an argv of megabytes loses its
    // metadata, never the events).
    const maxStringRecords = Math.min(mask, 1 << 15);
    function defineString(id, text, once) {
      const bytes = Buffer.from(String(text), 'utf8');
      const n = (bytes.length + 31) >> 5;
      if (n > maxStringRecords || !room(1 + n)) return false;
      put(STRING + (once === true ? 16 : 0) + id * B, bytes.length, 0, 0);
      for (let k = 0; k < n; k++) {
        u8.set(bytes.subarray(k * 32, k * 32 + 32), (wpos & mask) * 32);
        wpos++;
      }
      return true;
    }

    let lastType = '';
    let lastTypeId = 0;
    // Per type id: is it a handle or timer the exit snapshot looks at (see `watch`).
    const watchT = [];
    function typeId(type) {
      if (type === lastType) return lastTypeId;
      let t = typeIds.get(type);
      if (t === undefined) {
        t = nextTypeId < 65536 ? nextTypeId++ : 65535;
        if (!defineString(t, type)) return 0;
        typeIds.set(type, t);
        watchT[t] = WATCHED.has(type);
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
    const STACK_BURST = Number(process.env.ASYNCTRACE_STACK_BURST || 2500);
    const STACK_RATE = Number(process.env.ASYNCTRACE_STACK_RATE || 100); // per type per second
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
    // Learned depth: a capture costs about in proportion to its frames, and the frames above a
    // type's first user frame (Node's own: emitInit, the constructor, setInterval) are nearly
    // always as many. The first LEARN captures of a type take the full depth and note how deep
    // its first user frame was; later ones stop a few frames below the deepest seen. A capture
    // that then finds no user frame (a deeper path through Node) loses that one site and makes
    // the type learn again.
    const LEARN = 16;
    const FULL = STACK_FRAMES + 6;
    const learnt = [];
    const firstUser = [];
    function stackOf(init, t) {
      const savedPrepare = Error.prepareStackTrace;
      const savedLimit = Error.stackTraceLimit;
      const holder = {};
      let frames;
      let setUp = false;
      const learning = !(learnt[t] >= LEARN);
      try {
        Error.stackTraceLimit = learning ? FULL : firstUser[t] + 3;
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
        if (n === 0 && learning) {
          learnt[t] = (learnt[t] || 0) + 1;
          if (!(firstUser[t] >= i)) firstUser[t] = i;
        }
        if (file.startsWith('file://')) file = decodeURIComponent(file.slice(7));
        if (file.startsWith(cwdPrefix)) file = file.slice(cwdPrefix.length);
        const fn = f.getFunctionName() || '';
        out += (n === 0 ? '' : '\n') + fn + '\t' + file + ':' + f.getLineNumber() + ':' + f.getColumnNumber();
        n++;
      }
      if (n === 0 && !learning && frames.length >= firstUser[t] + 3) learnt[t] = 0;
      return out;
    }
    function stackId(t, init) {
      if (stackMode === 'off' || stacksBroken) return 0;
      if (stackMode !== 'on' && !budgetAllows(t)) return 0;
      let text;
      try {
        text = stackOf(init, t);
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
    // The resource running now, as the app's records name it: in the v8 promise mode Node no
    // longer knows when a promise reaction runs, the agent does (`currentPromise`).
    function currentId() {
      return currentPromise !== 0 ? currentPromise : executionAsyncId();
    }

    // Writes a note (codes: tracer-core/src/trace/model.rs, `notes`) about resource `id` (0: the
    // thread as a whole), with operands a and b (non-negative integers below 2^53) and an
    // optional text. Outside the hot path: a note may define its text first.
    function note(code, id, a, b, text) {
      let sid = 0;
      if (text !== undefined) {
        sid = nextStringId++;
        if (!room(2) || !defineString(sid, text, true)) return false;
      }
      if (!putNote(code, id, a, b, sid)) return false;
      publish();
      return true;
    }
    // The note record itself, dated now, with an already defined string `sid` (0: none);
    // unpublished.
    function putNote(code, id, a, b, sid) {
      const t = now();
      if (t !== lastClock && room(1)) {
        lastClock = t;
        put(CLOCK, t, 0, 0);
      }
      if (!room(1)) return false;
      put(NOTE + code * 16 + sid * B, id, a, b);
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
        note(REQ_START, currentId(), n, socketId(m.socket), req.method + ' ' + String(req.url).slice(0, 512));
      } catch (_) {
        // The request's row is lost, not the app's request.
      }
    }
    function onResponseFinish(m) {
      try {
        const n = requestNumbers.get(m.response);
        if (n !== undefined) note(REQ_FINISH, currentId(), n, m.response.statusCode >>> 0);
      } catch (_) {}
    }
    // An outgoing call starts (`target`: host, or undici's origin without its scheme) and ends
    // when its response arrives; executionAsyncId() at the end is the client parser
    // (HTTPCLIENTREQUEST) or socket that received it.
    function outgoingStart(r, target) {
      const n = nextOutgoing++;
      outgoingNumbers.set(r, n);
      note(OUT_START, currentId(), n, 0, r.method + ' ' + target + String(r.path).slice(0, 256));
    }
    function onOutgoingFinish(m) {
      try {
        const n = outgoingNumbers.get(m.request);
        if (n !== undefined) note(OUT_FINISH, currentId(), n, (m.response && m.response.statusCode) >>> 0);
      } catch (_) {}
    }
    function onClientStart(m) {
      try {
        outgoingStart(m.request, m.request.host || '');
      } catch (_) {}
    }
    function onFetchCreate(m) {
      try {
        outgoingStart(m.request, String(m.request.origin || '').replace(/^[a-z]+:\/\//, ''));
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
        dc.subscribe('http.client.response.finish', onOutgoingFinish);
        dc.subscribe('undici:request:create', onFetchCreate);
        dc.subscribe('undici:request:headers', onOutgoingFinish);
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
    // Ids of the agent's own set-up work (see `pre` below), skipped until their destroy; our
    // signal handles (async id -> signal), whose callbacks are skipped while ours is the only
    // listener (the app's own listeners for the same signal run under the same handle); and
    // the ids of callbacks skipped now, so their `after` is skipped too.
    const own = new Set();
    const ownSignals = new Map();
    const skipping = new Set();
    const hooks = {
      init(id, type, trigger, resource) {
        if (id < firstInit) firstInit = id;
        try {
          const t = typeId(type);
          if (t === 0) return lost();
          const s = stacksOff ? 0 : stackId(t, hooks.init);
          event(INIT + t * 16 + s * B, id, trigger, executionAsyncId(), -1);
          if (watchT[t] === true) watch(id, type, resource);
          // A timer's delay, so that a late one can be told from a long one (one note per
          // Timeout; promises and ticks, the floods, pay only this comparison).
          if (type === 'Timeout') timerNote(id, resource);
        } catch (_) {
          lost();
        }
      },
      before(id) {
        if (id < firstInit && beforeUnseen(id)) return;
        try {
          event(BEFORE, id, 0, 0, precise ? preciseNow() : -1);
        } catch (_) {
          return lost();
        }
      },
      after(id) {
        if (id < firstInit && (own.has(id) || skipping.delete(id))) return;
        try {
          event(AFTER, id, 0, 0, precise ? preciseNow() : -1);
        } catch (_) {
          lost();
        }
        if (cpuNext !== 0 && now() >= cpuNext) cpuFlush(false);
      },
      destroy(id) {
        if (id < firstInit && (own.delete(id) || ownSignals.has(id))) return;
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

    // ===== promises through V8's promise hooks (the `v8` promise mode) =========================
    // An async_hooks hook that tracks promises costs most of its floor in promise bookkeeping
    // (a PromiseWrap or id fields per promise, and GC tracking for `destroy`). Where Node can
    // leave promises out (`trackPromises: false`, Node 24.21, 25.9, 26), the agent follows them
    // through `v8.promiseHooks` instead and writes the records async_hooks would have: PROMISE
    // inits, their callbacks, promiseResolve. What is given up: a promise's `destroy` (its
    // collection). The recorder dates a promise's end instead (tracer-core `ingest`).
    //
    // Ids: promises get ids from PROMISE_ID_BASE up (tracer-core `trace::notes`), which async
    // ids of other resources never reach, so they cannot collide.
    //
    // Context: with promises untracked, Node no longer enters a promise's context for its
    // reactions, so the agent keeps the promise whose reaction runs (`currentPromise`, saved
    // on `promiseStack` by every before, restored by every after) and uses it where Node would
    // have: as the execution id of what is created or settled meanwhile, and as the trigger
    // when Node's trigger is its default (the execution id).
    const PROMISE_MODE = 37;
    const PROMISE_ID_BASE = 1e12;
    let currentPromise = 0;
    // By behaviour, not version: a hook created with trackPromises false sees no PROMISE init
    // (Node 22 accepts the option and ignores it). The probe runs before the agent's own hook
    // is enabled, so nothing of it is recorded.
    function v8PromisesWork(asyncHooks) {
      try {
        const ph = require('v8').promiseHooks;
        if (!ph || typeof ph.createHook !== 'function') return false;
        let sawPromise = false;
        const probe = asyncHooks.createHook({
          init(id, type) {
            if (type === 'PROMISE') sawPromise = true;
          },
          trackPromises: false,
        });
        probe.enable();
        try {
          Promise.resolve();
        } finally {
          probe.disable();
        }
        return !sawPromise;
      } catch (_) {
        return false;
      }
    }
    // A promise's id lives in a private field, stamped on the promise by the return-override
    // trick: invisible to the app (no property, no symbol) and as fast as a property; it goes
    // with the promise, which the agent never holds. A promise that refuses a field (a runtime
    // where non-extensible objects do) keeps its id in a WeakMap.
    //
    // Stampable is a derived class that returns its argument without calling super(), so no
    // object of its own is ever made: with a base class there, every stamp allocated one and
    // threw it away (a million stamps in isolation: 13-17 ns each without it, 110-300 with).
    class Unused {}
    class Stampable extends Unused {
      constructor(o) {
        return o;
      }
    }
    class PromiseId extends Stampable {
      #id;
      constructor(o, id) {
        super(o);
        this.#id = id;
      }
      static of(o) {
        return #id in o ? o.#id : 0;
      }
    }
    const refusedIds = new WeakMap();
    let nextPromiseId = PROMISE_ID_BASE + 1;
    function stamp(promise) {
      const id = nextPromiseId++;
      try {
        new PromiseId(promise, id);
      } catch (_) {
        refusedIds.set(promise, id);
      }
      return id;
    }
    function promiseId(promise) {
      const id = PromiseId.of(promise);
      return id !== 0 ? id : refusedIds.get(promise) || 0;
    }
    // As Node's own promise hook does, a promise created before the hook gets its id when it is
    // first seen (a parent, a callback), and a parent's id is taken before its child's.
    function knownId(promise) {
      const id = promiseId(promise);
      return id !== 0 ? id : stamp(promise);
    }
    const promiseStack = [];
    const promiseHooks = {
      init(promise, parent) {
        try {
          const trigger0 = parent !== undefined ? knownId(parent) : 0;
          const id = stamp(promise);
          const t = typeId('PROMISE');
          if (t === 0) return lost();
          const exec = currentPromise !== 0 ? currentPromise : executionAsyncId();
          const s = stacksOff ? 0 : stackId(t, promiseHooks.init);
          event(INIT + t * 16 + s * B, id, trigger0 !== 0 ? trigger0 : exec, exec, -1);
        } catch (_) {
          lost();
        }
      },
      before(promise) {
        promiseStack.push(currentPromise);
        try {
          currentPromise = knownId(promise);
          event(BEFORE, currentPromise, 0, 0, precise ? preciseNow() : -1);
        } catch (_) {
          lost();
        }
      },
      after(promise) {
        const id = currentPromise;
        currentPromise = promiseStack.length > 0 ? promiseStack.pop() : 0;
        try {
          event(AFTER, id !== 0 ? id : knownId(promise), 0, 0, precise ? preciseNow() : -1);
        } catch (_) {
          lost();
        }
        if (cpuNext !== 0 && now() >= cpuNext) cpuFlush(false);
      },
      settled(promise) {
        try {
          event(PROMISE_RESOLVE, knownId(promise), currentPromise !== 0 ? currentPromise : executionAsyncId(), 0, -1);
        } catch (_) {
          lost();
        }
      },
    };
    // The other resources, as `hooks` records them, with the current promise in Node's place;
    // a callback of theirs inside a reaction (runInAsyncScope) is their context, not the
    // promise's, until it returns.
    const otherHooks = {
      // Not a call to hooks.init: the stack is cut at the hook Node called, and a frame of
      // ours in between would take the place of the app's deepest one.
      init(id, type, trigger, resource) {
        if (id < firstInit) firstInit = id;
        try {
          const t = typeId(type);
          if (t === 0) return lost();
          const s = stacksOff ? 0 : stackId(t, otherHooks.init);
          const exec = executionAsyncId();
          if (currentPromise === 0) event(INIT + t * 16 + s * B, id, trigger, exec, -1);
          else event(INIT + t * 16 + s * B, id, trigger === exec ? currentPromise : trigger, currentPromise, -1);
          if (watchT[t] === true) watch(id, type, resource);
          if (type === 'Timeout') timerNote(id, resource);
        } catch (_) {
          lost();
        }
      },
      before(id) {
        promiseStack.push(currentPromise);
        currentPromise = 0;
        hooks.before(id);
      },
      after(id) {
        currentPromise = promiseStack.length > 0 ? promiseStack.pop() : 0;
        hooks.after(id);
      },
      destroy: hooks.destroy,
      trackPromises: false,
    };
    const hook = asyncHooks.createHook(promisesV8 ? otherHooks : hooks);

    // ===== CPU samples ==========================================================================
    // V8's sampling profiler, driven through an in-thread inspector session: it runs in every
    // thread (main and workers) with no native code of ours, its sample times are
    // CLOCK_MONOTONIC microseconds (the trace's clock), and `Profiler.stop` answers
    // synchronously. The session creates no async resource; the signal listeners below are
    // made under a probe hook that learns their ids, and the hooks skip those ids.
    //
    // A chunk (stop, write, start again) is written from an `after` hook once CPU_FLUSH_NS have
    // passed, at exit, and on SIGINT/SIGTERM: a killed app loses at most the last chunk. Notes
    // (codes in tracer-core/src/trace/model.rs, `notes`): CPU_CHUNK (start time, interval),
    // CPU_FRAME (stable node id, parent, "function\tfile:line:col"), CPU_SAMPLE (node, µs
    // since the previous sample), CPU_LINES (node, line, ticks), CPU_CHUNK_END (end time,
    // samples left out: idle, or no room in the ring). Node ids are kept stable across
    // chunks. Samples of a thread with no JS on its stack (waiting for I/O) are left out, only
    // counted.
    const CPU_INTERVAL_US = Number(process.env.ASYNCTRACE_CPU_INTERVAL_US || 0);
    const CPU_FLUSH_NS = Number(process.env.ASYNCTRACE_CPU_FLUSH_MS || 1000) * 1e6;
    let cpuNext = 0; // when the next chunk is due (0: sampling off)
    let cpuSession = null;
    let firstInit = Infinity; // ids below it were created before our hook
    const preHook = new Set();
    const cpuNodes = new Map(); // "parent|frame" -> stable id
    const cpuTexts = new Map(); // frame text -> string id
    let cpuNextNode = 1;
    // The agent's own work inside a callback (creation stacks) is the app's cost too: it is
    // kept, as one frame, whatever the agent called.
    const AGENT_FRAME = '(asynctrace agent)';
    function noteShared(code, id, a, b, text) {
      let sid = cpuTexts.get(text);
      if (sid === undefined) {
        sid = nextStringId++;
        if (!room(2) || !defineString(sid, text)) return false;
        cpuTexts.set(text, sid);
      }
      if (!room(1)) return false;
      put(NOTE + code * 16 + sid * B, id, a, b);
      return true;
    }
    function cpuFrameText(cf) {
      if (cf.url === AGENT_FILE || cf.url === 'file://' + AGENT_FILE) return AGENT_FRAME;
      let file = cf.url || '';
      if (file.startsWith('file://')) file = decodeURIComponent(file.slice(7));
      if (file.startsWith(cwdPrefix)) file = file.slice(cwdPrefix.length);
      const fn = cf.functionName || (file === '' ? '(native)' : '(anonymous)');
      return file === '' ? fn : fn + '\t' + file + ':' + (cf.lineNumber + 1) + ':' + (cf.columnNumber + 1);
    }
    function cpuWrite(p) {
      const nodes = p.nodes;
      const byId = new Map();
      for (let i = 0; i < nodes.length; i++) byId.set(nodes[i].id, nodes[i]);
      const parent = new Map();
      for (let i = 0; i < nodes.length; i++) {
        const c = nodes[i].children;
        if (c) for (let k = 0; k < c.length; k++) parent.set(c[k], nodes[i].id);
      }
      const stable = new Map(); // chunk node id -> stable id (0: the root)
      const skip = new Set(); // idle
      const agent = new Set(); // the agent's frames and what they called
      function resolve(id) {
        let s = stable.get(id);
        if (s !== undefined) return s;
        const n = byId.get(id);
        const up = parent.get(id);
        if (n === undefined || up === undefined) {
          stable.set(id, 0);
          return 0;
        }
        const ps = resolve(up);
        if (agent.has(up)) {
          agent.add(id);
          stable.set(id, ps);
          return ps;
        }
        const text = cpuFrameText(n.callFrame);
        if (ps === 0 && (text === '(idle)' || text === '(program)')) skip.add(id);
        if (skip.has(up)) skip.add(id);
        if (text === AGENT_FRAME) agent.add(id);
        const key = ps + '|' + text;
        s = cpuNodes.get(key);
        if (s === undefined) {
          s = cpuNextNode++;
          if (!noteShared(64, 0, s, ps, text)) {
            cpuNextNode--;
            s = 0;
          } else cpuNodes.set(key, s);
        }
        stable.set(id, s);
        return s;
      }
      const t = now();
      if (t !== lastClock && room(1)) {
        lastClock = t;
        put(CLOCK, t, 0, 0);
      }
      if (!room(1)) return;
      put(NOTE + 66 * 16, 0, Math.round(p.startTime), CPU_INTERVAL_US);
      const samples = p.samples || [];
      const deltas = p.timeDeltas || [];
      let idle = 0;
      let gap = 0;
      // V8 may list a sample a little before the one it follows (a negative delta): times are
      // kept from never running back, without shifting the samples after it.
      let at = p.startTime;
      let last = Math.round(p.startTime);
      for (let i = 0; i < samples.length; i++) {
        at += deltas[i] || 0;
        const tt = Math.max(last, Math.round(at));
        gap += tt - last;
        last = tt;
        const s = resolve(samples[i]);
        if (s === 0 || skip.has(samples[i])) {
          idle++;
          continue;
        }
        if (!room(1)) {
          idle++;
          continue;
        }
        put(NOTE + 65 * 16, 0, s, gap);
        gap = 0;
      }
      // Line ticks of user code: the hottest line of a function (V8 keeps lines per node).
      for (let i = 0; i < nodes.length; i++) {
        const n = nodes[i];
        const pt = n.positionTicks;
        if (!pt || pt.length === 0 || skip.has(n.id) || agent.has(n.id)) continue;
        const s = stable.get(n.id);
        if (!s) continue;
        for (let k = 0; k < pt.length; k++) if (room(1)) put(NOTE + 67 * 16, 0, s, pt[k].line * 1048576 + Math.min(pt[k].ticks, 1048575));
      }
      if (room(1)) put(NOTE + 69 * 16, 0, Math.max(Math.round(p.endTime), last), idle);
      publish();
    }
    function cpuFlush(last) {
      if (cpuSession === null) return;
      cpuNext = last ? 0 : now() + CPU_FLUSH_NS;
      let p = null;
      try {
        cpuSession.post('Profiler.stop', (e, r) => {
          if (!e && r) p = r.profile;
        });
        if (p) cpuWrite(p);
      } catch (_) {
        // A chunk is lost, never the app's events.
      }
      if (last) {
        cpuSession = null;
        return;
      }
      try {
        cpuSession.post('Profiler.start');
      } catch (_) {
        cpuSession = null;
        cpuNext = 0;
      }
    }
    // Ids created before our hook: the agent's own (skipped) and the app's (their type, once).
    function beforeUnseen(id) {
      if (own.has(id)) return true;
      if (ownSignals.has(id)) {
        let ours = true;
        try {
          ours = process.listenerCount(ownSignals.get(id)) <= 1;
        } catch (_) {}
        if (ours) {
          skipping.add(id);
          return true;
        }
      }
      if (!preHook.has(id) && preHook.size < 4096) {
        preHook.add(id);
        let type = '';
        try {
          const r = asyncHooks.executionAsyncResource();
          type = r && r.constructor && typeof r.constructor.name === 'string' ? r.constructor.name : '';
        } catch (_) {}
        if (type !== '' && noteShared(68, id, 0, 0, type)) publish();
      }
      return false;
    }
    if (CPU_INTERVAL_US > 0) {
      try {
        const { Session } = require('inspector');
        const s = new Session();
        s.connect();
        let failed = null;
        const check = (e) => {
          if (e) failed = e;
        };
        s.post('Profiler.enable', check);
        s.post('Profiler.setSamplingInterval', { interval: CPU_INTERVAL_US }, check);
        s.post('Profiler.start', check);
        if (failed) throw failed;
        cpuSession = s;
        cpuNext = now() + CPU_FLUSH_NS;
      } catch (e) {
        say(`CPU samples are off in thread ${threadId} of pid ${process.pid} (${e && e.message ? e.message : e})`);
      }
    }
    // ===== end of CPU samples ===================================================================

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
    // Before any event: the recorder reads promise ids and ends by it.
    note(PROMISE_MODE, 0, promisesV8 ? 1 : 0, 0, undefined);

    let finished = false;
    function finish(code) {
      if (finished) return;
      finished = true;
      try {
        snapshot(0);
        note(ENDED, 0, 0, code < 0 ? 0 : code, undefined);
      } catch (_) {
        // The snapshot is lost, not the exit record.
      }
      cpuFlush(true);
      // The hook stays enabled: exit listeners registered after ours (and Node's own exit work)
      // still create resources, and the reader keeps draining until the thread is really gone.
      if (room(1)) put(EXIT, code | 0, seen, dropped);
      publish();
      setState(2, code);
    }
    // --- what is alive at the end, as Node sees it. `destroy` is no proof of closing: Node
    // delivers it later (a closed socket's, a fired timer's), and `process.exit` skips what is
    // queued. So the agent holds each handle and timer weakly (never keeping it alive) and, at
    // exit or when a stopping signal arrives, notes those still open: ref'd or not, the
    // timer's period, the socket's endpoints, the server's address. Not promises: they are
    // judged by the trace (settled or not).
    const SNAPSHOT = 32;
    const ALIVE = 33;
    const INTERVAL = 34;
    const WARNING = 35;
    const ENDED = 36;
    const ALIVE_REF = 1;
    const ALIVE_NODE = 2;
    const ALIVE_LISTENING = 4;
    const WATCHED = new Set(['Timeout', 'Immediate', 'TCPWRAP', 'TCPSERVERWRAP', 'PIPEWRAP', 'PIPESERVERWRAP', 'UDPWRAP', 'PROCESSWRAP', 'FSEVENTWRAP', 'STATWATCHER', 'TTYWRAP']);
    // Timers Node arms on the app's behalf, by their callback's name.
    const NODE_TIMERS = new Set(['resetCache', 'bound checkConnections', 'checkConnections']);
    const SNAPSHOT_MAX = 50000;
    const watched = new Map();
    let sweepAt = 4096;
    function watch(id, type, resource) {
      watched.set(id, new WeakRef(resource));
      // Why a sweep and not a delete per destroy: a Map delete on every destroy (promises
      // included) would cost every app; collected entries are dropped in bulk instead.
      if (watched.size > sweepAt) {
        for (const [k, ref] of watched) {
          const o = ref.deref();
          if (o === undefined || closed(o)) watched.delete(k);
        }
        sweepAt = Math.max(4096, watched.size * 2);
      }
      if (type === 'Timeout' && typeof resource._repeat === 'number' && resource._repeat > 0) {
        note(INTERVAL, id, Math.floor(resource._repeat), 0, undefined);
      }
    }
    let ownerSymbol;
    function ownerOf(o) {
      if (ownerSymbol === undefined) {
        const syms = Object.getOwnPropertySymbols(o);
        for (let i = 0; i < syms.length; i++) {
          if (String(syms[i]) === 'Symbol(owner_symbol)') ownerSymbol = syms[i];
        }
        if (ownerSymbol === undefined) return undefined;
      }
      return o[ownerSymbol];
    }
    // A timer is closed once cleared or fired (one-shot); a handle once its owner (socket,
    // server, watcher, child process) let go of it or it no longer holds the loop.
    function closed(o) {
      if (typeof o._idleTimeout === 'number' || typeof o._onImmediate === 'function' || o._onImmediate === null) {
        return o._destroyed === true || o._idleTimeout === -1 || o._onImmediate === null;
      }
      const owner = ownerOf(o);
      if (owner !== undefined && owner !== null && typeof owner === 'object' && '_handle' in owner) return owner._handle !== o;
      // No owner to ask: only a ref'd handle is known to be open.
      return !(typeof o.hasRef === 'function' && o.hasRef());
    }
    const noteTexts = new Map();
    function noteText(code, id, a, b, text) {
      let sid = noteTexts.get(text);
      if (sid === undefined) {
        sid = nextStringId++;
        const keep = noteTexts.size < 10000;
        if (!room(2) || !defineString(sid, text, !keep)) return false;
        if (keep) noteTexts.set(text, sid);
      }
      return putNote(code, id, a, b, sid);
    }
    function describe(o) {
      if (typeof o._idleTimeout === 'number') {
        const fn = o._onTimeout;
        const flags = (o.hasRef() ? ALIVE_REF : 0) | (typeof fn === 'function' && NODE_TIMERS.has(fn.name) ? ALIVE_NODE : 0);
        return [flags, typeof o._repeat === 'number' && o._repeat > 0 ? Math.floor(o._repeat) : 0, undefined];
      }
      if (typeof o._onImmediate === 'function') return [o.hasRef() ? ALIVE_REF : 0, 0, undefined];
      const owner = ownerOf(o);
      // process.stdout and friends: Node's, not the app's.
      const flags = (typeof o.hasRef === 'function' && o.hasRef() ? ALIVE_REF : 0) | (owner && owner._isStdio === true ? ALIVE_NODE : 0);
      let text;
      try {
        if (owner && typeof owner.address === 'function' && typeof owner.listen === 'function') {
          const a = owner.address();
          const where = a === null ? '' : typeof a === 'string' ? a : a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
          return [flags | ALIVE_LISTENING, 0, `listening ${where}`];
        }
        if (owner && owner.remotePort !== undefined) {
          text = `${owner.localAddress}:${owner.localPort} -> ${owner.remoteAddress}:${owner.remotePort}`;
        }
      } catch (_) {
        // An endpoint the socket cannot tell any more: the handle is still listed.
      }
      return [flags, 0, text];
    }
    let snapshots = 0;
    function snapshot(why) {
      if (snapshots++ > 16) return;
      let n = 0;
      for (const [id, ref] of watched) {
        if (n >= SNAPSHOT_MAX) break;
        const o = ref.deref();
        if (o === undefined) continue;
        let d;
        try {
          if (closed(o)) continue;
          d = describe(o);
        } catch (_) {
          continue;
        }
        const ok = d[2] === undefined ? note(ALIVE, id, d[0], d[1], undefined) : noteText(ALIVE, id, d[0], d[1], d[2]);
        if (ok) n++;
      }
      // Written last, with the count: a reader trusts a snapshot only if every note arrived.
      note(SNAPSHOT, 0, why, n, undefined);
    }
    // A stopping signal: snapshot and write the CPU samples so far, then let the signal do
    // what it would have done. When the app has no listener of its own, the agent's is removed
    // and the signal raised again, so the process dies of it as without the agent; when it has
    // one, the app decides (and sampling goes on).
    const STOP_SIGNALS = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 };
    let probing = '';
    function listenForStop() {
      for (const name of Object.keys(STOP_SIGNALS)) {
        const onStop = function onStop() {
          const alone = process.listenerCount(name) === 1;
          try {
            snapshot(STOP_SIGNALS[name]);
            publish();
          } catch (_) {}
          try {
            cpuFlush(alone);
          } catch (_) {}
          if (alone) {
            try {
              process.removeListener(name, onStop);
              process.kill(process.pid, name);
            } catch (_) {
              process.exit(128 + STOP_SIGNALS[name]);
            }
          }
        };
        try {
          probing = name;
          process.on(name, onStop);
        } catch (_) {
          // A runtime without this signal: no snapshot on it.
        }
      }
    }
    let warnings = 0;
    function onWarning(w) {
      try {
        if (warnings++ >= 1000 || w === null || typeof w !== 'object') return;
        let text = `${w.name}: ${w.message}`;
        const lines = String(w.stack || '').split('\n');
        let n = 0;
        for (let i = 1; i < lines.length && n < STACK_FRAMES; i++) {
          const m = /^\s*at (?:(.*?) \()?(.*?):(\d+):(\d+)\)?$/.exec(lines[i]);
          if (m === null) continue;
          let file = m[2];
          if (file.startsWith('node:') || file.startsWith('internal/') || file === AGENT_FILE) continue;
          if (file.startsWith('file://')) file = decodeURIComponent(file.slice(7));
          if (file.startsWith(cwdPrefix)) file = file.slice(cwdPrefix.length);
          text += `\n${m[1] || ''}\t${file}:${m[3]}:${m[4]}`;
          n++;
        }
        noteText(WARNING, currentId(), 0, 0, text.slice(0, 4096));
        publish();
      } catch (_) {}
    }

    process.on('exit', (code) => {
      try {
        finish(typeof code === 'number' ? code : process.exitCode | 0);
      } catch (_) {}
    });

    // Installed before the hook is enabled: the agent's own signal handles are not recorded.
    // Adding a listener to `process` can schedule work of Node's (a forked child's IPC channel
    // runs a tick on every new listener): a short-lived hook notes what is created meanwhile,
    // and the main hook skips those ids until their destroy.
    const pre = asyncHooks.createHook({
      init(id, type) {
        if (type === 'SIGNALWRAP') ownSignals.set(id, probing);
        else own.add(id);
      },
    });
    pre.enable();
    try {
      if (isMainThread) listenForStop();
      process.on('warning', onWarning);
    } catch (_) {}
    pre.disable();

    setState(1, 0);
    hook.enable();
    if (promisesV8) require('v8').promiseHooks.createHook(promiseHooks);
  }
})();
