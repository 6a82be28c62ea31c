'use strict';
// Runs Node's own async_hooks tests plain, under the reference counting hook and under
// `asynctrace record`, and compares. Started by scripts/conformance.sh, which fetches the tests;
// run that, not this.
//
//   node scripts/conformance.js --node BIN --suite DIR --asynctrace BIN
//        [--jobs 2] [--timeout 60] [--only SUBSTRING] [--results FILE]
//
// For each test (DIR/test/async-hooks/test-*.js, with the `// Flags:` of its header):
// 1. plain: `node [flags] test.js`. A test that fails plain says nothing about asynctrace; it
//    must be listed in scripts/conformance-known-plain.txt with the reason.
// 2. traced: `asynctrace record -- node [flags] test.js`. Must pass whenever plain passed, the
//    agent must have started (no "runs untraced" line) and the trace must be readable.
// 3. counts: `asynctrace record` again, with tests/support/count-hook.js preloaded as well, so
//    that the reference hook and asynctrace see the very same events (many tests make a
//    different number of ticks or timers from run to run, or when slowed down). The trace's
//    per-type init counts, init/before/after totals and number of threads must equal the
//    reference hook's, summed over every process and thread. A difference is run once more;
//    only one that repeats is reported as a miscount.
// Traced failures listed in scripts/conformance-known-traced.txt are reported but do not fail
// the run; an entry that no longer fails is reported so that it can be removed.
//
// Every run has stdin ignored and stdout/stderr piped, so the three runs see the same stdio.
// Exit status: 0 when every test that passes plain passes traced with agreeing counts (or is
// a known traced failure), 1 otherwise, 2 on bad usage.

const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const repo = path.resolve(__dirname, '..');

function usage(msg) {
  process.stderr.write(`conformance.js: ${msg}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const o = { jobs: 2, timeout: 60, only: '', results: '' };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[i + 1];
    if (v === undefined) usage(`${k} needs a value`);
    i++;
    switch (k) {
      case '--node': o.node = v; break;
      case '--suite': o.suite = v; break;
      case '--asynctrace': o.asynctrace = v; break;
      case '--jobs': o.jobs = Math.max(1, parseInt(v, 10) || 1); break;
      case '--timeout': o.timeout = Math.max(1, parseInt(v, 10) || 60); break;
      case '--only': o.only = v; break;
      case '--results': o.results = v; break;
      default: usage(`unknown option ${k}`);
    }
  }
  for (const k of ['node', 'suite', 'asynctrace']) if (!o[k]) usage(`--${k} is required`);
  // The tests run in the suite's directory: paths given relative to ours must still work.
  o.suite = path.resolve(o.suite);
  o.asynctrace = path.resolve(o.asynctrace);
  if (o.node.includes('/')) o.node = path.resolve(o.node);
  return o;
}

// Known-failure lists: `<major>|* <test file> <reason...>`; `#` starts a comment.
function readKnown(file, major) {
  const known = new Map();
  if (!fs.existsSync(file)) return known;
  for (const raw of fs.readFileSync(file, 'utf8').split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) continue;
    const m = /^(\S+)\s+(\S+)\s+(.*)$/.exec(line);
    if (!m) usage(`${file}: cannot read line: ${raw}`);
    if (m[1] === '*' || m[1] === String(major)) known.set(m[2], m[3]);
  }
  return known;
}

// Runs a command to completion or to the timeout (then kills its whole process group).
function run(cmd, args, opts) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const out = [];
    const err = [];
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => err.push(d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try { process.kill(-child.pid, 'SIGKILL'); } catch (_) { /* already gone */ }
    }, opts.timeout * 1000);
    child.on('error', (e) => err.push(Buffer.from(String(e))));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      // Whatever the test left behind in its process group goes too.
      try { process.kill(-child.pid, 'SIGKILL'); } catch (_) { /* none left */ }
      resolve({
        code,
        signal,
        timedOut,
        ms: Date.now() - started,
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
      });
    });
  });
}

function passed(r) {
  return !r.timedOut && r.code === 0;
}

