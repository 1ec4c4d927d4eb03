#!/usr/bin/env bash
# Regenerates the README's comparison table from a real `dlock compare` run (arguments pass through),
# or, with `--from <results.json>`, from the results of a run already made. With --dry-run it only
# shows what the compare run would do and leaves README.md alone.
set -euo pipefail
cd "$(dirname "$0")/.."
results=report/results.json
if [ "${1:-}" = "--from" ]; then
  results="$2"
else
  status=0
  bash scripts/compare.sh --out report "$@" || status=$?
  for arg in "$@"; do [ "$arg" = "--dry-run" ] && exit "$status"; done
  if [ "$status" != 0 ]; then
    echo "readme-table: dlock compare exited $status (see report/index.html); README.md left as it was." >&2
    echo "  To publish this run anyway: bash scripts/readme-table.sh --from report/results.json" >&2
    exit "$status"
  fi
fi
table="$(node packages/lab/bin/dlock.js readme-table "$results")"
TABLE="$table" node -e '
  const fs = require("node:fs");
  const readme = fs.readFileSync("README.md", "utf8");
  const start = "<!-- comparison:start -->", end = "<!-- comparison:end -->";
  const [before, rest] = readme.split(start);
  if (rest === undefined || !rest.includes(end)) throw new Error("README.md has no comparison markers");
  const after = rest.slice(rest.indexOf(end));
  fs.writeFileSync("README.md", `${before}${start}\n${process.env.TABLE.trim()}\n${after}`);
'
echo "README.md: comparison table regenerated from $results"
