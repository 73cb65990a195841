#!/usr/bin/env bash
# The full test run (what CI runs): code gates, a compile check against pg13-pg18, unit/property
# tests and #[pg_test]s, pg_regress, differential tests, real-connection concurrency tests, the
# upgrade test, pgTAP, the Rails (ActiveRecord) client test and the package build, each against
# a throwaway PostgreSQL 15 cluster started here as the postgres user on a private port and
# socket directory.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
scripts/setup.sh

# A clean run needs about 2.6 GB under target/ (the non-incremental debug test build with line
# tables only, plus the release build). A linker that runs out of disk dies with SIGBUS, which
# reads like a toolchain bug, so say it up front.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
mkdir -p target
free_kb=$(df -Pk target | awk 'NR==2 {print $4}')
echo "== disk: $((free_kb / 1024)) MB free for target/"
if [ "$free_kb" -lt 3000000 ]; then
  echo "warning: less than 3 GB free under target/; the build may fail in the linker (SIGBUS) for lack of disk" >&2
fi

work=$(mktemp -d /tmp/tasker_core_test.XXXXXX); chmod 755 "$work"; chown postgres: "$work"
port=$((55000 + RANDOM % 900))
# Stops the cluster; removes the work directory (clusters, logs: a few hundred MB) unless the
# run failed or KEEP_WORK is set, when its path is printed for a look.
cleanup() {
  local rc=$?
  scripts/cluster.sh stop "$work/pg" || true
  if [ "$rc" -eq 0 ] && [ -z "${KEEP_WORK:-}" ]; then rm -rf "$work"; else echo "test files kept in $work"; fi
}
trap cleanup EXIT
results=()
record() { results+=("$1"); }

echo "== code gates: cargo fmt --check, cargo clippy -D warnings"
cargo fmt --check
cargo clippy --features pg15 -- -D warnings
cargo clippy --features "pg15 pg_test" --tests -- -D warnings
record "fmt + clippy: ok"

echo "== every declared PostgreSQL version compiles (pg13-pg18, pgrx's pre-generated bindings)"
scripts/check_versions.sh | tee "$work/versions.log"
rm -rf target/versions # about 0.8 GB, not needed again
record "$(grep '^versions:' "$work/versions.log")"

echo "== unit, property and #[pg_test] tests (cargo pgrx test)"
cargo pgrx test pg15 --runas postgres --pgdata "$work/pgrx-data" 2>&1 | tee "$work/pgrx-test.log" | grep -E "^test |test result:|panicked|FAILED" || true
grep -q "test result: ok" "$work/pgrx-test.log" || { tail -60 "$work/pgrx-test.log"; echo "cargo pgrx test failed"; exit 1; }
record "cargo pgrx test: $(grep 'test result:' "$work/pgrx-test.log" | tail -1)"

echo "== installing the release build"
cargo pgrx install --release --pg-config "$PG_CONFIG" >"$work/install.log" 2>&1 || { tail -30 "$work/install.log"; exit 1; }
scripts/cluster.sh start "$work/pg" "$port"
conn="host=$work/pg port=$port user=postgres"

echo "== pg_regress"
regress=$($PG_CONFIG --pkglibdir)/pgxs/src/test/regress/pg_regress
tests=$(cd tests/pg_regress/sql && ls *.sql | sed 's/\.sql$//' | sort)
if "$regress" --host="$work/pg" --port="$port" --user=postgres --dbname=tasker_regress \
     --inputdir=tests/pg_regress --outputdir="$work/regress" $tests; then
  record "pg_regress: $(echo $tests | wc -w) passed, 0 failed"
else
  cat "$work/regress/regression.diffs" 2>/dev/null | head -80; echo "pg_regress failed"; exit 1
fi

echo "== differential tests (native == reference on every row)"
tests/differential/run.sh "$conn" "${DIFF_SEEDS:-16}" "${DIFF_TASKS:-300}" | tee "$work/diff.log"
record "$(grep '^differential:.*rows compared' "$work/diff.log")"

echo "== concurrency tests (real concurrent connections against the guard triggers)"
tests/concurrency/run.sh "$conn" 8 20 | tee "$work/race.log"
record "$(grep '^concurrency:' "$work/race.log")"

echo "== upgrade test (released versions + ALTER EXTENSION UPDATE == fresh install)"
tests/upgrade/run.sh "$conn" | tee "$work/upgrade.log"
record "$(grep '^upgrade:' "$work/upgrade.log")"

echo "== pgTAP suite (pg_prove)"
psql "$conn dbname=postgres" -X -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS tasker_pgtap" -c "CREATE DATABASE tasker_pgtap"
psql "$conn dbname=tasker_pgtap" -X -q -v ON_ERROR_STOP=1 -c "CREATE EXTENSION pgtap" -c "CREATE EXTENSION tasker_core"
pg_prove -h "$work/pg" -p "$port" -U postgres -d tasker_pgtap tests/pgtap/*.sql | tee "$work/pgtap.log"
record "pgTAP: $(grep -E '^Files=|^Result' "$work/pgtap.log" | tr '\n' ' ')"

echo "== Rails client test (ActiveRecord $(ruby -e 'require "active_record"; print ActiveRecord.version'))"
psql "$conn dbname=postgres" -X -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS tasker_rails" -c "CREATE DATABASE tasker_rails"
psql "$conn dbname=tasker_rails" -X -q -v ON_ERROR_STOP=1 -f tests/fixtures/tasker_schema.sql -f tests/fixtures/reference_functions.sql \
  -c "CREATE EXTENSION tasker_core"
PGHOST="$work/pg" PGPORT="$port" PGUSER=postgres PGDATABASE=tasker_rails ruby tests/rails/client_test.rb | tee "$work/rails.log"
record "rails client: $(grep -E 'runs, .* assertions' "$work/rails.log")"

echo "== package (cargo pgrx package)"
scripts/package.sh > "$work/package.log"
pkg=$(head -n 1 "$work/package.log")
for f in lib/postgresql/15/lib/tasker_core.so share/postgresql/15/extension/tasker_core.control \
         "share/postgresql/15/extension/tasker_core--$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1).sql" \
         share/postgresql/15/extension/tasker_core--0.1.0--0.2.0.sql \
         share/postgresql/15/extension/tasker_core--0.2.0--0.3.0.sql; do
  grep -q "/usr/$f\$" "$work/package.log" || { echo "package $pkg lacks /usr/$f"; exit 1; }
done
record "package: $pkg"

echo
echo "== summary"
printf '  %s\n' "${results[@]}"
