#!/usr/bin/env bash
# The event pipeline, end to end: writers with the guards, the step state and the events on,
# a listener (tests/bench/events_drain.rb) that drains what they commit. Two runs of SECONDS s:
# writers that move 100 steps per statement (tests/bench/bulk_writer.sql), then single-row
# writers (tests/bench/move_writer.sql). For each: the events the writers' transitions
# recorded, the events the listener received (they must match), its rate and the lag from
# recording to receipt. A benchmark, not a test: docs/benchmarks.md records its figures. Usage:
#   tests/bench/events_pipeline.sh CONNINFO [SECONDS] [CLIENTS]
# CONNINFO names a database with the Tasker tables, tasker_core and some tasks (make bench's).
# It enables the guards, the step state and the events there, and leaves them on.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
conn=${1:?connection string}; seconds=${2:-60}; clients=${3:-2}
q() { command psql "$conn" -X -q -At -v ON_ERROR_STOP=1 "$@"; }
q -c "SELECT count(*) FROM tasker_core.enable(functions => false, views => false, events => true)" >/dev/null
[ "$(q -c "SELECT coalesce(bool_or(valid), false) FROM tasker_core.step_state_source")" = t ] || q -c "SELECT count(*) FROM tasker_core.step_state_enable()" >/dev/null
read -r lo hi named named_task < <(q -F ' ' -c "SELECT min(task_id), max(task_id), (SELECT min(named_step_id) FROM tasker_named_steps),
                                                      (SELECT min(named_task_id) FROM tasker_named_tasks) FROM tasker_tasks")
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
run() {
  local label=$1 script=$2 before after
  before=$(q -c "SELECT count(*) FROM tasker_core.events")
  ruby "$here/events_drain.rb" "$conn" "$seconds" >"$work/drain.out" &
  local drain=$!
  sleep 1
  (cd "$work" && PGOPTIONS="-c client_min_messages=warning" pgbench -n -c "$clients" -j "$clients" -T "$seconds" \
      -D lo="$lo" -D hi="$hi" -D named="$named" -D named_task="$named_task" -f "$script" "$conn" >"$work/pgbench.out" 2>&1) \
      || { cat "$work/pgbench.out"; kill $drain; exit 1; }
  wait $drain
  after=$(q -c "SELECT count(*) FROM tasker_core.events")
  echo "$label: writers recorded $((after - before)) events ($(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$work/pgbench.out") scripts/s); listener $(cat "$work/drain.out")"
}
echo "$clients writer clients, $seconds s per run"
run "100 steps per statement" "$here/bulk_writer.sql"
run "one step per statement " "$here/move_writer.sql"
