#!/usr/bin/env bash
# The one test command: install what is missing, build, lint, typecheck, run every test against
# real servers. Two packages' tests run at a time (each package runs its files one at a time): most
# of their time is spent waiting on real servers' timeouts (session expiry, ttls, outages), so a
# second package fits beside the first, and every test must hold on a busy machine anyway.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1
# Every conformance run records which guarantees held; the README table and the lab read these.
export DLOCK_CONFORMANCE_DIR="$(pwd)/.dlock/conformance"
echo "build: every package (turbo; cached after the first time)"
pnpm exec turbo run build --output-logs=errors-only
echo "lint: biome check"
pnpm exec biome check .
echo "api + publish: the API reports, publint / attw / require() on the packed packages"
# The public API against its checked-in reports, and publint / attw / require() on the packed
# packages: a few seconds each, side by side.
node scripts/api-report.mjs &
api_report=$!
node scripts/check-publish.mjs
wait "$api_report"
echo "typecheck: every package"
pnpm exec turbo run typecheck --output-logs=errors-only
echo "test: every package, two at a time, on real servers"
# Each package's test script writes vitest's JSON report to .dlock/test-results/<package dir>.json, and
# the closing line is counted from those: a report left by an earlier run must not be counted again.
rm -rf .dlock/test-results
status=0
# A failing package does not stop the others (only the packages that depend on it), so the closing
# line counts every package that could run.
pnpm exec turbo run test --concurrency=2 --continue=dependencies-successful --output-logs=full || status=$?
# The closing line: passed, failed, skipped and todo per package and in total; it fails when a package
# left no report (its vitest crashed or never ran) or its report shows a failure.
node scripts/test-summary.mjs .dlock/test-results || status=1
exit "$status"
