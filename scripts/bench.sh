#!/usr/bin/env bash
# make bench: native tasker_core vs the reference SQL functions, side by side in one server
# session (alternating A/B over several rounds), on a generated Tasker database. Prints the
# medians and ratios and writes them to docs/benchmarks.md. A benchmark, not a test.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
TASKS=${BENCH_TASKS:-5000}; ROUNDS=${BENCH_ROUNDS:-7}; BIG=${BENCH_BIG_STEPS:-1000}
scripts/setup.sh
cargo pgrx install --release --pg-config "$PG_CONFIG" >/tmp/tasker_core_bench_install.log 2>&1 \
  || { tail -30 /tmp/tasker_core_bench_install.log; exit 1; }
work=$(mktemp -d /tmp/tasker_core_bench.XXXXXX); chmod 755 "$work"; chown postgres: "$work"
port=$((57000 + RANDOM % 900))
trap 'scripts/cluster.sh stop "$work/pg"' EXIT
PGOPTS="-c shared_buffers=1GB" scripts/cluster.sh start "$work/pg" "$port"
export PGOPTIONS="-c client_min_messages=warning"
psql() { command psql "host=$work/pg port=$port user=postgres dbname=${DB:-postgres}" -X -v ON_ERROR_STOP=1 "$@"; }
psql -qc "CREATE DATABASE tasker_bench"; export DB=tasker_bench
psql -q -f tests/fixtures/tasker_schema.sql -f tests/fixtures/generator.sql -f tests/bench/bench.sql
psql -q -c "CREATE SCHEMA tasker_ref" -c "SET search_path = tasker_ref" -f tests/fixtures/reference_functions.sql
psql -q -c "CREATE EXTENSION tasker_core"
echo "== generating $TASKS tasks, one task of $BIG steps, a 13x3 lattice"
psql -qAt -c "SELECT tasker_gen.generate(0.25, $TASKS, anchor => (now() AT TIME ZONE 'UTC'))" >/dev/null
big=$(psql -qAt -c "SELECT tasker_gen.generate(0.75, 1, $BIG, $BIG, anchor => (now() AT TIME ZONE 'UTC'))" >/dev/null; psql -qAt -c "SELECT max(task_id) FROM tasker_tasks")
lattice=$(psql -qAt -c "SELECT tasker_bench.add_lattice(13, 3)")
psql -q -c "VACUUM ANALYZE"
steps=$(psql -qAt -c "SELECT count(*) FROM tasker_workflow_steps")
echo "== running $ROUNDS rounds"
table=$(psql -qAt -F '|' -c "SELECT workload, calls, round(native_ms::numeric, 2), round(reference_ms::numeric, 2),
         coalesce(round(floor_ms::numeric, 2)::text, ''), round((reference_ms / native_ms)::numeric, 1),
         coalesce(round((native_ms / floor_ms)::numeric, 1)::text, ''),
         round((1000 * native_ms / calls)::numeric, 1), round((1000 * reference_ms / calls)::numeric, 1)
         FROM tasker_bench.run($ROUNDS, $big, $lattice)")
md="| workload | calls | native ms | SQL ms | floor ms | native speed-up | native / floor | µs per call native | µs per call SQL |
|---|---|---|---|---|---|---|---|---|
$(echo "$table" | sed 's/^/| /; s/$/ |/; s/|/ | /g; s/  */ /g')"
echo "$md"
machine="$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB RAM, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(psql -qAt -c 'SHOW server_version') ($(uname -r))"
cat > docs/benchmarks.md <<DOC
# Benchmarks

Produced by \`make bench\` (scripts/bench.sh); rerun it to reproduce. A benchmark, not a test.

- Machine: $machine.
- Database: $TASKS generated tasks of mixed shapes (2-15 steps; chains, diamonds, trees, random DAGs, fan-in/out), one task of $BIG steps, a 13-layer width-3 lattice; $steps steps in all.
- Method: server-side time of one statement (per-task workloads call the function once per task through a LATERAL join), native (\`tasker_core\`) and the reference SQL (\`tests/fixtures/reference_functions.sql\`, the faithful join-and-group-by version from the spec) alternating A/B in one session, median of $ROUNDS rounds. "floor" is a plain indexed read of the same step rows, the practical lower bound.
- Run: $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown).

$md
DOC
echo "written to docs/benchmarks.md"
