#!/usr/bin/env bash
# The full test run (what CI runs). Code gates and a compile check against pg13-pg18, then for
# each tested PostgreSQL major (15, 16, 18; scripts/pg.sh): the unit/property tests and
# #[pg_test]s, pg_regress, the differential tests and the concurrency tests on both fixtures
# (the schema as Rails ships it, and the spec's minimal one), the upgrade test, dump and restore
# round trips, pgTAP, the
# security suite and the replication tests, each against throwaway clusters started here as the
# postgres user on private ports and socket directories. Then the Rails (ActiveRecord) client
# test on both fixtures and the package build (PostgreSQL 15).
#   MAJORS="15"   limits the run to some majors (default: all tested ones)
#   KEEP_WORK=1   keeps the work directory (clusters, logs)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scripts/setup.sh
started=$(date +%s)

# A clean run needs about 4 GB under target/ (the test builds and the ci-profile builds for three
# majors). A linker that runs out of disk dies with SIGBUS, which reads like a toolchain bug, so
# say it up front.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
mkdir -p target
free_kb=$(df -Pk target | awk 'NR==2 {print $4}')
echo "== disk: $((free_kb / 1024)) MB free for target/"
if [ "$free_kb" -lt 4500000 ]; then
  echo "warning: less than 4.5 GB free under target/; the build may fail in the linker (SIGBUS) for lack of disk" >&2
fi

work=$(mktemp -d /tmp/tasker_core_test.XXXXXX); chmod 755 "$work"; chown postgres: "$work"
base_port=$((55000 + (RANDOM % 90) * 10))
clusters=()
# Stops the clusters; removes the work directory (clusters, logs: a few hundred MB) unless the
# run failed or KEEP_WORK is set, when its path is printed for a look.
cleanup() {
  local rc=$?
  for c in "${clusters[@]}"; do PGBIN="${c%%|*}" scripts/cluster.sh stop "${c##*|}" || true; done
  if [ "$rc" -eq 0 ] && [ -z "${KEEP_WORK:-}" ]; then rm -rf "$work"; else echo "test files kept in $work"; fi
}
trap cleanup EXIT
results=()
record() { results+=("$1"); echo "  -> $1"; }

echo "== code gates: cargo fmt --check, cargo clippy -D warnings"
cargo fmt --check
cargo clippy --features pg15 -- -D warnings
cargo clippy --features "pg15 pg_test" --tests -- -D warnings
record "fmt + clippy: ok"

echo "== every declared PostgreSQL version compiles (pg13-pg18, pgrx's pre-generated bindings)"
scripts/check_versions.sh | tee "$work/versions.log"
rm -rf target/versions # about 0.8 GB, not needed again
record "$(grep '^versions:' "$work/versions.log")"

