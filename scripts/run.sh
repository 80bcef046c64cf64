#!/usr/bin/env bash
# Start the app on port 7860 with the committed model: ./scripts/run.sh
# Settings come from environment variables (see the README's configuration table).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh serve
# WORKERS=N (N > 1): Redis, N server processes and nginx on PORT (scripts/cluster.py).
if [ "${WORKERS:-1}" -gt 1 ]; then
  exec .venv/bin/python -m scripts.cluster "$@"
fi
exec .venv/bin/python -m server "$@"
