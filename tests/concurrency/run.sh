#!/usr/bin/env bash
# Concurrency tests of the guard triggers with real concurrent connections: separate psql
# client processes, released at the same instant by an advisory-lock barrier.
#   1. N clients make the same move (pending -> in_progress) on one step, Statesman's order:
#      exactly one commits, the rest get SQLSTATE 23514, no deadlock, history stays legal.
#   2. The same race with insert-first writers.
#   3. Two clients add edges 1->2 and 2->1 at once, over many rounds: at most one lands.
#   4. The derived step state (enabled for all of the above) under pgbench: N clients write
#      transitions, attempts, edges and named steps of the same few steps at once, under READ
#      COMMITTED and REPEATABLE READ; afterwards step_state_verify() must find nothing.
# Usage: tests/concurrency/run.sh PSQL_CONNINFO [CLIENTS] [ROUNDS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
conn=${1:?connection string}; clients=${2:-8}; rounds=${3:-20}
export PGOPTIONS="-c client_min_messages=warning"
command psql "$conn dbname=postgres" -X -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS tasker_race" -c "CREATE DATABASE tasker_race"
db="$conn dbname=tasker_race"
q() { command psql "$db" -X -q -At -v ON_ERROR_STOP=1 "$@"; }
fixture=${FIXTURE:-tasker_schema.sql}
q -f "$here/../fixtures/$fixture"
q <<'SQL'
CREATE EXTENSION tasker_core;
INSERT INTO tasker_task_namespaces (task_namespace_id, name, created_at, updated_at) VALUES (1, 'default', now(), now());
INSERT INTO tasker_dependent_systems (dependent_system_id, name, created_at, updated_at) VALUES (1, 'sys', now(), now());
INSERT INTO tasker_named_tasks (named_task_id, name, task_namespace_id, created_at, updated_at) VALUES (1, 'race', 1, now(), now());
INSERT INTO tasker_named_steps (named_step_id, dependent_system_id, name, created_at, updated_at) VALUES (1, 1, 's1', now(), now()), (2, 1, 's2', now(), now());
SELECT count(*) FROM tasker_core.enable(functions => false) \g /dev/null
SELECT count(*) FROM tasker_core.step_state_enable() \g /dev/null
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

