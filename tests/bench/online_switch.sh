#!/usr/bin/env bash
# How long Rails-style writers stall while the step state is switched on: the blocking
# step_state_enable() against CALL step_state_enable_concurrently() (and a rebuild online, and
# enable()'s guard triggers, functions and view), each with WRITERS pgbench
# clients running tests/bench/switch_writer.sql (a new step, an edge, three moves per
# transaction; the guards and the step state's triggers fire). For each: the writers' longest
# transaction and throughput before and during the switch (from pgbench's per-transaction log),
# then step_state_verify() once the writers stopped (it must find nothing). A benchmark, not a
# test: docs/adoption.md records its figures. Usage:
#   tests/bench/online_switch.sh CONNINFO [WRITERS] [SECONDS]
# CONNINFO names a database with the Tasker tables, tasker_core and data (e.g. make bench's);
# SECONDS (default: 15 + 1 per 20,000 steps) is how long the writers run around each switch.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
conn=${1:?connection string}; writers=${2:-2}
q() { command psql "$conn" -X -q -At -v ON_ERROR_STOP=1 "$@"; }
read -r lo hi named steps < <(q -F ' ' -c "SELECT min(task_id), max(task_id), (SELECT min(named_step_id) FROM tasker_named_steps),
                                                  (SELECT count(*) FROM tasker_workflow_steps) FROM tasker_tasks")
seconds=${3:-$((15 + steps / 20000))}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
echo "tasks $lo..$hi, $steps steps; $writers writers for $seconds s around each switch"

# run LABEL SQL: writers for $seconds s; SQL starts 5 s in. Prints one line of figures.
run() {
  local label=$1 sql=$2 t0 t1
  rm -f "$work"/log.*
  (cd "$work" && PGOPTIONS="-c client_min_messages=warning" pgbench -n -c "$writers" -j "$writers" -T "$seconds" \
      -D lo="$lo" -D hi="$hi" -D named="$named" -f "$here/switch_writer.sql" -l --log-prefix=log "$conn" >"$work/pgbench.out" 2>&1) &
  local bench=$!
  sleep 5
  t0=$(date +%s.%N)
  q -c "$sql" >"$work/switch.out" 2>&1 || { cat "$work/switch.out"; kill $bench 2>/dev/null; exit 1; }
  t1=$(date +%s.%N)
  wait $bench || { cat "$work/pgbench.out"; exit 1; }
  local bad; bad=$(q -c "SELECT count(*) FROM tasker_core.step_state_verify()")
  local valid; valid=$(q -c "SELECT valid FROM tasker_core.step_state_source")
  # pgbench -l: client transaction latency_us script epoch_s epoch_us (at the end of each).
  cat "$work"/log.* | awk -v t0="$t0" -v t1="$t1" -v label="$label" -v bad="$bad" -v valid="$valid" '
    { end = $5 + $6 / 1e6; lat = $3 / 1000; start = end - $3 / 1e6
      if (first == "" || start < first) first = start
      if (end < t0) { nb++; if (lat > mb) mb = lat }
      # Transactions that overlap the switch at all.
      else if (start <= t1) { nd++; if (lat > md) md = lat } }
    END { printf "%-34s switch %6.2f s | before: %6.0f tx/s, longest %6.1f ms | during: %6.0f tx/s, longest %7.1f ms | verify: %s rows differ, valid %s\n",
                 label, t1 - t0, nb / (t0 - first), mb, nd / (t1 - t0), md, bad, valid }'
  grep -E "NOTICE:  tasker_core: step" "$work/switch.out" | sed 's/^NOTICE:  tasker_core: /    /' || true
  [ "$bad" = 0 ] && [ "$valid" = t ]
}

q -c "SELECT count(*) FROM tasker_core.step_state_disable()" >/dev/null
run "step_state_enable() (blocking)" "SELECT count(*) FROM tasker_core.step_state_enable()"
q -c "SELECT count(*) FROM tasker_core.step_state_disable()" >/dev/null
run "CALL step_state_enable_concurrently()" "CALL tasker_core.step_state_enable_concurrently()"
run "CALL step_state_rebuild_concurrently()" "CALL tasker_core.step_state_rebuild_concurrently()"
# What enable() builds besides: the guard triggers (CREATE TRIGGER on three tables), the
# functions and the view, in one short transaction.
q -c "SELECT count(*) FROM tasker_core.disable()" >/dev/null
run "enable() (guards, functions, view)" "SELECT count(*) FROM tasker_core.enable()"
