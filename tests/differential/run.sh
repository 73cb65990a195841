#!/usr/bin/env bash
# Differential tests: native tasker_core == reference SQL (written from the spec) on every row,
# over random Tasker databases (many seeds and DAG shapes), several session time zones, and
# both read paths: the derived step state (tasker_core.step_state) and SQL
# (tasker_core.direct_reads off); the step state also with each of its batch scans forced
# (tasker_core.batch_scan sequential, index). Each run also checks, with
# tasker_core.read_path_stats(), that every call took the path the run asked for (a silent
# fallback fails). Odd seeds enable the step state before generating (its triggers follow
# every write), even seeds after (a rebuild); each seed also checks that
# tasker_core.step_state_verify() finds nothing.
# Usage: tests/differential/run.sh PSQL_CONNINFO [SEEDS] [TASKS_PER_SEED]
#   FIXTURE=tasker_schema_minimal.sql runs it on the minimal fixture (default tasker_schema.sql).
# Needs a server with tasker_core installed; creates and drops database tasker_diff.
set -euo pipefail
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
here=$(cd "$(dirname "$0")" && pwd); fixtures="$here/../fixtures"
conn=${1:?connection string}; seeds=${2:-12}; tasks=${3:-250}
command psql "$conn dbname=postgres" -X -q -v ON_ERROR_STOP=1 \
  -c "DROP DATABASE IF EXISTS tasker_diff" -c "CREATE DATABASE tasker_diff" >/dev/null
db() { command psql "$conn dbname=tasker_diff" -X -q -v ON_ERROR_STOP=1 "$@"; }
fixture=${FIXTURE:-tasker_schema.sql}
db -f "$fixtures/$fixture" -f "$fixtures/generator.sql" -f "$here/compare.sql"
db -c "CREATE SCHEMA tasker_ref" -c "SET search_path = tasker_ref" -f "$fixtures/reference_functions.sql"
db -c "CREATE EXTENSION tasker_core"

# Self-check: a reference with one rule changed must be caught, or this harness proves nothing.
db -c "CREATE SCHEMA tasker_mutant" -c "SET search_path = tasker_mutant" -f "$fixtures/reference_functions.sql"
mutant=$(db -At <<'SQL'
BEGIN;
SELECT tasker_gen.generate(0.4242, 60, anchor => LOCALTIMESTAMP);
-- The mutant treats only 'complete' parents as done (forgets resolved_manually).
CREATE OR REPLACE FUNCTION tasker_mutant.get_step_readiness_status_batch(input_task_ids bigint[])
RETURNS TABLE (workflow_step_id bigint, task_id bigint, named_step_id integer, name text, current_state text,
               dependencies_satisfied boolean, retry_eligible boolean, ready_for_execution boolean,
               last_failure_at timestamp, next_retry_at timestamp, total_parents integer, completed_parents integer,
               attempts integer, retry_limit integer, backoff_request_seconds integer, last_attempted_at timestamp)
LANGUAGE sql STABLE AS $$
  SELECT r.workflow_step_id, r.task_id, r.named_step_id, r.name, r.current_state, r.dependencies_satisfied,
         r.retry_eligible, r.ready_for_execution, r.last_failure_at, r.next_retry_at, r.total_parents,
         (SELECT count(*) FILTER (WHERE pt.to_state = 'complete')::int FROM tasker_workflow_step_edges e
            LEFT JOIN tasker_workflow_step_transitions pt ON pt.workflow_step_id = e.from_step_id AND pt.most_recent
           WHERE e.to_step_id = r.workflow_step_id),
         r.attempts, r.retry_limit, r.backoff_request_seconds, r.last_attempted_at
    FROM tasker_ref.get_step_readiness_status_batch(input_task_ids) r
$$;
SELECT mismatches FROM tasker_test.diff_all('mutant', 'tasker_mutant') WHERE function_name = 'get_step_readiness_status_batch';
ROLLBACK;
SQL
)
mutant=$(echo "$mutant" | tail -1)
if [ "${mutant:-0}" -gt 0 ]; then echo "self-check: the harness caught a mutated reference ($mutant mismatching rows)"; else echo "self-check FAILED: a mutated reference went unnoticed" >&2; exit 1; fi