echo "== the step state under concurrent writers of the same steps (pgbench)"
# $clients pgbench clients run $work/state.sql (written by state_race) $1 times each.
state_writers() {
  PGOPTIONS="-c client_min_messages=warning -c tasker_core.guard_mode=off -c deadlock_timeout=20ms" pgbench -n -c "$clients" -j 2 -t "$1" \
    --max-tries=50 -f "$work/state.sql" "$db" 2>&1
}
# Writes $work/state.sql for isolation level $1 (and the steps it writes).
state_script() {
  # Renames too under READ COMMITTED; under REPEATABLE READ a rename marks the copy stale by
  # design (tested below), so that run leaves them out.
  local rename=""
  [ "$1" = "READ COMMITTED" ] && rename="UPDATE tasker_named_steps SET name = 's' || named_step_id || '_' || :s WHERE :k = 5 AND named_step_id = 1 + :s % 2;"
  q <<'SQL'
INSERT INTO tasker_tasks (task_id, named_task_id, requested_at, identity_hash, created_at, updated_at)
VALUES (900000, 1, now(), md5(random()::text), now(), now()) ON CONFLICT DO NOTHING;
INSERT INTO tasker_workflow_steps (workflow_step_id, task_id, named_step_id, created_at, updated_at)
SELECT 900000 + g, 900000, 1 + g % 2, now(), now() FROM generate_series(1, 12) g ON CONFLICT DO NOTHING;
SQL
  cat > "$work/state.sql" <<SQL
\\set s random(900001, 900012)
\\set t random(900001, 900012)
\\set k random(0, 7)
BEGIN ISOLATION LEVEL $1;
SELECT 1 FROM tasker_workflow_steps WHERE workflow_step_id = :s FOR UPDATE;
UPDATE tasker_workflow_step_transitions SET most_recent = false WHERE workflow_step_id = :s AND most_recent;
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
SELECT :s, (ARRAY['pending', 'in_progress', 'complete', 'error'])[:k % 4 + 1], coalesce(max(sort_key), 0) + 10, true, now(), now()
  FROM tasker_workflow_step_transitions WHERE workflow_step_id = :s;
UPDATE tasker_workflow_steps SET attempts = coalesce(attempts, 0) + 1, in_process = (:k % 2 = 0) WHERE workflow_step_id = :t;
INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at)
SELECT :s, :t, 'provides', now(), now() WHERE :k < 3 AND :s <> :t;
DELETE FROM tasker_workflow_step_edges WHERE :k = 7 AND id = (SELECT min(id) FROM tasker_workflow_step_edges WHERE to_step_id = :t);
$rename
END;
SQL
}
state_race() { # $1 = isolation level
  state_script "$1"
  local out rc=0
  out=$(state_writers 150) || rc=$?
  local tx; tx=$(echo "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')
  local retried; retried=$(echo "$out" | sed -n 's/^number of transactions retried: \([0-9]*\).*/\1/p')
  local bad; bad=$(q -c "SELECT count(*) FROM tasker_core.step_state_verify()")
  local valid; valid=$(q -c "SELECT valid FROM tasker_core.step_state_source")
  echo "  $1: $clients clients, ${tx:-?} transactions (${retried:-0} retried after 40001/40P01), pgbench exit $rc; step_state valid=$valid, rows that differ: $bad"
  [ "$rc" = 0 ] && [ "$valid" = t ] && [ "$bad" = 0 ] && check ok "$1: step_state exact after concurrent writers" \
    || { echo "$out" | grep -iE "error|abort" | head -5; check bad "$1: step_state exact after concurrent writers"; }
}
state_race "READ COMMITTED"
state_race "REPEATABLE READ"

echo "== a REPEATABLE READ writer whose snapshot predates a rebuild"
# W takes its snapshot while the step state is stale, a rebuild commits, then W writes: the
# maintenance trigger (seeing 'stale' in W's snapshot) would skip the write, so W must fail
# with 40001 instead of committing a change the now-valid copy lacks.
q -c "UPDATE tasker_core.step_state_source SET valid = false, reason = 'test'"
step=$(q -c "SELECT min(workflow_step_id) FROM tasker_workflow_steps WHERE workflow_step_id > 900000")
(set +e; PGOPTIONS="-c client_min_messages=warning -c tasker_core.guard_mode=off" command psql "$db" -X -q -v ON_ERROR_STOP=1 -c "\\set VERBOSITY verbose" \
   -c "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM tasker_core.step_state_source; SELECT pg_sleep(2);
       UPDATE tasker_workflow_steps SET attempts = 99 WHERE workflow_step_id = $step; COMMIT;" >"$work/rr.out" 2>&1; echo $? >"$work/rr.rc") &
sleep 0.7
q -c "SELECT tasker_core.step_state_rebuild()" >/dev/null
wait
bad=$(q -c "SELECT count(*) FROM tasker_core.step_state_verify()")
if grep -q "40001" "$work/rr.out" && [ "$(cat "$work/rr.rc")" != 0 ] && [ "$bad" = 0 ]; then
  check ok "the late REPEATABLE READ writer got 40001 and the step state stayed exact"
else
  cat "$work/rr.out"; check bad "the late REPEATABLE READ writer got 40001 and the step state stayed exact (verify: $bad)"
fi
renamed=$(q -c "BEGIN ISOLATION LEVEL REPEATABLE READ; UPDATE tasker_named_steps SET name = name || '_rr' WHERE named_step_id = 1;
                SELECT valid FROM tasker_core.step_state_source; ROLLBACK;" 2>/dev/null | tail -1)
[ "$renamed" = f ] && check ok "a rename under REPEATABLE READ marks the step state stale (it could miss concurrent steps)" \
  || check bad "a rename under REPEATABLE READ marks the step state stale (got valid=$renamed)"

echo "== the step state built online while writers write"
# 1. CALL step_state_rebuild_concurrently() while $clients pgbench clients write the same steps
#    (READ COMMITTED, renames included): afterwards the copy is valid and exact, and the build
#    says it replayed logged writes (the capture path was taken).
state_script "READ COMMITTED"
state_writers 30 >"$work/online.pgbench" 2>&1 &
writers=$!
sleep 0.3
q -c "SET client_min_messages = notice" -c "CALL tasker_core.step_state_rebuild_concurrently()" >"$work/online.out" 2>&1 || cat "$work/online.out"
wait $writers || { grep -iE "error|abort" "$work/online.pgbench" | head -5; }
replayed=$(sed -n 's/.*replayed \(the last \)\{0,1\}\([0-9]*\) logged writes.*/\2/p' "$work/online.out" | awk '{s += $1} END {print s + 0}')
waited_for=$(sed -n 's/.*step 2 of 5.*waited \([0-9.]*\) s.*/\1/p' "$work/online.out")
bad=$(q -c "SELECT count(*) FROM tasker_core.step_state_verify()")
valid=$(q -c "SELECT valid FROM tasker_core.step_state_source")
echo "  $(grep -c 'step 4 of 5' "$work/online.out") replay rounds, $replayed logged writes replayed (waited ${waited_for:-?} s for writes under way); valid=$valid, rows that differ: $bad"
[ "$valid" = t ] && [ "$bad" = 0 ] && [ "$replayed" -gt 0 ] && check ok "an online rebuild under concurrent writers ends valid and exact, having replayed their writes" \
  || { cat "$work/online.out"; check bad "an online rebuild under concurrent writers ends valid and exact, having replayed their writes"; }
# 2. The same steps by hand, with writes between the build and the end: marked valid without
#    the replay, the copy differs (so the check above can fail); with it, it is exact.
online_writes() {
  q -c "SELECT tasker_core.step_state_capture()" -c "SELECT tasker_core.step_state_wait_for_writers()" \
    -c "SELECT tasker_core.step_state_build_online()" >/dev/null
  state_writers 1 >/dev/null 2>&1
}
online_writes
q -c "UPDATE tasker_core.step_state_source SET valid = true, building = NULL"
skipped=$(q -c "SELECT count(*) FROM tasker_core.step_state_verify()")
online_writes
logged=$(q -c "SELECT count(*) FROM tasker_core.step_state_log")
q -c "SELECT tasker_core.step_state_catch_up()" -c "SELECT tasker_core.step_state_wait_for_writers()" \
  -c "SELECT tasker_core.step_state_finish_online()" >/dev/null
bad=$(q -c "SELECT count(*) FROM tasker_core.step_state_verify()")
echo "  writes after the build: $logged logged; rows that differ without the replay: $skipped, with it: $bad"
[ "$skipped" -gt 0 ] && [ "$bad" = 0 ] && [ "$logged" -gt 0 ] && check ok "without the log's replay the copy would differ; with it, it is exact (the test can fail)" \
  || check bad "without the log's replay the copy would differ; with it, it is exact"
# 3. REPEATABLE READ writers whose snapshot predates the start or the end of the capture must
#    fail with 40001: the first would write the copy the build replaces, the second would log
#    what the build may no longer replay.
rr_across() { # $1 = SQL run while the writer sleeps; prints the writer's output
  (set +e; PGOPTIONS="-c client_min_messages=warning -c tasker_core.guard_mode=off" command psql "$db" -X -q -v ON_ERROR_STOP=1 -c "\\set VERBOSITY verbose" \
     -c "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM tasker_core.step_state_source; SELECT pg_sleep(1.5);
         UPDATE tasker_workflow_steps SET attempts = coalesce(attempts, 0) + 1 WHERE workflow_step_id = $step; COMMIT;" 2>&1) &
  local w=$!
  sleep 0.5
  q -c "$1" >/dev/null
  wait $w || true
}
start_out=$(rr_across "SELECT tasker_core.step_state_capture()")
q -c "SELECT tasker_core.step_state_build_online()" >/dev/null
end_out=$(rr_across "SELECT tasker_core.step_state_catch_up()")
q -c "SELECT tasker_core.step_state_finish_online()" >/dev/null
bad=$(q -c "SELECT count(*) FROM tasker_core.step_state_verify()")
if echo "$start_out" | grep -q 40001 && echo "$end_out" | grep -q 40001 && [ "$bad" = 0 ]; then
  check ok "REPEATABLE READ writers whose snapshot predates an online build's start or end got 40001; the copy stayed exact"
else
  echo "$start_out" "$end_out" | grep -m3 -E "ERROR|40001" || true
  check bad "REPEATABLE READ writers across an online build's start and end got 40001 (verify: $bad)"
fi
# 4. DDL that makes the copy untrustworthy stops a build under way, and says why.
q -c "SELECT tasker_core.step_state_capture()" >/dev/null
q -c "ALTER TABLE tasker_workflow_step_edges DISABLE TRIGGER tasker_core_state_insert" 2>/dev/null
stopped=$(q -c "SELECT tasker_core.step_state_replay()" 2>&1 || true)
q -c "ALTER TABLE tasker_workflow_step_edges ENABLE ALWAYS TRIGGER tasker_core_state_insert"
echo "$stopped" | grep -q "it stopped: after ALTER TABLE: trigger tasker_core_state_insert on public.tasker_workflow_step_edges is not ENABLE ALWAYS" \
  && check ok "DDL during an online build stops it, saying why" || { echo "  $stopped"; check bad "DDL during an online build stops it, saying why"; }
q -c "SET client_min_messages = warning" -c "CALL tasker_core.step_state_enable_concurrently()"
[ "$(q -c "SELECT valid FROM tasker_core.step_state_source")" = t ] && check ok "after the stop, CALL step_state_enable_concurrently() makes it valid again" \
  || check bad "after the stop, CALL step_state_enable_concurrently() makes it valid again"

# 5. A step created during the capture is missing from the copy until the log is replayed, so a
#    catch-up writer that moves it refreshes nothing. The last replay must therefore hold the
#    writers back: here the finishing transaction stays open 2 s while a writer completes the
#    step; the writer must wait for it (the path taken), and the child's parent count be exact.
q -c "SELECT tasker_core.step_state_capture()" -c "SELECT tasker_core.step_state_wait_for_writers()" \
  -c "SELECT tasker_core.step_state_build_online()" >/dev/null
pc=$(q <<'SQL'
INSERT INTO tasker_tasks (named_task_id, requested_at, identity_hash, created_at, updated_at) VALUES (1, now(), md5(random()::text), now(), now());
INSERT INTO tasker_workflow_steps (task_id, named_step_id, created_at, updated_at)
SELECT currval(pg_get_serial_sequence('tasker_tasks', 'task_id')), 1, now(), now() FROM generate_series(1, 2) RETURNING workflow_step_id;
SQL
)
p=$(echo "$pc" | sed -n 1p); c=$(echo "$pc" | sed -n 2p)
q -c "INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at) VALUES ($p, $c, 'provides', now(), now())" \
  -c "INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at) VALUES ($p, 'pending', 10, true, now(), now()), ($c, 'pending', 10, true, now(), now())"
# Catch-up without its replay, so that the new rows are still missing from the copy.
q -c "UPDATE tasker_core.step_state_source SET building = 'catch_up'" -c "SELECT tasker_core.step_state_wait_for_writers()" >/dev/null
(command psql "$db" -X -q -c "BEGIN" -c "SELECT * FROM tasker_core.step_state_finish_online()" -c "SELECT pg_sleep(2)" -c "COMMIT" >/dev/null 2>&1 &)
sleep 0.5
t0=$(date +%s%N)
PGOPTIONS="-c client_min_messages=warning -c tasker_core.guard_mode=off" command psql "$db" -X -q -c "BEGIN;
  UPDATE tasker_workflow_step_transitions SET most_recent = false WHERE workflow_step_id = $p AND most_recent;
  INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at) VALUES ($p, 'complete', 20, true, now(), now());
  COMMIT;" >/dev/null
held=$(( ($(date +%s%N) - t0) / 1000000 ))
sleep 2
bad=$(q -c "SELECT count(*) FROM tasker_core.step_state_verify()")
done_parents=$(q -c "SELECT done_parents FROM tasker_core.step_state WHERE workflow_step_id = $c")
echo "  the writer completing the new step waited $held ms for the finishing build; its child's done_parents: $done_parents; rows that differ: $bad"
[ "$held" -ge 1000 ] && [ "$bad" = 0 ] && [ "$done_parents" = 1 ] \
  && check ok "a step created during the capture and completed while the build finishes: the writer waits for the last replay, the copy is exact" \
  || check bad "a step created during the capture and completed while the build finishes (held $held ms, done_parents $done_parents, differ $bad)"
# 6. One online build at a time: while another session holds the build's lock, a CALL is refused.
key=$(q -c "SELECT 'tasker_core.step_state_log'::regclass::oid::integer")
(command psql "$db" -X -q -c "SELECT pg_advisory_lock($key, 1), pg_sleep(2)" >/dev/null 2>&1 &)
sleep 0.5
second=$(q -c "CALL tasker_core.step_state_rebuild_concurrently()" 2>&1 || true)
echo "$second" | grep -q "another session is building the step state online" \
  && check ok "a second online build is refused (55006) while one runs" || { echo "  $second"; check bad "a second online build is refused while one runs"; }
sleep 2

echo "== what a backend keeps between queries follows other sessions' DDL"
# A session resolves the Tasker tables and the step state's layout (which it then keeps between
# queries); other sessions then alter step_state and shadow a Tasker table on its search_path.
# Its next calls must see both, as fresh lookups would. (The schema exists from the start, so
# only the new table's name can tell the session: not a change of its search_path.)
q -c "CREATE SCHEMA shadow"
kept=$(q <<SQL
SET search_path = shadow, public;
SELECT tasker_core.read_path_stats_reset();
SELECT count(*) >= 0 FROM tasker_core.get_step_readiness_status(1);
SELECT 'before: ' || path FROM tasker_core.read_paths() LIMIT 1;
\! psql "$db" -X -q -c "ALTER TABLE tasker_core.step_state RENAME COLUMN done_parents TO done"
SELECT 'altered: ' || path || ': ' || reason FROM tasker_core.read_paths() LIMIT 1;
SELECT count(*) >= 0 FROM tasker_core.get_step_readiness_status(1);
\! psql "$db" -X -q -c "ALTER TABLE tasker_core.step_state RENAME COLUMN done TO done_parents"
SELECT 'restored: ' || path FROM tasker_core.read_paths() LIMIT 1;
\! psql "$db" -X -q -c "CREATE TABLE shadow.tasker_tasks (LIKE public.tasker_tasks)"
SELECT 'shadowed: ' || path || ': ' || reason FROM tasker_core.read_paths() LIMIT 1;
\! psql "$db" -X -q -c "DROP TABLE shadow.tasker_tasks"
SELECT 'dropped: ' || path FROM tasker_core.read_paths() LIMIT 1;
SELECT count(*) >= 0 FROM tasker_core.get_step_readiness_status(1);
\! psql "$db" -X -q -c "CREATE SCHEMA staging; CREATE TABLE staging.tasker_tasks (LIKE public.tasker_tasks)"
SELECT 'staged: ' || path FROM tasker_core.read_paths() LIMIT 1;
\! psql "$db" -X -q -c "DROP SCHEMA shadow; ALTER SCHEMA staging RENAME TO shadow"
SELECT 'renamed: ' || path || ': ' || reason FROM tasker_core.read_paths() LIMIT 1;
\! psql "$db" -X -q -c "DROP SCHEMA shadow CASCADE; CREATE SCHEMA shadow"
BEGIN;
SELECT 'in transaction: ' || path FROM tasker_core.read_paths() LIMIT 1;
SAVEPOINT s;
ALTER TABLE tasker_core.step_state RENAME COLUMN done_parents TO done;
SELECT 'altered here: ' || path FROM tasker_core.read_paths() LIMIT 1;
ROLLBACK TO SAVEPOINT s;
SELECT 'rolled back: ' || path FROM tasker_core.read_paths() LIMIT 1;
COMMIT;
SELECT 'calls: ' || string_agg(path || ' ' || calls, ', ' ORDER BY path) FROM tasker_core.read_path_stats();
SQL
)
expect="before: step_state
altered: sql: the step state's table has been altered: tasker_core.step_state has no column done_parents
restored: step_state
shadowed: sql: the step state mirrors public.tasker_workflow_steps, public.tasker_named_steps, public.tasker_workflow_step_transitions, public.tasker_workflow_step_edges, public.tasker_tasks, public.tasker_task_transitions; the search_path names public.tasker_workflow_steps, public.tasker_named_steps, public.tasker_workflow_step_transitions, public.tasker_workflow_step_edges, shadow.tasker_tasks, public.tasker_task_transitions
dropped: step_state
staged: step_state
renamed: sql: the step state mirrors public.tasker_workflow_steps, public.tasker_named_steps, public.tasker_workflow_step_transitions, public.tasker_workflow_step_edges, public.tasker_tasks, public.tasker_task_transitions; the search_path names public.tasker_workflow_steps, public.tasker_named_steps, public.tasker_workflow_step_transitions, public.tasker_workflow_step_edges, shadow.tasker_tasks, public.tasker_task_transitions
in transaction: step_state
altered here: sql
rolled back: step_state
calls: sql 1, step_state 2"
q -c "DROP SCHEMA shadow"
got=$(echo "$kept" | grep -E "^(before|altered|restored|shadowed|dropped|staged|renamed|in transaction|altered here|rolled back|calls):")
[ "$got" = "$expect" ] && check ok "kept lookups follow another session's ALTER, CREATE, DROP and schema rename, and a rollback to a savepoint (read_paths and the path calls took)" \
  || { diff <(echo "$expect") <(echo "$got") || true; check bad "kept lookups follow another session's ALTER, CREATE and DROP"; }

echo "== claiming ready steps: $clients claimers and 2 writers without locks (both orders) on the same tasks"
# 20 tasks of 10 independent steps. Every claimer walks the tasks in the same order (most
# contention), asking for 3 steps per call, 4 passes; two writers move random steps to
# in_progress without locks, one in Statesman's order, one inserting first (the guard triggers
# are on). Claims must never
# raise, be disjoint, and with the writers' moves cover every step exactly once.
tasks=$(q <<'SQL'
WITH t AS (
  INSERT INTO tasker_tasks (named_task_id, requested_at, identity_hash, created_at, updated_at)
  SELECT 1, now(), 'claim' || g, now(), now() FROM generate_series(1, 20) g RETURNING task_id)
, s AS (
  INSERT INTO tasker_workflow_steps (task_id, named_step_id, created_at, updated_at)
  SELECT task_id, 1, now(), now() FROM t, generate_series(1, 10) RETURNING task_id)
SELECT string_agg(DISTINCT task_id::text, ' ') FROM s;
SQL
)
steps=$(q -c "SELECT string_agg(workflow_step_id::text, ' ') FROM tasker_workflow_steps WHERE task_id IN ($(echo $tasks | tr ' ' ','))")
for i in $(seq 1 "$clients"); do
  { echo "$wait_barrier"; for pass in 1 2 3 4; do for t in $tasks; do
      echo "SELECT workflow_step_id FROM tasker_core.claim_ready_steps($t, 3, NULL, '{\"claimer\": $i}');"; done; done; } >"$work/claim.$i.sql"
done
for w in 1 2; do
  { echo "$wait_barrier"; for x in $(echo $steps | tr ' ' '\n' | shuf -n 120 --random-source=<(yes $w)); do
      if [ "$w" = 1 ]; then # Statesman's order: clear the flag, then insert
        echo "BEGIN; UPDATE tasker_workflow_step_transitions SET most_recent = false WHERE workflow_step_id = $x AND most_recent;
              INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, metadata, created_at, updated_at)
              SELECT $x, 'in_progress', coalesce(max(sort_key), 0) + 10, true, '{\"rails\": $w}', now(), now() FROM tasker_workflow_step_transitions WHERE workflow_step_id = $x; COMMIT;"
      else # insert first (the guard fills sort_key and clears the old flag)
        echo "BEGIN; INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, from_state, most_recent, metadata, created_at, updated_at)
              VALUES ($x, 'in_progress', 'pending', true, '{\"rails\": $w}', now(), now()); COMMIT;"
      fi
  done; } >"$work/rails.$w.sql"
done
barrier 1.5; sleep 0.3
for i in $(seq 1 "$clients"); do
  (set +e; command psql "$db" -X -q -At -v ON_ERROR_STOP=1 -f "$work/claim.$i.sql" >"$work/claim.$i.out" 2>"$work/claim.$i.err"; echo $? >"$work/claim.$i.rc") &
done
for w in 1 2; do (command psql "$db" -X -q -At -f "$work/rails.$w.sql" >/dev/null 2>"$work/rails.$w.err") & done
wait
errors=0; for i in $(seq 1 "$clients"); do
  [ "$(cat "$work/claim.$i.rc")" = 0 ] && ! grep -q ERROR "$work/claim.$i.err" || { errors=$((errors + 1)); head -2 "$work/claim.$i.err"; }
done
[ "$errors" = 0 ] && check ok "no claimer raised (a lost race is not an error)" || check bad "$errors claimers raised"
cat "$work"/claim.*.out | grep -E '^[0-9]+$' | sort -n >"$work/claimed"
dups=$(uniq -d "$work/claimed" | wc -l)
[ "$dups" = 0 ] && check ok "claims are disjoint ($(wc -l <"$work/claimed") steps claimed by $clients claimers)" || check bad "$dups steps claimed twice"
late=$(for t in $tasks; do q -c "SELECT count(*) FROM tasker_core.claim_ready_steps($t)"; done | awk '{s += $1} END {print s + 0}')
rails_moves=$(q -c "SELECT count(*) FROM tasker_workflow_step_transitions WHERE metadata ? 'rails' AND workflow_step_id IN ($(echo $steps | tr ' ' ','))")
per_step=$(q -c "SELECT count(*) FILTER (WHERE n <> 1) FROM (SELECT s.workflow_step_id, count(t.*) FILTER (WHERE t.to_state = 'in_progress') n
                 FROM tasker_workflow_steps s LEFT JOIN tasker_workflow_step_transitions t USING (workflow_step_id)
                WHERE s.workflow_step_id IN ($(echo $steps | tr ' ' ',')) GROUP BY 1) x")
total=$(( $(wc -l <"$work/claimed") + rails_moves + late ))
echo "  claimed by the claimers: $(wc -l <"$work/claimed"), by the Rails-style writers: $rails_moves, left for a last pass: $late, of 200"
[ "$per_step" = 0 ] && [ "$total" = 200 ] && [ "$late" = 0 ] && check ok "every step was started exactly once, by a claimer or a writer, and nothing claimable was left" \
  || check bad "every step started exactly once ($per_step steps with another number of in_progress rows; total $total, late $late)"
grep -qi deadlock "$work"/claim.*.err "$work"/rails.*.err && check bad "claiming: no deadlock" || check ok "claiming: no deadlock"

echo "== transition writes: the step state refreshed once, at commit"
# A parent that completes in a transaction whose savepoint refreshed its row early and then
# rolled back: the commit must still refresh the parent and recount its child.
p=$(new_step)
task=$(q -c "SELECT task_id FROM tasker_workflow_steps WHERE workflow_step_id = $p")
c=$(q -c "INSERT INTO tasker_workflow_steps (task_id, named_step_id, created_at, updated_at) VALUES ($task, 1, now(), now()) RETURNING workflow_step_id")
q -c "INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at) VALUES ($p, $c, 'provides', now(), now())"
q <<SQL
BEGIN;
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at) VALUES ($p, 'in_progress', 1, true, now(), now());
UPDATE tasker_workflow_step_transitions SET most_recent = false WHERE workflow_step_id = $p AND most_recent;
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at) VALUES ($p, 'complete', 2, true, now(), now());
SAVEPOINT early;
UPDATE tasker_workflow_steps SET attempts = 1 WHERE workflow_step_id = $p;
ROLLBACK TO SAVEPOINT early;
COMMIT;
SQL
row=$(q -c "SELECT (SELECT current_state FROM tasker_core.step_state WHERE workflow_step_id = $p) || ',' || (SELECT done_parents FROM tasker_core.step_state WHERE workflow_step_id = $c)")
[ "$row" = "complete,1" ] && [ "$(q -c "SELECT count(*) FROM tasker_core.step_state_verify()")" = 0 ] \
  && check ok "a savepoint that refreshed early and rolled back: the commit refreshed the parent and recounted its child" \
  || check bad "a savepoint that refreshed early and rolled back (parent state, child's done_parents: $row)"
