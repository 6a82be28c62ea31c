#!/usr/bin/env bash
# Makes sure tmux is on PATH for the terminal UI's end-to-end tests (tests/top.rs drives
# `asynctrace top` in a real terminal), installing Debian's `tmux` package with apt-get where
# it is missing. Exits 1 with one line on stderr saying why when it cannot.
set -u
command -v tmux >/dev/null 2>&1 && exit 0
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "ensure-tmux: tmux is missing and installing it needs root; tests/top.rs will fail" >&2
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1 || ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq tmux; } >/dev/null 2>&1; then
  echo "ensure-tmux: apt-get install tmux failed; tests/top.rs will fail" >&2
  exit 1
fi
