#!/usr/bin/env bash
# Tests of the lifecycle events (docs/events.md) on the Rails schema, with real connections:
#   1. every legal move of both state machines, from steps and tasks with varied fields, under
#      three session TimeZones: one event each, with the catalog's name, the state before,
#      and a payload equal to one computed here in SQL from Rails' rules (events.md 3.1, 4);
#   2. rolled back transactions and savepoints, refused moves: no event;
#   3. a 100-row INSERT and COPY: one event per row, in the rows' order; a replay in pages;
#   4. NOTIFY: one notification per committed transaction that recorded events, none else;
#   5. the late commit: a transaction that took its id first and commits last is handed out,
#      before the events after it (a consumer storing the last id would otherwise miss it);
#   6. concurrent writers with a consumer polling events_since() and a pruner running:
#      every event received exactly once, none missed, in delivery order; no writer error;
#   7. disable() and enable() again: the history stays, events stop and resume;
#   8. refusals: bad arguments and a pruned cursor (22023), the trigger's function and the
#      recorder are not for PUBLIC, a writer without rights on the events still records them;
#   9. named consumers: subscribe, consumer_events, ack, unsubscribe; pruning keeps what the
#      slowest consumer has not acknowledged;
#  10. two-phase commit with tasker_core.events_notify off (PREPARE refuses a NOTIFY).
# Usage: tests/events/run.sh PSQL_CONNINFO [CLIENTS] [SECONDS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
conn=${1:?connection string}; clients=${2:-4}; seconds=${3:-8}
export PGOPTIONS="-c client_min_messages=warning"
command psql "$conn dbname=postgres" -X -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS tasker_events" -c "CREATE DATABASE tasker_events"
db="$conn dbname=tasker_events"
q() { command psql "$db" -X -q -At -v ON_ERROR_STOP=1 "$@"; }
q -f "$here/../fixtures/tasker_schema.sql"
q <<'SQL'
CREATE EXTENSION tasker_core;
INSERT INTO tasker_task_namespaces (task_namespace_id, name, created_at, updated_at) VALUES (1, 'default', now(), now());
INSERT INTO tasker_dependent_systems (dependent_system_id, name, created_at, updated_at) VALUES (1, 'sys', now(), now());
INSERT INTO tasker_named_tasks (named_task_id, name, task_namespace_id, created_at, updated_at) VALUES (1, 'order_fulfillment', 1, now(), now());
INSERT INTO tasker_named_steps (named_step_id, dependent_system_id, name, created_at, updated_at)
SELECT g, 1, 'step_' || g, now(), now() FROM generate_series(1, 5) g;
SELECT count(*) FROM tasker_core.enable(functions => false, events => true) \g /dev/null
SELECT count(*) FROM tasker_core.step_state_enable() \g /dev/null
CREATE SCHEMA ev;
CREATE SEQUENCE ev.sort_keys;
-- A move the way Statesman writes it: the old row's flag cleared, the new row inserted.
CREATE FUNCTION ev.step_move(s bigint, st text) RETURNS void LANGUAGE sql AS $$
    UPDATE tasker_workflow_step_transitions SET most_recent = false WHERE workflow_step_id = s AND most_recent;
    INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, metadata, created_at, updated_at)
    SELECT s, st, coalesce(max(sort_key), 0) + 1, true, '{}', LOCALTIMESTAMP - interval '0.0004 s', LOCALTIMESTAMP
      FROM tasker_workflow_step_transitions WHERE workflow_step_id = s;
$$;
CREATE FUNCTION ev.task_move(t bigint, st text) RETURNS void LANGUAGE sql AS $$
    UPDATE tasker_task_transitions SET most_recent = false WHERE task_id = t AND most_recent;
    INSERT INTO tasker_task_transitions (task_id, to_state, sort_key, most_recent, metadata, created_at, updated_at)
    SELECT t, st, coalesce(max(sort_key), 0) + 1, true, '{}', LOCALTIMESTAMP, LOCALTIMESTAMP
      FROM tasker_task_transitions WHERE task_id = t;
$$;
CREATE FUNCTION ev.new_task(context jsonb DEFAULT '{"k": 1}') RETURNS bigint LANGUAGE sql AS $$
    INSERT INTO tasker_tasks (named_task_id, requested_at, context, identity_hash, created_at, updated_at)
    VALUES (1, now(), context, md5(random()::text || clock_timestamp()), now(), now()) RETURNING task_id;
