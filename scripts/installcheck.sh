#!/usr/bin/env bash
# make installcheck: the pg_regress and pgTAP suites against an existing server, as PGXS
# extensions run theirs. The server is the one the usual libpq variables name (PGHOST, PGPORT,
# PGUSER; a superuser, since CREATE EXTENSION tasker_core needs one), with tasker_core already
# installed in it (`make install`, or a package) and pgTAP available for the pgTAP suite.
# Each suite runs in a scratch database created here and dropped at the end; nothing is
# installed outside it. The roles, databases and tablespaces of the server are compared before
# and after: a run that leaves anything behind fails.
#   PG_CONFIG=<path>   the server's pg_config, for pg_regress (default: pg_config in PATH, else
#                      the Debian PostgreSQL 15 one)
#   INSTALLCHECK_PGTAP=0   skips the pgTAP suite (when pgTAP is not installed on the server)
set -euo pipefail
cd "$(dirname "$0")/.."
pg_config=${PG_CONFIG:-$(command -v pg_config || echo /usr/lib/postgresql/15/bin/pg_config)}
bindir=$("$pg_config" --bindir)
regress="$(dirname "$("$pg_config" --pgxs)")/../test/regress/pg_regress"
psql_() { "$bindir/psql" -X -q -At -v ON_ERROR_STOP=1 "$@"; }
fail() { echo "installcheck: $*" >&2; exit 1; }

psql_ -d postgres -c "SELECT 1" >/dev/null \
  || fail "cannot connect (PGHOST=${PGHOST:-} PGPORT=${PGPORT:-} PGUSER=${PGUSER:-})"
[ "$(psql_ -d postgres -c "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")" = t ] \
  || fail "connect as a superuser: CREATE EXTENSION tasker_core needs one"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
[ "$(psql_ -d postgres -c "SELECT count(*) FROM pg_available_extension_versions WHERE name = 'tasker_core' AND version = '$version'")" = 1 ] \
  || fail "tasker_core $version is not installed in this server (make install, or install the package)"
pgtap=${INSTALLCHECK_PGTAP:-1}
if [ "$pgtap" = 1 ] && [ "$(psql_ -d postgres -c "SELECT count(*) FROM pg_available_extensions WHERE name = 'pgtap'")" != 1 ]; then
  fail "pgTAP is not installed in this server (Debian: postgresql-<major>-pgtap), or run with INSTALLCHECK_PGTAP=0"
fi

# What the run must leave as it found it: the server's roles, databases and tablespaces.
cluster_state() {
  psql_ -d postgres -c "SELECT 'role ' || rolname FROM pg_roles UNION ALL SELECT 'database ' || datname FROM pg_database
                        UNION ALL SELECT 'tablespace ' || spcname FROM pg_tablespace ORDER BY 1"
}
before=$(cluster_state)
suffix=$$
regress_db=tasker_installcheck_regress_$suffix
pgtap_db=tasker_installcheck_pgtap_$suffix
out=$(mktemp -d /tmp/tasker_installcheck.XXXXXX)
cleanup() {
  psql_ -d postgres -c "DROP DATABASE IF EXISTS $regress_db" -c "DROP DATABASE IF EXISTS $pgtap_db" >/dev/null 2>&1 || true
}
trap cleanup EXIT
rc=0

echo "== pg_regress (tests/pg_regress: the documented examples) in database $regress_db"
tests=$(cd tests/pg_regress/sql && ls *.sql | sed 's/\.sql$//' | sort)
# pg_regress creates the database (and drops one of that name first); --bindir for psql.
if "$regress" --bindir="$bindir" ${PGHOST:+--host="$PGHOST"} ${PGPORT:+--port="$PGPORT"} ${PGUSER:+--user="$PGUSER"} \
     --dbname="$regress_db" --inputdir=tests/pg_regress --outputdir="$out" $tests; then
  echo "pg_regress: $(echo $tests | wc -w) passed"
else
  cat "$out/regression.diffs" 2>/dev/null | head -80
  echo "pg_regress failed (diffs: $out/regression.diffs)"; rc=1
fi

if [ "$pgtap" = 1 ]; then
  echo "== pgTAP (tests/pgtap) in database $pgtap_db, on both fixtures"
  for fixture in tasker_schema.sql tasker_schema_minimal.sql; do
    psql_ -d postgres -c "DROP DATABASE IF EXISTS $pgtap_db" -c "CREATE DATABASE $pgtap_db"
    psql_ -d "$pgtap_db" -c "CREATE EXTENSION pgtap" -c "CREATE EXTENSION tasker_core"
    pg_prove --psql-bin "$bindir/psql" -d "$pgtap_db" --set fixture="tests/fixtures/$fixture" tests/pgtap/*.sql || rc=1
  done
fi

cleanup
after=$(cluster_state)
if [ "$before" != "$after" ]; then
  echo "installcheck: the server is not as it was before the run:"
  diff <(echo "$before") <(echo "$after") || true
  rc=1
else
  echo "installcheck: the server's roles, databases and tablespaces are as before the run"
fi
[ "$rc" = 0 ] && rm -rf "$out"
exit $rc
