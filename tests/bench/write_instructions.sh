#!/usr/bin/env bash
# What each write layer costs in CPU instructions, counted by callgrind: deterministic where
# tests/bench/events_write.sh's moves/s vary from run to run (and from machine to machine) by
# more than the differences it is after. The workload is events_write.sh's SHAPE=transaction
# (tests/bench/step_writer.sql): per transaction a new step, moved pending -> in_progress ->
# complete as Statesman writes each move. It runs in a single-user backend under
# `valgrind --tool=callgrind`, for 100 and then 300 transactions on fresh copies of one
# database; the difference over 200 is the cost of one transaction, without the backend's
# start and its first-call caches. Layers as events_write.sh has them.
# A benchmark, not a test: docs/benchmarks.md records its figures. Usage (as root, PostgreSQL 15):
#   [ONLY="plain events"] [KEEP=DIR] [SHAPE=transaction|move] tests/bench/write_instructions.sh [TASKS]
# (default 5000 tasks). SHAPE=move writes each move in its own transaction, as
# tests/bench/move_writer.sql (events_write.sh's default shape) does; counts are then per step.
# ONLY counts those layers only (the first is the base of the ratios); KEEP copies the
# callgrind files there (callgrind_annotate reads them).
# It starts and stops its own cluster in a temporary directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); root=$(cd "$here/../.." && pwd)
tasks=${1:-5000}
shape=${SHAPE:-transaction}
case "$shape" in transaction | move) ;; *) echo "write_instructions: SHAPE is transaction or move, not $shape" >&2; exit 2 ;; esac
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
command -v valgrind >/dev/null || { echo "write_instructions: valgrind is needed" >&2; exit 2; }
dir=$(mktemp -d /tmp/tasker_instr.XXXXXX); chown postgres: "$dir"
port=${PORT:-56591}
conn="host=$dir port=$port user=postgres"
cluster() { PGBIN=$PGBIN PGOPTS="-c autovacuum=off" "$root/scripts/cluster.sh" "$@"; }
trap 'cluster stop "$dir" || true; rm -rf "$dir"' EXIT
q() { local db=$1; shift; command psql "$conn dbname=$db" -X -q -At -v ON_ERROR_STOP=1 "$@"; }

cluster start "$dir" "$port"
q postgres -c "CREATE DATABASE instr_tpl"
q instr_tpl -f "$root/tests/fixtures/tasker_schema.sql" -f "$root/tests/fixtures/generator.sql" -f "$root/tests/bench/bench.sql" >/dev/null 2>&1
q instr_tpl -c "CREATE EXTENSION tasker_core"
q instr_tpl -c "CALL tasker_bench.generate_committed($tasks, 25, (now() AT TIME ZONE 'UTC'))"
q instr_tpl -c "VACUUM ANALYZE"
read -r last named < <(q instr_tpl -F ' ' -c "SELECT (SELECT last_value FROM tasker_workflow_steps_workflow_step_id_seq), (SELECT min(named_step_id) FROM tasker_named_steps)")
steps=$(q instr_tpl -c "SELECT count(*) FROM tasker_workflow_steps")
cluster stop "$dir"

# The workload with literal ids: on a fresh copy the new steps get last+1, last+2, ...
for n in 100 300; do
  awk -v n="$n" -v last="$last" -v named="$named" -v tasks="$tasks" -v shape="$shape" 'BEGIN {
    srand(7)
    for (i = 1; i <= n; i++) {
      s = last + i; t = 1 + int(rand() * tasks)
      if (shape == "transaction") print "BEGIN"
      printf "INSERT INTO tasker_workflow_steps (task_id, named_step_id, created_at, updated_at) VALUES (%d, %d, now(), now())\n", t, named
      split("pending in_progress complete", st, " ")
      for (k = 1; k <= 3; k++) {
        if (shape == "move" && k > 1) print "BEGIN"
        if (k > 1) printf "UPDATE tasker_workflow_step_transitions SET most_recent = false, updated_at = now() WHERE workflow_step_id = %d AND most_recent\n", s
        printf "INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, metadata, created_at, updated_at) VALUES (%d, '\''%s'\'', %d, true, '\''{}'\'', now(), now())\n", s, st[k], k
        if (shape == "move" && k > 1) print "COMMIT"
      }
      if (shape == "transaction") print "COMMIT"
    }
  }' >"$dir/work_$n.sql"
