-- The extension's objects: exact signatures, volatility, strictness, security, and schema.
BEGIN;
SELECT plan(38);

SELECT has_extension('tasker_core');
SELECT has_schema('tasker_core');

-- The six drop-in functions: argument types, set-returning, STABLE, not STRICT, SECURITY INVOKER.
SELECT has_function('tasker_core', 'get_step_readiness_status', ARRAY['bigint', 'bigint[]']);
SELECT has_function('tasker_core', 'get_step_readiness_status_batch', ARRAY['bigint[]']);
SELECT has_function('tasker_core', 'get_task_execution_context', ARRAY['bigint']);
SELECT has_function('tasker_core', 'get_task_execution_contexts_batch', ARRAY['bigint[]']);
SELECT has_function('tasker_core', 'calculate_dependency_levels', ARRAY['bigint']);
SELECT has_function('tasker_core', 'get_system_health_counts_v01', ARRAY[]::text[]);

SELECT volatility_is('tasker_core', f, args, 'stable', f || ' is STABLE')
  FROM (VALUES ('get_step_readiness_status', ARRAY['bigint', 'bigint[]']), ('get_step_readiness_status_batch', ARRAY['bigint[]']),
               ('get_task_execution_context', ARRAY['bigint']), ('get_task_execution_contexts_batch', ARRAY['bigint[]']),
               ('calculate_dependency_levels', ARRAY['bigint']), ('get_system_health_counts_v01', ARRAY[]::text[])) v(f, args);
SELECT isnt_strict('tasker_core', f, args, f || ' is not STRICT (NULL arguments get the spec''s answer)')
  FROM (VALUES ('get_step_readiness_status', ARRAY['bigint', 'bigint[]']), ('get_step_readiness_status_batch', ARRAY['bigint[]']),
               ('get_task_execution_context', ARRAY['bigint']), ('get_task_execution_contexts_batch', ARRAY['bigint[]']),
               ('calculate_dependency_levels', ARRAY['bigint']), ('get_system_health_counts_v01', ARRAY[]::text[])) v(f, args);
SELECT isnt_definer('tasker_core', f, args, f || ' is SECURITY INVOKER')
  FROM (VALUES ('get_step_readiness_status', ARRAY['bigint', 'bigint[]']), ('get_task_execution_context', ARRAY['bigint']),
               ('calculate_dependency_levels', ARRAY['bigint']), ('get_system_health_counts_v01', ARRAY[]::text[])) v(f, args);

-- Result columns, names and types in order, exactly as Rails' functions declare them.
SELECT is(pg_get_function_result('tasker_core.get_step_readiness_status(bigint,bigint[])'::regprocedure),
  'TABLE(workflow_step_id bigint, task_id bigint, named_step_id integer, name text, current_state text, dependencies_satisfied boolean, retry_eligible boolean, ready_for_execution boolean, last_failure_at timestamp without time zone, next_retry_at timestamp without time zone, total_parents integer, completed_parents integer, attempts integer, retry_limit integer, backoff_request_seconds integer, last_attempted_at timestamp without time zone)',
  'readiness result columns');
SELECT is(pg_get_function_arguments('tasker_core.get_step_readiness_status(bigint,bigint[])'::regprocedure),
  'input_task_id bigint, step_ids bigint[] DEFAULT NULL::bigint[]', 'readiness arguments and default');
SELECT is(pg_get_function_result('tasker_core.get_task_execution_context(bigint)'::regprocedure),
  'TABLE(task_id bigint, named_task_id integer, status text, total_steps bigint, pending_steps bigint, in_progress_steps bigint, completed_steps bigint, failed_steps bigint, ready_steps bigint, execution_status text, recommended_action text, completion_percentage numeric, health_status text)',
  'execution context result columns');
SELECT is(pg_get_function_result('tasker_core.calculate_dependency_levels(bigint)'::regprocedure),
  'TABLE(workflow_step_id bigint, dependency_level integer)', 'dependency levels result columns');
SELECT is(pg_get_function_result('tasker_core.get_system_health_counts_v01()'::regprocedure),
  'TABLE(total_tasks bigint, pending_tasks bigint, in_progress_tasks bigint, complete_tasks bigint, error_tasks bigint, cancelled_tasks bigint, total_steps bigint, pending_steps bigint, in_progress_steps bigint, complete_steps bigint, error_steps bigint, retryable_error_steps bigint, exhausted_retry_steps bigint, in_backoff_steps bigint, active_connections bigint, max_connections bigint)',
  'health counts result columns');

-- Admin functions.
SELECT has_function('tasker_core', 'enable', ARRAY['name', 'boolean', 'boolean']);
SELECT has_function('tasker_core', 'disable', ARRAY['name']);
SELECT has_function('tasker_core', 'status', ARRAY['name']);
SELECT is_definer('tasker_core', 'remember_original', ARRAY['name', 'name', 'text'], 'the recorder is SECURITY DEFINER (written reason in sql/admin.sql)');
SELECT is_definer('tasker_core', 'forget_original', ARRAY['name', 'name', 'text']);
SELECT isnt_definer('tasker_core', 'enable', ARRAY['name', 'boolean', 'boolean']);
SELECT isnt_definer('tasker_core', 'disable', ARRAY['name']);
SELECT has_table('tasker_core', 'replaced_functions', 'saved Rails definitions');
SELECT table_privs_are('tasker_core', 'replaced_functions', 'public', ARRAY['SELECT'], 'PUBLIC may only read the saved definitions');

SELECT * FROM finish();
ROLLBACK;
