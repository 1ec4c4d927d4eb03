#!/usr/bin/env bash
# Installs what a fresh Debian/Ubuntu machine lacks for dlock: pnpm 10, the real servers the tests
# and the lab start (redis-server, zookeeper, etcd), Chromium for the report's browser test, and the
# workspace's packages. Prints one line per step; quick when everything is already there. Installing
# Debian packages needs root: without it, setup prints the apt-get command to run and stops.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { echo "setup: $*"; }

step "node $(node --version) (dlock needs >= 20.19)"
if ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm --version | cut -d. -f1)" != "10" ]; then
  step "installing pnpm 10 (npm i -g pnpm@10)"
  npm i -g pnpm@10 >/dev/null
else
  step "pnpm $(pnpm --version) found"
fi

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
[ -f /usr/share/java/zookeeper.jar ] || missing+=(zookeeper)
# A JDK, not just a JRE: the testkit compiles its Curator peer (packages/testkit/java) with javac.
{ command -v java && command -v javac; } >/dev/null 2>&1 || missing+=(default-jdk-headless)
# Real Apache Curator (recipes + framework + client jars), the interop peer of the ZooKeeper tests.
compgen -G '/usr/share/java/curator-recipes*.jar' >/dev/null || missing+=(libcurator-recipes-java)
# Chromium: the lab's tests check the report's charts in a real (headless) browser.
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    step "apt-get update"
    apt-get update -qq >/dev/null
    step "installing ${missing[*]} with apt-get (a minute or two the first time)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: these packages are missing; install them and run again:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
else
  step "found: redis-server, etcd, zookeeper, a JDK, Curator, chromium"
fi

step "pnpm install --frozen-lockfile"
pnpm install --frozen-lockfile --reporter=silent
step "done"
