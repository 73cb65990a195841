#!/usr/bin/env bash
# Concurrency tests of the guard triggers with real concurrent connections: separate psql
# client processes, released at the same instant by an advisory-lock barrier.
#   1. N clients make the same move (pending -> in_progress) on one step, Statesman's order:
#      exactly one commits, the rest get SQLSTATE 23514, no deadlock, history stays legal.
#   2. The same race with insert-first writers.
#   3. Two clients add edges 1->2 and 2->1 at once, over many rounds: at most one lands.
# Usage: tests/concurrency/run.sh PSQL_CONNINFO [CLIENTS] [ROUNDS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
conn=${1:?connection string}; clients=${2:-8}; rounds=${3:-20}
export PGOPTIONS="-c client_min_messages=warning"
command psql "$conn dbname=postgres" -X -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS tasker_race" -c "CREATE DATABASE tasker_race"
db="$conn dbname=tasker_race"
q() { command psql "$db" -X -q -At -v ON_ERROR_STOP=1 "$@"; }
q -f "$here/../fixtures/tasker_schema.sql"
q <<'SQL'
CREATE EXTENSION tasker_core;
INSERT INTO tasker_task_namespaces VALUES (1, 'default', NULL, now(), now());
INSERT INTO tasker_dependent_systems VALUES (1, 'sys', NULL, now(), now());
INSERT INTO tasker_named_tasks (named_task_id, name, task_namespace_id, created_at, updated_at) VALUES (1, 'race', 1, now(), now());
INSERT INTO tasker_named_steps (named_step_id, dependent_system_id, name, created_at, updated_at) VALUES (1, 1, 's1', now(), now()), (2, 1, 's2', now(), now());
SELECT count(*) FROM tasker_core.enable(functions => false) \g /dev/null
SQL
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
passed=0; failed=0
check() { if [ "$1" = ok ]; then passed=$((passed + 1)); echo "  ok: $2"; else failed=$((failed + 1)); echo "  FAILED: $2"; fi; }

# Holds the barrier for a moment so every client is waiting on it, then releases it.
barrier() { command psql "$db" -X -q -c "SELECT pg_advisory_lock(4242); SELECT pg_sleep(${1:-1.5}); SELECT pg_advisory_unlock(4242);" >/dev/null & }
wait_barrier="SELECT pg_advisory_lock_shared(4242); SELECT pg_advisory_unlock_shared(4242);"

# A fresh task with one step in 'pending'; prints the step id.
new_step() {
  q <<SQL
INSERT INTO tasker_tasks (named_task_id, requested_at, identity_hash, created_at, updated_at) VALUES (1, now(), md5(random()::text), now(), now());
INSERT INTO tasker_workflow_steps (task_id, named_step_id, created_at, updated_at) VALUES (currval(pg_get_serial_sequence('tasker_tasks', 'task_id')), 1, now(), now()) RETURNING workflow_step_id;
SQL
}