$$;
-- Rails' payload of a step event, computed here from the step's row as it is now (the tests
-- change no step after moving it) and the event's own time (events.md section 4).
CREATE FUNCTION ev.truthy(v jsonb) RETURNS boolean LANGUAGE sql AS $$ SELECT v IS NOT NULL AND v <> 'null' AND v <> 'false' $$;
CREATE FUNCTION ev.present(v jsonb) RETURNS boolean LANGUAGE sql AS $$
    SELECT ev.truthy(v) AND v NOT IN ('{}', '[]') AND NOT (jsonb_typeof(v) = 'string' AND btrim(v #>> '{}', E' \t\n\r\f\v') = '')
$$;
CREATE FUNCTION ev.iso(t timestamp) RETURNS text LANGUAGE sql AS $$ SELECT to_char(t, 'YYYY-MM-DD"T"HH24:MI:SS"Z"') $$;
CREATE FUNCTION ev.iso_ms(t timestamp) RETURNS text LANGUAGE sql AS $$ SELECT to_char(t, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') $$;
CREATE VIEW ev.expected AS
SELECT e.id, e.name AS got_name, e.payload AS got, e.from_state AS got_from,
       CASE WHEN e.step_id IS NULL THEN 'task.' ELSE 'step.' END || CASE t.to_state
            WHEN 'pending' THEN 'initialize_requested'
            WHEN 'in_progress' THEN CASE WHEN e.step_id IS NULL THEN 'start_requested' ELSE 'execution_requested' END
            WHEN 'complete' THEN 'completed' WHEN 'error' THEN 'failed' ELSE t.to_state END AS name,
       t.before AS from_state,
       CASE WHEN e.step_id IS NULL THEN
           jsonb_build_object('task_id', k.task_id, 'task_name', nt.name, 'task_context', k.context, 'from_state', t.before,
                              'to_state', t.to_state, 'transitioned_at', ev.iso_ms(t.created_at),
                              'timestamp', ev.iso_ms((e.created_at AT TIME ZONE 'UTC')::timestamp))
       ELSE
           jsonb_build_object('task_id', s.task_id, 'step_id', s.workflow_step_id, 'step_name', ns.name,
                              'started_at', ev.iso(s.last_attempted_at), 'completed_at', ev.iso(s.processed_at),
                              'attempt_number', coalesce(s.attempts, 1), 'retry_limit', s.retry_limit,
                              'event_type', CASE t.to_state WHEN 'complete' THEN 'completed' WHEN 'error' THEN 'failed'
                                                            WHEN 'in_progress' THEN 'started' ELSE 'unknown' END,
                              'timestamp', ev.iso((e.created_at AT TIME ZONE 'UTC')::timestamp),
                              'from_state', t.before, 'to_state', t.to_state, 'transitioned_at', ev.iso_ms(t.created_at))
           || CASE t.to_state
              WHEN 'complete' THEN jsonb_build_object('execution_duration',
                       CASE WHEN s.last_attempted_at IS NOT NULL AND s.processed_at IS NOT NULL
                            THEN round(extract(epoch FROM s.processed_at - s.last_attempted_at), 3) ELSE 0.0 END)
                   || CASE WHEN ev.present(s.results) THEN jsonb_build_object('step_results', s.results) ELSE '{}' END
              WHEN 'error' THEN jsonb_build_object('error_message',
                       CASE WHEN jsonb_typeof(s.results) = 'object' AND ev.truthy(s.results -> 'error') THEN s.results -> 'error' ELSE '"Unknown error"' END,
                       'exception_class', 'StandardError')
                   || CASE WHEN jsonb_typeof(s.results) = 'object' AND ev.truthy(s.results -> 'backtrace')
                           THEN jsonb_build_object('backtrace', s.results -> 'backtrace') ELSE '{}' END
                   || CASE WHEN ev.present(s.results) THEN jsonb_build_object('step_results', s.results) ELSE '{}' END
              WHEN 'in_progress' THEN jsonb_build_object('step_inputs', s.inputs, 'step_dependencies',
                       (SELECT coalesce(jsonb_agg(pn.name ORDER BY ed.from_step_id), '[]') FROM tasker_workflow_step_edges ed
                          JOIN tasker_workflow_steps ps ON ps.workflow_step_id = ed.from_step_id
                          JOIN tasker_named_steps pn ON pn.named_step_id = ps.named_step_id
                         WHERE ed.to_step_id = s.workflow_step_id))
              ELSE '{}' END
       END AS payload
  FROM tasker_core.events e
  JOIN LATERAL (SELECT x.to_state, x.created_at,
                       (SELECT p.to_state FROM tasker_workflow_step_transitions p WHERE p.workflow_step_id = x.workflow_step_id
                           AND p.sort_key < x.sort_key ORDER BY p.sort_key DESC LIMIT 1) AS before
                  FROM tasker_workflow_step_transitions x WHERE e.step_id IS NOT NULL AND x.id = e.transition_id
                UNION ALL
                SELECT x.to_state, x.created_at,
                       (SELECT p.to_state FROM tasker_task_transitions p WHERE p.task_id = x.task_id
                           AND p.sort_key < x.sort_key ORDER BY p.sort_key DESC LIMIT 1)
                  FROM tasker_task_transitions x WHERE e.step_id IS NULL AND x.id = e.transition_id) t ON true
  LEFT JOIN tasker_workflow_steps s ON s.workflow_step_id = e.step_id
  LEFT JOIN tasker_named_steps ns ON ns.named_step_id = s.named_step_id
  LEFT JOIN tasker_tasks k ON k.task_id = e.task_id AND e.step_id IS NULL
  LEFT JOIN tasker_named_tasks nt ON nt.named_task_id = k.named_task_id;
SQL
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
passed=0; failed=0
check() { if [ "$1" = ok ]; then passed=$((passed + 1)); echo "  ok: $2"; else failed=$((failed + 1)); echo "  FAILED: $2"; fi; }
is() { if [ "$1" = "$2" ]; then check ok "$3"; else check bad "$3 (got '$1', want '$2')"; fi; }
# The events that differ from what Rails' rules give, and how many events there are per
# transition (each must have exactly one).
mismatches() { q -c "SELECT count(*) FROM ev.expected WHERE got IS DISTINCT FROM payload OR got_name <> name OR got_from IS DISTINCT FROM from_state"; }
one_each() {
  q -c "SELECT (SELECT count(*) FROM tasker_workflow_step_transitions t
                 WHERE (SELECT count(*) FROM tasker_core.events e WHERE e.step_id IS NOT NULL AND e.transition_id = t.id) <> 1)
             + (SELECT count(*) FROM tasker_task_transitions t
                 WHERE (SELECT count(*) FROM tasker_core.events e WHERE e.step_id IS NULL AND e.transition_id = t.id) <> 1)
             + (SELECT count(*) - count(DISTINCT (step_id IS NULL, transition_id)) FROM tasker_core.events)"
}

echo "== 1. every legal move, three session TimeZones"
for tz in UTC America/Caracas Asia/Kolkata; do
  PGTZ=$tz q <<'SQL' >/dev/null
DO $$
DECLARE
    step_moves text[][] := ARRAY[[NULL, 'pending'], [NULL, 'in_progress'], [NULL, 'error'], [NULL, 'cancelled'], [NULL, 'resolved_manually'],
        ['pending', 'in_progress'], ['pending', 'error'], ['pending', 'cancelled'], ['pending', 'resolved_manually'],
        ['in_progress', 'complete'], ['in_progress', 'error'], ['in_progress', 'cancelled'],
        ['error', 'pending'], ['error', 'resolved_manually']];
    task_moves text[][] := ARRAY[[NULL, 'pending'], [NULL, 'in_progress'], [NULL, 'cancelled'], [NULL, 'error'],
        ['pending', 'in_progress'], ['pending', 'cancelled'], ['pending', 'error'],
        ['in_progress', 'complete'], ['in_progress', 'error'], ['in_progress', 'cancelled'], ['in_progress', 'pending'],
        ['error', 'pending'], ['error', 'resolved_manually'], ['complete', 'cancelled'], ['resolved_manually', 'cancelled']];
    results jsonb[] := ARRAY[NULL, '{}', '[]', '""', '"  "', 'false', '7', '{"ok": true, "n": 12345678901234567890.5}',
                             '{"error": "boom", "backtrace": ["a.rb:1", "b.rb:2"]}', '{"error": null, "backtrace": false}',
                             '{"error": {"code": 42}}', '["error"]'];
    path text[];
    i int;
    t bigint;
    s bigint;
    parent bigint;
    st text;
BEGIN
    FOR i IN 1 .. array_length(step_moves, 1) LOOP
        t := ev.new_task();
        -- A done parent for some steps (their dependencies are named in execution_requested).
        INSERT INTO tasker_workflow_steps (task_id, named_step_id, created_at, updated_at) VALUES (t, 1 + i % 5, now(), now())
        RETURNING workflow_step_id INTO parent;
        PERFORM ev.step_move(parent, 'pending'); PERFORM ev.step_move(parent, 'in_progress'); PERFORM ev.step_move(parent, 'complete');
        INSERT INTO tasker_workflow_steps (task_id, named_step_id, retry_limit, attempts, last_attempted_at, processed_at, inputs, results, created_at, updated_at)
        VALUES (t, 1 + (i + 1) % 5, CASE WHEN i % 4 = 0 THEN NULL ELSE i END, CASE WHEN i % 3 = 0 THEN NULL ELSE i % 3 END,
                CASE WHEN i % 5 = 0 THEN NULL ELSE LOCALTIMESTAMP - (i * 0.1234567) * interval '1 s' END,
                CASE WHEN i % 7 = 0 THEN NULL ELSE LOCALTIMESTAMP END,
                CASE WHEN i % 2 = 0 THEN jsonb_build_object('i', i) END, results[1 + i % array_length(results, 1)], now(), now())
        RETURNING workflow_step_id INTO s;
        IF i % 2 = 1 THEN
            INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at) VALUES (parent, s, 'provides', now(), now());
        END IF;
        path := CASE step_moves[i][1] WHEN 'pending' THEN ARRAY['pending'] WHEN 'in_progress' THEN ARRAY['pending', 'in_progress']
                                      WHEN 'error' THEN ARRAY['pending', 'error'] ELSE ARRAY[]::text[] END || step_moves[i][2];
        FOREACH st IN ARRAY path LOOP PERFORM ev.step_move(s, st); END LOOP;
    END LOOP;
    FOR i IN 1 .. array_length(task_moves, 1) LOOP
        t := ev.new_task(CASE WHEN i % 2 = 0 THEN jsonb_build_object('order', i, 'big', 1e30) END);
        path := CASE task_moves[i][1] WHEN 'pending' THEN ARRAY['pending'] WHEN 'in_progress' THEN ARRAY['in_progress']
                                      WHEN 'error' THEN ARRAY['error'] WHEN 'complete' THEN ARRAY['in_progress', 'complete']
                                      WHEN 'resolved_manually' THEN ARRAY['error', 'resolved_manually'] ELSE ARRAY[]::text[] END || task_moves[i][2];
        FOREACH st IN ARRAY path LOOP PERFORM ev.task_move(t, st); END LOOP;
    END LOOP;
END $$;
SQL
done
n=$(q -c "SELECT count(*) FROM tasker_core.events")
is "$(mismatches)" 0 "$n events: names, states before and payloads are Rails' (14 step moves and 15 task moves, each under three TimeZones)"
is "$(one_each)" 0 "exactly one event per transition"
is "$(q -c "SELECT string_agg(DISTINCT name, ' ' ORDER BY name) FROM tasker_core.events")" \
   "step.cancelled step.completed step.execution_requested step.failed step.initialize_requested step.resolved_manually task.cancelled task.completed task.failed task.initialize_requested task.resolved_manually task.start_requested" \
   "the twelve names of the catalog's transition map (never *.retry_requested)"
is "$(q -c "SELECT count(*) FROM tasker_core.events WHERE name = 'step.initialize_requested' AND from_state = 'error'")" 3 "a step retried from error is step.initialize_requested, with from_state error"
# The check can fail: a payload changed by hand is found.
is "$(q -c "BEGIN; UPDATE tasker_core.events SET payload = payload || '{\"attempt_number\": 99}' WHERE id = (SELECT min(id) FROM tasker_core.events WHERE step_id IS NOT NULL); SELECT count(*) FROM ev.expected WHERE got IS DISTINCT FROM payload; ROLLBACK;" | tail -1)" 1 "the payload check finds one payload changed by hand"

echo "== 2. rollbacks, savepoints, refused moves"
before=$(q -c "SELECT count(*) FROM tasker_core.events")
s=$(q -c "SELECT workflow_step_id FROM tasker_workflow_steps ORDER BY 1 DESC LIMIT 1")
t=$(q -c "SELECT ev.new_task()")
s2=$(q -c "INSERT INTO tasker_workflow_steps (task_id, named_step_id, created_at, updated_at) VALUES ($t, 1, now(), now()) RETURNING workflow_step_id")
q -c "BEGIN; SELECT ev.step_move($s2, 'pending'); ROLLBACK;" >/dev/null
is "$(q -c "SELECT count(*) FROM tasker_core.events")" "$before" "a rolled back move records nothing"
q -c "BEGIN; SAVEPOINT a; SELECT ev.step_move($s2, 'pending'); ROLLBACK TO a; SELECT ev.step_move($s2, 'pending'); SAVEPOINT b; SELECT ev.step_move($s2, 'in_progress'); RELEASE b; COMMIT;" >/dev/null
is "$(q -c "SELECT string_agg(name || ':' || coalesce(from_state, '-'), ' ' ORDER BY id) FROM tasker_core.events WHERE step_id = $s2")" \
   "step.initialize_requested:- step.execution_requested:pending" "savepoints: the rolled back move left nothing, the released one its event"
err=$(q -c "SELECT ev.step_move($s2, 'resolved_manually')" 2>&1 || true)
is "$(q -c "SELECT count(*) FROM tasker_core.events WHERE step_id = $s2")/$(echo "$err" | grep -c 'ERROR')" "2/1" "a move the guards refuse records nothing"

echo "== 3. many rows in one statement: a 100-row INSERT and COPY"
t=$(q -c "SELECT ev.new_task()")
q -c "INSERT INTO tasker_workflow_steps (task_id, named_step_id, created_at, updated_at) SELECT $t, 1 + g % 5, now(), now() FROM generate_series(1, 200) g" >/dev/null
q -c "INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
      SELECT workflow_step_id, 'pending', 1, true, now(), now() FROM tasker_workflow_steps WHERE task_id = $t ORDER BY workflow_step_id LIMIT 100" >/dev/null
q -c "SELECT workflow_step_id, 'pending', 1, true, now(), now() FROM tasker_workflow_steps WHERE task_id = $t ORDER BY workflow_step_id OFFSET 100" -F $'\t' >"$work/copy.tsv"
q -c "\\copy tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at) FROM '$work/copy.tsv'"
is "$(q -c "SELECT count(*), count(DISTINCT xid) FROM tasker_core.events e JOIN tasker_workflow_steps s ON s.workflow_step_id = e.step_id WHERE s.task_id = $t" | tr '|' ' ')" "200 2" "200 events from one INSERT and one COPY, one transaction each"
is "$(q -c "SELECT count(*) FROM (SELECT e.transition_id, lag(e.transition_id) OVER (ORDER BY e.xid, e.id) prev FROM tasker_core.events e
            JOIN tasker_workflow_steps s ON s.workflow_step_id = e.step_id WHERE s.task_id = $t) x WHERE x.transition_id < x.prev")" 0 "in the rows' order"
is "$(mismatches)/$(one_each)" "0/0" "their payloads are Rails', one event per row"
# Replay: reading again from an older id, in pages of 7, gives the same events in the same order.
from=$(q -c "SELECT id FROM tasker_core.events e JOIN tasker_workflow_steps s ON s.workflow_step_id = e.step_id WHERE s.task_id = $t ORDER BY e.xid, e.id LIMIT 1")
once=$(q -c "SELECT string_agg(id::text, ' ' ORDER BY xid, id) FROM tasker_core.events_since($from, 100000)")
paged=""; c=$from
while :; do page=$(q -c "SELECT id FROM tasker_core.events_since($c, 7)" | tr '\n' ' '); [ -n "$page" ] || break; paged="$paged$page"; c=$(echo $page | awk '{print $NF}'); done
is "$(echo $paged)" "$once" "a replay in pages of 7 gives the same $(echo $once | wc -w) events in the same order as one call"

echo "== 4. NOTIFY: one per committed transaction that recorded events"
t=$(q -c "SELECT ev.new_task()")
ids=$(q -c "INSERT INTO tasker_workflow_steps (task_id, named_step_id, created_at, updated_at) SELECT $t, 1, now(), now() FROM generate_series(1, 3) RETURNING workflow_step_id" | tr '\n' ' ')
set -- $ids
(command psql "$db" -X -c "LISTEN tasker_core_events" -c "SELECT pg_sleep(3)" -c "SELECT 1" >"$work/listen.out" 2>&1) &
sleep 1
q -c "SELECT ev.step_move($1, 'pending')" >/dev/null                                       # one
q -c "BEGIN; SELECT ev.step_move($2, 'pending'); SELECT ev.step_move($2, 'in_progress'); COMMIT;" >/dev/null   # one (two statements)
q -c "BEGIN; SELECT ev.step_move($3, 'pending'); ROLLBACK;" >/dev/null                     # none
q -c "UPDATE tasker_workflow_steps SET attempts = 1 WHERE workflow_step_id = $3" >/dev/null  # none: no transition
wait
is "$(grep -c 'Asynchronous notification "tasker_core_events"' "$work/listen.out")" 2 "two notifications for two committed transactions with events"

echo "== 5. the late commit"
t=$(q -c "SELECT ev.new_task()")
ids=$(q -c "INSERT INTO tasker_workflow_steps (task_id, named_step_id, created_at, updated_at) SELECT $t, 1, now(), now() FROM generate_series(1, 2) RETURNING workflow_step_id" | tr '\n' ' ')
set -- $ids
cursor=$(q -c "SELECT coalesce((SELECT id FROM tasker_core.events_since(0, 1000000) ORDER BY xid DESC, id DESC LIMIT 1), 0)")
# A takes its transaction id and its event id first, then waits; B moves later and commits first.
(command psql "$db" -X -q -v ON_ERROR_STOP=1 -c "BEGIN; SELECT ev.step_move($1, 'pending'); SELECT pg_sleep(3); COMMIT;" >/dev/null) &
sleep 1
q -c "SELECT ev.step_move($2, 'pending')" >/dev/null
a_id=$(q -c "SELECT max(id) FROM tasker_core.events WHERE step_id = $1"); a_id=${a_id:-none}
b_id=$(q -c "SELECT id FROM tasker_core.events WHERE step_id = $2")
naive=$(q -c "SELECT string_agg(id::text, ' ' ORDER BY id) FROM tasker_core.events WHERE id > $cursor")
during=$(q -c "SELECT count(*) FROM tasker_core.events_since($cursor)")
wait
after=$(q -c "SELECT string_agg(step_id::text, ' ' ORDER BY xid, id) FROM tasker_core.events_since($cursor)")
is "$a_id/$naive" "none/$b_id" "while A is open, B's event (id $b_id) is visible and A's is not: a consumer polling by id would store $b_id and never see A's"
is "$during" 0 "events_since hands out nothing while A, which could still commit an event before B's, is open"
is "$after" "$1 $2" "once A committed: A's event, then B's"

echo "== 6. concurrent writers, a consumer and a pruner"
t=$(q -c "SELECT ev.new_task()")
q -c "INSERT INTO tasker_workflow_steps (task_id, named_step_id, created_at, updated_at) SELECT $t, 1, now(), now() FROM generate_series(1, 2000)" >/dev/null
read -r lo hi < <(q -F ' ' -c "SELECT min(workflow_step_id), max(workflow_step_id) FROM tasker_workflow_steps WHERE task_id = $t")
start=$(q -c "SELECT coalesce((SELECT id FROM tasker_core.events_since(0, 1000000) ORDER BY xid DESC, id DESC LIMIT 1), 0)")
cat >"$work/writer.sql" <<'EOF'
\set s random(:lo, :hi)
BEGIN;
INSERT INTO tasker_task_transitions (task_id, to_state, sort_key, most_recent, created_at, updated_at)
SELECT :t, 'pending', -nextval('ev.sort_keys'), false, now(), now() WHERE random() < 0.3;
SELECT pg_sleep(random() * 0.004);
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
VALUES (:s, 'pending', -nextval('ev.sort_keys'), false, now(), now());
COMMIT;
EOF
# (Rows with most_recent false: the writers race on one step's history, which the guards would
# rightly refuse; history rows keep the events flowing.)
q -c "SELECT count(*) FROM tasker_core.disable()" >/dev/null
q -c "SELECT count(*) FROM tasker_core.enable(functions => false, triggers => false, views => false, events => true)" >/dev/null
(pgbench -n -c "$clients" -j "$clients" -T "$seconds" -D lo="$lo" -D hi="$hi" -D t="$t" -f "$work/writer.sql" "$db" >"$work/pgbench.out" 2>&1; echo $? >"$work/pgbench.rc") &
# The pruner: every half second, deletes events older than 2 s (the consumer keeps up).
(end=$((SECONDS + seconds)); while [ $SECONDS -lt $end ]; do q -c "SELECT tasker_core.prune_events('2 s', 500)" >>"$work/pruned" 2>&1; sleep 0.5; done) &
# The consumer: polls, stores the last id, records every event it got.
cursor=$start
end=$((SECONDS + seconds + 3))
while [ $SECONDS -lt $end ]; do
  q -F ' ' -c "SELECT id, xid FROM tasker_core.events_since($cursor, 300)" >"$work/batch" || { echo "consumer failed"; break; }
  if [ -s "$work/batch" ]; then cat "$work/batch" >>"$work/received"; cursor=$(tail -1 "$work/batch" | cut -d' ' -f1); else sleep 0.05; fi
done
wait
while :; do  # drain
  q -F ' ' -c "SELECT id, xid FROM tasker_core.events_since($cursor, 1000)" >"$work/batch"
  [ -s "$work/batch" ] || break
  cat "$work/batch" >>"$work/received"; cursor=$(tail -1 "$work/batch" | cut -d' ' -f1)
done
written=$(q -c "SELECT (SELECT count(*) FROM tasker_workflow_step_transitions WHERE workflow_step_id BETWEEN $lo AND $hi)
                     + (SELECT count(*) FROM tasker_task_transitions WHERE task_id = $t)")
got=$(wc -l <"$work/received"); uniq=$(cut -d' ' -f1 "$work/received" | sort -u | wc -l)
pruned=$(awk '/^[0-9]+$/ {s += $1} END {print s + 0}' "$work/pruned")
echo "  $(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$work/pgbench.out") tx/s; $written transitions written, $got events received, $pruned pruned meanwhile"
is "$(cat "$work/pgbench.rc")/$(grep -c ERROR "$work/pgbench.out" || true)/$(grep -c ERROR "$work/pruned" || true)" "0/0/0" "no writer and no pruner error"
is "$got/$uniq" "$written/$written" "the consumer received every event exactly once"
sort -k2,2n -k1,1n -s "$work/received" | cmp -s - "$work/received" && check ok "in delivery order (xid, id)" || check bad "in delivery order (xid, id)"
[ "$pruned" -gt 0 ] && check ok "the pruner deleted events while they were written" || check bad "the pruner deleted nothing"
is "$(q -c "SELECT count(*) FROM tasker_core.events_since($cursor)")/$(q -c "SELECT count(*) FROM tasker_core.events WHERE id = $cursor")" "0/1" "the last event handed out is kept by the pruner"

echo "== 7. disable() and enable() again"
n=$(q -c "SELECT count(*) FROM tasker_core.events")
q -c "SELECT count(*) FROM tasker_core.disable()" >/dev/null
is "$(q -c "SELECT count(*) FROM pg_trigger WHERE tgname = 'tasker_core_events'")/$(q -c "SELECT count(*) FROM tasker_core.events")" "0/$n" "disable() removes the triggers and keeps the history"
q -c "SELECT ev.step_move($lo, 'pending')" >/dev/null
is "$(q -c "SELECT count(*) FROM tasker_core.events")" "$n" "no event while disabled"
q -c "SELECT count(*) FROM tasker_core.enable(functions => false, views => false, events => true)" >/dev/null
is "$(q -c "SELECT state FROM tasker_core.status() WHERE kind = 'events'" | sort -u)" "installed" "status() reports the event triggers"
q -c "SELECT ev.task_move(ev.new_task(), 'pending')" >/dev/null
is "$(q -c "SELECT count(*) FROM tasker_core.events")" "$((n + 1))" "events resume after enable(events => true)"
is "$(q -c "SELECT count(*) FROM tasker_core.enable(functions => false, views => false) WHERE object LIKE '%tasker_core_events%'")/$(q -c "SELECT count(*) FROM pg_trigger WHERE tgname = 'tasker_core_events'")" "0/2" \
   "enable() without events leaves the event triggers alone"

echo "== 8. refusals and rights"
code() { command psql "$db" -X -q -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -c "\\set VERBOSITY verbose" -c "$1" 2>&1 | sed -n 's/^ERROR: *\([0-9A-Z]\{5\}\):.*/\1/p' | head -1; }
is "$(code "SELECT * FROM tasker_core.events_since(-1)")" 22023 "events_since(-1): 22023"
is "$(code "SELECT * FROM tasker_core.events_since(0, 0)")" 22023 "events_since(0, 0): 22023"
is "$(code "SELECT * FROM tasker_core.events_since(-5 + 0 * 1, NULL)")" 22023 "events_since(.., NULL): 22023"
gone=$(q -c "SELECT min(id) FROM tasker_core.events")
q -c "SELECT ev.task_move(ev.new_task(), 'pending')" >/dev/null
q -c "SELECT tasker_core.prune_events('0 s')" >/dev/null
is "$(code "SELECT * FROM tasker_core.events_since($gone)")" 22023 "a pruned cursor: 22023, with a hint"
is "$(code "SELECT tasker_core.prune_events(NULL)")/$(code "SELECT tasker_core.prune_events('-1 s')")/$(code "SELECT tasker_core.prune_events('1 s', 0)")" "22023/22023/22023" "prune_events' bad arguments: 22023"
orphan=$(command psql "$db" -X -q -At -v ON_ERROR_STOP=1 -c "\\set VERBOSITY verbose" -c "BEGIN;
  ALTER TABLE tasker_workflow_step_transitions DROP CONSTRAINT fk_rails_6e0f6eb833;
  ALTER TABLE tasker_workflow_step_transitions DISABLE TRIGGER tasker_core_step_transition_insert;
  INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
  VALUES (999999999, 'pending', 1, true, now(), now());
  COMMIT;" 2>&1 | grep -m1 ERROR || true)
case "$orphan" in *23503*"no event for transition"*"its step is not there"*) check ok "a transition whose step is missing is refused (23503), not left without its event" ;;
  *) check bad "a transition whose step is missing: '$orphan'" ;; esac
