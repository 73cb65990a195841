#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster owned by the postgres user, on a private port and a
# private socket directory (no TCP listener), so nothing depends on a server left running.
#   scripts/cluster.sh start DIR PORT   # initdb (if needed) and start; prints nothing on success
#   scripts/cluster.sh stop DIR         # fast shutdown (no error if not running)
# Connect with: psql -h DIR -p PORT -U postgres
# (max_prepared_transactions = 10: the tests prepare transactions.)
set -euo pipefail
PGBIN=${PGBIN:-$(/usr/lib/postgresql/15/bin/pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)}
as_pg() { if [ "$(id -un)" = postgres ]; then "$@"; else sudo -u postgres -- "$@"; fi; }

cmd=${1:?start|stop}; dir=${2:?cluster directory}
case "$cmd" in
  start)
    port=${3:?port}
    mkdir -p "$dir"; chown postgres: "$dir" 2>/dev/null || true; chmod 700 "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      as_pg "$PGBIN/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses='' -c track_functions=all -c fsync=off -c max_prepared_transactions=10 ${PGOPTS:-}" start >/dev/null \
      || { tail -20 "$dir/server.log" >&2; exit 1; }
    ;;
  stop)
    [ -f "$dir/data/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    ;;
  *) echo "usage: $0 start DIR PORT | stop DIR" >&2; exit 2 ;;
esac
