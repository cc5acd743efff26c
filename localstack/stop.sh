#!/usr/bin/env bash
# Stops what start.sh started on ${PORT:-4566} (and, for LocalStack, the Organizations endpoint
# on PORT+1). Does nothing for a port where it started nothing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
port="${PORT:-4566}"
for p in "$port" $((port + 1)); do
  pidfile="$here/.run/emulator-$p.pid"
  if [[ -f "$pidfile" ]]; then
    pid="$(cat "$pidfile")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  fi
done