q -c "DROP ROLE IF EXISTS ev_writer" -c "CREATE ROLE ev_writer LOGIN" \
  -c "GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO ev_writer" -c "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO ev_writer" >/dev/null
is "$(q -c "SELECT has_function_privilege('ev_writer', 'tasker_core.events_record(oid, bigint[])', 'EXECUTE'),
               has_function_privilege('ev_writer', 'tasker_core.events_capture()', 'EXECUTE'),
               has_function_privilege('ev_writer', 'tasker_core.prune_events(interval, integer)', 'EXECUTE'),
               has_table_privilege('ev_writer', 'tasker_core.events', 'SELECT')")" "f|f|f|f" "the recorder, the trigger function, the pruner and the table are not for PUBLIC"
t=$(q -c "SELECT ev.new_task()")
before=$(q -c "SELECT count(*) FROM tasker_core.events")
command psql "$conn dbname=tasker_events user=ev_writer" -X -q -v ON_ERROR_STOP=1 \
  -c "INSERT INTO tasker_task_transitions (task_id, to_state, sort_key, most_recent, created_at, updated_at) VALUES ($t, 'pending', 1, true, now(), now())" >/dev/null 2>"$work/writer.err" \
  && check ok "a writer with no right on tasker_core.events moves a task" || check bad "a writer with no right on the events: $(cat "$work/writer.err")"
