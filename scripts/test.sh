#!/usr/bin/env bash
# Run the whole test suite, lint included: ./scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev

# Data sets live beside the project, never inside it.
export MNIST_DIR="${MNIST_DIR:-$(cd .. && pwd)/shared/data/mnist}"
export UNIPEN_PATH="${UNIPEN_PATH:-$(cd .. && pwd)/shared/data/unipen-dev/unipen_dev.jsonl.gz}"

.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest --timeout=300 "$@"
