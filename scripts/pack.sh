#!/usr/bin/env bash
# Builds the library packages and packs each into dist-packages/<name>-<version>.tgz, so another
# project can install them before they are on a registry. Prints the install command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1
packages=(core conformance redis redlock zookeeper etcd)
echo "build: ${packages[*]}"
pnpm exec turbo run build $(printf -- '--filter=@dlock/%s ' "${packages[@]}") --output-logs=errors-only >/dev/null
rm -rf dist-packages && mkdir dist-packages
for name in "${packages[@]}"; do
  echo "pack: @dlock/$name"
  pnpm --filter "@dlock/$name" pack --pack-destination "$(pwd)/dist-packages" >/dev/null
done
echo "pack: done. In another project (npm; pnpm needs the override shown in README.md):"
echo "  npm install $(ls "$(pwd)"/dist-packages/dlock-core-*.tgz) $(ls "$(pwd)"/dist-packages/dlock-redis-*.tgz)"