is "$(q -c "SELECT count(*) FROM tasker_core.events") $(code "SET ROLE ev_writer; SELECT * FROM tasker_core.events_since(0)")" "$((before + 1)) 42501" "its event is recorded; it may not read the events unless granted"
q -c "SELECT count(*) FROM tasker_core.disable()" -c "DROP OWNED BY ev_writer" -c "DROP ROLE ev_writer" >/dev/null

echo "== 9. named consumers"
q -c "SELECT count(*) FROM tasker_core.enable(functions => false, views => false, events => true)" >/dev/null
q -c "SELECT tasker_core.prune_events('0 s', 1000000)" >/dev/null
last=$(q -c "SELECT id FROM tasker_core.events_since(0, 1000000) ORDER BY xid DESC, id DESC LIMIT 1")
is "$(q -c "SELECT tasker_core.subscribe('billing')")/$(q -c "SELECT tasker_core.subscribe('billing')")" "$last/$last" "subscribe() positions a consumer at the last event handed out; again, nothing changes"
t=$(q -c "SELECT ev.new_task()")
for st in pending in_progress; do q -c "SELECT ev.task_move($t, '$st')" >/dev/null; done
is "$(q -c "SELECT string_agg(name, ' ' ORDER BY xid, id) FROM tasker_core.consumer_events('billing')")" "task.initialize_requested task.start_requested" "consumer_events() returns what came after its position"
q -c "SELECT tasker_core.ack('billing', (SELECT max(id) FROM tasker_core.events WHERE task_id = $t))" >/dev/null
is "$(q -c "SELECT count(*) FROM tasker_core.consumer_events('billing')")" 0 "after ack(), nothing more"
q -c "SELECT tasker_core.subscribe('slow')" >/dev/null
for st in complete; do q -c "SELECT ev.task_move($t, '$st')" >/dev/null; done
t2=$(q -c "SELECT ev.new_task()"); for st in pending in_progress cancelled; do q -c "SELECT ev.task_move($t2, '$st')" >/dev/null; done
q -c "SELECT tasker_core.prune_events('0 s')" >/dev/null
is "$(q -c "SELECT count(*) FROM tasker_core.consumer_events('slow')")/$(q -c "SELECT count(*) FROM tasker_core.consumer_events('billing')")" "4/4" \
   "prune_events() keeps what the slowest consumer has not acknowledged"
