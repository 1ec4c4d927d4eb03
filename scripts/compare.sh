#!/usr/bin/env bash
# The main job: install what is missing, build, start real servers through the testkit and run
# `dlock compare` on every backend. The report lands in report/ (index.html, report.md, results.json).
# Extra arguments go to `dlock compare` (e.g. --backends redis,etcd --duration 5; --dry-run shows the
# plan and an estimate of how long it takes).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1
export DLOCK_CONFORMANCE_DIR="$(pwd)/.dlock/conformance"
echo "build: the lab and the packages it runs (turbo; cached after the first time)"
pnpm exec turbo run build --filter=@dlock/lab... --output-logs=errors-only >/dev/null
echo "build: done"
node packages/lab/bin/dlock.js compare "$@"
