'use strict';
// scripts/bench-workloads/http-server.js: a small HTTP server for the HTTP benchmark.
//
//   PORT=0 node scripts/bench-workloads/http-server.js        # standalone
//   require('./http-server.js').start({ port: 0 })            # in-process (http-load.js does this)
//
// Routes: GET /        -> 200 "hello world\n" after one `await` (one promise hop per request)
//         GET /json    -> 200 small JSON body
// Standalone it listens on 127.0.0.1:$PORT (default 0 = any free port) and prints exactly one line
// to stdout once listening: "port=<n>"; with PORT_FILE set it also writes the port number there.
// It exits by itself after MAX_REQUESTS requests (default 20000) or MAX_MS milliseconds (default
// 60000), whichever comes first, or on SIGTERM/SIGINT; on the way out it prints to stderr one JSON
// line: {"ms":<listening to close>,"requests":<n>}.

const http = require('http');
const fs = require('fs');
const { performance } = require('perf_hooks');

function handler(req, res) {
  if (req.url === '/json') {
    const body = JSON.stringify({ ok: true, url: req.url, n: 42 });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
    return;
  }
  Promise.resolve().then(() => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 12 });
    res.end('hello world\n');
  });
}

// Starts the server; resolves to { server, port, close() }.
function start({ port = 0, host = '127.0.0.1', onRequest } = {}) {
  return new Promise((resolve, reject) => {
    const server = http.createServer((req, res) => {
      if (onRequest) onRequest();
      handler(req, res);
    });
    server.keepAliveTimeout = 5000;
    server.on('error', reject);
    server.listen(port, host, () => {
      const close = () => new Promise((done) => {
        server.close(() => done());
        if (server.closeAllConnections) server.closeAllConnections();
      });
      resolve({ server, port: server.address().port, close });
    });
  });
}

module.exports = { start, handler };

if (require.main === module) {
  const maxRequests = Number(process.env.MAX_REQUESTS || 20000);
  const maxMs = Number(process.env.MAX_MS || 60000);
  let requests = 0;
  let t0 = 0;
  let srv = null;
  let closing = false;
  const finish = () => {
    if (closing || !srv) return;
    closing = true;
    clearTimeout(deadline);
    srv.close().then(() => {
      process.stderr.write(JSON.stringify({ ms: Math.round((performance.now() - t0) * 10) / 10, requests }) + '\n');
    });
  };
  const deadline = setTimeout(finish, maxMs);
  process.on('SIGTERM', finish);
  process.on('SIGINT', finish);
  start({
    port: Number(process.env.PORT || 0),
    onRequest() {
      if (++requests >= maxRequests) setImmediate(finish);
    },
  }).then((s) => {
    srv = s;
    t0 = performance.now();
    if (process.env.PORT_FILE) fs.writeFileSync(process.env.PORT_FILE, String(s.port));
    process.stdout.write(`port=${s.port}\n`);
  }, (e) => {
    process.stderr.write(`http-server.js: ${e.message}\n`);
    process.exit(1);
  });
}
