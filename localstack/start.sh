#!/usr/bin/env bash
# Starts the local AWS emulator in the background on 127.0.0.1:${PORT:-4566} (LocalStack's port),
# installing it first if needed, and waits until it answers. Prints the endpoint URL.
# Usage: localstack/start.sh [moto|ministack]  (default: $TENANTRY_EMULATOR or moto)
# A running emulator on that port is reused. Its pid and log live in localstack/.run/.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
name="${1:-${TENANTRY_EMULATOR:-moto}}"
port="${PORT:-4566}"
endpoint="http://127.0.0.1:$port"
run="$here/.run"
mkdir -p "$run"

answers() { python3 - "$endpoint" <<'PY'
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1] + "/", timeout=1)
except urllib.error.HTTPError:
    pass
except Exception:
    sys.exit(1)
PY
}

if answers; then
  echo "$endpoint"
  exit 0
fi

"$here/install.sh" "$name"
case "$name" in
  moto)
    nohup "$here/.venv-moto/bin/moto_server" -H 127.0.0.1 -p "$port" >"$run/emulator-$port.log" 2>&1 &
    ;;
  ministack)
    GATEWAY_PORT="$port" BIND_HOST=127.0.0.1 nohup "$here/.venv-ministack/bin/ministack" >"$run/emulator-$port.log" 2>&1 &
    ;;
  *) echo "unknown emulator '$name' (moto|ministack)" >&2; exit 64 ;;
esac
echo $! >"$run/emulator-$port.pid"
for _ in $(seq 1 100); do
  if answers; then
    echo "$endpoint"
    exit 0
  fi
  sleep 0.2
done
echo "localstack: $name did not answer on $endpoint within 20 s; log: $run/emulator-$port.log" >&2
exit 1
