#!/usr/bin/env bash
# Installs the local AWS emulator(s) into virtualenvs under localstack/.venv-<name>, pinned.
# Usage: localstack/install.sh [moto|ministack|localstack|all]   (default: moto)
# `localstack` installs LocalStack and moto (which serves Organizations beside it).
# Idempotent: an existing virtualenv with the pinned version is kept.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"
which_one="${1:-moto}"

# One installer at a time (tests start emulators in parallel).
exec 9>"$here/.install.lock"
flock 9

# LocalStack 4.13 needs Python 3.13: its localstack/packages/api.py annotates `Lock | None` at
# import time, and `threading.Lock` is a class only from 3.13 (a function before, which `|`
# refuses), so on 3.11 and 3.12 that import fails and every Step Functions call answers 500; and
# its pinned dependencies include some (networkx 3.7) that need 3.12 or later. The first Python
# 3.13 found is used: $LOCALSTACK_PYTHON, python3.13, pyenv's 3.13.
python_313() {
  local p
  for p in "${LOCALSTACK_PYTHON:-}" python3.13 "$HOME"/.pyenv/versions/3.13*/bin/python3; do
    [[ -n "$p" ]] || continue
    if "$p" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 13))' 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

install_one() {
  local name="$1" req="$here/requirements-$1.txt" venv="$here/.venv-$1"
  local stamp="$venv/.installed" py="$python"
  if [[ -f "$stamp" ]] && cmp -s "$req" "$stamp"; then
    return 0
  fi
  if [[ "$name" == localstack ]]; then
    py="$(python_313)" || {
      echo "localstack: LocalStack needs Python 3.13 (found none: set LOCALSTACK_PYTHON to one, or install it, e.g. pyenv install 3.13)" >&2
      exit 1
    }
  fi
  echo "localstack: installing $name into $venv" >&2
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  cp "$req" "$stamp"
}

case "$which_one" in
  moto|ministack) install_one "$which_one" ;;
  localstack) install_one moto; install_one localstack ;;
  all) install_one moto; install_one ministack; install_one localstack ;;
  *) echo "usage: $0 [moto|ministack|localstack|all]" >&2; exit 64 ;;
esac
