'use strict';
// Recording overhead benchmark: the numbers in BENCHMARKS.md.
//
//   cargo build --release && node scripts/bench.js [--rounds 7] [--node PATH] > /tmp/bench.md
//   node scripts/bench.js --workloads http --baseline /other/target/release/asynctrace
//     (only the listed workloads; --baseline adds `record` variants of another build, to
//     measure what a change to the agent costs)
//   node scripts/bench.js --budgets 5000/200,1000/100
//     (adds `record` variants with those creation-stack budgets: stacks at once / per second,
//     per type; the default's cost is read in the "x stacks off" column)
//   node scripts/bench.js --promise-modes --node /path/to/node24
//     (only the promise modes: no hook, the empty hook, and `record --promises async-hooks`
//     against `record --promises v8`, each with stacks off and auto; `record --promises v8`
//     falls back to async-hooks on a Node without async_hooks' trackPromises)
//   ASYNCTRACE_BENCH_BIN=/elsewhere/release/asynctrace node scripts/bench.js
//     (the binary to measure, when cargo builds into another target directory)
//
// For each workload (scripts/bench-workloads) it runs, interleaved round by round so machine
// noise hits every variant alike: no hook, an empty hook with all five callbacks (the floor any
// async_hooks tracer pays), and `asynctrace record` with creation stacks off and with the
// default (auto). Times are the workload's own measurement of its busy part (the {"ms":..}
// line it prints), so process start-up and trace finishing do not blur the ratio; the wall
// time of the whole `record` command is reported too. Prints a Markdown report on stdout.
const { spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const root = path.resolve(__dirname, '..');
const bin = process.env.ASYNCTRACE_BENCH_BIN || path.join(root, 'target/release/asynctrace');
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const rounds = Number(opt('--rounds', 7));
const node = opt('--node', process.execPath);
const work = path.join(root, 'scripts/bench-workloads');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'asynctrace-bench-'));

if (!fs.existsSync(bin)) {
  console.error('bench.js: build first: cargo build --release');
  process.exit(1);
}

const only = (opt('--workloads', null) || opt('--workload', '')).split(',').filter(Boolean);
const workloads = [
  { name: 'promises', script: path.join(work, 'promises.js') },
  { name: 'http', script: path.join(work, 'http-load.js') },
].filter((w) => only.length === 0 || only.includes(w.name));
const baseline = opt('--baseline', null);

const variants = [
  { name: 'no hook', cmd: (w) => [node, w.script] },
  { name: 'empty hook', cmd: (w) => [node, '--require', path.join(work, 'empty-hook.js'), w.script] },
  { name: 'record, stacks off', record: ['--stacks', 'off'] },
  { name: 'record, stacks auto, --cpu off', record: ['--cpu', 'off'] },
  { name: 'record (default: stacks auto, CPU samples every 1 ms)', record: [] },
  { name: 'record, CPU samples every 100 µs', record: ['--cpu-interval', '100'], only: 'http' },
  { name: 'record, stacks off, --precise', record: ['--stacks', 'off', '--precise'], only: 'promises' },
  // Every stack, for the cost of site capture; slow, so only on the promise workload.
  { name: 'record, stacks on', record: ['--stacks', 'on'], only: 'promises' },
];
if (args.includes('--promise-modes')) {
  variants.splice(2);
  for (const mode of ['async-hooks', 'v8']) {
    variants.push({ name: `record --promises ${mode}, stacks off`, record: ['--promises', mode, '--stacks', 'off'] });
    variants.push({ name: `record --promises ${mode} (stacks auto, CPU samples on)`, record: ['--promises', mode] });
  }
}
// The column "× stacks off" compares with this variant.
const offName = variants.some((v) => v.name === 'record, stacks off') ? 'record, stacks off' : 'record --promises v8, stacks off';
for (const b of (opt('--budgets', '') || '').split(',').filter(Boolean)) {
  const [burst, rate] = b.split('/');
  variants.push({
    name: `record, stack budget ${burst} at once, ${rate}/s`,
    record: [],
    tag: `b${burst}r${rate}`,
    env: { ASYNCTRACE_STACK_BURST: burst, ASYNCTRACE_STACK_RATE: rate },
  });
}
if (baseline) {
  variants.push({ name: 'baseline record, stacks off', record: ['--stacks', 'off'], bin: baseline });
  variants.push({ name: 'baseline record (stacks auto)', record: [], bin: baseline });
}

