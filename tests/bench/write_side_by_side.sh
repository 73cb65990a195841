#!/usr/bin/env bash
# What each write layer costs relative to plain tables, with both running at once: two copies
# of one database, plain tables in one and the layer in the other, each written by CLIENTS
# pgbench clients for SECONDS s at the same time, ROUNDS times per layer (layers:
# tests/bench/layers.sh). On this 2-core machine the speed of a 10-second run drifts by more
# than the differences measured (one build, one client, ran the whole stack at 611 and 916 us
# per move, minutes apart). Run side by side, both copies share the CPU and whatever slows it down, and
# the ratio of their rates approaches the ratio of their costs per transaction; it still
# spreads from round to round (1.53x to 2.35x for the whole stack of one build, 2026-11-29),
# so take several rounds. Prints per layer the median ratio, the spread of the rounds, and the
# rates of the last round. The workload is
# events_write.sh's SHAPE=transaction (tests/bench/step_writer.sql): per transaction a new step
# moved pending -> in_progress -> complete as Statesman writes each move.
# A benchmark, not a test: docs/benchmarks.md records its figures. Usage:
#   [ONLY="events"] [ROUNDS=N] tests/bench/write_side_by_side.sh CONNINFO TEMPLATE [CLIENTS] [SECONDS]
# CONNINFO names the server (its database is not used); TEMPLATE, a database with the Tasker
# tables, tasker_core (disabled) and some tasks (make bench's). The copies are dropped at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
conn=${1:?connection string}; template=${2:?template database}; clients=${3:-2}; seconds=${4:-10}
rounds=${ROUNDS:-3}
. "$here/layers.sh"
layers=${ONLY:-guards state events state_alone events_alone}
q() { local db=$1; shift; command psql "$conn dbname=$db" -X -q -At -v ON_ERROR_STOP=1 "$@"; }
work=$(mktemp -d)
trap 'q postgres -c "DROP DATABASE IF EXISTS tasker_sbs_plain" -c "DROP DATABASE IF EXISTS tasker_sbs_layer" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
read -r lo hi named < <(q "$template" -F ' ' -c "SELECT min(task_id), max(task_id), (SELECT min(named_step_id) FROM tasker_named_steps) FROM tasker_tasks")

# round LAYER: prints "plain_tps layer_tps" for one side-by-side run on fresh copies.
round() {
  local db
  for db in tasker_sbs_plain tasker_sbs_layer; do
    q postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db TEMPLATE \"$template\""
    q "$db" -c "SELECT count(*) FROM tasker_core.disable()" >/dev/null
  done
  q tasker_sbs_layer -c "${LAYER_SETUP[$1]}" >/dev/null
  for db in tasker_sbs_plain tasker_sbs_layer; do
    q "$db" -c "VACUUM ANALYZE tasker_workflow_step_transitions, tasker_workflow_steps"
  done
  q postgres -c "CHECKPOINT"
  for db in tasker_sbs_plain tasker_sbs_layer; do
    (cd "$work" && PGOPTIONS="-c client_min_messages=warning" pgbench -n -c "$clients" -j "$clients" -T "$seconds" \
        -D lo="$lo" -D hi="$hi" -D named="$named" -f "$here/step_writer.sql" "$conn dbname=$db" >"$work/$db.out" 2>&1) &
  done
  wait
  for db in tasker_sbs_plain tasker_sbs_layer; do
    grep -q '^tps = ' "$work/$db.out" || { cat "$work/$db.out" >&2; exit 1; }
  done
  echo "$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$work/tasker_sbs_plain.out") $(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$work/tasker_sbs_layer.out")"
}

echo "side by side with plain: $clients clients each, $seconds s, $rounds rounds per layer; tasks $lo..$hi"
for layer in $layers; do
  for ((r = 0; r < rounds; r++)); do round "$layer"; done >"$work/$layer"
  awk -v label="${LAYER_LABEL[$layer]}" "$AWK_MEDIAN"'
    { ratio[NR] = $1 / $2; p = $1; l = $2 }
    END {
      n = NR
      med = median(ratio, n)  # (sorts ratio: ratio[1] and ratio[n] are the extremes)
      printf "%-40s %5.2fx plain  (rounds %.2f-%.2fx; last: plain %.0f, layer %.0f moves/s)\n", label, med, ratio[1], ratio[n], 3 * p, 3 * l
    }' "$work/$layer"
done
