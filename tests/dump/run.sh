#!/usr/bin/env bash
# Dump and restore round trips of a Tasker database with tasker_core enabled, the ways Rails
# teams and DBAs make them:
#   1. structure.sql: `pg_dump --schema-only --no-privileges --no-owner` (what
#      `rails db:schema:dump` writes with config.active_record.schema_format = :sql), loaded into
#      an empty database with psql (what `rails db:schema:load` does). The load must succeed
#      with ON_ERROR_STOP; the functions are native and the 7 guard triggers installed; the
#      step state, whose state is data, is off until step_state_enable(); disable() puts
#      Rails' six definitions back byte for byte (they travel as <name>_before_tasker_core);
#      enable() and step_state_enable() work again.
#   2. A whole-database dump (custom format, pg_restore into an empty database): every Tasker
#      row arrives; the functions are native and the guards installed; the step state, derived
#      rows that pg_dump does not carry, comes back off (read_paths() says so) while writes
#      keep working; step_state_enable() builds it exact; the read functions answer as before
#      the dump.
# Usage: tests/dump/run.sh PSQL_CONNINFO   (a superuser; pg_dump, pg_restore on PATH, of the
# server's major). Creates databases tasker_dump_{source,schema,whole} (dropped first).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); root="$here/../.."
conn=${1:?connection string}
export PGOPTIONS="-c client_min_messages=warning"
work=$(mktemp -d); chmod 755 "$work"; trap 'rm -rf "$work"' EXIT
psql() { command psql "$conn dbname=$1" -X -q -At -v ON_ERROR_STOP=1 "${@:2}"; }
passed=0; failed=0
check() { if [ "$1" = ok ]; then passed=$((passed + 1)); echo "  ok: $2"; else failed=$((failed + 1)); echo "  FAILED: $2"; fi; }

rails_six="SELECT string_agg(pg_get_functiondef(p.oid), '' ORDER BY p.proname) FROM pg_proc p
            WHERE p.pronamespace = 'public'::regnamespace AND p.proname IN ('get_step_readiness_status',
                  'get_step_readiness_status_batch', 'get_task_execution_context', 'get_task_execution_contexts_batch',
                  'calculate_dependency_levels', 'get_system_health_counts_v01')"
answers="SELECT md5(string_agg(r::text, ';' ORDER BY r.task_id, r.workflow_step_id)) FROM get_step_readiness_status_batch(ARRAY(SELECT task_id FROM tasker_tasks)) r;
         SELECT md5(string_agg(c::text, ';' ORDER BY c.task_id)) FROM get_task_execution_contexts_batch(ARRAY(SELECT task_id FROM tasker_tasks)) c;"
native="SELECT count(*) FROM tasker_core.status() WHERE kind = 'function' AND state = 'native'"
guards="SELECT count(*) FROM tasker_core.status() WHERE kind = 'trigger' AND state = 'installed'"

for db in tasker_dump_source tasker_dump_schema tasker_dump_whole; do
  psql postgres -c "DROP DATABASE IF EXISTS $db"
done
psql postgres -c "CREATE DATABASE tasker_dump_source"
psql tasker_dump_source -f "$root/tests/fixtures/${FIXTURE:-tasker_schema.sql}" -f "$root/tests/fixtures/reference_functions.sql" \
     -f "$root/tests/fixtures/reference_view.sql" -f "$root/tests/fixtures/generator.sql" -c "SELECT tasker_gen.generate(0.7, 200, legal_only => true)" >/dev/null
psql tasker_dump_source -c "DROP SCHEMA tasker_gen CASCADE"
original=$(psql tasker_dump_source -c "$rails_six")
rails_view="SELECT pg_get_viewdef('public.tasker_step_dag_relationships'::regclass)"
original_view=$(psql tasker_dump_source -c "$rails_view")
psql tasker_dump_source -c "CREATE EXTENSION tasker_core" -c "SELECT count(*) FROM tasker_core.enable()" \
     -c "SELECT count(*) FROM tasker_core.step_state_enable()" >/dev/null

echo "== structure.sql (pg_dump --schema-only --no-privileges --no-owner, loaded with psql)"
pg_dump --schema-only --no-privileges --no-owner -f "$work/structure.sql" "$conn dbname=tasker_dump_source"
psql postgres -c "CREATE DATABASE tasker_dump_schema"
if psql tasker_dump_schema -f "$work/structure.sql" >"$work/load.out" 2>&1; then
  check ok "structure.sql ($(wc -l <"$work/structure.sql") lines) loads into an empty database with ON_ERROR_STOP"
else
  check bad "structure.sql does not load: $(grep -m1 ERROR "$work/load.out")"
fi
got=$(psql tasker_dump_schema -c "$native" -c "$guards" -c "SELECT count(*) FROM tasker_core.step_state_source" | tr '\n' ' ')
[ "$got" = "9 7 0 " ] && check ok "after the load: 9 functions native, 7 guard triggers installed, the step state off (its state is data)" \
  || check bad "after the load (native functions, installed triggers, step_state_source rows): $got, want 9 7 0"
got=$(psql tasker_dump_schema -c "SELECT state FROM tasker_core.status() WHERE kind = 'view'")
[ "$got" = native ] && check ok "after the load: the view tasker_step_dag_relationships is native" \
  || check bad "after the load: the view is $got, want native"
