'use strict';
// scripts/bench-workloads/http-load.js: a bounded HTTP load generator.
//
//   node scripts/bench-workloads/http-load.js                  # server + client in this process
//   TARGET_PORT=4321 node scripts/bench-workloads/http-load.js # load an external http-server.js
//
// Sends REQUESTS requests (default 20000) with CONCURRENCY in flight (default 50) over a keep-alive
// agent (maxSockets = CONCURRENCY) to GET / on 127.0.0.1. Without TARGET_PORT it starts
// http-server.js in this same process (so a tracer sees both sides) and closes it at the end.
// Bounded in time too: it stops issuing requests after MAX_MS (default 60000) ms.
// Prints nothing to stdout; prints one JSON line to stderr:
//   {"ms":<first request to last response>,"requests":<ok>,"errors":<n>,"rps":<ok per second>}
// Exit code 0 if every request succeeded, 1 otherwise.

const http = require('http');
const { performance } = require('perf_hooks');
const { start } = require('./http-server.js');

const REQUESTS = Number(process.env.REQUESTS || 20000);
const CONCURRENCY = Number(process.env.CONCURRENCY || 50);
const MAX_MS = Number(process.env.MAX_MS || 60000);

function request(agent, port) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
      let n = 0;
      res.on('data', (d) => { n += d.length; });
      res.on('end', () => resolve(res.statusCode === 200 && n === 12));
      res.on('error', () => resolve(false));
    });
    req.on('error', () => resolve(false));
  });
}

async function main() {
  let srv = null;
  let port = Number(process.env.TARGET_PORT || 0);
  if (!port) {
    srv = await start({ port: 0 });
    port = srv.port;
  }
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  let issued = 0;
  let ok = 0;
  let errors = 0;
  const t0 = performance.now();
  const lane = async () => {
    while (issued < REQUESTS && performance.now() - t0 < MAX_MS) {
      issued++;
      if (await request(agent, port)) ok++;
      else errors++;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, lane));
  const ms = performance.now() - t0;
  agent.destroy();
  if (srv) await srv.close();
  process.stderr.write(JSON.stringify({
    ms: Math.round(ms * 10) / 10,
    requests: ok,
    errors,
    rps: Math.round((ok / ms) * 1000),
  }) + '\n');
  if (errors || ok < REQUESTS) process.exitCode = 1;
}

main().catch((e) => {
  process.stderr.write(`http-load.js: ${e.stack}\n`);
  process.exitCode = 1;
});
