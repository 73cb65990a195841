-- preflight(): ok on a clean Tasker database, and each planted anomaly found by its check, with
-- the status the docs give it and an example (docs/adoption.md).
BEGIN;
SELECT plan(30);
-- The fixture: tests/fixtures/tasker_schema.sql unless pg_prove --set fixture=... names another.
\if :{?fixture}
\else
\set fixture tests/fixtures/tasker_schema.sql
\endif
\i :fixture
\i tests/fixtures/reference_functions.sql
\i tests/fixtures/reference_view.sql
\i tests/fixtures/reference_analytics.sql

-- A clean database: two tasks, legal histories, a diamond of edges.
INSERT INTO tasker_task_namespaces (task_namespace_id, name, created_at, updated_at) VALUES (1, 'default', now(), now());
INSERT INTO tasker_dependent_systems (dependent_system_id, name, created_at, updated_at) VALUES (1, 'sys', now(), now());
INSERT INTO tasker_named_tasks (named_task_id, name, task_namespace_id, created_at, updated_at) VALUES (1, 'job', 1, now(), now());
INSERT INTO tasker_named_steps (named_step_id, dependent_system_id, name, created_at, updated_at)
     SELECT g, 1, 'step_' || g, now(), now() FROM generate_series(1, 20) g;
INSERT INTO tasker_tasks (task_id, named_task_id, requested_at, identity_hash, created_at, updated_at)
     SELECT g, 1, now(), 'h' || g, now(), now() FROM generate_series(1, 3) g;
INSERT INTO tasker_workflow_steps (workflow_step_id, task_id, named_step_id, created_at, updated_at)
     SELECT g, 1 + (g - 1) / 4, g, now(), now() FROM generate_series(1, 12) g;
INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at)
     VALUES (1, 2, 'e', now(), now()), (1, 3, 'e', now(), now()), (2, 4, 'e', now(), now()), (3, 4, 'e', now(), now());
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
     VALUES (1, 'pending', 10, false, now(), now()), (1, 'in_progress', 20, false, now(), now()), (1, 'complete', 30, true, now(), now()),
            (2, 'pending', 10, true, now(), now());
INSERT INTO tasker_task_transitions (task_id, to_state, sort_key, most_recent, created_at, updated_at)
     VALUES (1, 'pending', 10, false, now(), now()), (1, 'in_progress', 20, true, now(), now());

CREATE FUNCTION pg_temp.pf(check_name text) RETURNS text LANGUAGE sql AS $$
    SELECT string_agg(p.status || ': ' || p.detail, ' | ') FROM tasker_core.preflight() p WHERE p.name = check_name
$$;

SELECT is((SELECT string_agg(p.name || ' (' || p.status || ': ' || p.detail || ')', '; ') FROM tasker_core.preflight() p WHERE p.status <> 'ok'),
          NULL, 'a clean database: every check is ok');
SELECT is((SELECT count(*)::int FROM tasker_core.preflight()), 41,
          'one row per check: tables, columns, 2 indexes, 10 history checks, 3 edge checks, 4 of replication and triggers, 10 Rails objects, 2 privileges, the step state, 7 read paths');
SELECT is((SELECT count(*)::int FROM tasker_core.preflight() WHERE name LIKE 'read path %'), 7, 'the read path of each of the 7 read functions');
SELECT is((SELECT count(*)::int FROM tasker_core.state_machine_moves() WHERE machine = 'step' AND from_state = 'in_progress'), 3,
          'the legal moves as a table: in_progress -> complete, error, cancelled');

-- Histories. (A second most_recent row needs the unique index gone: that is what it forbids.)
DO $$ DECLARE i record; BEGIN
  FOR i IN SELECT c.oid::regclass AS idx FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
            WHERE x.indrelid = 'tasker_workflow_step_transitions'::regclass AND x.indisunique AND pg_get_expr(x.indpred, x.indrelid) LIKE '%most_recent%' LOOP
    EXECUTE format('DROP INDEX %s', i.idx);
  END LOOP;
END $$;
SELECT matches(pg_temp.pf('step most_recent index'), '^warn: .*no valid unique index', 'no unique index on most_recent: warn');
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
     VALUES (5, 'pending', 10, true, now(), now()), (5, 'in_progress', 20, true, now(), now());
SELECT is(pg_temp.pf('step histories: several most_recent rows'), 'fail: 1 steps with more than one most_recent transition, e.g. 5', 'several most_recent rows: fail, with the step');
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
     VALUES (6, 'pending', 10, false, now(), now());
SELECT is(pg_temp.pf('step histories: no most_recent row'), 'warn: 1 steps with transitions but none most_recent, e.g. 6', 'no most_recent row: warn');
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
     VALUES (7, 'pending', 20, true, now(), now()), (7, 'in_progress', 30, false, now(), now());
SELECT is(pg_temp.pf('step histories: most_recent not the last'), 'warn: 2 steps whose most_recent row is not the highest sort_key, e.g. 5',
          'most_recent below another sort_key: warn (step 7, and step 5 whose first most_recent row is below its second)');
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
     VALUES (8, 'paused', 10, true, now(), now());
SELECT is(pg_temp.pf('step histories: unknown states'), 'warn: 1 to_state values that are not states of the machine, e.g. ''paused''', 'an unknown state: warn, named');
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
     VALUES (9, 'pending', 10, false, now(), now()), (9, 'complete', 20, true, now(), now());
SELECT matches(pg_temp.pf('step histories: illegal moves'), '^warn: \d+ steps whose history has a move .*, e\.g\. workflow_step_id \d+: ',
               'a move the step machine does not allow: warn');
