-- One new step moved pending -> in_progress -> complete in one transaction, the way Statesman
-- writes each move (the old row's flag cleared, the new row inserted): the shape the lifecycle
-- events issue measures. tests/bench/events_write.sh with SHAPE=transaction.
\set task random(:lo, :hi)
BEGIN;
INSERT INTO tasker_workflow_steps (task_id, named_step_id, created_at, updated_at) VALUES (:task, :named, now(), now()) RETURNING workflow_step_id AS step \gset
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, metadata, created_at, updated_at) VALUES (:step, 'pending', 1, true, '{}', now(), now());
UPDATE tasker_workflow_step_transitions SET most_recent = false, updated_at = now() WHERE workflow_step_id = :step AND most_recent;
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, metadata, created_at, updated_at) VALUES (:step, 'in_progress', 2, true, '{}', now(), now());
UPDATE tasker_workflow_step_transitions SET most_recent = false, updated_at = now() WHERE workflow_step_id = :step AND most_recent;
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, metadata, created_at, updated_at) VALUES (:step, 'complete', 3, true, '{}', now(), now());
COMMIT;
