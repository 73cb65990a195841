#!/usr/bin/env bash
# Differential tests of the orchestration decisions (orchestration.md B.5, A.5, C.2-C.5, D.1):
# a reference written in SQL from the spec (tests only, in schema orch_ref) against the native
# functions:
#   1. backoff_seconds (jitter off) for attempts -2..60 under several configs;
#   2. finalization_plan for every execution status x task state x mode x retry waits x config;
#   3. transition_step / transition_task outcomes on random databases (every step and task,
#      every target state, with no, the right and a wrong expected state), each call rolled back;
#   4. claim_ready_steps on random databases: the claimed set of every task, with and without
#      error steps, each call rolled back.
# A self-check runs each comparison once against a mutant reference, which must be caught.
# Usage: tests/differential/orchestration.sh PSQL_CONNINFO [SEEDS] [TASKS_PER_SEED]
set -euo pipefail
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
here=$(cd "$(dirname "$0")" && pwd); fixtures="$here/../fixtures"
conn=${1:?connection string}; seeds=${2:-4}; tasks=${3:-60}
command psql "$conn dbname=postgres" -X -q -v ON_ERROR_STOP=1 \
  -c "DROP DATABASE IF EXISTS tasker_orch_diff" -c "CREATE DATABASE tasker_orch_diff" >/dev/null
db() { command psql "$conn dbname=tasker_orch_diff" -X -q -At -v ON_ERROR_STOP=1 "$@"; }
db -f "$fixtures/${FIXTURE:-tasker_schema.sql}" -f "$fixtures/generator.sql" -c "CREATE EXTENSION tasker_core" >/dev/null
db <<'SQL'
CREATE SCHEMA orch_ref;
-- D.1 with jitter off, from the spec's words.
CREATE FUNCTION orch_ref.backoff(n int, cfg jsonb) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  list int[] := coalesce((SELECT array_agg(x::int) FROM jsonb_array_elements_text(cfg -> 'default_backoff_seconds') x), '{1,2,4,8,16,32}');
  mx int := coalesce((cfg ->> 'max_backoff_seconds')::int, 300);
  mult float8 := coalesce((cfg ->> 'backoff_multiplier')::float8, 2.0);
  t bigint;
BEGIN
  IF n <= 0 THEN t := 0;
  ELSIF n <= cardinality(list) THEN t := list[n];
  ELSE t := trunc(power(n::float8, mult))::bigint;
  END IF;
  t := least(t, mx);
  RETURN trunc(greatest(t::float8, list[1] * 0.5))::int;
