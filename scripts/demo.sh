#!/usr/bin/env bash
# The main job: a private PostgreSQL 15 cluster, the tasker_core extension, a sample Tasker
# database with several workflows in mixed states, the native functions in action, Rails'
# own SQL switched to native with tasker_core.enable(), and a native-vs-SQL timing.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
scripts/setup.sh
echo "== building and installing tasker_core (release)"
cargo pgrx install --release --pg-config "$PG_CONFIG" >/tmp/tasker_core_demo_install.log 2>&1 \
  || { tail -30 /tmp/tasker_core_demo_install.log; exit 1; }
work=$(mktemp -d /tmp/tasker_core_demo.XXXXXX); chmod 755 "$work"; chown postgres: "$work"
port=$((56000 + RANDOM % 900))
trap 'scripts/cluster.sh stop "$work/pg"; rm -rf "$work"' EXIT
scripts/cluster.sh start "$work/pg" "$port"
export PGOPTIONS="-c client_min_messages=warning"
psql() { command psql "host=$work/pg port=$port user=postgres dbname=${DB:-postgres}" -X -v ON_ERROR_STOP=1 "$@"; }
psql -qc "CREATE DATABASE tasker_demo"
export DB=tasker_demo
echo "== a Tasker database: the Rails tables and Rails' own SQL functions, then 2,000 random workflows"
psql -q -f tests/fixtures/tasker_schema.sql -f tests/fixtures/reference_functions.sql -f tests/fixtures/reference_view.sql \
     -f tests/fixtures/generator.sql
psql -qAt -c "SELECT 'steps created: ' || tasker_gen.generate(0.5, 2000, anchor => (now() AT TIME ZONE 'UTC'))"
psql -q -c "CREATE EXTENSION tasker_core"
cat <<'SQL' | psql
-- An illustrative task: some steps ready to run, some waiting on parents, several levels deep.
SELECT r.task_id AS t FROM tasker_core.get_step_readiness_status_batch(ARRAY(SELECT task_id FROM tasker_tasks)) r
 GROUP BY r.task_id
HAVING bool_or(r.ready_for_execution) AND bool_or(NOT r.dependencies_satisfied) AND count(*) >= 6
 ORDER BY r.task_id LIMIT 1 \gset
\echo '== which steps of task' :t 'can run now? (tasker_core.get_step_readiness_status)'
SELECT workflow_step_id AS step, name, current_state, dependencies_satisfied AS deps_ok,
       completed_parents || '/' || total_parents AS parents, attempts || '/' || retry_limit AS tries,
       ready_for_execution AS ready, next_retry_at
  FROM tasker_core.get_step_readiness_status(:t);
\echo '== what should these tasks do next? (tasker_core.get_task_execution_contexts_batch)'
SELECT task_id, status, total_steps AS steps, completed_steps AS done, failed_steps AS failed, ready_steps AS ready,
       execution_status, recommended_action, completion_percentage AS pct, health_status
  FROM tasker_core.get_task_execution_contexts_batch(ARRAY[:t, 1, 2, 3, 4, 5]::bigint[]);
\echo '== dependency levels of task' :t '(longest path from a root)'
SELECT dependency_level, string_agg(workflow_step_id::text, ', ' ORDER BY workflow_step_id) AS steps
  FROM tasker_core.calculate_dependency_levels(:t) GROUP BY 1 ORDER BY 1;
\echo '== system health'
SELECT * FROM tasker_core.get_system_health_counts_v01();
\echo '== switching Rails over: tasker_core.enable() (functions, the view and guard triggers; Rails SQL text unchanged)'
SELECT * FROM tasker_core.enable();
SELECT * FROM tasker_core.status();
\echo '== Rails'' view tasker_step_dag_relationships, now native: the steps of task' :t
SELECT workflow_step_id, parent_step_ids, child_step_ids, is_root_step, is_leaf_step, min_depth_from_root
  FROM tasker_step_dag_relationships WHERE task_id = :t ORDER BY workflow_step_id;
