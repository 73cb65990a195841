-- Every refusal of the guard triggers (docs/guards.md), on a small hand-built Tasker database:
-- for each, the SQLSTATE, the constraint it names, the message, the detail and the hint, as a
-- writer (Rails) receives them. Then warn mode, which logs and accepts.
\set ON_ERROR_STOP 0
SET client_min_messages = warning;
SET TimeZone = 'UTC';
SET DateStyle = ISO;
-- A schema of its own (the other files use public).
CREATE SCHEMA guards;
SET search_path = guards;
\set ECHO none
\i tests/fixtures/tasker_schema.sql
\set ECHO all
CREATE EXTENSION IF NOT EXISTS tasker_core;
INSERT INTO tasker_task_namespaces (task_namespace_id, name, created_at, updated_at) VALUES (1, 'default', now(), now());
INSERT INTO tasker_dependent_systems (dependent_system_id, name, created_at, updated_at) VALUES (1, 'billing', now(), now());
INSERT INTO tasker_named_tasks (named_task_id, name, task_namespace_id, created_at, updated_at) VALUES (1, 'invoice', 1, now(), now());
INSERT INTO tasker_named_steps (named_step_id, dependent_system_id, name, created_at, updated_at)
VALUES (1, 1, 'fetch', now(), now()), (2, 1, 'price', now(), now()), (3, 1, 'tax', now(), now()), (4, 1, 'send', now(), now());
INSERT INTO tasker_tasks (task_id, named_task_id, requested_at, identity_hash, created_at, updated_at)
VALUES (1, 1, now(), 'a', now(), now()), (2, 1, now(), 'b', now(), now());
-- Task 1: fetch -> {price, tax} -> send; task 2: one step.
INSERT INTO tasker_workflow_steps (workflow_step_id, task_id, named_step_id, created_at, updated_at)
VALUES (1, 1, 1, now(), now()), (2, 1, 2, now(), now()), (3, 1, 3, now(), now()), (4, 1, 4, now(), now()), (5, 2, 1, now(), now());
INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at)
VALUES (1, 2, 'provides', now(), now()), (1, 3, 'provides', now(), now()), (2, 4, 'provides', now(), now()), (3, 4, 'provides', now(), now());
SELECT count(*) FROM tasker_core.enable('guards', functions => false);

-- What a writer sees of a refusal: SQLSTATE, constraint, message, detail, hint.
CREATE FUNCTION pg_temp.refusal(statement text) RETURNS TABLE (error_code text, constraint_name text, message text, detail text, hint text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE statement;
    error_code := '00000'; message := 'accepted';
    RETURN NEXT;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_code = RETURNED_SQLSTATE, constraint_name = CONSTRAINT_NAME,
                            message = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
END $$;
\x on

-- A move the step machine does not allow: pending (no transitions) -> complete.
SELECT * FROM pg_temp.refusal($$INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
                                VALUES (1, 'complete', 10, true, now(), now())$$);
-- Not a state at all.
SELECT * FROM pg_temp.refusal($$INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
                                VALUES (1, 'Complete', 10, true, now(), now())$$);
-- fetch runs and completes (legal); a from_state that is not the current state is refused.
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
VALUES (1, 'pending', 10, false, now(), now()), (1, 'in_progress', 20, false, now(), now()), (1, 'complete', 30, true, now(), now());
SELECT * FROM pg_temp.refusal($$INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, from_state, sort_key, most_recent, created_at, updated_at)
                                VALUES (2, 'in_progress', 'error', 10, true, now(), now())$$);
-- Out of a terminal state: complete -> cancelled.
SELECT * FROM pg_temp.refusal($$INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
                                VALUES (1, 'cancelled', 40, true, now(), now())$$);
-- A sort_key that is not above every existing one (tax is pending at 10; in_progress is legal).
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
VALUES (3, 'pending', 10, true, now(), now());
SELECT * FROM pg_temp.refusal($$INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
                                VALUES (3, 'in_progress', 5, true, now(), now())$$);
-- send cannot start: price and tax are unfinished.
SELECT * FROM pg_temp.refusal($$INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
                                VALUES (4, 'in_progress', 10, true, now(), now())$$);
-- History is append-only.
SELECT * FROM pg_temp.refusal($$UPDATE tasker_workflow_step_transitions SET to_state = 'error' WHERE workflow_step_id = 1 AND sort_key = 30$$);
-- The most_recent flag only on the latest transition.
SELECT * FROM pg_temp.refusal($$UPDATE tasker_workflow_step_transitions SET most_recent = true WHERE workflow_step_id = 1 AND sort_key = 10$$);
-- Tasks: a move the task machine does not allow, and completing with unfinished steps.
SELECT * FROM pg_temp.refusal($$INSERT INTO tasker_task_transitions (task_id, to_state, sort_key, most_recent, created_at, updated_at)
                                VALUES (1, 'resolved_manually', 10, true, now(), now())$$);
INSERT INTO tasker_task_transitions (task_id, to_state, sort_key, most_recent, created_at, updated_at)
VALUES (1, 'pending', 10, false, now(), now()), (1, 'in_progress', 20, true, now(), now());
SELECT * FROM pg_temp.refusal($$INSERT INTO tasker_task_transitions (task_id, to_state, sort_key, most_recent, created_at, updated_at)
                                VALUES (1, 'complete', 30, true, now(), now())$$);
-- Edges: across tasks, a self-loop, a cycle (with its path).
SELECT * FROM pg_temp.refusal($$INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at) VALUES (4, 5, 'provides', now(), now())$$);
SELECT * FROM pg_temp.refusal($$INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at) VALUES (2, 2, 'provides', now(), now())$$);
SELECT * FROM pg_temp.refusal($$INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at) VALUES (4, 1, 'provides', now(), now())$$);
-- A legal move is accepted; NULL from_state and sort_key are filled in.
SELECT * FROM pg_temp.refusal($$INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, most_recent, created_at, updated_at)
                                VALUES (2, 'pending', true, now(), now())$$);
\x off
SELECT workflow_step_id, to_state, from_state, sort_key, most_recent FROM tasker_workflow_step_transitions WHERE workflow_step_id = 2;

-- Warn mode (superuser only): the same refusal is logged as a WARNING and the row accepted.
SET client_min_messages = warning;
SET tasker_core.guard_mode = 'warn';
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
VALUES (5, 'complete', 10, true, now(), now());
RESET tasker_core.guard_mode;
SELECT workflow_step_id, to_state FROM tasker_workflow_step_transitions WHERE workflow_step_id = 5;
SELECT count(*) FROM tasker_core.disable('guards');
