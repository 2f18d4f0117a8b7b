#!/usr/bin/env bash
# Installs what Sluice needs on a fresh Debian machine: PostgreSQL and Redis servers and Chromium
# (the ops page's browser test) as Debian packages, only when absent, and the locked Python
# packages plus the project in .venv.
# Safe to run again: it reinstalls only when the lock file or pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing ${need[*]} (Debian packages)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
stamp=.venv/.sluice-installed
if [ ! -f "$stamp" ] || [ requirements-dev.lock -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  pip=(.venv/bin/pip install -q --disable-pip-version-check)
  # Exact versions, each checked against its hash; then the project itself, built with the
  # locked setuptools rather than whatever an isolated build would download.
  "${pip[@]}" --require-hashes -r requirements-dev.lock
  "${pip[@]}" --no-deps --no-build-isolation -e .
  touch "$stamp"
fi
