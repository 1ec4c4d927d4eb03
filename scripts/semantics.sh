#!/usr/bin/env bash
# Runs the conformance kit on the memory provider and prints which guarantees held.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1
pnpm exec turbo run build --filter=@dlock/conformance... --output-logs=errors-only
out="$(pwd)/.dlock/conformance"
rm -rf "$out" && mkdir -p "$out"
(cd packages/conformance && DLOCK_CONFORMANCE_DIR="$out" pnpm exec vitest run --reporter=dot >/dev/null)
node packages/conformance/dist/table.js "$out"
