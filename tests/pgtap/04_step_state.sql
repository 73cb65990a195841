-- The derived step state: its objects and their rights, and an application role writing
-- through the maintenance triggers. PUBLIC has no right on tasker_core.step_state; the Tasker
-- tables' owner gets its rights from step_state_enable() (the maintenance works as that owner,
-- sandboxed: docs/security.md).
BEGIN;
SELECT plan(28);

SELECT has_table('tasker_core', 'step_state', 'step_state exists');
SELECT has_table('tasker_core', 'step_state_source', 'step_state_source exists');
SELECT has_function('tasker_core', 'step_state_enable', ARRAY['name']);
SELECT has_function('tasker_core', 'step_state_disable', ARRAY['name']);
SELECT has_function('tasker_core', 'step_state_rebuild', ARRAY[]::text[]);
SELECT has_function('tasker_core', 'step_state_verify', ARRAY[]::text[]);
-- SECURITY DEFINER, on purpose: writers of the Tasker tables other than their owner get no
-- right on step_state.
SELECT is_definer('tasker_core', f, ARRAY[]::text[], f || ' runs as the extension owner')
  FROM (VALUES ('step_state_sync'), ('step_state_watch'), ('step_state_rewritten')) v(f);
SELECT is(
  (SELECT string_agg(p.oid::regprocedure::text, ', ' ORDER BY 1) FROM pg_proc p
    WHERE p.pronamespace = 'tasker_core'::regnamespace AND p.proname LIKE 'step_state%'
      AND has_function_privilege('public', p.oid, 'EXECUTE') AND p.proname IN ('step_state_refresh', 'step_state_refresh_transitions', 'step_state_refresh_tasks', 'step_state_rebuild', 'step_state_verify', 'step_state_enable', 'step_state_disable', 'step_state_invalidate')),
  NULL, 'PUBLIC cannot refresh, rebuild, verify, enable, disable or invalidate the step state');
SELECT ok(NOT has_table_privilege('public', 'tasker_core.step_state', 'SELECT'), 'PUBLIC cannot read step_state (a copy of Tasker rows)');
SELECT ok(has_table_privilege('public', 'tasker_core.step_state_source', 'SELECT'), 'anyone can see whether the step state is valid');
SELECT is((SELECT evtenabled::text FROM pg_event_trigger WHERE evtname = 'tasker_core_step_state_watch'), 'A',
          'the DDL watch fires under session_replication_role = replica too');
SELECT is((SELECT evtenabled::text || ' ' || evtevent FROM pg_event_trigger WHERE evtname = 'tasker_core_step_state_rewrite'), 'A table_rewrite',
          'rewrites of a mirrored table are watched, under session_replication_role = replica too');
SELECT is((SELECT relreplident::text FROM pg_class WHERE oid = 'tasker_core.step_state'::regclass), 'f',
          'step_state has a replica identity (a FOR ALL TABLES publication does not break writes)');

CREATE ROLE tasker_core_test_app NOLOGIN;
CREATE ROLE tasker_core_test_outsider NOLOGIN;
CREATE SCHEMA app AUTHORIZATION tasker_core_test_app;
SET LOCAL ROLE tasker_core_test_app;
SET LOCAL search_path = app, public;
-- The fixture: tests/fixtures/tasker_schema.sql unless pg_prove --set fixture=... names another.
\if :{?fixture}
\else
\set fixture tests/fixtures/tasker_schema.sql
\endif
\i :fixture
INSERT INTO tasker_task_namespaces (task_namespace_id, name, created_at, updated_at) VALUES (1, 'default', now(), now());
INSERT INTO tasker_dependent_systems (dependent_system_id, name, created_at, updated_at) VALUES (1, 'sys', now(), now());
INSERT INTO tasker_named_tasks (named_task_id, name, task_namespace_id, created_at, updated_at) VALUES (1, 'job', 1, now(), now());
INSERT INTO tasker_named_steps (named_step_id, dependent_system_id, name, created_at, updated_at) VALUES (1, 1, 'a', now(), now()), (2, 1, 'b', now(), now());
INSERT INTO tasker_tasks (task_id, named_task_id, requested_at, identity_hash, created_at, updated_at) VALUES (1, 1, now(), 'h', now(), now());
INSERT INTO tasker_workflow_steps (workflow_step_id, task_id, named_step_id, created_at, updated_at) VALUES (1, 1, 1, now(), now()), (2, 1, 2, now(), now());
GRANT USAGE ON SCHEMA app TO tasker_core_test_outsider;
RESET ROLE;

SELECT throws_ok($$SET LOCAL ROLE tasker_core_test_app; SELECT tasker_core.step_state_rebuild()$$, '42501', NULL, 'an application role cannot rebuild');
SELECT throws_ok($$SET LOCAL ROLE tasker_core_test_app;
                   CREATE TABLE app.mine (x int);
                   CREATE TRIGGER t AFTER TRUNCATE ON app.mine FOR EACH STATEMENT EXECUTE FUNCTION tasker_core.step_state_sync()$$,
                 '42501', NULL, 'nobody can attach the (definer-rights) maintenance function to a table of their own');
RESET ROLE;
SELECT is((SELECT action FROM tasker_core.step_state_enable('app') WHERE object = 'tasker_core.step_state'), 'built (2 steps)',
          'a DBA enables it for the app schema; existing steps are built');
SET LOCAL ROLE tasker_core_test_app;
SELECT lives_ok($$INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at) VALUES (1, 2, 'provides', now(), now());
                 INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
                 VALUES (1, 'complete', 10, true, now(), now())$$,
                'the app role writes; the triggers update step_state for it');
SELECT lives_ok('SELECT tasker_core.read_path_stats_reset()', 'statistics reset');
SELECT is((SELECT string_agg(format('%s:%s:%s', workflow_step_id, current_state, ready_for_execution), ' ' ORDER BY 1)
             FROM tasker_core.get_step_readiness_status(1)), '1:complete:f 2:pending:t', 'and reads the result');
-- The step state shows this transaction's writes from its commit on: until then, SQL reads them.
SELECT is((SELECT string_agg(path, ',') FROM tasker_core.read_path_stats()), 'sql', 'from SQL within the writing transaction');
SELECT matches((SELECT reason FROM tasker_core.read_paths() WHERE function_name = 'get_step_readiness_status'),
               'this transaction wrote to the Tasker tables', 'read_paths() says why');
RESET ROLE;
SELECT is((SELECT count(*)::int FROM tasker_core.step_state_verify()), 0, 'step_state is exact after the app role''s writes (verify refreshes them first)');
SET LOCAL ROLE tasker_core_test_app;
SELECT lives_ok('SELECT tasker_core.read_path_stats_reset()', 'statistics reset');
SELECT is((SELECT string_agg(format('%s:%s:%s', workflow_step_id, current_state, ready_for_execution), ' ' ORDER BY 1)
             FROM tasker_core.get_step_readiness_status(1)), '1:complete:f 2:pending:t', 'the same result');
SELECT is((SELECT string_agg(path, ',') FROM tasker_core.read_path_stats()), 'step_state', 'now from the step state');
RESET ROLE;
SET LOCAL ROLE tasker_core_test_outsider;
SELECT throws_ok($$SELECT * FROM tasker_core.get_step_readiness_status(1)$$, '42501', NULL,
                 'no SELECT on the Tasker tables: permission denied, even though step_state could answer');
RESET ROLE;
SELECT * FROM finish();
ROLLBACK;
