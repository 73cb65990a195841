-- The admin functions a DBA runs (docs/adoption.md, docs/functions.md): preflight() before
-- anything, then enable(), status(), the step state, and disable(), on a Tasker schema with
-- Rails' functions and view. Owners' names are left out of the output (they depend on who runs
-- it).
\set ON_ERROR_STOP 0
SET client_min_messages = warning;
SET TimeZone = 'UTC';
SET DateStyle = ISO;
CREATE SCHEMA admin_demo;
SET search_path = admin_demo;
\set ECHO none
\i tests/fixtures/tasker_schema.sql
\i tests/fixtures/reference_functions.sql
\i tests/fixtures/reference_view.sql
\i tests/fixtures/reference_analytics.sql
\set ECHO all
CREATE EXTENSION IF NOT EXISTS tasker_core;
INSERT INTO tasker_task_namespaces (task_namespace_id, name, created_at, updated_at) VALUES (1, 'default', now(), now());
INSERT INTO tasker_dependent_systems (dependent_system_id, name, created_at, updated_at) VALUES (1, 'billing', now(), now());
INSERT INTO tasker_named_tasks (named_task_id, name, task_namespace_id, created_at, updated_at) VALUES (1, 'invoice', 1, now(), now());
INSERT INTO tasker_named_steps (named_step_id, dependent_system_id, name, created_at, updated_at)
VALUES (1, 1, 'fetch', now(), now()), (2, 1, 'price', now(), now());
INSERT INTO tasker_tasks (task_id, named_task_id, requested_at, identity_hash, created_at, updated_at)
VALUES (1, 1, now(), 'a', now(), now()), (2, 1, now(), 'b', now(), now());
INSERT INTO tasker_workflow_steps (workflow_step_id, task_id, named_step_id, created_at, updated_at)
VALUES (1, 1, 1, now(), now()), (2, 1, 2, now(), now()), (3, 2, 1, now(), now()), (4, 2, 2, now(), now());
INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at)
VALUES (1, 2, 'provides', now(), now()), (3, 4, 'provides', now(), now());
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
VALUES (1, 'pending', 10, false, now(), now()), (1, 'in_progress', 20, true, now(), now());

-- Before anything: the preflight. A clean schema: every check ok.
SELECT name, status, CASE WHEN name ~ '^(function|view) ' THEN '(owner)' ELSE detail END AS detail
  FROM tasker_core.preflight('admin_demo');
-- Legacy data it finds: a history that is not a legal path, an edge across tasks, a cycle.
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
VALUES (3, 'pending', 10, false, now(), now()), (3, 'complete', 20, true, now(), now());
INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at)
VALUES (2, 3, 'provides', now(), now()), (4, 3, 'provides', now(), now());
SELECT name, status, detail, action FROM tasker_core.preflight('admin_demo') WHERE status <> 'ok';
DELETE FROM tasker_workflow_step_edges WHERE (from_step_id, to_step_id) IN ((2, 3), (4, 3));
DELETE FROM tasker_workflow_step_transitions WHERE workflow_step_id = 3;
-- The legal moves, as the preflight and the guards judge them.
SELECT machine, COALESCE(from_state, '(none)') AS from_state, string_agg(to_state, ', ' ORDER BY to_state) AS to_states
  FROM tasker_core.state_machine_moves() GROUP BY 1, 2 ORDER BY 1, 2;

-- Switching over: the functions, the guard triggers, the view.
SELECT * FROM tasker_core.enable('admin_demo') ORDER BY 1;
SELECT * FROM tasker_core.status('admin_demo') ORDER BY kind, object;
-- Rails' SQL now runs native code.
SELECT workflow_step_id, current_state, ready_for_execution FROM admin_demo.get_step_readiness_status(1) ORDER BY 1;
-- The step state: enable, verify (no rows: exact), and the read paths now.
SELECT * FROM tasker_core.step_state_enable('admin_demo');
SELECT * FROM tasker_core.step_state_verify();
SELECT * FROM tasker_core.read_paths('admin_demo') ORDER BY 1;
-- Rebuilding it (or switching it on) without blocking writers: each of its five steps is a
-- transaction of its own. (Its NOTICEs carry timings, so they are left out here.)
SET client_min_messages = warning;
CALL tasker_core.step_state_rebuild_concurrently();
RESET client_min_messages;
SELECT valid, building, reason FROM tasker_core.step_state_source;
SELECT * FROM tasker_core.step_state_verify();
-- Inside a transaction block it refuses before doing anything.
\set SHOW_CONTEXT never
BEGIN;
CALL tasker_core.step_state_enable_concurrently('admin_demo');
ROLLBACK;
-- So it does when the transactions it would start are not READ COMMITTED.
SET default_transaction_isolation = 'repeatable read';
CALL tasker_core.step_state_enable_concurrently('admin_demo');
RESET default_transaction_isolation;
\set SHOW_CONTEXT errors
SELECT * FROM tasker_core.step_state_disable('admin_demo');
-- Without an enabled step state there is nothing to rebuild.
CALL tasker_core.step_state_rebuild_concurrently();
-- Back to Rails' own definitions.
SELECT * FROM tasker_core.disable('admin_demo') ORDER BY 1;
SELECT kind, state, count(*) FROM tasker_core.status('admin_demo') WHERE kind <> 'read path' GROUP BY 1, 2 ORDER BY 1, 2;