q -c "SELECT tasker_core.ack('slow', (SELECT id FROM tasker_core.consumer_events('slow') ORDER BY xid DESC, id DESC LIMIT 1))" >/dev/null
q -c "SELECT tasker_core.prune_events('0 s')" >/dev/null
is "$(q -c "SELECT count(*) FROM tasker_core.consumer_events('slow')")/$(q -c "SELECT count(*) FROM tasker_core.consumer_events('billing')")" "0/4" \
   "once acknowledged by the slowest, still kept for the other"
q -c "SELECT tasker_core.ack('billing', (SELECT id FROM tasker_core.consumer_events('billing') ORDER BY xid DESC, id DESC LIMIT 1))" >/dev/null
is "$(q -c "SELECT tasker_core.prune_events('0 s')")/$(q -c "SELECT count(*) FROM tasker_core.events")" "4/1" "acknowledged by all: pruned but the last"
q -c "SELECT tasker_core.subscribe('replayer', from_oldest => true)" >/dev/null
t3=$(q -c "SELECT ev.new_task()"); q -c "SELECT ev.task_move($t3, 'pending')" >/dev/null
is "$(q -c "SELECT tasker_core.prune_events('0 s')")/$(q -c "SELECT count(*) FROM tasker_core.consumer_events('replayer')")" "0/2" "a consumer at 0 keeps everything"
is "$(q -c "SELECT tasker_core.unsubscribe('replayer')")/$(q -c "SELECT tasker_core.unsubscribe('replayer')")" "t/f" "unsubscribe() forgets a consumer once"
is "$(code "SELECT * FROM tasker_core.consumer_events('nobody')")/$(code "SELECT tasker_core.ack('nobody', 0)")/$(code "SELECT tasker_core.ack('billing', -1)")/$(code "SELECT tasker_core.ack('billing', 999999999)")/$(code "SELECT tasker_core.subscribe('')")" \
   "42704/42704/22023/22023/22023" "refusals: unknown consumer 42704, bad event or name 22023"
