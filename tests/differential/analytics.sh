#!/usr/bin/env bash
# Differential test of the analytics functions (orchestration.md F): tasker_core's
# get_analytics_metrics_v01, get_slowest_steps_v01 and get_slowest_tasks_v01 against a
# reference written from the spec (tests/fixtures/reference_analytics.sql, schema ana_ref),
# and, when the engine's structure.sql is at hand (TASKER_ENGINE, or the mirror), against the
# engine's own functions (its metrics as shipped; its slowest_* with the two timestamptz result
# columns declared as the timestamp they return, compared on every row, unlimited).
# On random databases whose task and step creation times are spread over the last two days:
# the metrics for since NULL, 1 h, 4 h, 24 h, 30 days ago and a future time; the slowest
# functions for those, limits NULL and 1, a namespace, a task name, a version filter and a
# missing namespace, both step-count modes; under TimeZone UTC, America/New_York and
# Asia/Kathmandu; on the step state by index and in one pass (tasker_core.batch_scan = index,
# sequential) and on SQL (tasker_core.direct_reads = off), the path taken asserted. A self-check
# alters one reference value, which must be caught.
# Usage: tests/differential/analytics.sh PSQL_CONNINFO [SEEDS] [TASKS_PER_SEED]
set -euo pipefail
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
here=$(cd "$(dirname "$0")" && pwd); fixtures="$here/../fixtures"
conn=${1:?connection string}; seeds=${2:-3}; tasks=${3:-150}
command psql "$conn dbname=postgres" -X -q -v ON_ERROR_STOP=1 \
  -c "DROP DATABASE IF EXISTS tasker_analytics_diff" -c "CREATE DATABASE tasker_analytics_diff" >/dev/null
db() { command psql "$conn dbname=tasker_analytics_diff" -X -q -At -v ON_ERROR_STOP=1 "$@"; }
passed=0; failed=0
check() { if [ "$2" = 0 ]; then passed=$((passed + 1)); echo "  ok: $1"; else failed=$((failed + 1)); echo "  MISMATCH: $1: $2 ${3:-}"; fi; }

db -f "$fixtures/${FIXTURE:-tasker_schema.sql}" -f "$fixtures/generator.sql" -c "CREATE EXTENSION tasker_core" \
   -c "CREATE SCHEMA ana_ref" -c "SET search_path = ana_ref, public" -f "$fixtures/reference_analytics.sql" >/dev/null

. "$here/engine_structure.sh"
structure=$(engine_structure)
if [ -n "$structure" ]; then
  db -c "CREATE SCHEMA ana_engine" >/dev/null
  echo "$structure" | awk '/^CREATE FUNCTION public\.(get_analytics_metrics_v01|get_slowest_steps_v01|get_slowest_tasks_v01)\(/ { on = 1 }
                           on { print } on && /^\$\$;$/ { on = 0; print "" }' \
    | sed -e 's/^CREATE FUNCTION public\./CREATE FUNCTION ana_engine./' \
          -e '/get_slowest_/s/created_at timestamp with time zone, completed_at timestamp with time zone/created_at timestamp without time zone, completed_at timestamp without time zone/' \
    | db >/dev/null
fi

