-- The extension's objects: exact signatures, volatility, strictness, security, and schema.
BEGIN;
SELECT plan(64);

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
SELECT has_function('tasker_core', 'enable', ARRAY['name', 'boolean', 'boolean', 'boolean', 'boolean']);
-- The lifecycle events (docs/events.md).
SELECT has_table('tasker_core', 'events', 'the events table');
SELECT has_function('tasker_core', 'events_since', ARRAY['bigint', 'integer']);
SELECT has_function('tasker_core', 'prune_events', ARRAY['interval', 'integer']);
SELECT has_function('tasker_core', 'subscribe', ARRAY['text', 'boolean']);
SELECT has_function('tasker_core', 'consumer_events', ARRAY['text', 'integer']);
SELECT has_function('tasker_core', 'ack', ARRAY['text', 'bigint']);
SELECT has_function('tasker_core', 'unsubscribe', ARRAY['text']);
SELECT ok(NOT has_function_privilege('public', 'tasker_core.prune_events(interval, integer)', 'EXECUTE')
          AND NOT has_function_privilege('public', 'tasker_core.events_record(oid, bigint[])', 'EXECUTE')
          AND NOT has_table_privilege('public', 'tasker_core.events', 'SELECT')
          AND NOT has_table_privilege('public', 'tasker_core.event_consumers', 'SELECT')
          AND NOT has_function_privilege('public', 'tasker_core.subscribe(text, boolean)', 'EXECUTE')
          AND NOT has_function_privilege('public', 'tasker_core.ack(text, bigint)', 'EXECUTE'),
          'PUBLIC may not prune, record or read events, nor register or move consumers');
SELECT has_function('tasker_core', 'disable', ARRAY['name']);
SELECT has_function('tasker_core', 'status', ARRAY['name']);
SELECT has_function('tasker_core', 'read_paths', ARRAY['text']);
SELECT has_function('tasker_core', 'read_path_stats', ARRAY[]::text[]);
SELECT isnt_definer('tasker_core', 'enable', ARRAY['name', 'boolean', 'boolean', 'boolean', 'boolean']);
SELECT isnt_definer('tasker_core', 'disable', ARRAY['name']);
SELECT isnt_definer('tasker_core', 'redefine_as', ARRAY['oid', 'text', 'text', 'oid'], 'the restorer runs with its caller''s rights');
SELECT ok(NOT has_function_privilege('public', 'tasker_core.release_all()', 'EXECUTE'), 'PUBLIC cannot release everything');
SELECT is((SELECT evtenabled::text FROM pg_event_trigger WHERE evtname = 'tasker_core_before_drop'), 'A',
          'the DROP EXTENSION guard fires always');

-- The orchestration functions (orchestration.md A.5, B.5, C.8, D.5).
SELECT has_function('tasker_core', 'claim_ready_steps', ARRAY['bigint', 'integer', 'bigint[]', 'jsonb', 'boolean']);
SELECT has_function('tasker_core', 'transition_step', ARRAY['bigint', 'text', 'text', 'jsonb']);
SELECT has_function('tasker_core', 'transition_task', ARRAY['bigint', 'text', 'text', 'jsonb', 'boolean']);
SELECT has_function('tasker_core', 'finalize_task', ARRAY['bigint', 'boolean', 'jsonb']);
SELECT has_function('tasker_core', 'finalization_plan', ARRAY['text', 'text', 'boolean', 'bigint[]', 'jsonb']);
SELECT has_function('tasker_core', 'reenqueue_delay_seconds', ARRAY['bigint', 'jsonb']);
SELECT has_function('tasker_core', 'record_step_success', ARRAY['bigint', 'jsonb', 'jsonb']);
SELECT has_function('tasker_core', 'record_step_failure', ARRAY['bigint', 'jsonb', 'integer', 'boolean', 'jsonb']);
SELECT has_function('tasker_core', 'backoff_seconds', ARRAY['integer', 'boolean', 'jsonb']);
SELECT has_function('tasker_core', 'parse_retry_after', ARRAY['text', 'timestamp with time zone']);

-- The view's depth (orchestration.md E.3).
SELECT has_function('tasker_core', 'step_min_depth_from_root', ARRAY['bigint']);
SELECT has_function('tasker_core', 'step_min_depth_from_root', ARRAY['bigint', 'text']);

-- The analytics functions (orchestration.md F), with Rails' signatures.
SELECT has_function('tasker_core', 'get_analytics_metrics_v01', ARRAY['timestamp with time zone']);
SELECT has_function('tasker_core', 'get_slowest_steps_v01', ARRAY['timestamp with time zone', 'integer', 'text', 'text', 'text']);
SELECT has_function('tasker_core', 'get_slowest_tasks_v01', ARRAY['timestamp with time zone', 'integer', 'text', 'text', 'text']);
SELECT has_function('tasker_core', 'analytics_counts', ARRAY['timestamp with time zone']);

-- Every function of the extension runs with search_path = pg_catalog, pg_temp, but those that
-- find the Tasker tables through the caller's search_path, as Rails' functions and statements
-- do (the six read functions, read_paths, step_min_depth_from_root, and the orchestration
-- functions that read or write the Tasker tables; docs/security.md), the event trigger written in C,
-- and the two procedures of the online build (one with a SET clause could not COMMIT; they call
-- only pinned functions and qualify every name and operator).
SELECT is(
  (SELECT string_agg(p.oid::regprocedure::text, ', ' ORDER BY p.oid::regprocedure::text)
     FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
    WHERE d.refclassid = 'pg_extension'::regclass AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
      AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'tasker_core')
      AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)),
  'tasker_core.analytics_counts(timestamp with time zone), tasker_core.before_drop(), tasker_core.calculate_dependency_levels(bigint), tasker_core.claim_ready_steps(bigint,integer,bigint[],jsonb,boolean), tasker_core.finalize_task(bigint,boolean,jsonb), tasker_core.get_analytics_metrics_v01(timestamp with time zone), tasker_core.get_slowest_steps_v01(timestamp with time zone,integer,text,text,text), tasker_core.get_slowest_tasks_v01(timestamp with time zone,integer,text,text,text), tasker_core.get_step_readiness_status(bigint,bigint[]), tasker_core.get_step_readiness_status_batch(bigint[]), tasker_core.get_system_health_counts_v01(), tasker_core.get_task_execution_context(bigint), tasker_core.get_task_execution_contexts_batch(bigint[]), tasker_core.read_paths(text), tasker_core.record_step_failure(bigint,jsonb,integer,boolean,jsonb), tasker_core.record_step_success(bigint,jsonb,jsonb), tasker_core.reenqueue_delay_seconds(bigint,jsonb), tasker_core.step_min_depth_from_root(bigint), tasker_core.step_state_enable_concurrently(name,interval), tasker_core.step_state_rebuild_concurrently(interval), tasker_core.transition_step(bigint,text,text,jsonb), tasker_core.transition_task(bigint,text,text,jsonb,boolean)',
  'every other function pins search_path = pg_catalog, pg_temp');

SELECT * FROM finish();
ROLLBACK;
