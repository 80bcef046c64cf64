#!/usr/bin/env bash
# Idempotent setup shared by run.sh and test.sh: a .venv with the pinned requirements, the
# browser client's npm package, and (for tests) Debian chromium. Re-running it is cheap: each
# step is skipped when its inputs have not changed.
#
# usage: scripts/setup.sh serve|dev
set -euo pipefail
cd "$(dirname "$0")/.."

kind="${1:-serve}"
case "$kind" in
  serve) reqs=requirements.txt ;;
  dev) reqs=requirements-dev.txt ;;
  *) echo "usage: scripts/setup.sh serve|dev" >&2; exit 2 ;;
esac

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
apt_updated=""
apt_install() {
  [ -n "$apt_updated" ] || { as_root apt-get update -qq && apt_updated=1; } || return 1
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# 1. Python 3.11+ virtualenv.
if [ ! -x .venv/bin/python ]; then
  py=""
  for cand in python3.11 python3.12 python3.13 python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      py="$cand"; break
    fi
  done
  [ -n "$py" ] || { say "Python 3.11 or newer is required (apt-get install python3.11 python3.11-venv)"; exit 1; }
  say "creating .venv with $py"
  "$py" -m venv .venv || { apt_install python3-venv && "$py" -m venv .venv; }
  .venv/bin/python -m pip install -q --upgrade pip
fi

# 2. Pinned Python packages (skipped when the requirement files have not changed).
stamp=".venv/.setup-$kind"
want=$(cat requirements.txt "$reqs" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  case "$kind" in
    serve) say "installing $reqs (first time: about a minute)" ;;
    dev) say "installing $reqs (first time: a few minutes: TensorFlow, Playwright)" ;;
  esac
  .venv/bin/python -m pip install -q -r "$reqs"
  echo "$want" > "$stamp"
fi

# 3. The browser's Socket.IO client, from the npm registry (served by the app; no CDN).
lock_sum=$(sha256sum client/package-lock.json | cut -d' ' -f1)
if [ ! -f client/node_modules/socket.io-client/dist/socket.io.min.js ] \
   || [ "$(cat client/node_modules/.setup-stamp 2>/dev/null)" != "$lock_sum" ]; then
  command -v npm >/dev/null || { say "installing npm"; apt_install nodejs npm; }
  say "installing the client's npm packages"
  (cd client && npm ci --no-audit --no-fund --loglevel=error)
  echo "$lock_sum" > client/node_modules/.setup-stamp
fi

# 4. For tests only: Debian chromium for the browser tests (Playwright's own download fails
#    here). Installed or upgraded on every run, so the tests always meet today's chromium, the
#    one a fresh machine gets, and not whatever an older run left behind.
if [ "$kind" = dev ]; then
  say "installing or upgrading Debian chromium for the browser tests"
  if ! apt_install chromium; then
    if [ -x /usr/bin/chromium ]; then
      say "!!! could not upgrade chromium: testing with the installed $(/usr/bin/chromium --version 2>/dev/null) !!!"
    else
      say "!!! could not install chromium: the browser tests will be SKIPPED !!!"
    fi
  fi
fi

# 5. Cluster mode (WORKERS>1) and its tests: Redis and nginx from Debian (scripts/cluster.py).
if { [ "$kind" = dev ] || [ "${WORKERS:-1}" -gt 1 ]; } \
   && { ! command -v redis-server >/dev/null || ! [ -x /usr/sbin/nginx ]; }; then
  say "installing redis-server and nginx for cluster mode"
  if ! apt_install redis-server nginx; then
    say "!!! could not install redis-server/nginx: cluster mode cannot start; its tests will be SKIPPED !!!"
  fi
fi