sinces="NULL::timestamptz now()-interval'1h' now()-interval'4h' now()-interval'24h' now()-interval'30d' now()+interval'1d'"
# One row per difference between native and reference calls of $1 with the argument lists $2.
metrics_sql() {
  local s q=""
  for s in $sinces; do
    q="$q UNION ALL SELECT count(*) FROM ((SELECT * FROM tasker_core.get_analytics_metrics_v01($s) EXCEPT ALL SELECT * FROM $1.get_analytics_metrics_v01($s))
                                     UNION ALL (SELECT * FROM $1.get_analytics_metrics_v01($s) EXCEPT ALL SELECT * FROM tasker_core.get_analytics_metrics_v01($s))) d"
  done
  echo "SELECT sum(c) FROM (${q# UNION ALL}) x(c)"
}
# The slowest functions: every argument combination, as ordered arrays of rows (order matters).
slowest_sql() {
  local ref=$1 s l f q=""
  for s in $sinces; do
    for l in NULL 1; do
      for f in "(SELECT min(name) FROM tasker_task_namespaces), NULL, NULL" "NULL, (SELECT max(name) FROM tasker_named_tasks), NULL" \
               "NULL, NULL, (SELECT min(version) FROM tasker_named_tasks)" "'no such namespace', NULL, NULL"; do
        for fn in get_slowest_steps_v01 get_slowest_tasks_v01; do
          q="$q UNION ALL SELECT (SELECT array_agg(r::text) FROM tasker_core.$fn($s, $l, $f) r) IS DISTINCT FROM (SELECT array_agg(r::text) FROM $ref.$fn($s, $l, $f) r)"
        done
      done
    done
  done
  echo "SELECT count(*) FILTER (WHERE d) FROM (${q# UNION ALL}) x(d)"
}
# Against the engine's slowest_*: all rows (no limit; its ties have no order), times as stored.
engine_slowest_sql() {
  local s q=""
  for s in $sinces; do
    q="$q UNION ALL SELECT count(*) FROM ((SELECT workflow_step_id, task_id, step_name, task_name, namespace_name, version, duration_seconds, attempts,
                                                 created_at AT TIME ZONE 'UTC', completed_at AT TIME ZONE 'UTC', retryable, step_status
                                            FROM tasker_core.get_slowest_steps_v01($s, NULL) EXCEPT ALL SELECT * FROM ana_engine.get_slowest_steps_v01($s, NULL))
                                   UNION ALL (SELECT * FROM ana_engine.get_slowest_steps_v01($s, NULL) EXCEPT ALL
                                              SELECT workflow_step_id, task_id, step_name, task_name, namespace_name, version, duration_seconds, attempts,
                                                     created_at AT TIME ZONE 'UTC', completed_at AT TIME ZONE 'UTC', retryable, step_status
                                                FROM tasker_core.get_slowest_steps_v01($s, NULL))) d
           UNION ALL SELECT count(*) FROM ((SELECT task_id, task_name, namespace_name, version, duration_seconds, step_count, completed_steps, error_steps,
                                                   created_at AT TIME ZONE 'UTC', completed_at AT TIME ZONE 'UTC', initiator, source_system
                                              FROM tasker_core.get_slowest_tasks_v01($s, NULL) EXCEPT ALL SELECT * FROM ana_engine.get_slowest_tasks_v01($s, NULL))
                                   UNION ALL (SELECT * FROM ana_engine.get_slowest_tasks_v01($s, NULL) EXCEPT ALL
                                              SELECT task_id, task_name, namespace_name, version, duration_seconds, step_count, completed_steps, error_steps,
                                                     created_at AT TIME ZONE 'UTC', completed_at AT TIME ZONE 'UTC', initiator, source_system
                                                FROM tasker_core.get_slowest_tasks_v01($s, NULL))) d"
  done
  echo "SELECT sum(c) FROM (${q# UNION ALL}) x(c)"
}

calls=0
for seed in $(seq 1 "$seeds"); do
  echo "== seed $seed"
  db -c "SELECT count(*) FROM tasker_core.step_state_disable()" >/dev/null
  db -c "TRUNCATE tasker_workflow_step_edges, tasker_workflow_step_transitions, tasker_workflow_steps, tasker_task_transitions, tasker_tasks CASCADE" \
     -c "SELECT count(*) FROM tasker_gen.generate(0.$((seed * 3571 % 10000)), $tasks, anchor => (now() AT TIME ZONE 'UTC'))" >/dev/null
  # Creation times over the last two days (steps up to 30 minutes after their task, some after
  # their completion: negative durations); a second namespace, task name and version.
  db >/dev/null <<SQL
SELECT setseed(0.$seed);
UPDATE tasker_tasks SET created_at = (now() AT TIME ZONE 'UTC') - random() * interval '48 hours';
UPDATE tasker_workflow_steps ws SET created_at = t.created_at + random() * interval '30 minutes'
  FROM tasker_tasks t WHERE t.task_id = ws.task_id;
