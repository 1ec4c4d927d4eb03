#!/usr/bin/env bash
# Regenerates the README's comparison table from a real `dlock compare` run (arguments pass through),
# or, with `--from <results.json>`, from the results of a run already made.
set -euo pipefail
cd "$(dirname "$0")/.."
results=report/results.json
if [ "${1:-}" = "--from" ]; then
  results="$2"
else
  bash scripts/compare.sh --out report "$@"
fi
table="$(node packages/lab/dist/cli.js readme-table "$results")"
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
