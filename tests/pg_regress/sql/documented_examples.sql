-- The examples of docs/functions.md, on a small hand-built Tasker database.
-- Expected output (expected/documented_examples.out) was worked out by hand from the spec.
\set ON_ERROR_STOP 0
SET client_min_messages = warning;
SET TimeZone = 'UTC';
SET DateStyle = ISO;
-- The Tasker tables (tests/fixtures/tasker_schema.sql), loaded without echo: this output
-- does not depend on the fixture's text.
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
-- Task 1: fetch -> {price, tax} -> send. fetch complete, price failed twice (limit 3), tax running.
INSERT INTO tasker_workflow_steps (workflow_step_id, task_id, named_step_id, attempts, retry_limit, created_at, updated_at)
VALUES (1, 1, 1, 1, 3, now(), now()), (2, 1, 2, 2, 3, now(), now()), (3, 1, 3, 1, 3, now(), now()), (4, 1, 4, 0, 3, now(), now());
INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at)
VALUES (1, 2, 'provides', now(), now()), (1, 3, 'provides', now(), now()), (2, 4, 'provides', now(), now()), (3, 4, 'provides', now(), now());
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at) VALUES
  (1, 'pending', 10, false, '2026-01-01 10:00', now()), (1, 'in_progress', 20, false, '2026-01-01 10:01', now()), (1, 'complete', 30, true, '2026-01-01 10:02', now()),
  (2, 'pending', 10, false, '2026-01-01 10:00', now()), (2, 'error', 20, true, '2026-01-01 10:03', now()),
  (3, 'pending', 10, false, '2026-01-01 10:00', now()), (3, 'in_progress', 20, true, '2026-01-01 10:03', now()),
  (4, 'pending', 10, true, '2026-01-01 10:00', now());
INSERT INTO tasker_task_transitions (task_id, to_state, sort_key, most_recent, created_at, updated_at)
VALUES (1, 'in_progress', 10, true, now(), now());

-- Which steps can run now? price failed long ago (backoff over) with retries left: ready.
SELECT workflow_step_id, name, current_state, dependencies_satisfied AS deps, ready_for_execution AS ready,
       last_failure_at, next_retry_at, completed_parents || '/' || total_parents AS parents, attempts, retry_limit
  FROM tasker_core.get_step_readiness_status(1);
-- Only some steps; NULL means all, an empty array means none.
SELECT workflow_step_id FROM tasker_core.get_step_readiness_status(1, ARRAY[2, 4]::bigint[]);
SELECT count(*) FROM tasker_core.get_step_readiness_status(1, '{}');
-- What should the task do next? Task 2 has no steps; 3 does not exist.
SELECT task_id, status, total_steps, pending_steps, in_progress_steps, completed_steps, failed_steps, ready_steps,
       execution_status, recommended_action, completion_percentage, health_status
  FROM tasker_core.get_task_execution_contexts_batch(ARRAY[2, 1, 3, 2]::bigint[]);
-- Dependency levels.
SELECT * FROM tasker_core.calculate_dependency_levels(1);
-- A cycle reachable from a root is an error, not an endless query.
INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at) VALUES (4, 3, 'provides', now(), now());
SELECT * FROM tasker_core.calculate_dependency_levels(1);
