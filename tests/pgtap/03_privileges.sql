-- An ordinary application role that owns the Tasker tables uses everything without superuser
-- rights; a role without SELECT on the tables gets permission errors, not data.
BEGIN;
SELECT plan(10);
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
\i tests/fixtures/reference_functions.sql
INSERT INTO tasker_task_namespaces (task_namespace_id, name, created_at, updated_at) VALUES (1, 'default', now(), now());
GRANT USAGE ON SCHEMA app TO tasker_core_test_outsider;
INSERT INTO tasker_dependent_systems (dependent_system_id, name, created_at, updated_at) VALUES (1, 'sys', now(), now());
INSERT INTO tasker_named_tasks (named_task_id, name, task_namespace_id, created_at, updated_at) VALUES (1, 'job', 1, now(), now());
INSERT INTO tasker_named_steps (named_step_id, dependent_system_id, name, created_at, updated_at) VALUES (1, 1, 'a', now(), now());
INSERT INTO tasker_tasks (task_id, named_task_id, requested_at, identity_hash, created_at, updated_at) VALUES (1, 1, now(), 'h', now(), now());
INSERT INTO tasker_workflow_steps (workflow_step_id, task_id, named_step_id, created_at, updated_at) VALUES (1, 1, 1, now(), now());

SELECT is((SELECT count(*)::int FROM tasker_core.get_step_readiness_status(1)), 1, 'the app role reads readiness');
SELECT lives_ok($$SELECT * FROM tasker_core.enable('app')$$, 'the app role (owner of the Rails functions and tables) can enable');
SELECT is((SELECT count(*)::int FROM app.get_task_execution_context(1::bigint)), 1, 'Rails SQL runs native for the app role');
SELECT lives_ok($$INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
                 VALUES (1, 'pending', 10, true, now(), now())$$, 'a legal move passes the triggers');
SELECT throws_ok($$INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
                 VALUES (1, 'complete', 20, true, now(), now())$$, '23514', NULL, 'an illegal move is refused for the app role');
SELECT throws_ok($$SET tasker_core.guard_mode = 'off'$$, '42501', NULL, 'a writer cannot switch off the checks on its own writes');
RESET ROLE;
SET LOCAL ROLE tasker_core_test_outsider;
SELECT throws_ok($$SELECT * FROM tasker_core.get_step_readiness_status(1)$$, '42501', NULL, 'no SELECT on the tables: permission denied, not data');
SELECT throws_ok($$SELECT * FROM tasker_core.disable('app')$$, '42501', NULL, 'a non-owner cannot disable');
-- SET ROLE checks the session user's memberships: be the outsider for the session, too.
RESET ROLE;
SET SESSION AUTHORIZATION tasker_core_test_outsider;
SELECT throws_ok($$SELECT tasker_core.redefine_as('app.get_step_readiness_status_before_tasker_core(bigint,bigint[])'::regprocedure, 'app', 'x',
                                                  'tasker_core_test_app'::regrole)$$,
                 '42501', NULL, 'the restorer cannot act as an owner the caller is not a member of');
RESET SESSION AUTHORIZATION;
SET LOCAL ROLE tasker_core_test_outsider;
RESET ROLE;
SET LOCAL ROLE tasker_core_test_app;
SELECT is((SELECT count(*)::int FROM tasker_core.disable('app') WHERE action IN ('restored', 'removed')), 13, 'the app role can disable');
SELECT * FROM finish();
ROLLBACK;