function run(w, v, round) {
  let argv;
  let trace = null;
  if (v.record) {
    trace = path.join(tmp, `${w.name}-${round}-${v.record.join('')}${v.tag || ''}.bin`);
    argv = [v.bin || bin, 'record', '-q', ...v.record, '-o', trace, '--', node, w.script];
  } else {
    argv = v.cmd(w);
  }
  const t0 = process.hrtime.bigint();
  const env = v.env ? { ...process.env, ...v.env } : process.env;
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', maxBuffer: 1 << 26, env });
  const wall = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${argv.join(' ')} failed: ${r.stderr}`);
  const line = r.stderr.split('\n').reverse().find((l) => l.startsWith('{"ms"'));
  const ms = JSON.parse(line).ms;
  const res = { ms, wall };
  if (trace) {
    const info = JSON.parse(spawnSync(bin, ['info', '--format', 'json', trace], { encoding: 'utf8' }).stdout);
    const e = info.events;
    res.events = e.init + e.before + e.after + e.destroy + e.promiseResolve;
    res.dropped = info.dropped;
    res.bytes = fs.statSync(trace).size;
    fs.unlinkSync(trace);
  }
  return res;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const f1 = (x) => x.toFixed(1);

const out = [];
out.push(`Node ${spawnSync(node, ['--version'], { encoding: 'utf8' }).stdout.trim()}, ${os.cpus().length} cores, ${rounds} interleaved rounds, ${new Date().toISOString().slice(0, 10)}.`);
out.push('');
for (const w of workloads) {
  const results = new Map(variants.map((v) => [v.name, []]));
  for (let r = 0; r < rounds; r++) {
    for (const v of variants) if (!v.only || v.only === w.name) results.get(v.name).push(run(w, v, r));
  }
  const floorRuns = results.get('empty hook').map((x) => x.ms);
  const offRuns = results.get(offName).map((x) => x.ms);
  out.push(`### ${w.name}`);
  out.push('');
  out.push('| variant | median ms | min–max ms | × empty hook (median of per-round ratios) | × stacks off (same) | wall ms (median) | events | events/s | ns/event over floor (median of per-round differences) | dropped | trace bytes/event |');
  out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const v of variants) {
    const xs = results.get(v.name);
    if (xs.length === 0) continue;
    const ms = median(xs.map((x) => x.ms));
    // The ratio is the median of per-round ratios: variants of one round ran back to back,
    // so a machine that slows down for a while slows both sides of each ratio alike.
    const ratio = median(xs.map((x, r) => x.ms / floorRuns[r]));
    const vsOff = v.record ? median(xs.map((x, r) => x.ms / offRuns[r])).toFixed(2) : '';
    const row = [v.name, f1(ms), `${f1(Math.min(...xs.map((x) => x.ms)))}–${f1(Math.max(...xs.map((x) => x.ms)))}`, ratio.toFixed(2), vsOff, f1(median(xs.map((x) => x.wall)))];
    if (xs[0].events !== undefined) {
      const ev = median(xs.map((x) => x.events));
      const dropped = Math.max(...xs.map((x) => x.dropped));
      const bpe = median(xs.map((x) => x.bytes / x.events));
      const over = median(xs.map((x, r) => ((x.ms - floorRuns[r]) * 1e6) / x.events));
      row.push(String(ev), (ev / (ms / 1000) / 1e6).toFixed(2) + ' M', f1(over), String(dropped), bpe.toFixed(2));
    } else {
      row.push('', '', '', '', '');
    }
    out.push(`| ${row.join(' | ')} |`);
  }
  out.push('');
}
fs.rmSync(tmp, { recursive: true, force: true });
process.stdout.write(out.join('\n') + '\n');
