#!/usr/bin/env bash
# make bench: native tasker_core against Rails' own functions, side by side in one server
# session (rotating over several rounds), on a generated database of the Tasker schema as Rails
# ships it, on every tested PostgreSQL major; the code before issue 12 measured the same way;
# the medians and ratios written to docs/benchmarks.md. A benchmark, not a test.
#   MAJORS="15"             majors to measure (default: every tested one, scripts/pg.sh majors)
#   BENCH_BEFORE=<rev>      the code to compare with (default baa5a21, 0.3.0; "none" skips it)
#   TASKER_ENGINE=<dir>     a checkout or git directory of jcoletaylor/tasker: Rails' functions
#                           are taken from its spec/dummy/db/structure.sql (default: the mirror
#                           /work/.mirror/jcoletaylor+tasker/repo when present, else
#                           tests/fixtures/reference_functions.sql, the same functions row for row)
#   BENCH_TASKS, BENCH_ROUNDS, BENCH_BIG_STEPS   data size and rounds (5000, 11, 1000)
#   BENCH_EXTRAS=0          skips the first major's extra sections (sizes, pgbench, growth, writes)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
TASKS=${BENCH_TASKS:-5000}; ROUNDS=${BENCH_ROUNDS:-11}; BIG=${BENCH_BIG_STEPS:-1000}
BEFORE=${BENCH_BEFORE:-baa5a21}
ENGINE=${TASKER_ENGINE:-/work/.mirror/jcoletaylor+tasker/repo}
scripts/setup.sh
MAJORS=${MAJORS:-$(scripts/pg.sh majors)}
# The code measured: the tree as it is built here (edits made while the benchmark runs do not count).
rev=$(git -c core.fileMode=false describe --always --dirty --exclude '*' 2>/dev/null || echo unknown)
work=$(mktemp -d /tmp/tasker_core_bench.XXXXXX); chmod 755 "$work"; chown postgres: "$work"
clusters=()
cleanup() {
  for c in "${clusters[@]}"; do PGBIN="${c%%|*}" scripts/cluster.sh stop "${c##*|}" || true; done
  [ -d "$work/before/src" ] && git worktree remove --force "$work/before/src" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
log() { echo "$@" >&2; }
num() { awk -v x="$1" 'BEGIN { if (x == "") print ""; else printf "%.2f", x }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print ""; else printf "%.1fx", a / b }'; }
per_call() { awk -v ms="$1" -v n="$2" 'BEGIN { if (ms == "") print ""; else printf "%.1f", 1000 * ms / n }'; }

# Rails' nine functions (the six read functions and the three analytics ones) and its view, in
# schema public as in a Rails database (they call one another unqualified).
rails_sql=$work/rails_functions.sql
rails_view_sql=$work/rails_view.sql
structure=""
if [ -d "$ENGINE" ]; then
  if git --git-dir="$ENGINE" rev-parse HEAD >/dev/null 2>&1; then
    structure=$(git --git-dir="$ENGINE" show HEAD:spec/dummy/db/structure.sql 2>/dev/null || true)
    engine_rev=$(git --git-dir="$ENGINE" rev-parse --short HEAD)
  elif [ -f "$ENGINE/spec/dummy/db/structure.sql" ]; then
    structure=$(cat "$ENGINE/spec/dummy/db/structure.sql")
    engine_rev=$(git -C "$ENGINE" rev-parse --short HEAD 2>/dev/null || echo "a checkout")
  fi
fi
if [ -n "$structure" ]; then
  echo "$structure" | awk '
    /^CREATE FUNCTION public\.(get_step_readiness_status|get_step_readiness_status_batch|get_task_execution_context|get_task_execution_contexts_batch|calculate_dependency_levels|get_system_health_counts_v01|get_analytics_metrics_v01|get_slowest_steps_v01|get_slowest_tasks_v01)\(/ {
      on = 1 }
    on { print }
    on && /^\$\$;$/ { on = 0; print "" }' >"$rails_sql"
  [ "$(grep -c '^CREATE FUNCTION public\.' "$rails_sql")" = 9 ] || { echo "bench: did not find Rails' nine functions in $ENGINE" >&2; exit 1; }
  echo "$structure" | awk '/^CREATE VIEW public\.tasker_step_dag_relationships AS/ { on = 1 } on { print } on && /;$/ { on = 0 }' >"$rails_view_sql"
  grep -q '^CREATE VIEW public\.tasker_step_dag_relationships AS' "$rails_view_sql" || { echo "bench: did not find Rails' view in $ENGINE" >&2; exit 1; }
  rails_from="the engine's own definitions, as its spec/dummy/db/structure.sql creates them (jcoletaylor/tasker at $engine_rev)"
else
  cat tests/fixtures/reference_functions.sql tests/fixtures/reference_analytics.sql >"$rails_sql"
  cp tests/fixtures/reference_view.sql "$rails_view_sql"
  rails_from="tests/fixtures/reference_functions.sql (no engine checkout found: set TASKER_ENGINE); row for row the engine's functions"
fi

# Lines and unsafe counts of src/pg at a revision (the #[pg_test]s of src/pg/tests.rs left out).
code_size() {
  local r=$1 lines=0 blocks=0 fns=0 f text files
  if [ "$r" = worktree ]; then files=$(find src/pg -name '*.rs' | sort); else files=$(git ls-tree -r --name-only "$r" src/pg); fi
  for f in $(echo "$files" | grep '\.rs$' | grep -v '/tests\.rs$'); do
    if [ "$r" = worktree ]; then text=$(cat "$f"); else text=$(git show "$r:$f"); fi
    lines=$((lines + $(printf '%s\n' "$text" | wc -l)))
    blocks=$((blocks + $(printf '%s\n' "$text" | grep -c 'unsafe {' || true)))
    fns=$((fns + $(printf '%s\n' "$text" | grep -cE 'unsafe (extern "C[^"]*" )?fn' || true)))
  done
  echo "$lines $blocks $fns"
}

# A database DB on cluster CONN: the fixture, the generator, Rails' functions, the extension,
# the step state enabled before any row exists (its triggers follow every write), $TASKS tasks
# written in transactions of 25 tasks (as an application writes: short transactions, so
# PostgreSQL can prune old row versions as it goes), one task of $BIG steps, a 13x3 lattice.
# EXTRA is SQL run before CREATE EXTENSION.
make_db() {
  local conn=$1 db=$2 extra=$3
  psql_ "$conn" postgres -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  psql_ "$conn" "$db" -q -f tests/fixtures/tasker_schema.sql -f tests/fixtures/generator.sql -f tests/bench/bench.sql \
        -f "$rails_sql" -f "$rails_view_sql"
  [ -n "$extra" ] && psql_ "$conn" "$db" -qc "$extra"
  psql_ "$conn" "$db" -qAt -c "CREATE EXTENSION tasker_core" -c "SELECT count(*) FROM tasker_core.step_state_enable()" >/dev/null
  psql_ "$conn" "$db" -q -c "CALL tasker_bench.generate_committed($TASKS, 25, (now() AT TIME ZONE 'UTC'))"
  psql_ "$conn" "$db" -qAt -c "SELECT tasker_gen.generate(0.75, 1, $BIG, $BIG, anchor => (now() AT TIME ZONE 'UTC'))" >/dev/null
  psql_ "$conn" "$db" -qAt -c "SELECT tasker_bench.add_lattice(13, 3)" >/dev/null
  psql_ "$conn" "$db" -q -c "VACUUM ANALYZE"
  local exact; exact=$(psql_ "$conn" "$db" -qAt -c "SELECT count(*) FROM tasker_core.step_state_verify()")
  [ "$exact" = 0 ] || { echo "bench: step_state_verify reports $exact rows in $db: the step state is not exact" >&2; exit 1; }
}
psql_() { local conn=$1 db=$2; shift 2; command psql "$conn dbname=$db" -X -v ON_ERROR_STOP=1 "$@"; }

# The workloads of tasker_bench.run as rows "workload|calls|native|off|rails|floor|pg_former".
run_workloads() {
  local conn=$1 db=$2
  local big lattice
  big=$(psql_ "$conn" "$db" -qAt -c "SELECT task_id FROM tasker_workflow_steps GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")
  lattice=$(psql_ "$conn" "$db" -qAt -c "SELECT max(task_id) FROM tasker_tasks")
  psql_ "$conn" "$db" -qAt -F '|' -c "SET TimeZone = 'UTC'" -c "SELECT workload, calls, native_ms, off_ms, rails_ms, floor_ms, pg_former_ms
                                       FROM tasker_bench.run($ROUNDS, $big, $lattice)" | grep '|'
}

# The first major only: tasks of growing size, pgbench end to end, growth of the tables, and the
# write cost of the guards and the step state. Markdown on stdout.
extras() {
  local conn=$1 bindir=$2 db=tasker_bench t e n row sizes="" e2e="" growth="" dag="" impl out tps lat ids total have
  log "== tasks of 100, 1,000 and 10,000 steps"
  for n in 100 1000 10000; do
    t=$(psql_ "$conn" $db -qAt -c "SELECT tasker_gen.generate(0.3, 1, $n, $n, anchor => (now() AT TIME ZONE 'UTC'))" >/dev/null; psql_ "$conn" $db -qAt -c "SELECT max(task_id) FROM tasker_tasks")
    e=$(psql_ "$conn" $db -qAt -c "SELECT count(*) FROM tasker_workflow_step_edges e JOIN tasker_workflow_steps s ON s.workflow_step_id = e.to_step_id WHERE s.task_id = $t")
    psql_ "$conn" $db -q -c "CHECKPOINT"
    row=$(psql_ "$conn" $db -qAt -F ' ' -c "SELECT round((native_us / 1000)::numeric, 3), round((reference_us / 1000)::numeric, 3)
                                             FROM tasker_bench.per_call_pair_us(ARRAY[$t]::bigint[], 5)")
    set -- $row
    sizes="$sizes| $n | $e | $1 | $2 | $(ratio "$2" "$1") | $(awk -v a="$1" -v n="$n" -v e="$e" 'BEGIN { printf "%.2f", 1000 * a / (n + e) }') |
"
  done
  log "== end to end with pgbench"
  local ids_max; ids_max=$(psql_ "$conn" $db -qAt -c "SELECT max(task_id) FROM tasker_tasks WHERE task_id <= $TASKS")
  for impl in tasker_core public; do
    printf '\\set t random(1, %s)\nSELECT * FROM %s.get_step_readiness_status(:t);\n' "$ids_max" "$impl" >"$work/pgbench_$impl.sql"
    out=$("$bindir/pgbench" "$conn dbname=$db" -n -M prepared -c 1 -T 10 -f "$work/pgbench_$impl.sql" 2>&1)
    tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
    lat=$(echo "$out" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p')
    e2e="$e2e| $impl | $tps | $lat |
"
  done
  log "== growth"
  ids=$(psql_ "$conn" $db -qAt -c "SELECT array_agg(task_id ORDER BY task_id)::text FROM tasker_tasks WHERE task_id <= $TASKS")
  for total in $TASKS 50000 500000; do
    have=$(psql_ "$conn" $db -qAt -c "SELECT count(*) FROM tasker_tasks")
    [ "$have" -lt "$total" ] && psql_ "$conn" $db -qAt -c "SELECT tasker_bench.add_filler($total - $have)" >/dev/null && psql_ "$conn" $db -q -c "VACUUM ANALYZE"
    psql_ "$conn" $db -q -c "CHECKPOINT"
    row=$(psql_ "$conn" $db -qAt -F ' ' -c "SELECT (SELECT count(*) FROM tasker_tasks), (SELECT count(*) FROM tasker_workflow_steps),
                                                   round(p.native_us::numeric, 1), round(p.reference_us::numeric, 1)
                                              FROM tasker_bench.per_call_pair_us('$ids', 7) p")
    set -- $row
    growth="$growth| $1 | $2 | $3 | $4 |
"
    # The view: the same 100 steps and 100 tasks of the first $TASKS looked up at every size.
    local rr wr
    rr=$([ "$total" -ge 500000 ] && echo 1 || ([ "$total" -ge 50000 ] && echo 3 || echo 5))
    # One warm-up pass of the native lookups first: right after the growth and its VACUUM the
    # first pass reads cold pages (measured by hand at 500,000 tasks: 288 us cold, 56.5 warm).
    row=$(psql_ "$conn" $db -qAt -F ' ' -c "SELECT count(*) FROM tasker_core.enable(functions => false, triggers => false)" -c "
      WITH s AS (SELECT array_agg(workflow_step_id) a FROM (SELECT workflow_step_id FROM tasker_workflow_steps WHERE task_id <= $TASKS ORDER BY md5(workflow_step_id::text) LIMIT 100) x),
           t AS (SELECT array_agg(task_id) a FROM (SELECT task_id FROM tasker_tasks WHERE task_id <= $TASKS ORDER BY md5(task_id::text) LIMIT 100) x)
      SELECT tasker_bench.dag_lookup_us('native', false, s.a), tasker_bench.dag_lookup_us('native', true, t.a) FROM s, t" -c "
      WITH s AS (SELECT array_agg(workflow_step_id) a FROM (SELECT workflow_step_id FROM tasker_workflow_steps WHERE task_id <= $TASKS ORDER BY md5(workflow_step_id::text) LIMIT 100) x),
           t AS (SELECT array_agg(task_id) a FROM (SELECT task_id FROM tasker_tasks WHERE task_id <= $TASKS ORDER BY md5(task_id::text) LIMIT 100) x)
      SELECT round(tasker_bench.dag_lookup_us('native', false, s.a)::numeric, 1), round(tasker_bench.dag_lookup_us('rails', false, s.a[1:$rr])::numeric, 1),
             round(tasker_bench.dag_lookup_us('native', true, t.a)::numeric, 1), round(tasker_bench.dag_lookup_us('rails', true, t.a[1:$rr])::numeric, 1),
             round(tasker_bench.dag_whole_ms('native')::numeric, 1)
        FROM s, t" | tail -1)
    set -- $row
    wr=$([ "$total" -ge 500000 ] && echo "" || psql_ "$conn" $db -qAt -c "SELECT round(tasker_bench.dag_whole_ms('rails')::numeric, 1)")
    dag="$dag| $(psql_ "$conn" $db -qAt -c "SELECT count(*) FROM tasker_tasks") | $(psql_ "$conn" $db -qAt -c "SELECT count(*) FROM tasker_workflow_steps") | $1 | $2 | $(ratio "$2" "$1") | $3 | $4 | $(ratio "$4" "$3") | $5 | ${wr:-not measured} | $(ratio "$wr" "$5") |
"
  done
  # A database for the write benchmarks: the Tasker schema, the bench helpers, the extension and
  # one namespace, system, named task and named step.
  write_db() {
    psql_ "$conn" postgres -q -c "CREATE DATABASE $1"
    psql_ "$conn" $1 -q -f tests/fixtures/tasker_schema.sql -f tests/bench/guards_bench.sql -c "CREATE EXTENSION tasker_core" \
      -c "INSERT INTO tasker_task_namespaces (task_namespace_id, name, created_at, updated_at) VALUES (1, 'default', now(), now());
          INSERT INTO tasker_dependent_systems (dependent_system_id, name, created_at, updated_at) VALUES (1, 'sys', now(), now());
          INSERT INTO tasker_named_tasks (named_task_id, name, task_namespace_id, created_at, updated_at) VALUES (1, 'bench', 1, now(), now());
          INSERT INTO tasker_named_steps (named_step_id, dependent_system_id, name, created_at, updated_at) VALUES (1, 1, 'step', now(), now());"
  }
  log "== write cost"
  local w=tasker_bench_writes moves="" mode round ids
  write_db $w
  for round in 1 2 3; do
    for mode in none guards state; do
      case $mode in
        none) psql_ "$conn" $w -qAt -c "SELECT count(*) FROM tasker_core.disable()" -c "SELECT count(*) FROM tasker_core.step_state_disable()" >/dev/null ;;
        guards) psql_ "$conn" $w -qAt -c "SELECT count(*) FROM tasker_core.enable(functions => false)" >/dev/null ;;
        state) psql_ "$conn" $w -qAt -c "SELECT count(*) FROM tasker_core.step_state_enable()" >/dev/null ;;
      esac
      ids=$(psql_ "$conn" $w -qAt -c "SELECT tasker_bench.fresh_steps(1000, 1)")
      moves="$moves$mode $(psql_ "$conn" $w -qAt -c "CALL tasker_bench.statesman_moves('$ids')")
"
    done
  done
  [ "$(psql_ "$conn" $w -qAt -c "SELECT count(*) FROM tasker_core.step_state_verify()")" = 0 ] \
    || { echo "bench: step_state_verify reports differences after the write benchmark" >&2; exit 1; }
  median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
  local none guards state
  none=$(echo "$moves" | awk '$1 == "none" { print $2 }' | median)
  guards=$(echo "$moves" | awk '$1 == "guards" { print $2 }' | median)
  state=$(echo "$moves" | awk '$1 == "state" { print $2 }' | median)
  local tx; tx=$(awk -v a="$none" -v b="$guards" -v c="$state" 'BEGIN { printf "| 3,000 moves (1,000 steps x 3), median of 3 | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.2f | %.2f |", a, b, c, 3000000 / a, 3000000 / b, 3000000 / c, b / a, c / a }')
  log "== edge inserts"
  local g=tasker_bench_edges edges="" size trig rails plain
  write_db $g
  for size in 10000 100000 1000000; do
    have=$(psql_ "$conn" $g -qAt -c "SELECT tasker_bench.grow_edges($size)")
    psql_ "$conn" $g -q -c "VACUUM ANALYZE tasker_workflow_step_edges, tasker_workflow_steps"
    psql_ "$conn" $g -qAt -c "SELECT count(*) FROM tasker_core.enable(functions => false)" >/dev/null
    trig=$(psql_ "$conn" $g -qAt -c "SELECT round(tasker_bench.edge_inserts(200, false)::numeric, 3)")
    psql_ "$conn" $g -qAt -c "SELECT count(*) FROM tasker_core.disable()" >/dev/null
    rails=$(psql_ "$conn" $g -qAt -c "SELECT round(tasker_bench.edge_inserts(10, true)::numeric, 3)")
    plain=$(psql_ "$conn" $g -qAt -c "SELECT round(tasker_bench.edge_inserts(200, false)::numeric, 3)")
    edges="$edges| $have | $plain | $trig | $rails | $(ratio "$rails" "$trig") |
"
  done
  psql_ "$conn" postgres -q -c "DROP DATABASE $w" -c "DROP DATABASE $g"
  log "== orchestration from Ruby"
  local o=tasker_bench_orch orch="" wl n native engine sn se
  psql_ "$conn" postgres -q -c "CREATE DATABASE $o"
  psql_ "$conn" $o -q -f tests/fixtures/tasker_schema.sql -f "$rails_sql" -c "CREATE EXTENSION tasker_core" >/dev/null
  psql_ "$conn" $o -qAt -c "SELECT count(*) FROM tasker_core.enable(triggers => false)" -c "SELECT count(*) FROM tasker_core.step_state_enable()" >/dev/null
  while IFS='|' read -r wl n native engine sn se; do
    orch="$orch| $wl | $n | $native | $engine | $(ratio "$engine" "$native") | $sn | $se |
"
  done < <(PGHOST="$dir" PGPORT="$port" PGUSER=postgres PGDATABASE=$o ruby tests/bench/orchestration.rb "${BENCH_ORCH_TASKS:-200}")
  local drain="" way workers ntasks done secs rate doubles errs
  while IFS='|' read -r way workers ntasks done secs rate doubles errs; do
    drain="$drain| $way | $workers | $ntasks | $done | $secs | $rate | $doubles | $errs |
"
  done < <(PGHOST="$dir" PGPORT="$port" PGUSER=postgres PGDATABASE=$o ruby tests/bench/drain.rb 8 "${BENCH_DRAIN_TASKS:-1000}")
  psql_ "$conn" postgres -q -c "DROP DATABASE $o"
  log "== lifecycle events: write cost per layer, the pipeline"
  local ev_layers ev_layers_tx ev_sbs ev_pipeline
  ev_layers=$(PATH="$bindir:$PATH" tests/bench/events_write.sh "$conn dbname=$db" 4 15 | sed 1d)
  ev_layers_tx=$(PATH="$bindir:$PATH" SHAPE=transaction tests/bench/events_write.sh "$conn dbname=$db" 4 15 | sed 1d)
  # Each layer and plain at the same time, on two copies of the database (events_write.sh
  # left tasker_core disabled in it): both sides share the machine's drift.
  ev_sbs=$(PATH="$bindir:$PATH" ROUNDS="${BENCH_SBS_ROUNDS:-3}" tests/bench/write_side_by_side.sh "$conn" "$db" 2 10 | sed 1d)
  ev_pipeline=$(PATH="$bindir:$PATH" tests/bench/events_pipeline.sh "$conn dbname=$db" "${BENCH_PIPELINE_SECONDS:-60}" 2 | sed 1d)
  # The same workload counted in instructions (callgrind; deterministic where moves/s are not):
  # PostgreSQL 15 only, where valgrind is installed.
  local ev_instr="(not measured: needs valgrind and PostgreSQL 15)"
  if command -v valgrind >/dev/null && "$bindir/postgres" --version | grep -q ' 15\.'; then
    ev_instr=$(PGBIN="$bindir" tests/bench/write_instructions.sh "$TASKS")
  fi
  psql_ "$conn" "$db" -qAt -c "SELECT count(*) FROM tasker_core.disable()" -c "SELECT count(*) FROM tasker_core.step_state_enable()" >/dev/null
  cat <<MD
### Tasks of growing size

One call each, median of 5 rounds, native and Rails alternating:

| steps | edges | native ms | Rails ms | speed-up | native µs per (step + edge) |
|---|---|---|---|---|---|
$sizes
### End to end

pgbench, 1 client, prepared statements, 10 s, readiness of a random one of the $TASKS tasks per call:

| schema of the function (tasker_core: native, public: Rails) | transactions/s | average latency ms |
|---|---|---|
$e2e
### Growth

Readiness per call over the same $TASKS tasks while filler tasks (3-step chains) grow the tables
(after a CHECKPOINT; median of 7 rounds, native and Rails alternating):

| tasks in table | steps in table | native µs per call | Rails µs per call |
|---|---|---|---|
$growth
### The view tasker_step_dag_relationships

Rails' view (as its structure.sql defines it, kept by \`enable()\` as
\`tasker_step_dag_relationships_before_tasker_core\`) against the native view, on the same
database while filler tasks (3-step chains) grow it: one statement per lookup, every column
read (tasker_bench.dag_lookup_us), the same 100 steps and 100 tasks of the first $TASKS at
every size, after one warm-up pass of the native lookups (Rails: the first 5, 3 and 1 of them,
it takes seconds); median µs per lookup. The
whole view read once, ms (Rails' not measured at 500,000 tasks).

| tasks | steps | native µs, one step | Rails µs, one step | speed-up | native µs, one task | Rails µs, one task | speed-up | native ms, whole view | Rails ms, whole view | speed-up |
|---|---|---|---|---|---|---|---|---|---|---|
$dag
### Write cost: guard triggers and the step state

Statesman's write path (UPDATE the old \`most_recent\`, INSERT the new row with sort_key + 10), one
PL/pgSQL procedure per run, each step moved (none) -> pending -> in_progress -> complete, each
move committed on its own (the step state refreshes at commit): with no
triggers, with the guard triggers, and with the guards plus the step state's maintenance
triggers, rotating.

| workload | ms, no triggers | ms, guards | ms, guards + step state | moves/s, none | moves/s, guards | moves/s, guards + step state | cost, guards | cost, guards + step state |
|---|---|---|---|---|---|---|---|---|
$tx

Adding one edge (the last link of a 10-step chain) in an edges table of growing size: no check
at all, the trigger (a search over the task's edges by index), and the equivalent of Rails'
check (a recursive query over the whole edges table before a plain insert;
\`tasker_bench.rails_cycle_check\` in tests/bench/guards_bench.sql). Mean ms per insert (200
inserts; 10 for the Rails-style check).

| edges in table | no check ms | trigger ms | Rails-style check ms | Rails-style / trigger |
|---|---|---|---|---|
$edges
### Orchestration from Ruby

ActiveRecord 6.1 over a unix socket, one client (tests/bench/orchestration.rb): the native call
against the engine's statement sequence for the same work, reproduced from its source as
orchestration.md A.4, B.3 and C.7 count it (get_sequence, discovery, the executor's checks,
Statesman's reads, guard, validations and writes; TaskFinalizer's three context reads). Event
payload queries are left out on both sides. The read functions are native on both sides
(\`enable(triggers => false)\`, the step state on). Tasks of 10 steps (3 ready roots); median µs
per task, the two sides alternating:

| workload | tasks | native µs | engine's sequence µs | speed-up | statements per task, native | engine's |
|---|---|---|---|---|---|---|
$orch
Eight worker processes draining the same tasks of 10 steps (tests/bench/drain.rb; each worker
walks the whole task list from its own starting point): native claiming and recording, against
the engine's unlocked sequence (readiness, a "still pending?" check, Statesman's writes). A step
executed by two workers is a double execution; errors are the engine's failure path taken after
a lost race (the step written to \`error\`, or a completion rolled back).

| way | workers | tasks | steps completed | seconds | steps/s | double executions | errors |
|---|---|---|---|---|---|---|---|
$drain
### Lifecycle events

Write cost of each layer for single-row writers (tests/bench/events_write.sh: pgbench, 4
clients, 15 s per layer; a new step moved pending -> in_progress -> complete as Statesman
writes each move). Each move its own transaction:

\`\`\`
$ev_layers
\`\`\`

The step's three moves in one transaction (\`SHAPE=transaction\`):

\`\`\`
$ev_layers_tx
\`\`\`

The same transactions with each layer and plain written at the same time, 2 clients each, on
two copies of the database (tests/bench/write_side_by_side.sh; median of the rounds' ratios):

\`\`\`
$ev_sbs
\`\`\`

The same transactions counted in CPU instructions (tests/bench/write_instructions.sh:
callgrind, a single-user backend, 300 minus 100 transactions; the same count on every run):

\`\`\`
$ev_instr
\`\`\`

The pipeline (tests/bench/events_pipeline.sh: guards, step state and events on; 2 pgbench
writers for ${BENCH_PIPELINE_SECONDS:-60} s; a Ruby listener, tests/bench/events_drain.rb,
LISTENs and drains with events_since):

\`\`\`
$ev_pipeline
\`\`\`
MD
}

# One major: the current code, then the code before.
results=$work/results; : >"$results"
port=$((57000 + (RANDOM % 90) * 10))
for v in $MAJORS; do
  pg_config=$(scripts/pg.sh "$v" path pg_config); bindir=$(dirname "$pg_config")
  export PATH="$bindir:$PATH"
  dir=$work/pg$v; port=$((port + 1)); conn="host=$dir port=$port user=postgres"
  log "==== PostgreSQL $v: installing the current code (release build)"
  cargo pgrx install --release --pg-config "$pg_config" >"$work/install$v.log" 2>&1 || { tail -30 "$work/install$v.log"; exit 1; }
  PGBIN=$bindir PGOPTS="-c shared_buffers=1GB -c track_functions=none" scripts/cluster.sh start "$dir" "$port"
  clusters+=("$bindir|$dir")
  log "== generating the database ($TASKS tasks, one of $BIG steps, a 13x3 lattice)"
  make_db "$conn" tasker_bench ""
  steps=$(psql_ "$conn" tasker_bench -qAt -c "SELECT count(*) FROM tasker_workflow_steps")
  log "== $ROUNDS rounds"
  run_workloads "$conn" tasker_bench | sed "s/^/after|$v|/" >>"$results"
  lat=$(psql_ "$conn" tasker_bench -qAt -F '|' -c "SELECT round(tasker_bench.time_ms(format('SELECT count(*) FROM tasker_core.calculate_dependency_levels(%s)', max(task_id)))::numeric, 3),
                                                      round(tasker_bench.time_ms(format('SELECT count(*) FROM tasker_bench.levels_path_enumeration(%s)', max(task_id)))::numeric, 1)
                                                 FROM tasker_tasks")
  echo "lattice|$v|$lat" >>"$results"
  if [ "$v" = "$(echo $MAJORS | awk '{print $1}')" ]; then
    echo "steps|$steps" >>"$results"
    [ "${BENCH_EXTRAS:-1}" = 0 ] || extras "$conn" "$bindir" >"$work/extras.md"
  fi
  echo "server|$v|$(psql_ "$conn" postgres -qAt -c 'SHOW server_version')" >>"$results"
  psql_ "$conn" postgres -qc "DROP DATABASE tasker_bench"

  if [ "$BEFORE" != none ]; then
    log "== the code before ($BEFORE): build and install"
    if [ ! -d "$work/before/src" ]; then
      mkdir -p "$work/before"
      git worktree add --detach "$work/before/src" "$BEFORE" >/dev/null 2>&1
    fi
    if (cd "$work/before/src" && CARGO_TARGET_DIR="$root/target/bench-before" cargo pgrx install --release --pg-config "$pg_config") >"$work/before$v.log" 2>&1; then
      # 0.3.0 recognized only a unique index on (owner) WHERE most_recent: the index it wants.
      if make_db "$conn" tasker_bench_before \
           "CREATE UNIQUE INDEX tasker_bench_step_most_recent ON tasker_workflow_step_transitions (workflow_step_id) WHERE most_recent;
            CREATE UNIQUE INDEX tasker_bench_task_most_recent ON tasker_task_transitions (task_id) WHERE most_recent;" 2>"$work/before_db$v.log"; then
        run_workloads "$conn" tasker_bench_before 2>>"$work/before_db$v.log" | sed "s/^/before|$v|/" >>"$results" \
          || echo "before_failed|$v|$(grep -m1 ERROR "$work/before_db$v.log")" >>"$results"
      else
        echo "before_failed|$v|$(grep -m1 -E 'ERROR|bench:' "$work/before_db$v.log")" >>"$results"
      fi
      psql_ "$conn" postgres -qc "DROP DATABASE IF EXISTS tasker_bench_before"
    else
      echo "before_failed|$v|does not build: $(grep -m1 -E '^error' "$work/before$v.log")" >>"$results"
    fi
    # Put the current code back.
    cargo pgrx install --release --pg-config "$pg_config" >"$work/install$v.log" 2>&1 || { tail -30 "$work/install$v.log"; exit 1; }
  fi
  PGBIN=$bindir scripts/cluster.sh stop "$dir"
done
cp "$results" "$work/results.keep"

# The tables.
tables=""
for v in $MAJORS; do
  tables="$tables
### PostgreSQL $(grep "^server|$v|" "$results" | cut -d'|' -f3)

| workload | calls | native ms | µs per call | Rails ms | speed-up | native, step state off ms | its speed-up | floor ms | native / floor | with PostgreSQL's row former ms | the former saves |
|---|---|---|---|---|---|---|---|---|---|---|---|
"
  while IFS='|' read -r _ _ w calls native off rails floor pgf; do
    saves=$(awk -v a="$native" -v b="$pgf" 'BEGIN { if (b == "" || b == 0) print ""; else printf "%.0f%%", 100 * (b - a) / b }')
    tables="$tables| $w | $calls | $(num "$native") | $(per_call "$native" "$calls") | $(num "$rails") | $(ratio "$rails" "$native") | $(num "$off") | $(ratio "$rails" "$off") | $(num "$floor") | $(ratio "$native" "$floor") | $(num "$pgf") | $saves |
"
  done < <(grep "^after|$v|" "$results")
  if [ -z "$structure" ]; then
    # The reference SQL de-duplicates levels; Rails' own function enumerates every path.
    IFS='|' read -r _ _ lat_native lat_paths < <(grep "^lattice|$v|" "$results")
    tables="$tables
The 13x3 lattice against the path-enumerating algorithm of Rails' own function (tasker_bench.levels_path_enumeration, one run each): native $lat_native ms, path enumeration $lat_paths ms, $(ratio "$lat_paths" "$lat_native").
"
  fi
done

# Before and after, µs per call, side by side.
side="| workload |"; sep="|---|"
for v in $MAJORS; do side="$side before, PG $v | after, PG $v | before / after, PG $v |"; sep="$sep---|---|---|"; done
side="$side
$sep
"
while IFS='|' read -r _ v0 w calls _; do
  row="| $w |"
  for v in $MAJORS; do
    # (a workload the code before lacks, the analytics, has no "before" row)
    a=$(grep "^after|$v|$w|" "$results" | head -1 | cut -d'|' -f5 || true)
    b=$(grep "^before|$v|$w|" "$results" | head -1 | cut -d'|' -f5 || true)
    row="$row $(per_call "$b" "$calls") | $(per_call "$a" "$calls") | $(ratio "$b" "$a") |"
  done
  side="$side$row
"
done < <(grep "^after|$(echo $MAJORS | awk '{print $1}')|" "$results")
failed_before=$(grep '^before_failed|' "$results" | awk -F'|' '{ printf "- PostgreSQL %s: %s\n", $2, $3 }' || true)

read -r lines_before blocks_before fns_before < <(code_size "$BEFORE" 2>/dev/null || echo "? ? ?")
read -r lines_after blocks_after fns_after < <(code_size worktree)
machine="$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB RAM, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), Linux $(uname -r)"
steps=$(grep '^steps|' "$results" | cut -d'|' -f2)
cat > docs/benchmarks.md <<DOC
# Benchmarks

Produced by \`make bench\` (scripts/bench.sh); rerun it to reproduce. A benchmark, not a test:
it asserts nothing (the suites of \`make test\` do).

- Machine: $machine; each PostgreSQL a throwaway cluster with shared_buffers 1GB, fsync off,
  track_functions none; the extension a release build.
- Database: the Tasker schema as Rails ships it (tests/fixtures/tasker_schema.sql, the facts of
  the engine's structure.sql, indexes included); $TASKS generated tasks of mixed shapes (2-15
  steps; chains, diamonds, trees, random DAGs, fan-in/out), written in transactions of 25 tasks
  with the step state enabled before the first row (its triggers followed every write), one task
  of $BIG steps and a 13-layer width-3 lattice: $steps steps. \`step_state_verify()\` found no
  difference before each run.
- Rails: $rails_from, in schema public as in a Rails database.
- Method: server-side time of one statement (per-task workloads call the function once per task
  through a LATERAL join; session TimeZone UTC), median of $ROUNDS rounds, the implementations
  rotating which goes first. "Native" reads the derived step state; "step state off" is the
  same functions reading the Tasker tables with SQL (the step state marked not valid for the
  statement). "Floor": a plain indexed read of the same step rows (\`count(s.updated_at)\` over
  \`SELECT * FROM tasker_workflow_steps s WHERE s.task_id = x\`). "PostgreSQL's row former": the
  same native call with \`tasker_core.row_former = postgres\` (rows formed by
  \`tuplestore_putvalues\` instead of src/pg/former.rs, the one hand-written piece of internals,
  kept only while it saves 15% or more).
- Before: the code at $BEFORE (0.3.0), built and measured the same way on the same data, with
  the unique indexes on (owner) WHERE most_recent that it needed on this schema.
- Run: $(date -u +%Y-%m-%d), code at $rev.

## Native against Rails
$tables
## Before and after (µs per call; "before" is $BEFORE)

$side
${failed_before:+Where the code before could not be measured:
$failed_before
}
## On PostgreSQL $(echo $MAJORS | awk '{print $1}') only

$(cat "$work/extras.md" 2>/dev/null)

## The code

| | src/pg lines (without the #[pg_test]s) | unsafe blocks | unsafe fns |
|---|---|---|---|
| before ($BEFORE) | $lines_before | $blocks_before | $fns_before |
| after ($rev) | $lines_after | $blocks_after | $fns_after |

The unsafe blocks are concentrated where the pointers are: src/pg/access.rs (relations, scans,
slots) holds $(grep -c 'unsafe {' src/pg/access.rs), each with its SAFETY comment; no other module
touches a relation, scan or slot pointer.
DOC
echo "written to docs/benchmarks.md"
