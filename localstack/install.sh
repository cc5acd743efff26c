#!/usr/bin/env bash
# Installs the local AWS emulator(s) into virtualenvs under localstack/.venv-<name>, pinned.
# Usage: localstack/install.sh [moto|ministack|all]   (default: moto)
# Idempotent: an existing virtualenv with the pinned version is kept.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"
which_one="${1:-moto}"

# One installer at a time (tests start emulators in parallel).
exec 9>"$here/.install.lock"
flock 9

install_one() {
  local name="$1" req="$here/requirements-$1.txt" venv="$here/.venv-$1"
  local stamp="$venv/.installed"
  if [[ -f "$stamp" ]] && cmp -s "$req" "$stamp"; then
    return 0
  fi
  echo "localstack: installing $name into $venv" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  cp "$req" "$stamp"
}

case "$which_one" in
  moto|ministack) install_one "$which_one" ;;
  all) install_one moto; install_one ministack ;;
  *) echo "usage: $0 [moto|ministack|all]" >&2; exit 64 ;;
esac
