'use strict';
// Drives headless Chromium over the DevTools protocol (--remote-debugging-pipe: fds 3 and 4,
// messages ended by NUL) through the bubble page: loads it, reads the DOM, clicks a bubble,
// filters the timeline, searches, and saves screenshots. Prints one JSON line of findings.
// Usage: node bubble_browser.js <chromium> <page.html> <screenshot dir> <bubble name to click>
const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const [chromium, page, shots, clickName] = process.argv.slice(2);
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'asynctrace-chromium-'));
const child = spawn(chromium, [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
  '--remote-debugging-pipe', `--user-data-dir=${profile}`, 'about:blank',
], { stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'] });
const out = child.stdio[3];
const inp = child.stdio[4];
let nextId = 1;
const waiting = new Map();
const listeners = [];
let buf = '';
inp.on('data', (d) => {
  buf += d.toString('utf8');
  let i;
  while ((i = buf.indexOf('\0')) >= 0) {
    const msg = JSON.parse(buf.slice(0, i));
    buf = buf.slice(i + 1);
    if (msg.id && waiting.has(msg.id)) {
      const { resolve, reject } = waiting.get(msg.id);
      waiting.delete(msg.id);
      if (msg.error) reject(new Error(JSON.stringify(msg.error))); else resolve(msg.result);
    } else {
      listeners.forEach((f) => f(msg));
    }
  }
});
function send(method, params = {}, sessionId) {
  const id = nextId++;
  out.write(JSON.stringify({ id, method, params, sessionId }) + '\0');
  return new Promise((resolve, reject) => waiting.set(id, { resolve, reject }));
}
function once(method) {
  return new Promise((resolve) => {
    const f = (m) => { if (m.method === method) { listeners.splice(listeners.indexOf(f), 1); resolve(m); } };
    listeners.push(f);
  });
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// The resource types of the bubbles drawn, from the data the page shows for the current view.
const TYPES = `(() => {
  const data = JSON.parse(document.getElementById('data').textContent);
  const v = data.views[+document.getElementById('view').value];
  const out = new Set();
  v.bubbles.forEach(b => (b.aggregates || []).forEach(a => out.add(a.type)));
  return Array.from(out);
})()`;

async function main() {
  const errors = [];
  listeners.push((m) => {
    if (m.method === 'Runtime.exceptionThrown') errors.push(m.params.exceptionDetails.exception?.description || m.params.exceptionDetails.text);
    if (m.method === 'Runtime.consoleAPICalled' && (m.params.type === 'error' || m.params.type === 'warning')) errors.push(JSON.stringify(m.params.args));
    if (m.method === 'Log.entryAdded' && m.params.entry.level === 'error') errors.push(m.params.entry.text);
  });
  const { targetId } = await send('Target.createTarget', { url: 'about:blank' });
  const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
  const s = (m, p) => send(m, p, sessionId);
  await s('Runtime.enable');
  await s('Log.enable');
  await s('Page.enable');
  await s('Emulation.setDeviceMetricsOverride', { width: 1500, height: 950, deviceScaleFactor: 1, mobile: false });
  const loaded = once('Page.loadEventFired');
  await s('Page.navigate', { url: 'file://' + path.resolve(page) });
  await loaded;
  await sleep(300);
  const evaluate = async (expr) => (await s('Runtime.evaluate', { expression: expr, returnByValue: true })).result.value;
  const shot = async (name) => {
    const { data } = await s('Page.captureScreenshot', { format: 'png' });
    fs.writeFileSync(path.join(shots, name), Buffer.from(data, 'base64'));
  };
  const result = {};
  result.bubbles = await evaluate("Array.from(document.querySelectorAll('#graph .bubble')).map(g => g.getAttribute('data-name'))");
  result.views = await evaluate("document.querySelectorAll('#view option').length");
  result.view_labels = await evaluate("Array.from(document.querySelectorAll('#view option')).map(o => o.textContent)");
  result.types = await evaluate(TYPES);
  await shot('bubble-page.png');
  result.clicked = await evaluate(`(() => {
    const g = Array.from(document.querySelectorAll('#graph .bubble')).find(g => g.getAttribute('data-name').includes(${JSON.stringify(clickName)}));
    if (!g) return null;
    g.dispatchEvent(new MouseEvent('click', { bubbles: true }));
    return document.querySelector('#details h2') && document.querySelector('#details h2').textContent;
  })()`);
  result.details_aggregates = await evaluate("document.querySelectorAll('#details .agg').length");
  await shot('bubble-details.png');
  result.dim_before = await evaluate("document.querySelectorAll('#graph .bubble.dim').length");
  result.radii_before = await evaluate("Array.from(document.querySelectorAll('#graph .bubble circle.body')).map(c => c.getAttribute('r')).join(',')");
  // Drag over the first fifth of the timeline.
  result.range = await evaluate(`(() => {
    const t = document.getElementById('timeline'), r = t.getBoundingClientRect();
    t.dispatchEvent(new MouseEvent('mousedown', { bubbles: true, clientX: r.left + 2, clientY: r.top + 10 }));
    window.dispatchEvent(new MouseEvent('mouseup', { bubbles: true, clientX: r.left + r.width / 5, clientY: r.top + 10 }));
    return document.getElementById('range').textContent;
  })()`);
  result.dim_after = await evaluate("document.querySelectorAll('#graph .bubble.dim').length");
  result.radii_after = await evaluate("Array.from(document.querySelectorAll('#graph .bubble circle.body')).map(c => c.getAttribute('r')).join(',')");
  await shot('bubble-timeline.png');
  result.search_dim = await evaluate(`(() => {
    document.getElementById('clear').click();
    const q = document.getElementById('search');
    q.value = 'files.js';
    q.dispatchEvent(new Event('input', { bubbles: true }));
    return document.querySelectorAll('#graph .bubble.dim').length;
  })()`);
  await shot('bubble-search.png');
  if (result.views > 1) {
    // The second view (a worker thread, or another process): its own bubbles and details.
    result.switched = await evaluate(`(() => {
      document.getElementById('search').value = '';
      document.getElementById('search').dispatchEvent(new Event('input', { bubbles: true }));
      const sel = document.getElementById('view');
      sel.value = '1';
      sel.dispatchEvent(new Event('change', { bubbles: true }));
      return {
        label: sel.options[sel.selectedIndex].textContent,
        bubbles: Array.from(document.querySelectorAll('#graph .bubble')).map(g => g.getAttribute('data-name')),
        details: document.getElementById('details').textContent,
      };
    })()`);
    result.switched.types = await evaluate(TYPES);
    await shot('bubble-second-view.png');
  }
  result.errors = errors;
  process.stdout.write(JSON.stringify(result) + '\n');
}

const timer = setTimeout(() => { process.stderr.write('bubble_browser: timed out\n'); child.kill('SIGKILL'); process.exit(2); }, 60000);
main().then(() => {
  clearTimeout(timer);
  // Remove the profile once Chromium is gone (it writes to it until it exits).
  child.on('exit', () => {
    try { fs.rmSync(profile, { recursive: true, force: true }); } catch (_) { /* best effort */ }
  });
  child.kill('SIGTERM');
}, (e) => {
  process.stderr.write(`bubble_browser: ${e.stack}\n`);
  child.kill('SIGKILL');
  process.exit(1);
});