function outcome(r) {
  if (r.timedOut) return 'timed out';
  if (r.signal) return `killed by ${r.signal}`;
  return `exit ${r.code}`;
}

function lastLines(text, n) {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  return lines.slice(-n).map((l) => `      | ${l.slice(0, 200)}`).join('\n');
}

function testFlags(file) {
  const src = fs.readFileSync(file, 'utf8');
  const m = /^\/\/ Flags:(.*)$/m.exec(src);
  return m ? m[1].trim().split(/\s+/).filter(Boolean) : [];
}

function addCounts(into, obj) {
  for (const [k, v] of Object.entries(obj || {})) into[k] = (into[k] || 0) + v;
}

// What both sides are compared on: inits per type, the init/before/after totals and (added by
// the callers) the number of threads. destroy depends on the garbage collector.
function comparable(types, events) {
  const c = {};
  for (const [k, v] of Object.entries(types)) c[`init ${k}`] = v;
  for (const k of ['init', 'before', 'after']) c[k] = events[k] || 0;
  return c;
}

function diff(a, b) {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  const out = [];
  for (const k of [...keys].sort()) {
    if ((a[k] || 0) !== (b[k] || 0)) out.push(`${k}: traced ${a[k] || 0}, reference ${b[k] || 0}`);
  }
  return out;
}

// The agent's own resources: loading its napi-rs addon creates one `CustomGC` resource per
// process and thread, and its signal listeners a SIGNALWRAP each, before the agent's hook is
// enabled. A reference hook preloaded ahead of the agent sees them (it files what is created
// while the agent starts under '(asynctrace agent)'); the trace rightly does not.
const AGENT_OWN_TYPES = ['CustomGC', '(asynctrace agent)'];

// Sums the reference hook's files (one per process and thread) in `dir`, then removes it.
// With `withoutAgent`, events of the agent's own resources are left out.
function readCounts(dir, withoutAgent = false) {
  const types = {};
  const events = {};
  let threads = 0;
  for (const f of fs.readdirSync(dir)) {
    try {
      const v = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
      if (withoutAgent) {
        for (const t of AGENT_OWN_TYPES) {
          const own = (v.byType || {})[t];
          if (!own) continue;
          delete v.types[t];
          for (const [k, n] of Object.entries(own)) v.events[k] -= n;
        }
      }
      addCounts(types, v.types);
      addCounts(events, v.events);
      threads++;
    } catch (_) { /* a half-written file: the thread counts as unreported */ }
  }
  fs.rmSync(dir, { recursive: true, force: true });
  const counts = comparable(types, events);
  counts.threads = threads;
  return { counts, threads };
}

