-- A Rails-style writer for tests/bench/online_switch.sh (pgbench script; -D lo, hi, named):
-- in one transaction, two new steps of a random task, the second depending on the first, each
-- moved pending -> in_progress -> complete in Statesman's order (clear the flag, then insert)
-- with the step's own columns updated as Tasker does; the guards allow every move.
\set t random(:lo, :hi)
BEGIN;
INSERT INTO tasker_workflow_steps (task_id, named_step_id, created_at, updated_at)
VALUES (:t, :named, now(), now()) RETURNING workflow_step_id AS a \gset
INSERT INTO tasker_workflow_steps (task_id, named_step_id, created_at, updated_at)
VALUES (:t, :named, now(), now()) RETURNING workflow_step_id AS b \gset
INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at)
VALUES (:a, :b, 'provides', now(), now());
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
VALUES (:a, 'pending', 10, true, now(), now()), (:b, 'pending', 10, true, now(), now());
UPDATE tasker_workflow_step_transitions SET most_recent = false WHERE workflow_step_id = :a AND most_recent;
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, from_state, sort_key, most_recent, created_at, updated_at)
VALUES (:a, 'in_progress', 'pending', 20, true, now(), now());
UPDATE tasker_workflow_steps SET in_process = true, attempts = 1, last_attempted_at = now() WHERE workflow_step_id = :a;
UPDATE tasker_workflow_step_transitions SET most_recent = false WHERE workflow_step_id = :a AND most_recent;
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, from_state, sort_key, most_recent, created_at, updated_at)
VALUES (:a, 'complete', 'in_progress', 30, true, now(), now());
UPDATE tasker_workflow_steps SET in_process = false, processed = true, processed_at = now() WHERE workflow_step_id = :a;
UPDATE tasker_workflow_step_transitions SET most_recent = false WHERE workflow_step_id = :b AND most_recent;
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, from_state, sort_key, most_recent, created_at, updated_at)
VALUES (:b, 'in_progress', 'pending', 20, true, now(), now());
UPDATE tasker_workflow_steps SET in_process = true, attempts = 1, last_attempted_at = now() WHERE workflow_step_id = :b;
UPDATE tasker_workflow_step_transitions SET most_recent = false WHERE workflow_step_id = :b AND most_recent;
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, from_state, sort_key, most_recent, created_at, updated_at)
VALUES (:b, 'complete', 'in_progress', 30, true, now(), now());
UPDATE tasker_workflow_steps SET in_process = false, processed = true, processed_at = now() WHERE workflow_step_id = :b;
COMMIT;
