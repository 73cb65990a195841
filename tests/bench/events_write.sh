#!/usr/bin/env bash
# What each layer costs Rails-style single-row writers, side by side in one run: plain tables;
# + the guards; + the step state; + the events. A new step moved pending -> in_progress ->
# complete as Statesman writes each move: SHAPE=move (default) commits each move on its own
# (tests/bench/move_writer.sql), SHAPE=transaction moves the step in one transaction
# (tests/bench/step_writer.sql).
# CLIENTS pgbench clients for SECONDS s per layer; prints moves/s and the cost per move
# relative to plain. A benchmark, not a test: docs/benchmarks.md records its figures. Usage:
#   tests/bench/events_write.sh CONNINFO [CLIENTS] [SECONDS]
# CONNINFO names a database with the Tasker tables, tasker_core and some tasks (make bench's).
# It leaves tasker_core disabled (and the step state off) there.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
conn=${1:?connection string}; clients=${2:-4}; seconds=${3:-20}
case "${SHAPE:-move}" in
  move) script=move_writer.sql ;;
  transaction) script=step_writer.sql ;;
  *) echo "events_write: SHAPE is move or transaction, not ${SHAPE}" >&2; exit 2 ;;
esac
q() { command psql "$conn" -X -q -At -v ON_ERROR_STOP=1 "$@"; }
read -r lo hi named < <(q -F ' ' -c "SELECT min(task_id), max(task_id), (SELECT min(named_step_id) FROM tasker_named_steps) FROM tasker_tasks")
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

off() {
  q -c "SELECT count(*) FROM tasker_core.disable()" >/dev/null
  q -c "SELECT count(*) FROM tasker_core.step_state_disable()" >/dev/null 2>&1 || true
}
# layer LABEL SETUP: moves/s with SETUP applied on top of nothing.
plain=""
layer() {
  local label=$1 setup=$2 tps moves
  off
  [ -n "$setup" ] && q -c "$setup" >/dev/null
  q -c "CHECKPOINT" -c "VACUUM ANALYZE tasker_workflow_step_transitions, tasker_workflow_steps, tasker_core.events" >/dev/null
  (cd "$work" && PGOPTIONS="-c client_min_messages=warning" pgbench -n -c "$clients" -j "$clients" -T "$seconds" \
      -D lo="$lo" -D hi="$hi" -D named="$named" -f "$here/$script" "$conn" >"$work/pgbench.out" 2>&1) \
      || { cat "$work/pgbench.out"; exit 1; }
  tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$work/pgbench.out")
  moves=$(awk -v t="$tps" 'BEGIN { printf "%.0f", 3 * t }')
  [ -z "$plain" ] && plain=$moves
  awk -v l="$label" -v m="$moves" -v p="$plain" 'BEGIN { printf "%-40s %7d moves/s  %6.1f us per move  %5.2fx plain\n", l, m, 1e6 / m, p / m }'
}

echo "$clients clients, $seconds s per layer; tasks $lo..$hi; ${SHAPE:-move}"
layer "plain" ""
layer "+ guards" "SELECT count(*) FROM tasker_core.enable(functions => false, views => false)"
layer "+ guards + step state" "SELECT count(*) FROM tasker_core.enable(functions => false, views => false); SELECT count(*) FROM tasker_core.step_state_enable()"
layer "+ guards + step state + events" "SELECT count(*) FROM tasker_core.enable(functions => false, views => false, events => true); SELECT count(*) FROM tasker_core.step_state_enable()"
layer "step state alone" "SELECT count(*) FROM tasker_core.step_state_enable()"
layer "events alone" "SELECT count(*) FROM tasker_core.enable(functions => false, views => false, triggers => false, events => true)"
off