class Runner {
  constructor(o) {
    this.o = o;
    this.root = o.suite;
    this.countHook = path.join(repo, 'tests/support/count-hook.js');
    this.scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'asynctrace-conformance-'));
    this.baseEnv = { ...process.env };
    // The tests' own runner leaves these unset; an inherited value would change what they do.
    for (const k of ['NODE_OPTIONS', 'COUNT_HOOK_DIR', 'NODE_TEST_DIR', 'TEST_SERIAL_ID']) delete this.baseEnv[k];
    for (const k of Object.keys(this.baseEnv)) if (k.startsWith('ASYNCTRACE_')) delete this.baseEnv[k];
  }

  env(slot, extra) {
    // Each job slot gets its own test/.tmp.<slot> directory (test/common/tmpdir.js).
    return { ...this.baseEnv, TEST_THREAD_ID: String(slot), ...extra };
  }

  plain(slot, file, flags) {
    return run(this.o.node, [...flags, file], { cwd: this.root, env: this.env(slot), timeout: this.o.timeout });
  }

  async reference(slot, file, flags) {
    const dir = fs.mkdtempSync(path.join(this.scratch, 'ref-'));
    const env = this.env(slot, { NODE_OPTIONS: `--require "${this.countHook}"`, COUNT_HOOK_DIR: dir });
    const r = await run(this.o.node, [...flags, file], { cwd: this.root, env, timeout: this.o.timeout });
    return { r, ...readCounts(dir) };
  }

  // `asynctrace record` of the test; with `withReference`, the reference hook runs in the same
  // processes too (asynctrace adds its preload to NODE_OPTIONS), so both count the very same
  // events: a test whose counts vary from run to run can still be held to exact agreement.
  async traced(slot, file, flags, withReference = false) {
    const dir = fs.mkdtempSync(path.join(this.scratch, 'trace-'));
    const trace = path.join(dir, 'trace.bin');
    const args = ['record', '-o', trace, '--', this.o.node, ...flags, file];
    let env = this.env(slot);
    let refDir = '';
    if (withReference) {
      refDir = fs.mkdtempSync(path.join(this.scratch, 'ref-'));
      env = this.env(slot, { NODE_OPTIONS: `--require "${this.countHook}"`, COUNT_HOOK_DIR: refDir });
    }
    const r = await run(this.o.asynctrace, args, { cwd: this.root, env, timeout: this.o.timeout });
    const res = { r, counts: null, threads: 0, problem: '', ref: null };
    if (withReference) res.ref = readCounts(refDir, true);
    if (/runs untraced/.test(r.stderr)) res.problem = 'the agent did not start (the app ran untraced)';
    const info = await run(this.o.asynctrace, ['info', '--format', 'json', trace], {
      cwd: this.root, env: this.baseEnv, timeout: this.o.timeout,
    });
    if (!passed(info)) {
      res.problem = res.problem || `asynctrace info failed (${outcome(info)}): ${info.stderr.trim().split('\n').pop()}`;
    } else {
      try {
        const v = JSON.parse(info.stdout);
        const events = {};
        for (const k of ['init', 'before', 'after']) events[k] = v.events[k];
        res.counts = comparable(v.types || {}, events);
        res.threads = v.processes.reduce((n, p) => n + p.threads.length, 0);
        res.counts.threads = res.threads;
        if (v.dropped > 0) res.problem = res.problem || `${v.dropped} records dropped`;
        if (v.truncated) res.problem = res.problem || 'the trace is truncated';
        if (v.malformed > 0) res.problem = res.problem || `${v.malformed} malformed records`;
        res.invalidIds = v.invalid_ids || 0;
      } catch (e) {
        res.problem = res.problem || `asynctrace info printed something that is not its JSON: ${e.message}`;
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
    return res;
  }

  // One test, start to end: returns a result row.
  async one(slot, name) {
    const file = path.join('test', name);
    const flags = testFlags(path.join(this.root, file));
    const row = { name, flags, plain: '', traced: '', counts: '', notes: [] };
    const p = await this.plain(slot, file, flags);
    row.ms = p.ms;
    if (!passed(p)) {
      row.plain = 'fail';
      row.notes.push(`plain: ${outcome(p)}\n${lastLines(p.stderr + p.stdout, 4)}`);
      return row;
    }
    row.plain = /^1\.\.0 # Skipped/m.test(p.stdout) ? 'skip' : 'pass';
    let t = await this.traced(slot, file, flags);
    if (!passed(t.r) || t.problem) {
      // Run it again: a failure that does not repeat is reported as such, not hidden.
      const again = await this.traced(slot, file, flags);
      row.traced = !passed(again.r) || again.problem ? 'fail' : 'flaky';
      row.notes.push(`traced: ${t.problem || outcome(t.r)}\n${lastLines(t.r.stderr + t.r.stdout, 14)}`);
      if (row.traced === 'fail') {
        // Tells a test that breaks under any second hook from one that asynctrace breaks.
        const ref = await this.reference(slot, file, flags);
        row.notes.push(passed(ref.r)
          ? 'reference hook: passes (so the failure is asynctrace\'s own)'
          : `reference hook: fails too (${outcome(ref.r)})`);
        return row;
      }
      t = again;
    } else {
      row.traced = 'pass';
    }
    // Counts: asynctrace and the reference hook in the same processes.
    const compare = async () => {
      const c = await this.traced(slot, file, flags, true);
      if (!passed(c.r) || !c.counts) return { status: 'n/a', note: `with the reference hook added the traced test fails (${c.problem || outcome(c.r)}), counts not compared` };
      if (c.ref.threads < c.threads) return { status: 'n/a', note: `reference hook reported ${c.ref.threads} of ${c.threads} traced threads (a process ended without running its exit listeners), counts not compared` };
      const d = diff(c.counts, c.ref.counts);
      if (d.length === 0) return { status: 'agree' };
      // Events the app emitted with ids Node itself would reject are skipped by the reports
      // and counted apart (`invalid_ids`): not lost silently. They account for a difference
      // only where every total falls short of the reference by no more than that count.
      const short = ['init', 'before', 'after'].map((k) => (c.ref.counts[k] || 0) - (c.counts[k] || 0));
      if (c.invalidIds > 0 && short.every((n) => n >= 0 && n <= c.invalidIds)) {
        return { status: 'agree', note: `counts agree once the ${c.invalidIds} events with invalid async ids, counted apart, are added` };
      }
      return { status: 'differ', d };
    };
    const first = await compare();
    if (first.status !== 'differ') {
      row.counts = first.status;
      if (first.note) row.notes.push(first.note);
      return row;
    }
    const second = await compare();
    if (second.status === 'differ') {
      row.counts = 'differ';
      row.notes.push(`counts differ, twice:\n${second.d.map((l) => `      | ${l}`).join('\n')}`);
    } else {
      row.counts = second.status;
      row.notes.push(`counts: differed once (${first.d.slice(0, 4).join('; ')}), then ${second.status}`);
      if (second.note) row.notes.push(second.note);
    }
    return row;
  }
}

// The suite: all of test/async-hooks, and the async_hooks tests among test/parallel (worker
// threads, vm, GC, AsyncLocalStorage). Names are relative to test/.
const PARALLEL = /^test-async-(hooks|local-storage|wrap)-.*\.js$/;

function listTests(suite, only) {
  const names = [];
  const hooksDir = path.join(suite, 'test', 'async-hooks');
  for (const f of fs.readdirSync(hooksDir)) if (/^test-.*\.js$/.test(f)) names.push(`async-hooks/${f}`);
  const parallelDir = path.join(suite, 'test', 'parallel');
  if (fs.existsSync(parallelDir)) {
    for (const f of fs.readdirSync(parallelDir)) if (PARALLEL.test(f)) names.push(`parallel/${f}`);
  }
  return names.filter((n) => n.includes(only)).sort();
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const version = await run(o.node, ['--version'], { env: process.env, timeout: 30 });
  if (!passed(version)) usage(`cannot run ${o.node}`);
  const nodeVersion = version.stdout.trim();
  const major = parseInt(nodeVersion.replace(/^v/, ''), 10);
  const knownPlain = readKnown(path.join(repo, 'scripts/conformance-known-plain.txt'), major);
  const knownTraced = readKnown(path.join(repo, 'scripts/conformance-known-traced.txt'), major);
  const tests = listTests(o.suite, o.only);
  if (tests.length === 0) usage(`no tests under ${o.suite}/test match '${o.only}'`);
  const runner = new Runner(o);
  process.stdout.write(`conformance: ${tests.length} tests of ${path.basename(o.suite)} on node ${nodeVersion}, ${o.jobs} at a time, ${o.timeout} s per run\n`);

  const rows = [];
  let next = 0;
  async function worker(slot) {
    while (next < tests.length) {
      const name = tests[next++];
      const row = await runner.one(slot, name);
      rows.push(row);
      report(row);
    }
  }
  function report(row) {
    const kp = knownPlain.get(row.name);
    const kt = knownTraced.get(row.name);
    let verdict;
    if (row.plain === 'fail') verdict = kp ? 'plain-fail (known)' : 'PLAIN-FAIL (not in conformance-known-plain.txt)';
    else if (row.traced === 'fail' || row.counts === 'differ') verdict = kt ? 'TRACED-FAIL (known)' : 'TRACED-FAIL';
    else if (row.traced === 'flaky') verdict = 'traced-flaky';
    else verdict = row.plain === 'skip' ? 'ok (skipped by the test)' : 'ok';
    row.verdict = verdict;
    const cols = `plain ${row.plain}, traced ${row.traced || '-'}, counts ${row.counts || '-'}`;
    process.stdout.write(`${verdict.padEnd(22)} ${row.name}  (${cols})\n`);
    if (kp && row.plain === 'fail') process.stdout.write(`      known: ${kp}\n`);
    if (kt && verdict.startsWith('TRACED-FAIL')) process.stdout.write(`      known: ${kt}\n`);
    if (verdict !== 'ok' || row.notes.length) for (const n of row.notes) process.stdout.write(`    ${n}\n`);
  }
  await Promise.all(Array.from({ length: Math.min(o.jobs, tests.length) }, (_, i) => worker(i)));
  fs.rmSync(runner.scratch, { recursive: true, force: true });

  rows.sort((a, b) => (a.name < b.name ? -1 : 1));
  const n = (f) => rows.filter(f).length;
  const passPlain = rows.filter((r) => r.plain !== 'fail');
  const tally = {
    node: nodeVersion,
    suite: path.basename(o.suite),
    tests: rows.length,
    passPlain: passPlain.length,
    skippedByTest: n((r) => r.plain === 'skip'),
    passTraced: n((r) => r.traced === 'pass' || r.traced === 'flaky'),
    tracedFlaky: n((r) => r.traced === 'flaky'),
    countsCompared: n((r) => ['agree', 'differ'].includes(r.counts)),
    countsAgree: n((r) => r.counts === 'agree'),
    countsNotComparable: n((r) => r.counts === 'n/a'),
  };
  const newTracedFail = rows.filter((r) => r.verdict === 'TRACED-FAIL');
  const knownTracedFail = rows.filter((r) => r.verdict === 'TRACED-FAIL (known)');
  const newPlainFail = rows.filter((r) => r.verdict.startsWith('PLAIN-FAIL'));
  const fixedKnown = [...knownTraced.keys()].filter((k) => {
    const r = rows.find((x) => x.name === k);
    return r && r.plain !== 'fail' && !r.verdict.startsWith('TRACED-FAIL');
  });
  const passingKnownPlain = [...knownPlain.keys()].filter((k) => {
    const r = rows.find((x) => x.name === k);
    return r && r.plain !== 'fail';
  });

  process.stdout.write(`\nconformance on node ${nodeVersion}: ${tally.tests} tests, ${tally.passPlain} pass plain` +
    ` (${tally.skippedByTest} skip themselves), ${tally.passTraced} of those pass traced` +
    `${tally.tracedFlaky ? ` (${tally.tracedFlaky} only on a second run)` : ''}; counts compared on ${tally.countsCompared},` +
    ` agree on ${tally.countsAgree} (${tally.countsNotComparable} not comparable)\n`);
  if (knownTracedFail.length) process.stdout.write(`  known traced failures (scripts/conformance-known-traced.txt): ${knownTracedFail.map((r) => r.name).join(', ')}\n`);
  if (fixedKnown.length) process.stdout.write(`  listed in scripts/conformance-known-traced.txt but passed this run (drop the line once it keeps passing): ${fixedKnown.join(', ')}\n`);
  if (passingKnownPlain.length) process.stdout.write(`  listed in scripts/conformance-known-plain.txt but passed plain this run (drop the line once it keeps passing): ${passingKnownPlain.join(', ')}\n`);
  if (newPlainFail.length) process.stdout.write(`  fail plain but not listed in scripts/conformance-known-plain.txt (not asynctrace's doing; list them with the reason): ${newPlainFail.map((r) => r.name).join(', ')}\n`);
  if (newTracedFail.length) process.stdout.write(`  FAIL: pass plain but fail traced or miscount: ${newTracedFail.map((r) => r.name).join(', ')}\n`);
  if (o.results) {
    fs.writeFileSync(o.results, JSON.stringify({ tally, rows }, null, 1) + '\n');
  }
  process.exitCode = newTracedFail.length ? 1 : 0;
}

main().catch((e) => {
  process.stderr.write(`conformance.js: ${e && e.stack ? e.stack : e}\n`);
  process.exit(2);
});
