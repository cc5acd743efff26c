#!/usr/bin/env bash
# Starts a local AWS emulator in the background on 127.0.0.1:${PORT:-4566} (LocalStack's port),
# installing it first if needed, and waits until it answers. Prints the endpoints to use, one
# `NAME=URL` line each (`eval`-able; `export` them for the AWS CLI or SDKs):
#   AWS_ENDPOINT_URL=http://127.0.0.1:4566
#   AWS_ENDPOINT_URL_ORGANIZATIONS=http://127.0.0.1:4567     (localstack only: moto, see below)
# Usage: localstack/start.sh [moto|ministack|localstack]  (default: $TENANTRY_EMULATOR or moto)
# An emulator already answering on that port is reused (for localstack: only a LocalStack, and
# an Organizations endpoint on PORT+1). Pids and logs live in localstack/.run/.
#
# localstack: LocalStack community (Python 3.13, see install.sh) on PORT for every service but
# Organizations, which is a paid LocalStack feature; moto serves Organizations on PORT+1, started
# as account 000000000000 (LocalStack's account for the access key `test`), so both agree on the
# management account.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
name="${1:-${TENANTRY_EMULATOR:-moto}}"
port="${PORT:-4566}"
run="$here/.run"
mkdir -p "$run"

# Whether http://127.0.0.1:$1$2 answers HTTP at all (any status).
answers() { python3 - "http://127.0.0.1:$1${2:-/}" <<'PY'
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1], timeout=1)
except urllib.error.HTTPError:
    pass
except Exception:
    sys.exit(1)
PY
}

# Whether LocalStack answers on port $1 (its health endpoint, which moto and ministack lack).
is_localstack() { python3 - "http://127.0.0.1:$1/_localstack/health" <<'PY'
import json, sys, urllib.request
try:
    json.load(urllib.request.urlopen(sys.argv[1], timeout=2))["services"]
except Exception:
    sys.exit(1)
PY
}

# Whether moto answers on port $1 (its /moto-api/data.json, which LocalStack and ministack lack).
is_moto() { python3 - "http://127.0.0.1:$1/moto-api/data.json" <<'PY'
import json, sys, urllib.request
try:
    json.load(urllib.request.urlopen(sys.argv[1], timeout=2))
except Exception:
    sys.exit(1)
PY
}

# Starts emulator $1 on port $2 unless something answers there; waits up to 60 s for it.
start_one() {
  local which="$1" p="$2"
  if answers "$p"; then
    return 0
  fi
  case "$which" in
    moto)
      # MOTO_ACCOUNT_ID: the management account LocalStack uses too (harmless for moto alone).
      MOTO_ACCOUNT_ID=000000000000 nohup "$here/.venv-moto/bin/moto_server" -H 127.0.0.1 -p "$p" \
        >"$run/emulator-$p.log" 2>&1 &
      ;;
    moto-default)
      nohup "$here/.venv-moto/bin/moto_server" -H 127.0.0.1 -p "$p" >"$run/emulator-$p.log" 2>&1 &
      ;;
    ministack)
      GATEWAY_PORT="$p" BIND_HOST=127.0.0.1 nohup "$here/.venv-ministack/bin/ministack" >"$run/emulator-$p.log" 2>&1 &
      ;;
    localstack)
      mkdir -p "$run/localstack-$p"
      env -u MOTO_ACCOUNT_ID GATEWAY_LISTEN="127.0.0.1:$p" OVERRIDE_IN_DOCKER=0 FILESYSTEM_ROOT="$run/localstack-$p" \
        DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1 \
        nohup "$here/.venv-localstack/bin/python" -m localstack.runtime.main >"$run/emulator-$p.log" 2>&1 &
      ;;
  esac
  echo $! >"$run/emulator-$p.pid"
  for _ in $(seq 1 300); do
    if answers "$p"; then
      return 0
    fi
    sleep 0.2
  done
  echo "localstack: $which did not answer on 127.0.0.1:$p within 60 s; log: $run/emulator-$p.log" >&2
  exit 1
}

case "$name" in
  moto|ministack)
    if answers "$port" && is_localstack "$port"; then
      echo "localstack: LocalStack answers on 127.0.0.1:$port and has no Organizations: use --emulator localstack (tenantry) or start.sh localstack, or set PORT" >&2
      exit 1
    fi
    if ! answers "$port"; then
      "$here/install.sh" "$name"
      start_one "$([[ "$name" == moto ]] && echo moto-default || echo ministack)" "$port"
    fi
    echo "AWS_ENDPOINT_URL=http://127.0.0.1:$port"
    ;;
  localstack)
    org_port=$((port + 1))
    if answers "$port" && ! is_localstack "$port"; then
      echo "localstack: something other than LocalStack answers on 127.0.0.1:$port (stop it with localstack/stop.sh, or set PORT)" >&2
      exit 1
    fi
    if answers "$org_port" && ! is_moto "$org_port"; then
      echo "localstack: something other than moto answers on 127.0.0.1:$org_port, where Organizations is expected (stop it, or set PORT)" >&2
      exit 1
    fi
    if ! answers "$port" || ! answers "$org_port"; then
      "$here/install.sh" localstack
    fi
    start_one moto "$org_port"
    start_one localstack "$port"
    echo "AWS_ENDPOINT_URL=http://127.0.0.1:$port"
    echo "AWS_ENDPOINT_URL_ORGANIZATIONS=http://127.0.0.1:$org_port"
    ;;
  *) echo "unknown emulator '$name' (moto|ministack|localstack)" >&2; exit 64 ;;
esac
