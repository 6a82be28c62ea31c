#!/usr/bin/env bash
# Prints the path of a headless-capable Chromium, installing Debian's `chromium` package with
# apt-get where it is missing. Exits 1 with one line on stderr saying why when it cannot.
set -u
for c in "${ASYNCTRACE_CHROMIUM:-}" chromium chromium-browser google-chrome; do
  if [ -n "$c" ] && command -v "$c" >/dev/null 2>&1; then
    command -v "$c"
    exit 0
  fi
done
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-chromium: no chromium on PATH and no apt-get to install it; the browser test is skipped" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "ensure-chromium: chromium is missing and installing it needs root (no passwordless sudo); the browser test is skipped" >&2
    exit 1
  fi
fi
if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium; } >/dev/null 2>&1; then
  echo "ensure-chromium: apt-get install chromium failed; the browser test is skipped" >&2
  exit 1
fi
command -v chromium || { echo "ensure-chromium: chromium installed but not on PATH; the browser test is skipped" >&2; exit 1; }