# Two-phase commit: the refresh runs when the transaction prepares.
s2=$(new_step)
q <<SQL
BEGIN;
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at) VALUES ($s2, 'in_progress', 1, true, now(), now());
PREPARE TRANSACTION 'tasker_core_at_commit';
SQL
q -c "COMMIT PREPARED 'tasker_core_at_commit'"
[ "$(q -c "SELECT current_state FROM tasker_core.step_state WHERE workflow_step_id = $s2")" = in_progress ] \
  && [ "$(q -c "SELECT count(*) FROM tasker_core.step_state_verify()")" = 0 ] \
  && check ok "PREPARE TRANSACTION refreshes the step state; COMMIT PREPARED makes it visible" \
  || check bad "PREPARE TRANSACTION refreshes the step state"
# A rolled-back transaction leaves nothing noted: the next one reads from the step state.
paths=$(q <<SQL
SELECT tasker_core.read_path_stats_reset();
BEGIN;
UPDATE tasker_workflow_step_transitions SET most_recent = false WHERE workflow_step_id = $s2 AND most_recent;
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at) VALUES ($s2, 'complete', 2, true, now(), now());
SELECT count(*) FROM tasker_core.get_step_readiness_status($task);
ROLLBACK;
SELECT count(*) FROM tasker_core.get_step_readiness_status($task);
SELECT string_agg(path, ',' ORDER BY path) FROM tasker_core.read_path_stats();
SQL
)
[ "$(echo "$paths" | tail -1)" = "sql,step_state" ] \
  && check ok "inside the writing transaction SQL reads; after its rollback the step state again" \
  || check bad "read paths in and after a rolled-back writing transaction: $(echo "$paths" | tail -1)"