is "$(q -c "SELECT tasker_core.subscribe('nulls', NULL) = (SELECT id FROM tasker_core.events_since(0, 1000000) ORDER BY xid DESC, id DESC LIMIT 1)")" t \
   "subscribe(name, NULL) positions at the last event handed out, as the default does"
# An event whose transaction is younger than a running one is not handed out yet: acking it is refused.
t4=$(q -c "SELECT ev.new_task()")
(command psql "$db" -X -q -c "BEGIN; SELECT ev.task_move($t4, 'pending'); SELECT pg_sleep(2); COMMIT;" >/dev/null) &
sleep 0.7
q -c "SELECT ev.task_move(ev.new_task(), 'pending')" >/dev/null
young=$(q -c "SELECT max(id) FROM tasker_core.events")
is "$(code "SELECT tasker_core.ack('billing', $young)" || true)" 22023 "ack() of an event not handed out yet (an older transaction is open): 22023"
wait
q -c "SELECT count(*) FROM tasker_core.disable()" >/dev/null

echo "== 10. two-phase commit: PREPARE TRANSACTION needs tasker_core.events_notify off"
q -c "SELECT count(*) FROM tasker_core.enable(functions => false, views => false, events => true)" >/dev/null
t=$(q -c "SELECT ev.new_task()")
cursor=$(q -c "SELECT coalesce((SELECT id FROM tasker_core.events_since(0, 1000000) ORDER BY xid DESC, id DESC LIMIT 1), 0)")
refused=$(code "BEGIN; SELECT ev.task_move($t, 'pending'); PREPARE TRANSACTION 'ev_2pc_notify';" || true)
is "$refused/$(q -c "SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'ev_2pc_notify'")" "0A000/0" "with the NOTIFY on, PostgreSQL refuses PREPARE TRANSACTION (0A000)"
(command psql "$db" -X -c "LISTEN tasker_core_events" -c "SELECT pg_sleep(2)" -c "SELECT 1" >"$work/listen2.out" 2>&1) &
sleep 0.5
q -c "SET tasker_core.events_notify = off" -c "BEGIN" -c "SELECT ev.task_move($t, 'pending')" -c "PREPARE TRANSACTION 'ev_2pc'" >/dev/null
is "$(q -c "SELECT count(*) FROM tasker_core.events_since($cursor)")" 0 "prepared: its event is not handed out, nor anything after it"
q -c "COMMIT PREPARED 'ev_2pc'" >/dev/null
wait
is "$(q -c "SELECT string_agg(name, ' ') FROM tasker_core.events_since($cursor)")/$(grep -c 'Asynchronous notification' "$work/listen2.out" || true)" "task.initialize_requested/0" \
   "with events_notify off: PREPARE and COMMIT PREPARED work, the event is recorded, no notification"