# Self-check of the step_state path: with step_state corrupted behind the triggers' back, the
# native functions must disagree with the reference (proving they read it) and
# step_state_verify() must name the corrupted steps.
corrupt=$(db -At -F '|' <<'SQL'
BEGIN;
SELECT count(*) FROM tasker_core.step_state_enable();
SELECT tasker_gen.generate(0.4343, 60, anchor => LOCALTIMESTAMP);
-- What a commit would do: the step state refreshes this transaction's writes.
SELECT count(*) FROM tasker_core.step_state_verify();
UPDATE tasker_core.step_state SET current_state = 'complete' WHERE workflow_step_id % 5 = 0 OR (workflow_step_id IS NULL AND task_id % 3 = 0);
SELECT (SELECT sum(mismatches) FROM tasker_test.diff_all('corrupt')), (SELECT count(*) FROM tasker_core.step_state_verify());
ROLLBACK;
SQL
)
corrupt=$(echo "$corrupt" | tail -1)
if [ "${corrupt%%|*}" -gt 0 ] && [ "${corrupt##*|}" -gt 0 ]; then
  echo "self-check: a corrupted step_state changed native answers (${corrupt%%|*} rows) and step_state_verify named ${corrupt##*|} steps"
else
  echo "self-check FAILED: a corrupted step_state went unnoticed ($corrupt)" >&2; exit 1
fi

zones=("UTC" "America/New_York" "Asia/Kathmandu" "Etc/GMT+5" "Pacific/Kiritimati")
total_rows=0; total_bad=0; passed=0; failed=0; steps=0
for seed in $(seq 1 "$seeds"); do
  gen_zone=${zones[$((seed % ${#zones[@]}))]}
  out=$(db -At -F '|' <<SQL
BEGIN;
SET LOCAL TimeZone = '$gen_zone';
$( [ $((seed % 2)) = 1 ] && echo "SELECT 'enabled', count(*) FROM tasker_core.step_state_enable();" )
SELECT 'steps', tasker_gen.generate($seed / 1000.0, $tasks, anchor => LOCALTIMESTAMP);
$( [ $((seed % 2)) = 0 ] && echo "SELECT 'enabled', count(*) FROM tasker_core.step_state_enable();" )
SELECT 'verify', count(*) FROM tasker_core.step_state_verify();
SELECT 'stale', count(*) FROM tasker_core.step_state_source WHERE NOT valid;
$(for z in "${zones[@]}"; do for path in step_state sql; do
  echo "SET LOCAL TimeZone = '$z'; SET LOCAL tasker_core.direct_reads = $([ $path = sql ] && echo off || echo on);"
  echo "SELECT tasker_core.read_path_stats_reset();"
  echo "SELECT * FROM tasker_test.diff_all('seed $seed gen $gen_zone tz $z path $path');"
  echo "SELECT 'path', count(*) FROM tasker_core.read_path_stats() WHERE path <> '$path';"
done; done)
-- The step state's two ways of reading a batch, each forced (auto picks one per batch).
$(for scan in sequential index; do
  echo "SET LOCAL TimeZone = '$gen_zone'; SET LOCAL tasker_core.direct_reads = on; SET LOCAL tasker_core.batch_scan = $scan;"
  echo "SELECT * FROM tasker_test.diff_all('seed $seed gen $gen_zone tz $gen_zone path step_state batch_scan $scan');"
done)
ROLLBACK;
SQL
)
  while IFS='|' read -r run fn calls rows bad example; do
    if [ "$run" = steps ]; then steps=$((steps + fn)); continue; fi
    [ "$run" = enabled ] && continue
    [ "$run" = "" ] && continue
    if [ "$run" = verify ] || [ "$run" = stale ] || [ "$run" = path ]; then
      if [ "$fn" != 0 ]; then failed=$((failed + 1)); echo "MISMATCH seed $seed: $run reports $fn"; else passed=$((passed + 1)); fi
      continue
    fi
    total_rows=$((total_rows + rows)); total_bad=$((total_bad + bad))
    if [ "$bad" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "MISMATCH $run $fn: $bad of $rows rows; $example"; fi
  done <<<"$out"
done
echo "differential ($fixture): $seeds random databases ($steps steps), ${#zones[@]} time zones each, both read paths (step_state, SQL; every call on the path asked for) and both batch scans of the step state, $total_rows rows compared, $total_bad mismatches; step_state_verify clean on every seed: $([ "$failed" = 0 ] && echo yes || echo no)"
echo "differential: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
