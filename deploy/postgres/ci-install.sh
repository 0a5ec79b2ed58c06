#!/bin/sh
# Installs the PostgreSQL server binaries (initdb, pg_ctl) that the
# integration tests start a throwaway server from (tests/integration/conftest.py).
# Debian/Ubuntu only; non-interactive; does nothing when initdb is already
# there. The package's own cluster is not used (it may not even start in a
# container): the tests run their own server on a free port.
#
#   sh deploy/postgres/ci-install.sh
set -eu

found_initdb() {
    for f in /usr/lib/postgresql/*/bin/initdb; do
        [ -x "$f" ] && { echo "$f"; return 0; }
    done
    command -v initdb 2>/dev/null
}

if existing=$(found_initdb); then
    echo "ci-install: PostgreSQL already installed ($existing)"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ci-install: no apt-get here; install the PostgreSQL server package and set" \
         "FUNDFLOW_PG_BINDIR to the folder holding initdb and pg_ctl" >&2
    exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root=""
elif command -v sudo >/dev/null 2>&1; then
    as_root="sudo"
else
    echo "ci-install: need root (or sudo) to install PostgreSQL" >&2
    exit 1
fi

# `env` carries the setting through sudo, which resets the environment.
$as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends postgresql

if ! existing=$(found_initdb); then
    echo "ci-install: postgresql installed but initdb not found" >&2
    exit 1
fi
echo "ci-install: PostgreSQL installed ($existing)"
