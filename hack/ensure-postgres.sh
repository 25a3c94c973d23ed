#!/usr/bin/env bash
# Tests start real PostgreSQL servers from the machine's packages. Install
# Debian's postgresql when no initdb is found, or say how.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo ">> Installing PostgreSQL from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
  # The package's own cluster is not needed: tests start their own servers.
  if command -v pg_lsclusters >/dev/null 2>&1; then
    pg_lsclusters -h | while read -r ver name _; do pg_dropcluster --stop "$ver" "$name" || true; done
  fi
  exit 0
fi
echo "PostgreSQL is not installed and cannot be installed here: install the postgresql package (initdb, pg_ctl) and run again." >&2
exit 1
