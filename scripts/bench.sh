#!/usr/bin/env bash
# make bench: native tasker_core vs the reference SQL functions, side by side in one server
# session (alternating A/B over several rounds), on a generated Tasker database. Prints the
# medians and ratios and writes them to docs/benchmarks.md. A benchmark, not a test.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
TASKS=${BENCH_TASKS:-5000}; ROUNDS=${BENCH_ROUNDS:-11}; BIG=${BENCH_BIG_STEPS:-1000}
scripts/setup.sh
# The code measured: the tree as it is built here (edits made while the benchmark runs do not count).
rev=$(git -c core.fileMode=false describe --always --dirty --exclude '*' 2>/dev/null || echo unknown)
cargo pgrx install --release --pg-config "$PG_CONFIG" >/tmp/tasker_core_bench_install.log 2>&1 \
  || { tail -30 /tmp/tasker_core_bench_install.log; exit 1; }
work=$(mktemp -d /tmp/tasker_core_bench.XXXXXX); chmod 755 "$work"; chown postgres: "$work"
port=$((57000 + RANDOM % 900))
trap 'scripts/cluster.sh stop "$work/pg"; rm -rf "$work"' EXIT
PGOPTS="-c shared_buffers=1GB -c track_functions=none" scripts/cluster.sh start "$work/pg" "$port"
export PGOPTIONS="-c client_min_messages=warning"
psql() { command psql "host=$work/pg port=$port user=postgres dbname=${DB:-postgres}" -X -v ON_ERROR_STOP=1 "$@"; }
psql -qc "CREATE DATABASE tasker_bench"; export DB=tasker_bench
psql -q -f tests/fixtures/tasker_schema.sql -f tests/fixtures/generator.sql -f tests/bench/bench.sql
psql -q -c "CREATE SCHEMA tasker_ref" -c "SET search_path = tasker_ref" -f tests/fixtures/reference_functions.sql
psql -q -c "CREATE EXTENSION tasker_core"
# The derived step state, enabled before any row exists: its triggers follow every write below.
psql -qAt -c "SELECT count(*) FROM tasker_core.step_state_enable()" >/dev/null
echo "== generating $TASKS tasks, one task of $BIG steps, a 13x3 lattice"
psql -qAt -c "SELECT tasker_gen.generate(0.25, $TASKS, anchor => (now() AT TIME ZONE 'UTC'))" >/dev/null
big=$(psql -qAt -c "SELECT tasker_gen.generate(0.75, 1, $BIG, $BIG, anchor => (now() AT TIME ZONE 'UTC'))" >/dev/null; psql -qAt -c "SELECT max(task_id) FROM tasker_tasks")
lattice=$(psql -qAt -c "SELECT tasker_bench.add_lattice(13, 3)")
psql -q -c "VACUUM ANALYZE"
steps=$(psql -qAt -c "SELECT count(*) FROM tasker_workflow_steps")
exact=$(psql -qAt -c "SELECT count(*) FROM tasker_core.step_state_verify()")
[ "$exact" = 0 ] || { echo "step_state_verify reports $exact rows: the step state is not exact"; exit 1; }
echo "== running $ROUNDS rounds"
table=$(psql -qAt -F '|' -c "SELECT workload, calls, round(native_ms::numeric, 2), round(reference_ms::numeric, 2),
         coalesce(round(floor_ms::numeric, 2)::text, ''), round((reference_ms / native_ms)::numeric, 1),
         coalesce(round((native_ms / floor_ms)::numeric, 1)::text, ''),
         round((1000 * native_ms / calls)::numeric, 1), round((1000 * reference_ms / calls)::numeric, 1),
         round(direct_ms::numeric, 2), round((reference_ms / direct_ms)::numeric, 1),
         coalesce(round(index_only_ms::numeric, 2)::text, '')
         FROM tasker_bench.run($ROUNDS, $big, $lattice)")
md="| workload | calls | native ms | SQL ms | floor ms | native speed-up | native / floor | µs per call native | µs per call SQL | native without step state ms | its speed-up | index-only count ms |
|---|---|---|---|---|---|---|---|---|---|---|---|
$(echo "$table" | awk -F'|' '{ row = "|"; for (i = 1; i <= NF; i++) row = row " " $i " |"; print row }')"
echo "$md"
echo "== the 13x3 lattice against the original path-enumerating algorithm (one run each)"
lat=$(psql -qAt -F ' ' -c "SELECT round(tasker_bench.time_ms(format('SELECT count(*) FROM tasker_core.calculate_dependency_levels(%s)', $lattice))::numeric, 3),
                                  round(tasker_bench.time_ms(format('SELECT count(*) FROM tasker_bench.levels_path_enumeration(%s)', $lattice))::numeric, 1),
                                  (SELECT count(*) FROM tasker_core.calculate_dependency_levels($lattice) n
                                     FULL JOIN tasker_bench.levels_path_enumeration($lattice) o USING (workflow_step_id, dependency_level)
                                    WHERE n IS NULL OR o IS NULL)")
set -- $lat
lattice_md="| calculate_dependency_levels, 13x3 lattice | $1 | $2 | $(awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", b / a }')x | $3 |"
echo "$lattice_md"

echo "== tasks of 100, 1,000 and 10,000 steps"
sizes=""
for n in 100 1000 10000; do
  t=$(psql -qAt -c "SELECT tasker_gen.generate(0.3, 1, $n, $n, anchor => (now() AT TIME ZONE 'UTC'))" >/dev/null; psql -qAt -c "SELECT max(task_id) FROM tasker_tasks")
  e=$(psql -qAt -c "SELECT count(*) FROM tasker_workflow_step_edges e JOIN tasker_workflow_steps s ON s.workflow_step_id = e.to_step_id WHERE s.task_id = $t")
  psql -q -c "CHECKPOINT"
  row=$(psql -qAt -F ' ' -c "SELECT round((native_us / 1000)::numeric, 3), round((reference_us / 1000)::numeric, 3)
                                FROM tasker_bench.per_call_pair_us(ARRAY[$t]::bigint[], 5)")
  set -- $row
  sizes="$sizes| $n | $e | $1 | $2 | $(awk -v a="$1" -v n="$n" -v e="$e" 'BEGIN { printf "%.2f", 1000 * a / (n + e) }') |
"
  echo "  $n steps, $e edges: native $1 ms, SQL $2 ms"
done

echo "== end to end with pgbench (client round trips, prepared statements), one task per call"
ids_max=$(psql -qAt -c "SELECT max(task_id) FROM tasker_tasks WHERE task_id <= $TASKS")
e2e=""
for impl in tasker_core tasker_ref; do
  printf '\\set t random(1, %s)\nSELECT * FROM %s.get_step_readiness_status(:t);\n' "$ids_max" "$impl" > "$work/pgbench_$impl.sql"
  out=$(/usr/lib/postgresql/15/bin/pgbench -h "$work/pg" -p "$port" -U postgres -n -M prepared -c 1 -T 10 -f "$work/pgbench_$impl.sql" "$DB" 2>&1)
  tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
  lat=$(echo "$out" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p')
  e2e="$e2e| $impl | $tps | $lat |
"
  echo "  $impl: $tps tps, $lat ms average latency"
done

echo "== growth: the same 5,000 tasks, measured as the tables grow"
ids=$(psql -qAt -c "SELECT array_agg(task_id ORDER BY task_id)::text FROM tasker_tasks WHERE task_id <= $TASKS")
growth=""
for total in $TASKS 50000 500000; do
  have=$(psql -qAt -c "SELECT count(*) FROM tasker_tasks")
  [ "$have" -lt "$total" ] && psql -qAt -c "SELECT tasker_bench.add_filler($total - $have)" >/dev/null && psql -q -c "VACUUM ANALYZE"
  # The filler's writes are flushed first, so no checkpoint runs alongside the measurement.
  psql -q -c "CHECKPOINT"
  row=$(psql -qAt -F ' ' -c "SELECT (SELECT count(*) FROM tasker_tasks), (SELECT count(*) FROM tasker_workflow_steps),
                                    round(p.native_us::numeric, 1), round(p.reference_us::numeric, 1)
                               FROM tasker_bench.per_call_pair_us('$ids', 7) p")
  set -- $row
  growth="$growth| $1 | $2 | $3 | $4 |
"
  echo "  $1 tasks, $2 steps: native $3 us, SQL $4 us per call"
done

echo "== write cost: Statesman transitions with no triggers, the guards, and guards + step state"
# A small database of its own, so switching the step state on and off (a rebuild) is cheap.
command psql "host=$work/pg port=$port user=postgres dbname=postgres" -X -q -c "CREATE DATABASE tasker_bench_writes"
DB=tasker_bench_writes psql -q -f tests/fixtures/tasker_schema.sql -f tests/bench/guards_bench.sql -c "CREATE EXTENSION tasker_core" \
  -c "INSERT INTO tasker_task_namespaces (task_namespace_id, name, created_at, updated_at) VALUES (1, 'default', now(), now());
      INSERT INTO tasker_dependent_systems (dependent_system_id, name, created_at, updated_at) VALUES (1, 'sys', now(), now());
      INSERT INTO tasker_named_tasks (named_task_id, name, task_namespace_id, created_at, updated_at) VALUES (1, 'bench', 1, now(), now());
      INSERT INTO tasker_named_steps (named_step_id, dependent_system_id, name, created_at, updated_at) VALUES (1, 1, 'step', now(), now());"
moves=""
for round in $(seq 1 3); do
  for mode in none guards state; do
    case $mode in
      none) DB=tasker_bench_writes psql -qAt -c "SELECT count(*) FROM tasker_core.disable()" -c "SELECT count(*) FROM tasker_core.step_state_disable()" >/dev/null ;;
      guards) DB=tasker_bench_writes psql -qAt -c "SELECT count(*) FROM tasker_core.enable(functions => false)" >/dev/null ;;
      state) DB=tasker_bench_writes psql -qAt -c "SELECT count(*) FROM tasker_core.step_state_enable()" >/dev/null ;;
    esac
    ms=$(DB=tasker_bench_writes psql -qAt -c "SELECT tasker_bench.statesman_moves(tasker_bench.fresh_steps(1000, 1))")
    moves="$moves$mode $ms
"
  done
done
DB=tasker_bench_writes psql -qAt -c "SELECT count(*) FROM tasker_core.step_state_verify()" | grep -qx 0 \
  || { echo "step_state_verify reports differences after the write benchmark"; exit 1; }
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
none=$(echo "$moves" | awk '$1 == "none" { print $2 }' | median)
guards=$(echo "$moves" | awk '$1 == "guards" { print $2 }' | median)
state=$(echo "$moves" | awk '$1 == "state" { print $2 }' | median)
tx=$(awk -v a="$none" -v b="$guards" -v c="$state" 'BEGIN { printf "| 3,000 moves (1,000 steps x 3), median of 3 | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.2f | %.2f |", a, b, c, 3000000 / a, 3000000 / b, 3000000 / c, b / a, c / a }')
echo "$tx"

echo "== guard triggers: edge insert, trigger vs Rails' whole-table recursive cycle check"
# A database of its own, so the edges table starts empty and grows to each size.
command psql "host=$work/pg port=$port user=postgres dbname=postgres" -X -q -c "CREATE DATABASE tasker_bench_edges"
export DB=tasker_bench_edges
psql -q -f tests/fixtures/tasker_schema.sql -f tests/bench/guards_bench.sql -c "CREATE EXTENSION tasker_core"
psql -q -c "INSERT INTO tasker_task_namespaces (task_namespace_id, name, created_at, updated_at) VALUES (1, 'default', now(), now());
            INSERT INTO tasker_dependent_systems (dependent_system_id, name, created_at, updated_at) VALUES (1, 'sys', now(), now());
            INSERT INTO tasker_named_tasks (named_task_id, name, task_namespace_id, created_at, updated_at) VALUES (1, 'bench', 1, now(), now());
            INSERT INTO tasker_named_steps (named_step_id, dependent_system_id, name, created_at, updated_at) VALUES (1, 1, 'step', now(), now());"
edges=""
for size in 10000 100000 1000000; do
  have=$(psql -qAt -c "SELECT tasker_bench.grow_edges($size)")
  psql -q -c "VACUUM ANALYZE tasker_workflow_step_edges, tasker_workflow_steps"
  psql -qAt -c "SELECT count(*) FROM tasker_core.enable(functions => false)" >/dev/null
  trig=$(psql -qAt -c "SELECT round(tasker_bench.edge_inserts(200, false)::numeric, 3)")
  psql -qAt -c "SELECT count(*) FROM tasker_core.disable()" >/dev/null
  rails=$(psql -qAt -c "SELECT round(tasker_bench.edge_inserts(10, true)::numeric, 3)")
  plain=$(psql -qAt -c "SELECT round(tasker_bench.edge_inserts(200, false)::numeric, 3)")
  edges="$edges| $have | $plain | $trig | $rails | $(echo "$rails $trig" | awk '{printf "%.0f", $1 / $2}') |
"
  echo "  $have edges: no check $plain ms, trigger $trig ms, Rails-style check $rails ms per insert"
done

machine="$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB RAM, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), Linux $(uname -r), PostgreSQL $(psql -qAt -c 'SHOW server_version'), release build (LTO), shared_buffers 1GB, track_functions none (the default; the test clusters turn it on)"
cat > docs/benchmarks.md <<DOC
# Benchmarks

Produced by \`make bench\` (scripts/bench.sh); rerun it to reproduce. A benchmark, not a test.

- Machine: $machine.
- Database: $TASKS generated tasks of mixed shapes (2-15 steps; chains, diamonds, trees, random DAGs, fan-in/out), one task of $BIG steps, a 13-layer width-3 lattice; $steps steps in all.
- Method: server-side time of one statement (per-task workloads call the function once per task through a LATERAL join), native (\`tasker_core\`, reading the derived step state) and the reference SQL (\`tests/fixtures/reference_functions.sql\`, the faithful join-and-group-by version from the spec) rotating in one session, median of $ROUNDS rounds. A third column runs the native functions with the step state switched off for the statement (their direct index reads of the Tasker tables).
- Floor: a plain indexed read of the same step rows, \`count(s.updated_at)\` over \`LATERAL (SELECT * FROM tasker_workflow_steps s WHERE s.task_id = x)\`: PostgreSQL fetches every step row and reads it through its last column. The last column, \`count(*)\` over the same lookup, is what the floor looked like before: PostgreSQL answers it with an index-only scan of the covering (task_id, workflow_step_id) index and never reads a row, so it is not a read of the step rows.
- The step state is enabled before the data is generated, so its triggers kept it up to date through every write; \`step_state_verify()\` found no difference before the run. Its rows were updated inside the one bulk-load transaction, where few updates can be HOT, so they lie out of task order on about twice as many pages as a freshly built copy: the layout least favourable to the native reads.
- Batches (\`tasker_core.batch_scan = auto\`, the default): the batch of all tasks asks for more than half of the tasks, so it reads the step state in one sequential pass; the batch of every tenth task reads it by index (docs/step_state.md, "How a batch reads it"). The floor of the batches is the planner's plan for \`count(s.updated_at) ... WHERE s.task_id = ANY(...)\`.
- Run: $(date -u +%Y-%m-%d), code at $rev.

$md

The SQL reference above computes dependency levels with de-duplicated (step, level) pairs.
Rails' original function follows every path instead (exponential on diamonds). Against that
original algorithm (\`tasker_bench.levels_path_enumeration\`), on the lattice:

| workload | native ms | original algorithm ms | speed-up | rows that differ |
|---|---|---|---|---|
$lattice_md

Tasks of growing size (one call each, median of 5 rounds, native and SQL alternating; cost per step + edge for native):

| steps | edges | native ms | SQL ms | native µs per (step + edge) |
|---|---|---|---|---|
$sizes
End to end (pgbench, 1 client, prepared statements, 10 s, a random one of the 5,000 tasks per call):

| implementation | transactions/s | average latency ms |
|---|---|---|
$e2e
Growth: readiness per call over the same 5,000 tasks while filler tasks (3-step chains) grow
the tables (after a CHECKPOINT; median of 7 rounds, native and SQL alternating):

| tasks in table | steps in table | native µs per call | SQL µs per call |
|---|---|---|---|
$growth
## Write cost: guard triggers and the step state

Statesman's write path (UPDATE the old \`most_recent\`, INSERT the new row with sort_key + 10),
one PL/pgSQL loop per run, each step moved (none) -> pending -> in_progress -> complete: with no
triggers, with the five guard triggers, and with the guards plus the step state's maintenance
triggers, rotating.

| workload | ms, no triggers | ms, guards | ms, guards + step state | moves/s, none | moves/s, guards | moves/s, guards + step state | cost, guards | cost, guards + step state |
|---|---|---|---|---|---|---|---|---|
$tx

Adding one edge (the last link of a 10-step chain) in an edges table of growing size: no
check at all, the trigger (breadth-first search over the task's edges by index), and the
equivalent of Rails' check (a recursive query over the whole edges table, run before a plain
insert; \`tasker_bench.rails_cycle_check\` in tests/bench/guards_bench.sql). Mean ms per insert
(200 inserts; 10 for the Rails-style check).

| edges in table | no check ms | trigger ms | Rails-style check ms | Rails-style / trigger |
|---|---|---|---|---|
$edges
DOC
echo "written to docs/benchmarks.md"
