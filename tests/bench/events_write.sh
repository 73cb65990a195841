#!/usr/bin/env bash
# What each layer costs Rails-style single-row writers, side by side in one run: plain tables;
# + the guards; + the step state; + the events (layers: tests/bench/layers.sh). A new step
# moved pending -> in_progress -> complete as Statesman writes each move: SHAPE=move (default)
# commits each move on its own (tests/bench/move_writer.sql), SHAPE=transaction moves the step
# in one transaction (tests/bench/step_writer.sql).
# CLIENTS pgbench clients for SECONDS s per layer; prints moves/s and the cost per move
# relative to plain. With ROUNDS=N (N > 1) it runs every layer N times, the layers of each
# round in a rotated order, and prints per layer the median cost per move and the median,
# lowest and highest of the per-round ratios to plain (and of the events' cost on top of
# guards + step state): a machine whose speed drifts by more than the differences measured
# moves both sides of a round together. With FRESH=TEMPLATE every layer runs on a new copy of
# database TEMPLATE (CONNINFO's database is dropped and created again from it), so no run
# writes into the rows of the runs before it. A benchmark, not a test: docs/benchmarks.md
# records its figures. Usage:
#   [ROUNDS=N] [FRESH=TEMPLATE] [ONLY="plain events"] [SHAPE=move|transaction] \
#     tests/bench/events_write.sh CONNINFO [CLIENTS] [SECONDS]
# ONLY runs those layers only (plain among them: the ratios are to it).
# CONNINFO names a database with the Tasker tables, tasker_core and some tasks (make bench's).
# It leaves tasker_core disabled (and the step state off) there.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
conn=${1:?connection string}; clients=${2:-4}; seconds=${3:-20}; rounds=${ROUNDS:-1}
case "${SHAPE:-move}" in
  move) script=move_writer.sql ;;
  transaction) script=step_writer.sql ;;
  *) echo "events_write: SHAPE is move or transaction, not ${SHAPE}" >&2; exit 2 ;;
esac
. "$here/layers.sh"
[ -n "${ONLY:-}" ] && read -r -a LAYERS <<<"$ONLY"
q() { command psql "$conn" -X -q -At -v ON_ERROR_STOP=1 "$@"; }
db=$(q -c "SELECT current_database()")
read -r lo hi named < <(q -F ' ' -c "SELECT min(task_id), max(task_id), (SELECT min(named_step_id) FROM tasker_named_steps) FROM tasker_tasks")
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

off() {
  q -c "SELECT count(*) FROM tasker_core.disable()" >/dev/null
  q -c "SELECT count(*) FROM tasker_core.step_state_disable()" >/dev/null 2>&1 || true
}
# run LAYER: prints the moves/s with LAYER installed on top of nothing.
run() {
  local setup=${LAYER_SETUP[$1]} tps
  if [ -n "${FRESH:-}" ]; then
    command psql "$conn dbname=postgres" -X -q -v ON_ERROR_STOP=1 \
      -c "DROP DATABASE IF EXISTS \"$db\"" -c "CREATE DATABASE \"$db\" TEMPLATE \"$FRESH\"" >/dev/null
  fi
  off
  [ -n "$setup" ] && q -c "$setup" >/dev/null
  q -c "CHECKPOINT" -c "VACUUM ANALYZE tasker_workflow_step_transitions, tasker_workflow_steps, tasker_core.events" >/dev/null
  (cd "$work" && PGOPTIONS="-c client_min_messages=warning" pgbench -n -c "$clients" -j "$clients" -T "$seconds" \
      -D lo="$lo" -D hi="$hi" -D named="$named" -f "$here/$script" "$conn" >"$work/pgbench.out" 2>&1) \
      || { cat "$work/pgbench.out" >&2; exit 1; }
  tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$work/pgbench.out")
  awk -v t="$tps" 'BEGIN { printf "%.0f\n", 3 * t }'
}

echo "$clients clients, $seconds s per layer; tasks $lo..$hi; ${SHAPE:-move}; $rounds round(s)${FRESH:+, each run on a fresh copy of $FRESH}"
n=${#LAYERS[@]}
for ((r = 0; r < rounds; r++)); do
  for ((k = 0; k < n; k++)); do
    layer=${LAYERS[$(((k + r) % n))]}
    echo "$r $layer $(run "$layer")" >>"$work/moves"
  done
done
off
# Per layer: median us per move; the per-round ratios to plain (median, lowest, highest).
for layer in "${LAYERS[@]}"; do
  awk -v l="$layer" -v label="${LAYER_LABEL[$layer]}" -v rounds="$rounds" "$AWK_MEDIAN"'
    { moves[$1, $2] = $3 }
    END {
      # (Tested before any reference to moves[r, "state"], which would create it.)
      on_top_known = l == "events" && ((0, "state") in moves)
      for (r = 0; r < rounds; r++) {
        us[r + 1] = 1e6 / moves[r, l]; ratio[r + 1] = moves[r, "plain"] / moves[r, l]
        if (on_top_known) on_top[r + 1] = moves[r, "state"] / moves[r, l]
      }
      lo = hi = ratio[1]; for (r = 2; r <= rounds; r++) { if (ratio[r] < lo) lo = ratio[r]; if (ratio[r] > hi) hi = ratio[r] }
      printf "%-40s %7.0f moves/s  %6.1f us per move  %5.2fx plain", label, 1e6 / median(us, rounds), median(us, rounds), median(ratio, rounds)
      if (rounds > 1) printf "  (rounds %.2f-%.2fx)", lo, hi
      if (on_top_known) {
        printf "; events on top of guards + step state %+.0f%%", (median(on_top, rounds) - 1) * 100
      }
      printf "\n"
    }' "$work/moves"
done
