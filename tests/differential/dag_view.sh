#!/usr/bin/env bash
# Differential test of the drop-in view tasker_step_dag_relationships (orchestration.md E):
# Rails' definition (tests/fixtures/reference_view.sql, written from the spec; and the engine's
# own text from its structure.sql when TASKER_ENGINE or the mirror is at hand) against the view
# enable(views => true) puts in its place, on random databases (every generator shape, duplicate
# and cross-task edges) with planted cases: a chain of 60 (past the depth cap of 50), cycles
# reachable from a root and cycles no root reaches, a self-loop, isolated steps.
# For every seed: the whole view, 300 lookups by workflow_step_id and 100 by task_id give the
# same rows before and after enable(); disable() gives back the definition byte for byte; a
# grant and a dependent view survive both directions. A self-check alters one reference row,
# which the comparison must catch.
# Usage: tests/differential/dag_view.sh PSQL_CONNINFO [SEEDS] [TASKS_PER_SEED]
set -euo pipefail
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
here=$(cd "$(dirname "$0")" && pwd); fixtures="$here/../fixtures"
conn=${1:?connection string}; seeds=${2:-4}; tasks=${3:-150}
command psql "$conn dbname=postgres" -X -q -v ON_ERROR_STOP=1 \
  -c "DROP DATABASE IF EXISTS tasker_dag_diff" -c "CREATE DATABASE tasker_dag_diff" >/dev/null
db() { command psql "$conn dbname=tasker_dag_diff" -X -q -At -v ON_ERROR_STOP=1 "$@"; }
passed=0; failed=0
check() { if [ "$2" = 0 ]; then passed=$((passed + 1)); echo "  ok: $1"; else failed=$((failed + 1)); echo "  MISMATCH: $1: $2 ${3:-}"; fi; }

db -f "$fixtures/${FIXTURE:-tasker_schema.sql}" -f "$fixtures/generator.sql" -f "$fixtures/reference_view.sql" \
   -c "CREATE EXTENSION tasker_core" -c "CREATE ROLE dag_reader_$$ NOLOGIN" \
   -c "GRANT SELECT ON tasker_step_dag_relationships TO dag_reader_$$" \
   -c "CREATE VIEW dag_roots AS SELECT workflow_step_id FROM tasker_step_dag_relationships WHERE is_root_step" >/dev/null
trap 'db -c "DROP OWNED BY dag_reader_$$" -c "DROP ROLE IF EXISTS dag_reader_$$" >/dev/null 2>&1 || true' EXIT

# The engine's own view, renamed, when its structure.sql is at hand.
. "$here/engine_structure.sh"
structure=$(engine_structure)
if [ -n "$structure" ]; then
  echo "$structure" | awk '/^CREATE VIEW public\.tasker_step_dag_relationships AS/ { on = 1 } on { print } on && /;$/ { on = 0 }' \
    | sed 's/^CREATE VIEW public\.tasker_step_dag_relationships AS/CREATE VIEW public.engine_dag_relationships AS/' | db >/dev/null
fi

# One row per difference between the view and table $1 (restricted by $2), both ways.
diff_sql() {
  echo "SELECT count(*) FROM ((SELECT * FROM tasker_step_dag_relationships WHERE $2 EXCEPT ALL SELECT * FROM $1 WHERE $2)
                              UNION ALL (SELECT * FROM $1 WHERE $2 EXCEPT ALL SELECT * FROM tasker_step_dag_relationships WHERE $2)) d"
}
# Lookups one at a time, as Rails' model and serializers make them: differences summed.
lookups_sql() {
  echo "DO \$\$ DECLARE x bigint; d bigint := 0; n bigint; BEGIN
          FOR x IN SELECT workflow_step_id FROM $1 ORDER BY md5(workflow_step_id::text) LIMIT 300 LOOP
            SELECT count(*) INTO n FROM ((SELECT * FROM tasker_step_dag_relationships WHERE workflow_step_id = x EXCEPT ALL SELECT * FROM $1 WHERE workflow_step_id = x)
                                   UNION ALL (SELECT * FROM $1 WHERE workflow_step_id = x EXCEPT ALL SELECT * FROM tasker_step_dag_relationships WHERE workflow_step_id = x)) q;
            d := d + n;
          END LOOP;
          FOR x IN SELECT DISTINCT task_id FROM $1 ORDER BY 1 LIMIT 100 LOOP
            SELECT count(*) INTO n FROM ((SELECT * FROM tasker_step_dag_relationships WHERE task_id = x EXCEPT ALL SELECT * FROM $1 WHERE task_id = x)
                                   UNION ALL (SELECT * FROM $1 WHERE task_id = x EXCEPT ALL SELECT * FROM tasker_step_dag_relationships WHERE task_id = x)) q;
            d := d + n;
          END LOOP;
          RAISE WARNING 'lookup differences %', d; END \$\$;"
}

