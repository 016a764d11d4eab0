#!/usr/bin/env bash
# Installs, from Debian's packages, what the tests need beyond the Rust toolchain, if it is
# missing: PostgreSQL's server binaries (initdb, pg_ctl, postgres) for the fleet lock's tests,
# iproute2 for their network partition, and util-linux's flock(1) for the interop tests. It
# does not start or create any cluster: the tests make their own.
set -euo pipefail

missing=()
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null \
    && [[ -z "${PG_BIN:-}" ]]; then
    missing+=(postgresql)
fi
command -v ip >/dev/null || missing+=(iproute2)
command -v flock >/dev/null || missing+=(util-linux)

if ((${#missing[@]} == 0)); then
    echo "nothing to install"
    exit 0
fi
echo "installing: ${missing[*]}"
if [[ " ${missing[*]} " == *" postgresql "* ]]; then
    # No "main" cluster: the tests start throwaway clusters of their own.
    mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" >> /etc/postgresql-common/createcluster.conf
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