done

. "$here/layers.sh"
# count LAYER N: instructions of N transactions.
count() {
  local layer=$1 n=$2 out="$dir/callgrind.$1.$2"
  cluster start "$dir" "$port"
  q postgres -c "DROP DATABASE IF EXISTS instr" -c "CREATE DATABASE instr TEMPLATE instr_tpl"
  [ -n "${LAYER_SETUP[$layer]}" ] && q instr -c "${LAYER_SETUP[$layer]}" >/dev/null
  q instr -c "VACUUM ANALYZE" -c "CHECKPOINT"
  cluster stop "$dir"
  sudo -u postgres valgrind --tool=callgrind --callgrind-out-file="$out" \
    "$PGBIN/postgres" --single -D "$dir/data" -c autovacuum=off instr <"$dir/work_$n.sql" >"$dir/single.log" 2>&1
  if grep -q "ERROR" "$dir/single.log"; then grep -m3 "ERROR" "$dir/single.log" >&2; exit 1; fi
  sed -n 's/^totals: \([0-9]*\).*/\1/p' "$out"
}
if [ "$shape" = transaction ]; then
  echo "$tasks tasks, $steps steps; instructions per transaction (callgrind; a new step moved three times)"
else
  echo "$tasks tasks, $steps steps; instructions per step (callgrind; a new step moved three times, each move its own transaction as move_writer.sql writes it)"
fi
plain=""
for layer in ${ONLY:-${LAYERS[@]}}; do
  a=$(count "$layer" 100); b=$(count "$layer" 300)
  per=$(( (b - a) / 200 ))
  [ -z "$plain" ] && plain=$per
  awk -v l="${LAYER_LABEL[$layer]}" -v p="$per" -v base="$plain" \
    'BEGIN { printf "%-40s %10d instructions  %5.2fx plain  (+%d)\n", l, p, p / base, p - base }'
done
[ -n "${KEEP:-}" ] && mkdir -p "$KEEP" && cp "$dir"/callgrind.* "$KEEP/"
# Where the whole stack's extra instructions go: tasker_core's entry points (inclusive), per
# transaction, from the 300-transaction run of the full stack (first-call costs included, a few
# percent). The commit hook runs the step state's refresh, then records the events.
[ -f "$dir/callgrind.events.300" ] || exit 0
echo "where + guards + step state + events spends, per $([ "$shape" = move ] && echo step || echo transaction) (inclusive, over 300 of them):"
callgrind_annotate --inclusive=yes --threshold=100 "$dir/callgrind.events.300" 2>/dev/null |
  awk -v ts=300 '
    function grab(pat) { return ($0 ~ pat) }
    { v = $1; gsub(",", "", v) }
    grab("guard_step_transition_insert_wrapper") { g = v }
    grab("step_state_sync_wrapper") { s = v }
    grab("events_capture_wrapper") { e = v }
    grab("at_commit::at_transaction_end") { c = v }
    grab("step_state::deferred::apply") { d = v }
    END {
      printf "  %-58s %9d\n", "guard triggers (3 transition inserts)", g / ts
      printf "  %-58s %9d\n", "step state trigger (6 statements, noting)", s / ts
      printf "  %-58s %9d\n", "events trigger (3 inserts, noting)", e / ts
      printf "  %-58s %9d\n", "at commit: the step state refresh", d / ts
      printf "  %-58s %9d\n", "at commit: the events recorded (+ NOTIFY)", (c - d) / ts
    }'