# One major: its #[pg_test]s, then a cluster with the extension installed (the ci profile: an
# optimized build with debug assertions on, so pg::former compares every row it forms with
# PostgreSQL's) for every SQL-level suite.
test_major() {
  local v=$1 port=$2
  local bindir; bindir=$(dirname "$(scripts/pg.sh "$v" path pg_config)")
  local pg_config="$bindir/pg_config"
  local log="$work/pg$v"
  mkdir -p "$log"; chown postgres: "$log"
  echo
  echo "==== PostgreSQL $v ($("$pg_config" --version))"
  echo "== unit, property and #[pg_test] tests (cargo pgrx test pg$v)"
  cargo pgrx test "pg$v" --runas postgres --pgdata "$log/pgrx-data" 2>&1 | tee "$log/pgrx-test.log" \
    | grep -E "^test |test result:|panicked|FAILED" || true
  grep -q "test result: ok" "$log/pgrx-test.log" || { tail -60 "$log/pgrx-test.log"; echo "cargo pgrx test pg$v failed"; exit 1; }
  record "pg$v cargo pgrx test: $(grep 'test result:' "$log/pgrx-test.log" | tail -1)"
  rm -rf "$log/pgrx-data"

  echo "== installing the ci build into PostgreSQL $v"
  cargo pgrx install --profile ci --pg-config "$pg_config" >"$log/install.log" 2>&1 || { tail -30 "$log/install.log"; exit 1; }
  cp sql/released/tasker_core--*.sql "$("$pg_config" --sharedir)/extension/"
  PGBIN="$bindir" scripts/cluster.sh start "$log/pg" "$port"
  clusters+=("$bindir|$log/pg")
  local conn="host=$log/pg port=$port user=postgres"
  (
    export PATH="$bindir:$PATH" PG_CONFIG="$pg_config"
    echo "== pg_regress"
    local regress; regress="$(dirname "$("$pg_config" --pgxs)")/../test/regress/pg_regress"
    local tests; tests=$(cd tests/pg_regress/sql && ls *.sql | sed 's/\.sql$//' | sort)
    # --bindir: the wheels' pg_regress was built with a bindir of their build machine
    # (/project/pgbuild/...); without it, it finds no psql and bails out before any test runs.
    if "$regress" --bindir="$bindir" --host="$log/pg" --port="$port" --user=postgres --dbname=tasker_regress \
         --inputdir=tests/pg_regress --outputdir="$log/regress" $tests >"$log/regress.log" 2>&1; then
      echo "pg_regress: $(echo $tests | wc -w) passed, 0 failed" >"$log/regress.result"
    else
      tail -20 "$log/regress.log"; cat "$log/regress/regression.diffs" 2>/dev/null | head -80; echo "pg_regress failed on PostgreSQL $v"; exit 1
    fi

    echo "== differential tests (native == reference on every row), both fixtures"
    FIXTURE=tasker_schema.sql tests/differential/run.sh "$conn" "${DIFF_SEEDS:-10}" "${DIFF_TASKS:-300}" | tee "$log/diff.log"
    FIXTURE=tasker_schema_minimal.sql tests/differential/run.sh "$conn" "${DIFF_SEEDS_MINIMAL:-6}" "${DIFF_TASKS:-300}" | tee -a "$log/diff.log"
    echo "== orchestration decisions (native == reference written from the spec)"
    tests/differential/orchestration.sh "$conn" "${ORCH_SEEDS:-4}" "${ORCH_TASKS:-60}" | tee "$log/orch.log"
    echo "== the analytics functions (native == reference and the engine's own), both fixtures"
    FIXTURE=tasker_schema.sql tests/differential/analytics.sh "$conn" "${ANALYTICS_SEEDS:-2}" 150 | tee "$log/analytics.log"
    FIXTURE=tasker_schema_minimal.sql tests/differential/analytics.sh "$conn" 1 100 | tee -a "$log/analytics.log"
    echo "== the view tasker_step_dag_relationships (native == Rails' definition), both fixtures"
    FIXTURE=tasker_schema.sql tests/differential/dag_view.sh "$conn" "${DAG_SEEDS:-4}" "${DAG_TASKS:-200}" | tee "$log/dag.log"
    FIXTURE=tasker_schema_minimal.sql tests/differential/dag_view.sh "$conn" 2 "${DAG_TASKS:-200}" | tee -a "$log/dag.log"

    echo "== concurrency tests (real concurrent connections), both fixtures"
    FIXTURE=tasker_schema.sql tests/concurrency/run.sh "$conn" 8 20 | tee "$log/race.log"
    FIXTURE=tasker_schema_minimal.sql tests/concurrency/run.sh "$conn" 8 10 | tee -a "$log/race.log"

    echo "== lifecycle events (catalog payloads, late commits, concurrent consumers)"
    tests/events/run.sh "$conn" 4 8 | tee "$log/events.log"

    echo "== upgrade test (released versions + ALTER EXTENSION UPDATE == fresh install)"
    FIXTURE=tasker_schema.sql tests/upgrade/run.sh "$conn" | tee "$log/upgrade.log"
    FIXTURE=tasker_schema_minimal.sql tests/upgrade/run.sh "$conn" | tee -a "$log/upgrade.log"

    echo "== dump and restore (structure.sql as Rails dumps and loads it; a whole-database pg_dump)"
    FIXTURE=tasker_schema.sql tests/dump/run.sh "$conn" | tee "$log/dump.log"

    echo "== pgTAP suite (pg_prove), both fixtures"
    for fixture in tasker_schema.sql tasker_schema_minimal.sql; do
      psql "$conn dbname=postgres" -X -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS tasker_pgtap" -c "CREATE DATABASE tasker_pgtap"
      psql "$conn dbname=tasker_pgtap" -X -q -v ON_ERROR_STOP=1 -c "CREATE EXTENSION pgtap" -c "CREATE EXTENSION tasker_core"
      pg_prove --psql-bin "$bindir/psql" -h "$log/pg" -p "$port" -U postgres -d tasker_pgtap \
        --set fixture="tests/fixtures/$fixture" tests/pgtap/*.sql | tee "$log/pgtap-$fixture.log"
    done

    echo "== make installcheck against this server (scratch databases; the server left as it was)"
    PGHOST="$log/pg" PGPORT="$port" PGUSER=postgres PG_CONFIG="$pg_config" scripts/installcheck.sh 2>&1 | tee "$log/installcheck.log"
    grep -q "^installcheck: the server's roles, databases and tablespaces are as before the run" "$log/installcheck.log" \
      || { echo "make installcheck failed on PostgreSQL $v"; exit 1; }

    echo "== security suite (a hostile role plants functions and operators)"
    tests/security/run.sh "$conn" | tee "$log/security.log"
  )
  PGBIN="$bindir" scripts/cluster.sh stop "$log/pg"

  echo "== replication (publication, logical subscriber, hot standby)"
  (export PATH="$bindir:$PATH"; tests/replication/run.sh "$bindir" "$((port + 1))") | tee "$log/replication.log"

  record "pg$v $(cat "$log/regress.result")"
  record "pg$v $(grep '^differential (tasker_schema.sql)' "$log/diff.log" | head -1 | sed 's/, both read paths.*rows compared/: rows compared/') / $(grep '^differential (tasker_schema_minimal.sql)' "$log/diff.log" | sed 's/, both read paths.*rows compared/: rows compared/')"
  record "pg$v differential: $(grep '^differential: .* passed' "$log/diff.log" | tr '\n' ' ')"
  record "pg$v $(grep '^orchestration differential:' "$log/orch.log")"
  record "pg$v $(grep '^dag view differential:' "$log/dag.log" | tr '\n' ' ')"
  record "pg$v $(grep '^analytics differential:' "$log/analytics.log" | tr '\n' ' ')"
  record "pg$v concurrency: $(grep '^concurrency:' "$log/race.log" | tr '\n' ' ')"
  record "pg$v $(grep '^events:' "$log/events.log")"
  record "pg$v $(grep '^upgrade:' "$log/upgrade.log" | tr '\n' ' ')"
  record "pg$v $(grep '^dump:' "$log/dump.log")"
  record "pg$v pgTAP: $(cat "$log"/pgtap-*.log | grep -E '^Files=|^Result' | tr '\n' ' ')"
  record "pg$v installcheck: $(grep -E '^pg_regress: |^Result' "$log/installcheck.log" | tr '\n' ' ')"
  record "pg$v $(grep '^security:' "$log/security.log")"
  record "pg$v $(grep '^replication:' "$log/replication.log")"
}

majors=${MAJORS:-$(scripts/pg.sh majors)}
i=0
for v in $majors; do
  test_major "$v" "$((base_port + 5 * i))"
  i=$((i + 1))
done

echo
echo "==== Rails client test (ActiveRecord $(ruby -e 'require "active_record"; print ActiveRecord.version'), PostgreSQL 15), both fixtures"
PG15_BIN=/usr/lib/postgresql/15/bin
cargo pgrx install --profile ci --pg-config "$PG15_BIN/pg_config" >"$work/install15.log" 2>&1 || { tail -30 "$work/install15.log"; exit 1; }
PGBIN="$PG15_BIN" scripts/cluster.sh start "$work/rails-pg" "$((base_port + 8))"
clusters+=("$PG15_BIN|$work/rails-pg")
conn="host=$work/rails-pg port=$((base_port + 8)) user=postgres"
for fixture in tasker_schema.sql tasker_schema_minimal.sql; do
  psql "$conn dbname=postgres" -X -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS tasker_rails" -c "CREATE DATABASE tasker_rails"
  psql "$conn dbname=tasker_rails" -X -q -v ON_ERROR_STOP=1 -f "tests/fixtures/$fixture" -f tests/fixtures/reference_functions.sql \
    -f tests/fixtures/reference_view.sql -c "CREATE EXTENSION tasker_core"
  PGHOST="$work/rails-pg" PGPORT="$((base_port + 8))" PGUSER=postgres PGDATABASE=tasker_rails ruby tests/rails/client_test.rb | tee "$work/rails-$fixture.log"
  record "rails client ($fixture): $(grep -E 'runs, .* assertions' "$work/rails-$fixture.log")"
  PGHOST="$work/rails-pg" PGPORT="$((base_port + 8))" PGUSER=postgres PGDATABASE=tasker_rails ruby tests/rails/events_listener_test.rb | tee "$work/listener-$fixture.log"
  record "rails events listener ($fixture): $(grep -E 'runs, .* assertions' "$work/listener-$fixture.log")"
done

echo "== package (cargo pgrx package)"
scripts/package.sh > "$work/package.log"
pkg=$(head -n 1 "$work/package.log")
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
for f in lib/postgresql/15/lib/tasker_core.so share/postgresql/15/extension/tasker_core.control \
         "share/postgresql/15/extension/tasker_core--$version.sql" \
         share/postgresql/15/extension/tasker_core--0.1.0--0.2.0.sql \
         share/postgresql/15/extension/tasker_core--0.2.0--0.3.0.sql \
         share/postgresql/15/extension/tasker_core--0.3.0--0.4.0.sql; do
  grep -q "/usr/$f\$" "$work/package.log" || { echo "package $pkg lacks /usr/$f"; exit 1; }
done
record "package: $pkg"

echo
echo "== summary ($(( ($(date +%s) - started) / 60 )) minutes)"
printf '  %s\n' "${results[@]}"
