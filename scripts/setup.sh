#!/usr/bin/env bash
# Installs what a fresh Debian/Ubuntu machine lacks for dlock: pnpm 10, the real servers the tests
# and the lab start (redis-server, zookeeper, etcd), and the workspace's packages. Quick and quiet
# when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm --version | cut -d. -f1)" != "10" ]; then
  echo "setup: installing pnpm 10 (npm i -g pnpm@10)"
  npm i -g pnpm@10 >/dev/null
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
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${missing[*]} with apt-get"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: these packages are missing; install them and run again:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

pnpm install --frozen-lockfile --reporter=silent
