#!/usr/bin/env node
// Runs the asynctrace binary of this platform, installed by npm from the matching optional
// dependency (@asynctrace/<platform>), with this command's arguments, and ends as it ends.
'use strict';

const { spawn } = require('child_process');
const path = require('path');

// Platforms with a published binary package: <os>-<cpu>[-<libc>] -> package name.
const PACKAGES = {
  'linux-x64-gnu': '@asynctrace/linux-x64-gnu',
};

function platform() {
  let libc = '';
  if (process.platform === 'linux') {
    // Node built against glibc reports its version; on musl the field is absent.
    let glibc = null;
    try {
      glibc = process.report.getReport().header.glibcVersionRuntime;
    } catch (_) {
      // No report support: assume the common case.
      glibc = 'unknown';
    }
    libc = glibc ? '-gnu' : '-musl';
  }
  return `${process.platform}-${process.arch}${libc}`;
}

function binary() {
  if (process.env.ASYNCTRACE_BINARY) return process.env.ASYNCTRACE_BINARY;
  const key = platform();
  const pkg = PACKAGES[key];
  if (!pkg) {
    fail(
      `no prebuilt binary for ${key} (prebuilt: ${Object.keys(PACKAGES).join(', ')}); ` +
        'build it from source with `cargo install --path tracer-cli` in the asynctrace repository, ' +
        'or set ASYNCTRACE_BINARY to a built asynctrace',
    );
  }
  try {
    return path.join(path.dirname(require.resolve(`${pkg}/package.json`)), 'bin', 'asynctrace');
  } catch (_) {
    fail(
      `the package ${pkg} holding the binary for ${key} is not installed; reinstall asynctrace ` +
        'without --no-optional / --omit=optional, so npm installs it',
    );
  }
}

function fail(msg) {
  process.stderr.write(`asynctrace: ${msg}\n`);
  process.exit(1);
}

const child = spawn(binary(), process.argv.slice(2), { stdio: 'inherit' });

// Signals sent to this launcher go to asynctrace, which passes them to the app and still
// finishes the trace. (A terminal's Ctrl-C reaches both already; asynctrace notices that and
// does not send the app a second one.)
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];
const forward = (sig) => {
  try {
    child.kill(sig);
  } catch (_) {
    // Already gone: its exit is on its way.
  }
};
for (const sig of SIGNALS) process.on(sig, forward);

child.on('error', (e) => fail(`cannot run ${child.spawnfile}: ${e.message}`));
child.on('exit', (code, signal) => {
  for (const sig of SIGNALS) process.removeListener(sig, forward);
  if (signal) {
    // End the same way, so whoever started us sees the same status.
    process.kill(process.pid, signal);
    return;
  }
  process.exit(code === null ? 1 : code);
});
