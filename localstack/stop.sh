#!/usr/bin/env bash
# Stops the emulator that start.sh started on ${PORT:-4566}. Does nothing if none runs.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
port="${PORT:-4566}"
pidfile="$here/.run/emulator-$port.pid"
if [[ -f "$pidfile" ]]; then
  pid="$(cat "$pidfile")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 25); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
fi