rows_total=0
for seed in $(seq 1 "$seeds"); do
  echo "== seed $seed"
  db -c "SELECT count(*) FROM tasker_core.disable()" >/dev/null
  db -c "TRUNCATE tasker_workflow_step_edges, tasker_workflow_steps, tasker_tasks CASCADE" \
     -c "SELECT count(*) FROM tasker_gen.generate(0.$((seed * 6151 % 10000)), $tasks, anchor => (now() AT TIME ZONE 'UTC'))" >/dev/null
  # Planted: cycles (reachable and not) in two tasks; a chain of 60 in a third; a self-loop on
  # a step of a fourth; isolated steps come from the generator's 'isolated' shape.
  db >/dev/null <<'SQL'
SELECT tasker_gen.add_cycle((SELECT min(task_id) FROM tasker_tasks), true);
SELECT tasker_gen.add_cycle((SELECT max(task_id) FROM tasker_tasks), false);
WITH t AS (SELECT min(task_id) + 1 AS task_id FROM tasker_tasks),
     ns AS (SELECT min(named_step_id) AS named_step_id FROM tasker_named_steps),
     s AS (INSERT INTO tasker_workflow_steps (task_id, named_step_id, created_at, updated_at)
           SELECT t.task_id, ns.named_step_id, LOCALTIMESTAMP, LOCALTIMESTAMP FROM t, ns, generate_series(1, 60)
           RETURNING workflow_step_id),
     o AS (SELECT workflow_step_id, row_number() OVER (ORDER BY workflow_step_id) AS i FROM s)
INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at)
SELECT a.workflow_step_id, b.workflow_step_id, 'provides', LOCALTIMESTAMP, LOCALTIMESTAMP
  FROM o a JOIN o b ON b.i = a.i + 1;
INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at)
SELECT workflow_step_id, workflow_step_id, 'provides', LOCALTIMESTAMP, LOCALTIMESTAMP
  FROM tasker_workflow_steps WHERE task_id = (SELECT min(task_id) + 2 FROM tasker_tasks) ORDER BY 1 LIMIT 1;
-- An edge from the last step of one task into the first step of another (legacy data).
INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at)
SELECT (SELECT max(workflow_step_id) FROM tasker_workflow_steps WHERE task_id = (SELECT min(task_id) + 3 FROM tasker_tasks)),
       (SELECT min(workflow_step_id) FROM tasker_workflow_steps WHERE task_id = (SELECT min(task_id) + 5 FROM tasker_tasks)),
       'provides', LOCALTIMESTAMP, LOCALTIMESTAMP;