\echo '== the derived step state: one index range per task for the read functions, kept exact by triggers'
SELECT * FROM tasker_core.step_state_enable() WHERE object = 'tasker_core.step_state';
SELECT valid, changed_at FROM tasker_core.step_state_source;
\echo '== Rails'' own SQL text now runs the native code:'
SELECT count(*) AS ready_steps FROM get_step_readiness_status(:t::BIGINT, NULL::BIGINT[]) WHERE ready_for_execution;
\echo '== the guards: starting a step whose parents are unfinished is refused (SQLSTATE 23514)'
SELECT workflow_step_id AS blocked_step FROM tasker_core.get_step_readiness_status(:t)
 WHERE NOT dependencies_satisfied ORDER BY 1 LIMIT 1 \gset
\set ON_ERROR_STOP 0
\set VERBOSITY verbose
BEGIN;
UPDATE tasker_workflow_step_transitions SET most_recent = false WHERE workflow_step_id = :blocked_step AND most_recent;
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
SELECT :blocked_step, 'in_progress', coalesce(max(sort_key), 0) + 10, true, now(), now()
  FROM tasker_workflow_step_transitions WHERE workflow_step_id = :blocked_step;
ROLLBACK;
\set VERBOSITY default
\set ON_ERROR_STOP 1
SQL
echo "== timing: native (reading the step state) vs Rails' SQL (server side, one statement over all 2,000 tasks, median of 5)"
psql -q -c "SELECT * FROM tasker_core.disable()" >/dev/null
cat <<'SQL' | psql -q
CREATE TEMP TABLE t (fn text, impl text, ms float8);
DO $$
DECLARE ids bigint[] := ARRAY(SELECT task_id FROM tasker_tasks ORDER BY 1); t0 timestamptz; i int; n bigint;
BEGIN
  FOR i IN 1..5 LOOP
    t0 := clock_timestamp(); SELECT count(*) INTO n FROM unnest(ids) x, LATERAL tasker_core.get_step_readiness_status(x);
    INSERT INTO t VALUES ('get_step_readiness_status (per task)', 'native', 1000 * extract(epoch FROM clock_timestamp() - t0));
    t0 := clock_timestamp(); SELECT count(*) INTO n FROM unnest(ids) x, LATERAL public.get_step_readiness_status(x);
    INSERT INTO t VALUES ('get_step_readiness_status (per task)', 'sql', 1000 * extract(epoch FROM clock_timestamp() - t0));
    t0 := clock_timestamp(); SELECT count(*) INTO n FROM tasker_core.get_task_execution_contexts_batch(ids);
    INSERT INTO t VALUES ('get_task_execution_contexts_batch', 'native', 1000 * extract(epoch FROM clock_timestamp() - t0));
    t0 := clock_timestamp(); SELECT count(*) INTO n FROM public.get_task_execution_contexts_batch(ids);
    INSERT INTO t VALUES ('get_task_execution_contexts_batch', 'sql', 1000 * extract(epoch FROM clock_timestamp() - t0));
    t0 := clock_timestamp(); SELECT count(*) INTO n FROM unnest(ids) x, LATERAL tasker_core.calculate_dependency_levels(x);
    INSERT INTO t VALUES ('calculate_dependency_levels (per task)', 'native', 1000 * extract(epoch FROM clock_timestamp() - t0));
    t0 := clock_timestamp(); SELECT count(*) INTO n FROM unnest(ids) x, LATERAL public.calculate_dependency_levels(x);
    INSERT INTO t VALUES ('calculate_dependency_levels (per task)', 'sql', 1000 * extract(epoch FROM clock_timestamp() - t0));
  END LOOP;
END $$;
SELECT fn AS function,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE impl = 'native'))::numeric, 1) AS native_ms,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE impl = 'sql'))::numeric, 1) AS sql_ms,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE impl = 'sql') /
              percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE impl = 'native'))::numeric, 1) AS speedup
  FROM t GROUP BY fn ORDER BY fn;
SQL
echo "(the Rails functions here are the project's SQL versions written from the spec; see docs/benchmarks.md)"