q -c "SELECT count(*) FROM tasker_core.disable()" >/dev/null

echo "== 11. events are recorded at commit: what a transaction noted, and what it dropped"
q -c "SELECT count(*) FROM tasker_core.enable(functions => false, views => false, events => true)" >/dev/null
t=$(q -c "SELECT ev.new_task()")
before=$(q -c "SELECT count(*) FROM tasker_core.events")
# Inside the transaction its own events are not there yet; at commit they are, in the order the
# transitions were written.
inside=$(q -c "BEGIN" -c "SELECT ev.task_move($t, 'pending')" -c "SELECT ev.task_move($t, 'in_progress')" \
           -c "SELECT count(*) FROM tasker_core.events" -c "COMMIT" | tail -1)
is "$inside/$(q -c "SELECT string_agg(name, ' ' ORDER BY id) FROM tasker_core.events WHERE task_id = $t")" \
   "$before/task.initialize_requested task.start_requested" "events appear at commit, in the order written"
# An extension dropped in the transaction that wrote transitions takes its events with it: the
# commit goes through.
t=$(q -c "SELECT ev.new_task()")
dropped=$(code "BEGIN; SELECT ev.task_move($t, 'pending'); DROP EXTENSION tasker_core CASCADE; COMMIT;" || true)
is "$dropped/$(q -c "SELECT count(*) FROM pg_extension WHERE extname = 'tasker_core'")" "/0" \
   "a transaction that wrote transitions and dropped the extension commits"

echo "events: $passed passed, $failed failed"
[ "$failed" = 0 ]