ANALYZE;
SQL
  db -c "DROP TABLE IF EXISTS before_rows" -c "CREATE TABLE before_rows AS SELECT * FROM tasker_step_dag_relationships" >/dev/null
  n=$(db -c "SELECT count(*) FROM before_rows"); rows_total=$((rows_total + n))
  echo "  $n rows; depths: $(db -c "SELECT count(*) FILTER (WHERE min_depth_from_root IS NULL) || ' NULL, max ' || max(min_depth_from_root) FROM before_rows")"
  if [ -n "$structure" ]; then
    check "reference view == the engine's own view" "$(db -c "SELECT count(*) FROM ((SELECT * FROM engine_dag_relationships EXCEPT ALL SELECT * FROM before_rows) UNION ALL (SELECT * FROM before_rows EXCEPT ALL SELECT * FROM engine_dag_relationships)) d")"
  fi
  check "the chain of 60: depth 50 at its 51st step, NULL after" \
    "$(db -c "SELECT count(*) FROM (SELECT min_depth_from_root AS d, row_number() OVER (ORDER BY workflow_step_id) AS i FROM before_rows
                                     WHERE task_id = (SELECT min(task_id) + 1 FROM tasker_tasks) AND workflow_step_id > (SELECT max(workflow_step_id) - 60 FROM before_rows WHERE task_id = (SELECT min(task_id) + 1 FROM tasker_tasks))) c
                                     WHERE (i = 51 AND d IS DISTINCT FROM 50) OR (i = 52 AND d IS NOT NULL)")"
  definition=$(db -c "SELECT pg_get_viewdef('tasker_step_dag_relationships'::regclass)")
  db -c "SELECT count(*) FROM tasker_core.enable(functions => false, triggers => false)" >/dev/null
  check "status(): native" "$(db -c "SELECT count(*) FROM tasker_core.status() WHERE kind = 'view' AND state <> 'native'")"
  check "whole view: native == Rails' rows" "$(db -c "$(diff_sql before_rows true)")"
  # Both ways of finding a depth were taken: from the task's edges at once, and the search
  # backwards for the tasks an edge from another task reaches.
  paths=$(db -c "SELECT tasker_core.read_path_stats_reset()" -c "SELECT count(*) FROM tasker_step_dag_relationships WHERE min_depth_from_root IS NOT NULL" \
             -c "SELECT string_agg(path || '=' || (calls > 0), ',' ORDER BY path) FROM tasker_core.read_path_stats() WHERE function_name = 'step_min_depth_from_root'" | tail -1)
  check "depth paths taken: $paths" "$([ "$paths" = "search=true,task=true" ] && echo 0 || echo 1)"
  out=$(db -c "$(lookups_sql before_rows)" 2>&1)
  check "lookups by step (300) and by task (100)" "$(echo "$out" | sed -n 's/.*lookup differences \([0-9]*\).*/\1/p')" "$out"
  check "the grant and the dependent view survive" \
    "$(db -c "SELECT (NOT has_table_privilege('dag_reader_$$', 'tasker_step_dag_relationships', 'SELECT'))::int
                   + (SELECT count(*) FROM dag_roots r FULL JOIN (SELECT workflow_step_id FROM before_rows WHERE is_root_step) b USING (workflow_step_id)
                       WHERE r.workflow_step_id IS NULL OR b.workflow_step_id IS NULL)")"
  # Self-check: one altered reference row must show as two differences.
  db -c "CREATE TABLE mutant_rows AS SELECT * FROM before_rows" \
     -c "UPDATE mutant_rows SET min_depth_from_root = COALESCE(min_depth_from_root, -1) + 1 WHERE workflow_step_id = (SELECT max(workflow_step_id) FROM mutant_rows)" >/dev/null
  m=$(db -c "$(diff_sql mutant_rows true)"); db -c "DROP TABLE mutant_rows" >/dev/null
  check "self-check: an altered row is caught ($m differences)" "$([ "$m" = 2 ] && echo 0 || echo 1)"
  db -c "SELECT count(*) FROM tasker_core.disable()" >/dev/null
  check "disable(): Rails' definition back byte for byte" \
    "$([ "$(db -c "SELECT pg_get_viewdef('tasker_step_dag_relationships'::regclass)")" = "$definition" ] && echo 0 || echo 1)"
  check "disable(): the saved copy is gone, status() says original" \
    "$(db -c "SELECT (to_regclass('tasker_step_dag_relationships_before_tasker_core') IS NOT NULL)::int
                   + (SELECT count(*) FROM tasker_core.status() WHERE kind = 'view' AND state <> 'original')")"
  check "after disable(): Rails' rows" "$(db -c "$(diff_sql before_rows true)")"
done
echo "dag view differential: $passed passed, $failed failed; $rows_total rows compared over $seeds seeds"
[ "$failed" = 0 ]