SELECT ok(pg_temp.pf('step histories: illegal moves') LIKE '%pending -> complete%' OR pg_temp.pf('step histories: illegal moves') LIKE '%(none) -> paused%',
          'the example names the move');
INSERT INTO tasker_task_transitions (task_id, to_state, sort_key, most_recent, created_at, updated_at)
     VALUES (2, 'complete', 10, true, now(), now());
SELECT is(pg_temp.pf('task histories: illegal moves'), 'warn: 1 tasks whose history has a move the state machine does not allow, e.g. task_id 2: (none) -> complete',
          'the task machine is judged by its own moves');
SELECT is(pg_temp.pf('task histories: several most_recent rows'), 'ok: one most_recent transition at most per owner', 'the task checks are the tasks''');

-- Edges.
INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at) VALUES (10, 10, 'e', now(), now());
SELECT is(pg_temp.pf('edges: self-loops'), 'fail: 1 edges from a step to itself, e.g. 10', 'a self-loop: fail');
SELECT is(pg_temp.pf('edges: cycles'), 'ok: the step edges are acyclic (self-loops aside)', 'a self-loop is not counted as a cycle too');
INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at) VALUES (4, 5, 'e', now(), now());
SELECT is(pg_temp.pf('edges: across tasks'), 'warn: 1 edges between steps of two tasks, e.g. 4 (task 1) -> 5 (task 2)', 'an edge across tasks: warn, with both tasks');
INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at)
     VALUES (9, 11, 'e', now(), now()), (11, 12, 'e', now(), now()), (12, 9, 'e', now(), now());
SELECT matches(pg_temp.pf('edges: cycles'), '^fail: a cycle: (9 -> 11 -> 12 -> 9|11 -> 12 -> 9 -> 11|12 -> 9 -> 11 -> 12)$', 'a cycle: fail, with its path');

-- Replication and other writers.
SET LOCAL client_min_messages = error;  -- wal_level may be too low to publish: a WARNING only
CREATE PUBLICATION preflight_everything FOR ALL TABLES;
RESET client_min_messages;
SELECT is(pg_temp.pf('publications'), 'warn: publications that include tasker_core''s tables: preflight_everything', 'a FOR ALL TABLES publication: warn');
SET LOCAL session_replication_role = replica;
SELECT is(pg_temp.pf('session_replication_role'), 'warn: replica', 'session_replication_role = replica: warn');
SET LOCAL session_replication_role = origin;
CREATE FUNCTION public.audit_tasks() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER audit_tasks AFTER UPDATE ON tasker_tasks FOR EACH ROW EXECUTE FUNCTION public.audit_tasks();
SELECT is(pg_temp.pf('other triggers'), 'warn: triggers of others on the Tasker tables: audit_tasks on public.tasker_tasks', 'another trigger on a Tasker table: warn, named');

-- Privileges.
CREATE ROLE tasker_core_test_writer NOLOGIN;
GRANT SELECT, INSERT ON tasker_workflow_step_transitions TO tasker_core_test_writer;
SELECT is(pg_temp.pf('privileges: writers'), 'warn: roles that may insert transitions but not update steps: tasker_core_test_writer', 'a writer without UPDATE: warn, named');
GRANT CREATE ON SCHEMA public TO tasker_core_test_writer;
SELECT ok(pg_temp.pf('privileges: CREATE on the schema') LIKE 'warn: %tasker_core_test_writer on public%', 'CREATE on public for another role: warn, named');

-- Rails' objects.
DROP FUNCTION public.get_system_health_counts_v01();
SELECT is(pg_temp.pf('function public.get_system_health_counts_v01()'), 'warn: missing', 'a missing Rails function: warn');
CREATE FUNCTION public.get_system_health_counts_v01() RETURNS SETOF record LANGUAGE internal AS 'timeofday';
SELECT matches(pg_temp.pf('function public.get_system_health_counts_v01()'), '^warn: not Rails'' definition: owner and language \S+ internal$',
               'a Rails function replaced by something else: warn, with its language');
SELECT is((SELECT count(*)::int FROM tasker_core.preflight() WHERE name LIKE 'function %' AND detail LIKE 'Rails'' definition; owner %'), 8,
          'the other Rails functions: Rails'' definition, with their owner');

-- The step state.
SELECT is(pg_temp.pf('step state'), 'ok: not enabled', 'the step state: not enabled');

-- The tables: a column of another type, a table missing, a table the caller may not read.
ALTER TABLE tasker_workflow_steps ALTER COLUMN retry_limit TYPE bigint;
SELECT is(pg_temp.pf('columns'), 'fail: missing or of another type: tasker_workflow_steps.retry_limit (bigint)', 'a column of another type: fail, named');
SELECT is((SELECT string_agg(name || ' ' || status, ', ') FROM tasker_core.preflight('pg_catalog')), 'tables fail', 'no Tasker tables in the schema: one row, fail');
SET LOCAL ROLE tasker_core_test_writer;
SELECT is((SELECT status || ': ' || detail FROM tasker_core.preflight() WHERE name = 'tables'),
          'fail: tasker_core_test_writer may not read: tasker_workflow_steps, tasker_named_steps, tasker_workflow_step_edges, tasker_tasks, tasker_task_transitions, tasker_named_tasks, tasker_task_namespaces',
          'tables the caller may not read: fail, named');
RESET ROLE;
-- Read-only: it runs in a read-only transaction (as on a hot standby).
SET LOCAL transaction_read_only = on;
SELECT lives_ok('SELECT count(*) FROM tasker_core.preflight()', 'preflight() runs in a read-only transaction');

SELECT * FROM finish();
ROLLBACK;