race_moves() { # $1 = statesman | insert_first, $2 = isolation level (default READ COMMITTED)
  local order=$1 iso=${2:-READ COMMITTED} step; step=$(new_step | tail -1)
  local tag="$order ($iso)" ok_codes="23514"
  [ "$iso" = "READ COMMITTED" ] || ok_codes="23514|40001"
  q -c "INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at) VALUES ($step, 'pending', 10, true, now(), now())"
  barrier 1.5; sleep 0.3
  for i in $(seq 1 "$clients"); do
    if [ "$order" = statesman ]; then
      body="UPDATE tasker_workflow_step_transitions SET most_recent = false WHERE workflow_step_id = $step AND most_recent;
            INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
            SELECT $step, 'in_progress', max(sort_key) + 10, true, now(), now() FROM tasker_workflow_step_transitions WHERE workflow_step_id = $step;"
    else
      body="INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, from_state, most_recent, created_at, updated_at)
            VALUES ($step, 'in_progress', 'pending', true, now(), now());
            UPDATE tasker_workflow_step_transitions SET most_recent = false WHERE workflow_step_id = $step AND most_recent AND to_state <> 'in_progress';"
    fi
    (set +e; command psql "$db" -X -q -v ON_ERROR_STOP=1 -c "\\set VERBOSITY verbose" \
        -c "BEGIN ISOLATION LEVEL $iso; $wait_barrier $body COMMIT;" >"$work/$order.$i.out" 2>&1; echo $? >"$work/$order.$i.rc") &
  done
  wait
  local wins=0 refused=0 other=0
  for i in $(seq 1 "$clients"); do
    if [ "$(cat "$work/$order.$i.rc")" = 0 ]; then wins=$((wins + 1));
    elif grep -Eq "ERROR: +($ok_codes)" "$work/$order.$i.out"; then refused=$((refused + 1));
    else other=$((other + 1)); echo "    client $i: $(grep -m1 ERROR "$work/$order.$i.out")"; fi
  done
  local history; history=$(q -c "SELECT string_agg(coalesce(from_state, '-') || '>' || to_state || CASE WHEN most_recent THEN '*' ELSE '' END, ' ' ORDER BY sort_key) FROM tasker_workflow_step_transitions WHERE workflow_step_id = $step")
  echo "  $tag: $clients clients, $wins committed, $refused refused with $ok_codes, $other other errors; history: $history"
  [ "$wins" = 1 ] && [ "$refused" = $((clients - 1)) ] && [ "$other" = 0 ] && [ "$history" = "->pending pending>in_progress*" ] \
    && check ok "$tag race: exactly one move wins" || check bad "$tag race: exactly one move wins"
  if grep -qi deadlock "$work"/$order.*.out; then check bad "$tag race: no deadlock"; else check ok "$tag race: no deadlock"; fi
}

echo "== racing the same step move"
race_moves statesman
race_moves insert_first
race_moves statesman "REPEATABLE READ"
race_moves insert_first "REPEATABLE READ"

# Two clients add a -> b and b -> a at the same instant, $1 times; prints how often both landed.
edge_races() {
  local landed_both=0 r ids a b n
  for r in $(seq 1 "$1"); do
    ids=$(q <<'SQL'
INSERT INTO tasker_tasks (named_task_id, requested_at, identity_hash, created_at, updated_at) VALUES (1, now(), md5(random()::text), now(), now());
INSERT INTO tasker_workflow_steps (task_id, named_step_id, created_at, updated_at)
SELECT currval(pg_get_serial_sequence('tasker_tasks', 'task_id')), g, now(), now() FROM generate_series(1, 2) g RETURNING workflow_step_id;
SQL
)
    a=$(echo "$ids" | sed -n 1p); b=$(echo "$ids" | sed -n 2p)
    barrier 0.5; sleep 0.2
    for pair in "$a $b" "$b $a"; do
      set -- $pair
      (command psql "$db" -X -q -v ON_ERROR_STOP=1 -c "BEGIN; $wait_barrier INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at) VALUES ($1, $2, 'provides', now(), now()); COMMIT;" >/dev/null 2>&1 || true) &
    done
    wait
    n=$(q -c "SELECT count(*) FROM tasker_workflow_step_edges WHERE from_step_id IN ($a, $b)")
    [ "$n" -le 1 ] || landed_both=$((landed_both + 1))
  done
  echo "$landed_both"
}

echo "== racing edges that together close a cycle ($rounds rounds)"
landed=$(edge_races "$rounds")
echo "  $rounds rounds, rounds where both edges landed (a cycle): $landed"
[ "$landed" = 0 ] && check ok "edge race: never a cycle" || check bad "edge race: never a cycle"

echo "== self-check: without the triggers the same races must go wrong"
q -c "SELECT count(*) FROM tasker_core.disable()" >/dev/null
landed=$(edge_races 3)
[ "$landed" -gt 0 ] && check ok "without triggers, $landed of 3 edge races closed a cycle (the test can fail)" \
  || check bad "without triggers the edge race still never closed a cycle: this test cannot tell"
q -c "SELECT count(*) FROM tasker_core.enable(functions => false)" >/dev/null

echo "concurrency: $passed passed, $failed failed"
[ "$failed" = 0 ]