END $$;
-- C.5.
CREATE FUNCTION orch_ref.delay(status text, waits bigint[], cfg jsonb) RETURNS bigint LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE d bigint;
BEGIN
  IF status = 'waiting_for_dependencies' AND cardinality(waits) > 0 THEN
    d := least((SELECT max(greatest(w, 0)) FROM unnest(waits) w) + coalesce((cfg ->> 'buffer_seconds')::int, 5),
               coalesce((cfg ->> 'max_backoff_seconds')::int, 300));
    IF d > 0 THEN RETURN d; END IF;
  END IF;
  RETURN CASE status
    WHEN 'has_ready_steps' THEN coalesce((cfg #>> '{reenqueue_delays,has_ready_steps}')::int, 0)
    WHEN 'waiting_for_dependencies' THEN coalesce((cfg #>> '{reenqueue_delays,waiting_for_dependencies}')::int, 45)
    WHEN 'processing' THEN coalesce((cfg #>> '{reenqueue_delays,processing}')::int, 10)
    ELSE coalesce((cfg ->> 'default_reenqueue_delay')::int, 30) END;
END $$;
-- C.2 to C.5: the moves tried, the decision when all are made, the reason, the delay.
CREATE FUNCTION orch_ref.plan(status text, state text, sync boolean, waits bigint[], cfg jsonb,
                              OUT moves text[], OUT decision text, OUT reason text, OUT delay int)
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE cur text := coalesce(state, 'pending'); d bigint;
BEGIN
  moves := '{}';
  IF status = 'all_complete' THEN
    decision := 'complete';
    moves := CASE cur WHEN 'complete' THEN '{}'::text[] WHEN 'error' THEN '{pending,in_progress,complete}'
                      WHEN 'in_progress' THEN '{complete}' ELSE '{in_progress,complete}' END;
  ELSIF status = 'blocked_by_failures' THEN
    decision := 'error'; moves := '{error}'; reason := 'steps_in_error_state';
  ELSIF status IN ('waiting_for_dependencies', 'processing') AND sync THEN
    decision := 'pending'; moves := '{pending}';
    reason := CASE status WHEN 'processing' THEN 'waiting_for_step_completion' ELSE 'waiting_for_dependencies' END;
  ELSIF status = 'has_ready_steps' AND sync THEN
    decision := 'ready'; reason := 'ready_for_processing';
    IF cur NOT IN ('in_progress', 'complete') THEN moves := '{in_progress}'; END IF;
  ELSE
    decision := 'reenqueue';
    reason := CASE status WHEN 'has_ready_steps' THEN 'ready_steps_available' WHEN 'waiting_for_dependencies' THEN 'awaiting_dependencies'
                          WHEN 'processing' THEN 'steps_in_progress' ELSE 'continuing_workflow' END;
    IF status = 'has_ready_steps' AND cur NOT IN ('in_progress', 'complete') THEN moves := '{in_progress}'; END IF;
    d := orch_ref.delay(status, coalesce(waits, '{}'), cfg);
    IF d <= 0 THEN moves := moves || 'pending'::text; END IF;
    delay := greatest(d, 0);
  END IF;
END $$;
-- state-machines.md, for the outcome of a move.
CREATE FUNCTION orch_ref.allowed(machine text, cur text, target text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE machine
    WHEN 'step' THEN CASE cur WHEN 'pending' THEN target IN ('in_progress', 'error', 'cancelled', 'resolved_manually')
                              WHEN 'in_progress' THEN target IN ('complete', 'error', 'cancelled')
                              WHEN 'error' THEN target IN ('pending', 'resolved_manually') ELSE false END
    ELSE CASE cur WHEN 'pending' THEN target IN ('in_progress', 'cancelled', 'error')
                  WHEN 'in_progress' THEN target IN ('complete', 'error', 'cancelled', 'pending')
                  WHEN 'error' THEN target IN ('pending', 'resolved_manually')
                  WHEN 'complete' THEN target = 'cancelled' WHEN 'resolved_manually' THEN target = 'cancelled' ELSE false END END
$$;
-- B.5 rules 2 to 7 (the owner exists).
CREATE FUNCTION orch_ref.outcome(machine text, owner bigint, target text, expected text) RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE cur text; guard boolean := true;
BEGIN
  IF machine = 'step' THEN
    cur := coalesce((SELECT to_state FROM tasker_workflow_step_transitions WHERE workflow_step_id = owner ORDER BY sort_key DESC LIMIT 1), 'pending');
  ELSE
    cur := coalesce((SELECT to_state FROM tasker_task_transitions WHERE task_id = owner ORDER BY sort_key DESC LIMIT 1), 'pending');
  END IF;
  IF target NOT IN ('pending', 'in_progress', 'complete', 'error', 'cancelled', 'resolved_manually') THEN RETURN 'invalid_transition'; END IF;
  IF cur = target THEN RETURN 'already_in_state'; END IF;
  IF expected IS NOT NULL AND expected <> cur THEN RETURN 'state_mismatch'; END IF;
  -- A history whose latest row is no state at all allows nothing; with no row it is pending.
  IF NOT orch_ref.allowed(machine, cur, target) THEN RETURN 'invalid_transition'; END IF;
  IF machine = 'step' AND target = 'in_progress' THEN
    guard := NOT EXISTS (SELECT 1 FROM tasker_workflow_step_edges e WHERE e.to_step_id = owner
             AND coalesce((SELECT t.to_state FROM tasker_workflow_step_transitions t WHERE t.workflow_step_id = e.from_step_id
                           ORDER BY t.sort_key DESC LIMIT 1), 'pending') NOT IN ('complete', 'resolved_manually'));
  ELSIF machine = 'task' AND target = 'complete' THEN
    guard := NOT EXISTS (SELECT 1 FROM tasker_workflow_steps s WHERE s.task_id = owner
             AND coalesce((SELECT t.to_state FROM tasker_workflow_step_transitions t WHERE t.workflow_step_id = s.workflow_step_id
                           ORDER BY t.sort_key DESC LIMIT 1), 'pending') NOT IN ('complete', 'resolved_manually'));
  END IF;
  RETURN CASE WHEN guard THEN 'transitioned' ELSE 'guard_failed' END;
END $$;
-- A native call whose writes are undone: its first column, as text.
CREATE FUNCTION orch_ref.undone(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text;
BEGIN
  EXECUTE q INTO r;
  RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = coalesce(r, '<NULL>');
EXCEPTION WHEN raise_exception THEN
  RETURN SQLERRM;
END $$;
SQL

passed=0; failed=0
check() { if [ "$2" = 0 ]; then passed=$((passed + 1)); echo "  ok: $1"; else failed=$((failed + 1)); echo "  MISMATCH: $1: $2 ${3:-}"; fi; }

configs="('{}'::jsonb), ('{\"default_backoff_seconds\": [7, 1], \"max_backoff_seconds\": 50}'), ('{\"backoff_multiplier\": 1.5}'),
         ('{\"default_backoff_seconds\": [3], \"buffer_seconds\": 0, \"reenqueue_delays\": {\"has_ready_steps\": 2, \"processing\": 0}}'),
         ('{\"max_backoff_seconds\": 4, \"default_reenqueue_delay\": 0}')"
backoff_sql() { # $1 = the reference function to compare with
  echo "SELECT count(*) FILTER (WHERE tasker_core.backoff_seconds(n, false, c) IS DISTINCT FROM $1(n, c)) || ' of ' || count(*)
          FROM generate_series(-2, 60) n, (VALUES $configs) v(c)"
}
plan_sql() {
  echo "WITH cases AS (
          SELECT s, st, sy, w, c FROM unnest('{all_complete,blocked_by_failures,has_ready_steps,waiting_for_dependencies,processing,unknown_status}'::text[]) s,
                 unnest('{NULL,pending,in_progress,complete,error,cancelled,resolved_manually}'::text[]) st,
                 unnest('{true,false}'::boolean[]) sy,
                 (VALUES (NULL::bigint[]), ('{}'), ('{3,12}'), ('{-40}'), ('{1000}'), ('{-1,0}')) w(w), (VALUES $configs) v(c))
        SELECT count(*) FILTER (WHERE (n.moves, n.decision, n.reason, n.delay_seconds) IS DISTINCT FROM (r.moves, r.decision, r.reason, r.delay)) || ' of ' || count(*)
          FROM cases, tasker_core.finalization_plan(s, st, sy, w, c) n, $1(s, st, sy, w, c) r"
}

echo "== self-check: mutant references must be caught"
db -c "CREATE FUNCTION orch_ref.backoff_mutant(n int, cfg jsonb) RETURNS int LANGUAGE sql IMMUTABLE AS
         \$\$ SELECT CASE WHEN n = 7 THEN 48 ELSE orch_ref.backoff(n, cfg) END \$\$" \
   -c "CREATE FUNCTION orch_ref.plan_mutant(status text, state text, sync boolean, waits bigint[], cfg jsonb,
         OUT moves text[], OUT decision text, OUT reason text, OUT delay int) LANGUAGE sql IMMUTABLE AS
         \$\$ SELECT p.moves, p.decision, p.reason, CASE WHEN p.delay = 17 THEN 16 ELSE p.delay END FROM orch_ref.plan(status, state, sync, waits, cfg) p \$\$"
m1=$(db -c "$(backoff_sql orch_ref.backoff_mutant)"); m2=$(db -c "$(plan_sql orch_ref.plan_mutant)")
[ "${m1%% *}" != 0 ] && [ "${m2%% *}" != 0 ] && check "the mutants are caught (backoff: $m1, plan: $m2)" 0 || check "the mutants are caught" 1 "($m1; $m2)"

echo "== backoff_seconds against D.1"
r=$(db -c "$(backoff_sql orch_ref.backoff)"); check "backoff_seconds: $r cases" "${r%% *}"
echo "== finalization_plan against C.2-C.5"
r=$(db -c "$(plan_sql orch_ref.plan)"); check "finalization_plan: $r cases" "${r%% *}"

for seed in $(seq 1 "$seeds"); do
  db -c "TRUNCATE tasker_task_transitions, tasker_workflow_step_transitions, tasker_workflow_step_edges, tasker_workflow_steps, tasker_tasks CASCADE" \
     -c "SELECT count(*) FROM tasker_gen.generate(0.$((seed * 7919 % 10000)), $tasks, anchor => (now() AT TIME ZONE 'UTC'))" >/dev/null
  # 3. Transition outcomes: every step and task, every target, expected NULL / current / wrong.
  r=$(db <<'SQL'
WITH owners AS (
  SELECT 'step' AS m, workflow_step_id AS id FROM tasker_workflow_steps
  UNION ALL SELECT 'task', task_id FROM tasker_tasks),
cur AS (
  SELECT m, id, CASE m WHEN 'step' THEN (SELECT to_state FROM tasker_workflow_step_transitions WHERE workflow_step_id = id ORDER BY sort_key DESC LIMIT 1)
                       ELSE (SELECT to_state FROM tasker_task_transitions WHERE task_id = id ORDER BY sort_key DESC LIMIT 1) END AS c
    FROM owners),
cases AS (
  SELECT m, id, target, e FROM cur,
         unnest('{pending,in_progress,complete,error,cancelled,resolved_manually,Bogus}'::text[]) target,
         LATERAL (VALUES (NULL::text), (coalesce(c, 'pending')), ('cancelled')) x(e)),
got AS (
  SELECT m, id, target, e, orch_ref.outcome(m, id, target, e) AS want,
         orch_ref.undone(format('SELECT outcome FROM tasker_core.transition_%s(%s, %L, %L)', m, id, target, e)) AS native
    FROM cases)
SELECT count(*) FILTER (WHERE want IS DISTINCT FROM native) || ' of ' || count(*) || ' ' ||
       coalesce(min(format('%s %s -> %s (expected %s): %s, native %s', m, id, target, e, want, native)) FILTER (WHERE want IS DISTINCT FROM native), '')
  FROM got;
SQL
)
  check "seed $seed: transition outcomes: $r" "${r%% *}"
  # 4. Claims: the claimed set = ready rows in pending (and in error, when asked for).
  r=$(db <<'SQL'
WITH cases AS (SELECT task_id, inc FROM tasker_tasks, unnest('{false,true}'::boolean[]) inc),
got AS (
  SELECT task_id, inc,
         (SELECT coalesce(string_agg(workflow_step_id::text, ',' ORDER BY workflow_step_id), '')
            FROM tasker_core.get_step_readiness_status(task_id) r
           WHERE r.ready_for_execution AND (r.current_state = 'pending' OR (inc AND r.current_state = 'error'))) AS want,
         orch_ref.undone(format('SELECT coalesce(string_agg(workflow_step_id::text, %L ORDER BY workflow_step_id), %L)
                                   FROM tasker_core.claim_ready_steps(%s, NULL, NULL, %L, %L)', ',', '', task_id, '{}', inc)) AS native
    FROM cases)
SELECT count(*) FILTER (WHERE want IS DISTINCT FROM native) || ' of ' || count(*) || ' ' ||
       coalesce(min(format('task %s (errors %s): want {%s}, native {%s}', task_id, inc, want, native)) FILTER (WHERE want IS DISTINCT FROM native), '')
  FROM got;
SQL
)
  check "seed $seed: claimed sets: $r" "${r%% *}"
done
echo "orchestration differential: $passed passed, $failed failed"
[ "$failed" = 0 ]