echo "== guards: a step's row locked once per transaction"
# The guard locks the step's row before each move and skips the lock when the transaction
# already holds it. A lock taken in a savepoint that rolls back is released (also when it was
# passed up from a savepoint released into it), and one of a transaction that ended is gone:
# the next move must lock again. Each case ends with a move (which finds the lock held, and
# takes none of its own), says so through a file, and holds its transaction open; another
# session's NOWAIT lock on the row must then fail.
held_lock() { # $1 = name, $2 = the statements before the last move, $3 = the step
  local step=$3 ready="$work/held.ready"
  rm -f "$ready"
  command psql "$db" -X -q -v ON_ERROR_STOP=1 >/dev/null 2>"$work/held.err" <<SQL &
$2
UPDATE tasker_workflow_step_transitions SET most_recent = false WHERE workflow_step_id = $step AND most_recent;
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
SELECT $step, 'in_progress', max(sort_key) + 10, true, now(), now() FROM tasker_workflow_step_transitions WHERE workflow_step_id = $step;
\! touch $ready
SELECT pg_sleep(5);
COMMIT;
SQL
  local writer=$! waited=0 got writer_rc=0
  while [ ! -e "$ready" ] && [ "$waited" -lt 300 ]; do sleep 0.1; waited=$((waited + 1)); done
  got=$(command psql "$db" -X -q -At -c "SELECT 'locked: no' FROM tasker_workflow_steps WHERE workflow_step_id = $step FOR NO KEY UPDATE NOWAIT" 2>&1 || true)
  wait "$writer" || writer_rc=$?
  case "$got" in
    *"could not obtain lock"*) [ "$writer_rc" = 0 ] && check ok "$1: the last move held the step's row lock" \
      || check bad "$1: the writer failed ($(cat "$work/held.err"))" ;;
    *) check bad "$1: the last move held the step's row lock (another session's NOWAIT lock: $got; writer: $(cat "$work/held.err"))" ;;
  esac
}
pending() { echo "INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at) VALUES ($1, 'pending', 10, true, now(), now());"; }
x=$(new_step | tail -1)
held_lock "a lock taken in a savepoint rolled back is taken again" "BEGIN;
SAVEPOINT s;
$(pending "$x")
ROLLBACK TO SAVEPOINT s;
$(pending "$x")
ROLLBACK TO SAVEPOINT s;
RELEASE SAVEPOINT s;
$(pending "$x")" "$x"
x=$(new_step | tail -1)
held_lock "a lock passed up by a savepoint released, into one rolled back, is taken again" "BEGIN;
SAVEPOINT a;
SAVEPOINT b;
$(pending "$x")
RELEASE SAVEPOINT b;
ROLLBACK TO SAVEPOINT a;
RELEASE SAVEPOINT a;
$(pending "$x")" "$x"
x=$(new_step | tail -1)
held_lock "a lock of a committed transaction is taken again by the next" "$(pending "$x")
BEGIN;" "$x"
x=$(new_step | tail -1)
held_lock "REPEATABLE READ: a lock taken in a savepoint rolled back is taken again" "BEGIN ISOLATION LEVEL REPEATABLE READ;
SAVEPOINT s;
$(pending "$x")
ROLLBACK TO SAVEPOINT s;
$(pending "$x")" "$x"

echo "concurrency: $passed passed, $failed failed"
[ "$failed" = 0 ]