psql tasker_dump_schema -c "SELECT count(*) FROM tasker_core.disable()" >/dev/null
[ "$(psql tasker_dump_schema -c "$rails_view")" = "$original_view" ] \
  && check ok "disable() in the loaded database puts Rails' view back byte for byte (its definition travels as tasker_step_dag_relationships_before_tasker_core)" \
  || check bad "disable() in the loaded database: Rails' view definition differs"
restored=$(psql tasker_dump_schema -c "$rails_six")
left=$(psql tasker_dump_schema -c "SELECT count(*) FROM pg_proc WHERE proname LIKE '%\\_before\\_tasker\\_core'")
[ "$restored" = "$original" ] && [ "$left" = 0 ] \
  && check ok "disable() in the loaded database puts Rails' six definitions back byte for byte, and drops the saved copies" \
  || check bad "disable() in the loaded database: definitions equal: $([ "$restored" = "$original" ] && echo yes || echo no); saved copies left: $left"
got=$(psql tasker_dump_schema -c "SELECT count(*) FROM tasker_core.enable()" -c "SELECT count(*) FROM tasker_core.step_state_enable()" \
           -c "$native" -c "$guards" -c "SELECT valid FROM tasker_core.step_state_source" | tail -3 | tr '\n' ' ')
[ "$got" = "9 7 t " ] && check ok "enable() and step_state_enable() work again in the loaded database" \
  || check bad "enable(), step_state_enable() in the loaded database: $got, want 9 7 t"

echo "== a whole-database dump (pg_dump -Fc, pg_restore)"
pg_dump -Fc -f "$work/whole.dump" "$conn dbname=tasker_dump_source"
psql postgres -c "CREATE DATABASE tasker_dump_whole"
if pg_restore --exit-on-error -d "$conn dbname=tasker_dump_whole" "$work/whole.dump" >"$work/restore.out" 2>&1; then
  check ok "pg_restore --exit-on-error of the whole database succeeds"
else
  check bad "pg_restore failed: $(grep -m1 -E 'ERROR|error' "$work/restore.out")"
fi
counts="SELECT (SELECT count(*) FROM tasker_workflow_steps) || ' ' || (SELECT count(*) FROM tasker_workflow_step_transitions) || ' '
               || (SELECT count(*) FROM tasker_workflow_step_edges) || ' ' || (SELECT count(*) FROM tasker_tasks)"
[ "$(psql tasker_dump_whole -c "$counts")" = "$(psql tasker_dump_source -c "$counts")" ] \
  && check ok "every Tasker row arrives (steps, transitions, edges, tasks: $(psql tasker_dump_source -c "$counts"))" \
  || check bad "rows differ after restore: $(psql tasker_dump_whole -c "$counts") vs $(psql tasker_dump_source -c "$counts")"
got=$(psql tasker_dump_whole -c "$native" -c "$guards" -c "SELECT count(*) FROM tasker_core.step_state_source" \
           -c "SELECT count(*) FROM tasker_core.step_state" \
           -c "SELECT string_agg(DISTINCT path || coalesce(': ' || reason, ''), ' | ') FROM tasker_core.read_paths()" | tr '\n' ' ')
case $got in
  "9 7 0 0 sql: the step state is not enabled"*) check ok "after the restore: 9 functions native, 7 guard triggers; the step state (derived rows, not dumped) is off and read_paths() says so" ;;
  *) check bad "after the restore (native, triggers, step_state_source rows, step_state rows, read_paths): $got" ;;
esac
# Its maintenance triggers came back with the tables: writes must not trip over them.
if psql tasker_dump_whole -c "UPDATE tasker_workflow_steps SET attempts = attempts WHERE workflow_step_id % 9 = 0" \
        -c "DELETE FROM tasker_workflow_step_edges WHERE false" >/dev/null 2>"$work/write.err"; then
  check ok "writes to the Tasker tables work while the restored step state is off"
else
  check bad "a write after the restore failed: $(grep -m1 ERROR "$work/write.err")"
fi
got=$(psql tasker_dump_whole -c "SELECT count(*) FROM tasker_core.step_state_enable()" -c "SELECT count(*) FROM tasker_core.step_state_verify()" \
           -c "SELECT string_agg(DISTINCT path, ',') FROM tasker_core.read_paths()" | tail -2 | tr '\n' ' ')
[ "$got" = "0 step_state " ] && check ok "step_state_enable() builds it exact, and it is read again" \
  || check bad "after step_state_enable() (verify rows, paths): $got"
# (Readiness depends on the clock: both read back to back, and read again when they differ, in
# case a step's backoff ended between the two reads; a real difference stays.)
before=$(psql tasker_dump_source -c "SET TimeZone = 'UTC'" -c "$answers")
after=$(psql tasker_dump_whole -c "SET TimeZone = 'UTC'" -c "$answers")
if [ "$after" != "$before" ]; then
  before=$(psql tasker_dump_source -c "SET TimeZone = 'UTC'" -c "$answers")
  after=$(psql tasker_dump_whole -c "SET TimeZone = 'UTC'" -c "$answers")
fi
[ "$after" = "$before" ] && check ok "the read functions answer as before the dump (batch readiness and contexts, md5 of every row)" \
  || check bad "the read functions answer differently after the restore"

echo "dump: $passed passed, $failed failed"
[ "$failed" = 0 ]
