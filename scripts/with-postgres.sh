#!/usr/bin/env bash
# Runs a command with DATABASE_URL pointing at a throwaway PostgreSQL cluster made for it, and
# removes the cluster afterwards, whatever the command does:
#
#     scripts/with-postgres.sh cargo run --example fleet
#
# It uses initdb and pg_ctl from PG_BIN, Debian's /usr/lib/postgresql/*/bin, or PATH, and runs
# them as the `postgres` user when run as root (the server refuses to run as root).
set -euo pipefail

find_bin() {
    if [[ -n "${PG_BIN:-}" ]]; then echo "$PG_BIN"; return; fi
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then echo "$dir"; return; fi
    done
    dir=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")
    if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then echo "$dir"; return; fi
    echo "with-postgres: no initdb/pg_ctl: install Debian's postgresql package, or set PG_BIN" >&2
    exit 1
}

bin=$(find_bin)
dir=$(mktemp -d /tmp/pidlock-pg-XXXXXX)
as_postgres=()
if [[ $(id -u) == 0 ]]; then
    chown postgres: "$dir"
    as_postgres=(runuser -u postgres --)
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

stop() {
    "${as_postgres[@]}" "$bin/pg_ctl" -D "$dir/data" stop -m immediate -w -t 30 >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap stop EXIT

"${as_postgres[@]}" "$bin/initdb" -A trust -U postgres -E UTF8 --no-sync -D "$dir/data" >/dev/null
"${as_postgres[@]}" "$bin/pg_ctl" -w -t 120 -D "$dir/data" -l "$dir/log" \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null

export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
"$@"
