#!/usr/bin/env bash
# Set up (idempotent) and run the default test suite. Extra args go to pytest,
# e.g. `scripts/test.sh -m slow` for the long runs, `scripts/test.sh tests/core`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash scripts/setup.sh
# shellcheck disable=SC1091
source env.sh
python -m pytest "$@"
