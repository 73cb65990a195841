-- A writer that moves many steps per statement: a new task with 100 steps, moved pending ->
-- in_progress -> complete as Statesman would move them one by one, but each move for all 100
-- steps in one statement (each move its own transaction). tests/bench/events_pipeline.sh.
INSERT INTO tasker_tasks (named_task_id, requested_at, identity_hash, created_at, updated_at)
VALUES (:named_task, now(), md5(random()::text || clock_timestamp()), now(), now()) RETURNING task_id AS task \gset
INSERT INTO tasker_workflow_steps (task_id, named_step_id, created_at, updated_at) SELECT :task, :named, now(), now() FROM generate_series(1, 100);
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, metadata, created_at, updated_at)
SELECT workflow_step_id, 'pending', 1, true, '{}', now(), now() FROM tasker_workflow_steps WHERE task_id = :task;
BEGIN;
UPDATE tasker_workflow_step_transitions t SET most_recent = false, updated_at = now() FROM tasker_workflow_steps s
 WHERE s.task_id = :task AND t.workflow_step_id = s.workflow_step_id AND t.most_recent;
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, metadata, created_at, updated_at)
SELECT workflow_step_id, 'in_progress', 2, true, '{}', now(), now() FROM tasker_workflow_steps WHERE task_id = :task;
COMMIT;
BEGIN;
UPDATE tasker_workflow_step_transitions t SET most_recent = false, updated_at = now() FROM tasker_workflow_steps s
 WHERE s.task_id = :task AND t.workflow_step_id = s.workflow_step_id AND t.most_recent;
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, metadata, created_at, updated_at)
SELECT workflow_step_id, 'complete', 3, true, '{}', now(), now() FROM tasker_workflow_steps WHERE task_id = :task;
COMMIT;
