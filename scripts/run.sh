#!/usr/bin/env bash
# Start the app on port 7860 with the committed model: ./scripts/run.sh
# Settings come from environment variables (see the README's configuration table).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh serve
exec .venv/bin/python -m server "$@"