INSERT INTO tasker_task_namespaces (name, created_at, updated_at) SELECT 'ns_two', now(), now() WHERE NOT EXISTS (SELECT 1 FROM tasker_task_namespaces WHERE name = 'ns_two');
UPDATE tasker_named_tasks SET task_namespace_id = (SELECT max(task_namespace_id) FROM tasker_task_namespaces), version = '9.9.9'
 WHERE named_task_id IN (SELECT named_task_id FROM tasker_named_tasks ORDER BY named_task_id LIMIT 2);
ANALYZE;
SQL
  db -c "SELECT count(*) FROM tasker_core.step_state_enable()" >/dev/null
  # Creation times changed after the step state was built: its maintenance must carry them.
  db -c "UPDATE tasker_workflow_steps SET created_at = created_at - interval '7 minutes' WHERE workflow_step_id % 5 = 0" >/dev/null
  check "the step state is exact after the creation times changed" "$(db -c "SELECT count(*) FROM tasker_core.step_state_verify()")"
  for tz in UTC America/New_York Asia/Kathmandu; do
    # The step state by index (the period's tasks, the unsettled steps), in one pass, and SQL.
    for path in index pass off; do
      case $path in
        index) set_opts="SET TimeZone = '$tz'; SET tasker_core.direct_reads = on; SET tasker_core.batch_scan = index;"; want=step_state ;;
        pass) set_opts="SET TimeZone = '$tz'; SET tasker_core.direct_reads = on; SET tasker_core.batch_scan = sequential;"; want=step_state_scan ;;
        off) set_opts="SET TimeZone = '$tz'; SET tasker_core.direct_reads = off;"; want=sql ;;
      esac
      out=$(db -c "$set_opts" -c "SELECT tasker_core.read_path_stats_reset()" -c "$(metrics_sql ana_ref)" \
               -c "SELECT coalesce(string_agg(path, ','), 'none') FROM tasker_core.read_path_stats() WHERE function_name = 'get_analytics_metrics_v01'")
      check "metrics == reference ($tz, direct_reads $path; 6 windows)" "$(echo "$out" | tail -2 | head -1)"
      check "the metrics took the $want path" "$([ "$(echo "$out" | tail -1)" = "$want" ] && echo 0 || echo 1)" "(took: $(echo "$out" | tail -1))"
      for mode in rails distinct; do
        n=$(db -c "$set_opts SET tasker_core.analytics_step_counts = '$mode';" -c "$(slowest_sql ana_ref)" | tail -1)
        check "slowest steps and tasks == reference ($tz, direct_reads $path, counts $mode; 96 calls)" "$n"
        calls=$((calls + 96))
      done
      calls=$((calls + 6))
      if [ -n "$structure" ]; then
        n=$(db -c "$set_opts" -c "$(metrics_sql ana_engine)" | tail -1)
        check "metrics == the engine's own function ($tz, direct_reads $path)" "$n"
        n=$(db -c "$set_opts" -c "$(engine_slowest_sql)" | tail -1)
        check "slowest steps and tasks == the engine's own queries, every row ($tz, direct_reads $path)" "$n"
      fi
    done
  done
  got=$(db -c "SELECT count(*) FROM tasker_core.get_analytics_metrics_v01(now() - interval '30 days') WHERE task_throughput > 0 AND completion_count > 0 AND avg_step_duration <> 0")
  check "the data exercises the averages (throughput, completions and durations over 30 days)" "$([ "$got" = 1 ] && echo 0 || echo 1)"
done
# Self-check: a reference that rounds one column differently must be caught.
db -c "CREATE SCHEMA ana_mutant" >/dev/null
sed -e 's/round(coalesce((SELECT avg(step_s) FROM done), 0), 3)/round(coalesce((SELECT avg(step_s) FROM done), 0), 2)/' "$fixtures/reference_analytics.sql" \
  | { echo "SET search_path = ana_mutant, public;"; cat; } | db >/dev/null
m=$(db -c "$(metrics_sql ana_mutant)" | tail -1)
check "self-check: a reference rounding avg_step_duration to 2 places is caught ($m differences)" "$([ "$m" -gt 0 ] && echo 0 || echo 1)"
echo "analytics differential: $passed passed, $failed failed; $calls calls compared with the reference over $seeds seeds"
[ "$failed" = 0 ]
