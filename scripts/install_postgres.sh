#!/usr/bin/env bash
# Make a PostgreSQL server available for the backend tests (ledger, catalog).
#
# The tests start their own throwaway cluster (tests/conftest.py); all they
# need are the server binaries (initdb, pg_ctl, pg_isready, postgres). If those
# are missing and we are root with apt-get, install Debian's `postgresql`
# package quietly. Never fails hard: without a server the PostgreSQL tests are
# skipped with a message saying so.
set -u

have_binaries() {
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        return 0
    fi
    for dir in /usr/lib/postgresql/*/bin; do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            return 0
        fi
    done
    return 1
}

if have_binaries; then
    echo "install_postgres: PostgreSQL server binaries found"
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "install_postgres: not root; cannot install PostgreSQL (its tests will be skipped)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_postgres: apt-get not found; install PostgreSQL by hand (its tests will be skipped)"
    exit 0
fi

echo "install_postgres: installing PostgreSQL with apt-get"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get update -qq >/dev/null 2>&1; then
    echo "install_postgres: warning: apt-get update failed"
fi
if ! apt-get install -y -qq --no-install-recommends postgresql >/dev/null 2>&1; then
    echo "install_postgres: warning: apt-get install postgresql failed (its tests will be skipped)"
    exit 0
fi
if have_binaries; then
    echo "install_postgres: PostgreSQL installed"
else
    echo "install_postgres: warning: installed, but initdb/pg_ctl were not found"
fi
exit 0
