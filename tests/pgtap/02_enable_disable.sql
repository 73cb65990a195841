-- enable() swaps Rails' functions and view for native ones and installs the triggers; disable() undoes all three.
BEGIN;
SELECT plan(25);
-- The fixture: tests/fixtures/tasker_schema.sql unless pg_prove --set fixture=... names another.
\if :{?fixture}
\else
\set fixture tests/fixtures/tasker_schema.sql
\endif
\i :fixture
\i tests/fixtures/reference_functions.sql
\i tests/fixtures/reference_view.sql
CREATE TEMP TABLE before_view AS SELECT pg_get_viewdef('public.tasker_step_dag_relationships'::regclass) AS def;

CREATE TEMP TABLE before_defs AS
SELECT p.proname, pg_get_functiondef(p.oid) AS def FROM pg_proc p
 WHERE p.pronamespace = 'public'::regnamespace AND p.proname IN (SELECT function_name FROM tasker_core.drop_in_functions());

SELECT hasnt_trigger('public', 'tasker_workflow_step_transitions', 'tasker_core_step_transition_insert', 'tasker_core_step_transition_insert is not on tasker_workflow_step_transitions');
SELECT is((SELECT count(*)::int FROM tasker_core.enable()), 17, 'enable() reports 9 functions (3 created: the fixture has no analytics functions), 7 triggers and the view');
SELECT is((SELECT state FROM tasker_core.status() WHERE kind = 'view'), 'native', 'the view is native');
SELECT isnt(pg_get_viewdef('public.tasker_step_dag_relationships'::regclass), (SELECT def FROM before_view), 'the view has the native definition');
SELECT has_trigger('public', 'tasker_workflow_step_transitions', 'tasker_core_step_transition_insert', 'tasker_core_step_transition_insert is on tasker_workflow_step_transitions');
SELECT has_trigger('public', 'tasker_workflow_step_transitions', 'tasker_core_step_transition_update', 'tasker_core_step_transition_update is on tasker_workflow_step_transitions');
SELECT has_trigger('public', 'tasker_task_transitions', 'tasker_core_task_transition_insert', 'tasker_core_task_transition_insert is on tasker_task_transitions');
SELECT has_trigger('public', 'tasker_task_transitions', 'tasker_core_task_transition_update', 'tasker_core_task_transition_update is on tasker_task_transitions');
SELECT has_trigger('public', 'tasker_workflow_step_edges', 'tasker_core_step_edge_guard', 'tasker_core_step_edge_guard is on tasker_workflow_step_edges');
SELECT trigger_is('public', 'tasker_workflow_step_edges', 'tasker_core_step_edge_guard', 'tasker_core', 'guard_step_edge');
SELECT results_eq($$SELECT DISTINCT state FROM tasker_core.status() WHERE kind = 'function'$$, $$VALUES ('native')$$, 'every function is native');
SELECT has_trigger('public', 'tasker_workflow_step_transitions', 'tasker_core_step_transition_flag', 'tasker_core_step_transition_flag is on tasker_workflow_step_transitions');
SELECT is((SELECT count(*)::int FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND proname LIKE '%\_before\_tasker\_core'), 6,
          'Rails'' definitions are kept next to Rails'' functions');
SELECT lives_ok('SELECT * FROM tasker_core.enable()', 'enable() again is harmless');
SELECT is((SELECT count(*)::int FROM tasker_core.disable()), 17, 'disable() removes 7 triggers, restores 6 functions and the view, drops the 3 it created');
SELECT is(pg_get_viewdef('public.tasker_step_dag_relationships'::regclass), (SELECT def FROM before_view), 'Rails'' view is back, byte for byte');
SELECT hasnt_view('public', 'tasker_step_dag_relationships_before_tasker_core', 'the copy of the view restored from is gone');
SELECT hasnt_trigger('public', 'tasker_workflow_step_edges', 'tasker_core_step_edge_guard', 'tasker_core_step_edge_guard is not on tasker_workflow_step_edges');
SELECT results_eq(
  $$SELECT p.proname::text, pg_get_functiondef(p.oid) FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
      AND p.proname IN (SELECT function_name FROM tasker_core.drop_in_functions()) ORDER BY 1$$,
  $$SELECT proname::text, def FROM before_defs ORDER BY 1$$, 'the Rails definitions are back, byte for byte');
SELECT is((SELECT count(*)::int FROM tasker_core.disable()), 0, 'disable() again does nothing');
SELECT is((SELECT count(*)::int FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND proname LIKE '%\_before\_tasker\_core'), 0,
          'the copies restored from are gone');
-- DROP EXTENSION while enabled puts Rails' functions back first (with or without CASCADE).
SELECT lives_ok('SELECT * FROM tasker_core.enable()', 'enabled again');
SELECT lives_ok('DROP EXTENSION tasker_core CASCADE', 'DROP EXTENSION ... CASCADE while enabled');
SELECT results_eq(
  $$SELECT p.proname::text, pg_get_functiondef(p.oid) FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
      AND p.proname IN (SELECT proname FROM before_defs) ORDER BY 1$$,
  $$SELECT proname::text, def FROM before_defs ORDER BY 1$$, 'Rails is left with its own functions, byte for byte');
SELECT is(pg_get_viewdef('public.tasker_step_dag_relationships'::regclass), (SELECT def FROM before_view), 'and with its own view');

SELECT * FROM finish();
ROLLBACK;
