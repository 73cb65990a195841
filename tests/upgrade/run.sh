#!/usr/bin/env bash
# Upgrade test: every released version, installed as released (its frozen script in
# sql/released/) and brought up with ALTER EXTENSION tasker_core UPDATE, must equal a fresh
# install of the current version, object for object. The upgraded database is used first
# (Rails functions switched to native), and must keep working afterwards.
# Usage: tests/upgrade/run.sh PSQL_CONNINFO   (the current version must be installed)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); root="$here/../.."
conn=${1:?connection string}
export PGOPTIONS="-c client_min_messages=warning"
extdir="$(${PG_CONFIG:-pg_config} --sharedir)/extension"
cp "$root"/sql/released/tasker_core--*.sql "$extdir"/
current=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
psql() { command psql "$conn dbname=$1" -X -q -At -v ON_ERROR_STOP=1 "${@:2}"; }
passed=0; failed=0
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
# The application's role: it owns the Tasker tables and Rails' functions (not a superuser).
app=tasker_upgrade_app
psql postgres -c "DROP DATABASE IF EXISTS tasker_upgraded" \
     -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$app') THEN CREATE ROLE $app NOLOGIN; END IF; END \$\$"
psql postgres -c "DROP DATABASE IF EXISTS tasker_fresh" -c "CREATE DATABASE tasker_fresh"
psql tasker_fresh -c "CREATE EXTENSION tasker_core"
psql tasker_fresh -f "$here/catalog.sql" > /tmp/tasker_core_catalog_fresh.txt
for script in "$root"/sql/released/tasker_core--*.sql; do
  old=$(basename "$script" .sql); old=${old#tasker_core--}
  [ "$old" = "$current" ] && continue
  psql postgres -c "DROP DATABASE IF EXISTS tasker_upgraded" -c "CREATE DATABASE tasker_upgraded"
  # The Tasker tables and Rails' functions belong to the app's role, as in a Rails database.
  psql tasker_upgraded -c "GRANT CREATE ON DATABASE tasker_upgraded TO $app" -c "GRANT CREATE ON SCHEMA public TO $app"
  psql tasker_upgraded -c "SET ROLE $app" -f "$root/tests/fixtures/${FIXTURE:-tasker_schema.sql}" -f "$root/tests/fixtures/reference_functions.sql" \
       -f "$root/tests/fixtures/generator.sql" -c "SELECT tasker_gen.generate(0.42, 60, legal_only => true)" >/dev/null
  rails_defs="SELECT string_agg(pg_get_functiondef(p.oid), '' ORDER BY p.proname) FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace"
  original=$(psql tasker_upgraded -c "$rails_defs")
  original_six=$(psql tasker_upgraded -c "SELECT string_agg(pg_get_functiondef(p.oid), '' ORDER BY p.proname) FROM pg_proc p
                   WHERE p.pronamespace = 'public'::regnamespace AND p.proname IN ('get_step_readiness_status',
                         'get_step_readiness_status_batch', 'get_task_execution_context', 'get_task_execution_contexts_batch',
                         'calculate_dependency_levels', 'get_system_health_counts_v01')")
  psql tasker_upgraded -c "CREATE EXTENSION tasker_core VERSION '$old'" -c "SELECT count(*) FROM tasker_core.enable()" >/dev/null
  # A step state enabled under the old version (0.3.0 has one) must stay valid and exact.
  had_state=$(psql tasker_upgraded -c "SELECT to_regprocedure('tasker_core.step_state_enable(name)') IS NOT NULL")
  # (0.3.0 cannot on the schema as Rails ships it: it did not recognize Rails' most_recent index,
  # the bug of issue 11; make test runs this test on the minimal fixture too, where it can.)
  if [ "$had_state" = t ] && ! psql tasker_upgraded -c "SELECT count(*) FROM tasker_core.step_state_enable()" >/dev/null 2>"$work/enable.err"; then
    if grep -q "has no unique index on (workflow_step_id) WHERE most_recent" "$work/enable.err"; then
      echo "  note: $old cannot enable its step state on ${FIXTURE:-tasker_schema.sql}: $(grep -m1 ERROR "$work/enable.err")"
    else
      failed=$((failed + 1)); echo "  FAILED: $old with this library cannot enable its step state: $(grep -m1 ERROR "$work/enable.err")"
    fi
    had_state=f
  fi
  # Until ALTER EXTENSION UPDATE, the old version's SQL runs this library (installing the
  # package replaces the library at once): its triggers and read functions must keep working.
  if psql tasker_upgraded -c "SET ROLE $app" -c "UPDATE tasker_workflow_steps SET attempts = coalesce(attempts, 0) + 1 WHERE workflow_step_id % 11 = 0" \
          -c "DELETE FROM tasker_workflow_step_edges WHERE id % 13 = 0" \
          -c "SELECT count(*) FROM get_step_readiness_status_batch(ARRAY(SELECT task_id FROM tasker_tasks))" \
          -c "SELECT count(*) FROM get_task_execution_contexts_batch(ARRAY(SELECT task_id FROM tasker_tasks))" >/dev/null 2>"$work/window.err" \
     && { [ "$had_state" != t ] || [ "$(psql tasker_upgraded -c "SELECT count(*) FROM tasker_core.step_state_verify()")" = 0 ]; }; then
    passed=$((passed + 1)); echo "  ok: $old SQL with this library (before ALTER EXTENSION UPDATE): writes, reads$([ "$had_state" = t ] && echo ", its step state stays exact")"
  else
    failed=$((failed + 1)); echo "  FAILED: $old SQL with this library: $(grep -m1 ERROR "$work/window.err" || echo "step_state_verify found rows")"
  fi
  psql tasker_upgraded -c "ALTER EXTENSION tasker_core UPDATE"
  # Rails' definitions the old version recorded are now functions next to Rails' own, outside
  # the extension, each the original under the name <name>_before_tasker_core.
  saved=$(psql tasker_upgraded -c "
    SELECT count(*) FROM pg_proc p JOIN pg_proc o ON o.pronamespace = p.pronamespace AND p.proname = o.proname || '_before_tasker_core'
     WHERE p.pronamespace = 'public'::regnamespace
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
       AND pg_get_function_identity_arguments(p.oid) = pg_get_function_identity_arguments(o.oid)")
  saved_defs=$(psql tasker_upgraded -c "
    SELECT string_agg(replace(pg_get_functiondef(p.oid), '_before_tasker_core(', '('), '' ORDER BY replace(p.proname, '_before_tasker_core', ''))
      FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE '%\_before\_tasker\_core'")
  if [ "$saved" = 6 ] && [ "$saved_defs" = "$original_six" ]; then
    passed=$((passed + 1)); echo "  ok: $old + upgrade: Rails' 6 definitions kept as <name>_before_tasker_core next to them, outside the extension, byte for byte"
  else
    failed=$((failed + 1)); echo "  FAILED: $old + upgrade: $saved saved copies; definitions equal: $([ "$saved_defs" = "$original_six" ] && echo yes || echo no)"
  fi
  if [ "$had_state" = t ]; then
    before=$(psql tasker_upgraded -c "SELECT valid FROM tasker_core.step_state_source" \
                 -c "SELECT string_agg(DISTINCT path, ',') FROM tasker_core.read_paths()" \
                 -c "SELECT count(*) FROM tasker_core.step_state_verify()" \
                 -c "SELECT count(*) FROM tasker_core.status() WHERE kind = 'trigger' AND state = 'installed'" | tr '\n' ' ')
    # Writes after the upgrade go through the 0.4.0 triggers (parent counters included).
    psql tasker_upgraded -c "SET ROLE $app" -c "UPDATE tasker_workflow_steps SET attempts = coalesce(attempts, 0) + 1 WHERE workflow_step_id % 7 = 0" \
         -c "DELETE FROM tasker_workflow_step_edges WHERE id % 5 = 0" >/dev/null
    after_writes=$(psql tasker_upgraded -c "SELECT valid FROM tasker_core.step_state_source" -c "SELECT count(*) FROM tasker_core.step_state_verify()" | tr '\n' ' ')
    if [ "$before" = "t step_state 0 7 " ] && [ "$after_writes" = "t 0 " ]; then
      passed=$((passed + 1)); echo "  ok: $old + upgrade: the step state enabled before stays valid, is read, verifies exact before and after writes; 7 triggers installed (the new flag guard too)"
    else
      failed=$((failed + 1)); echo "  FAILED: $old + upgrade: step state after upgrade (valid, paths, verify rows, triggers) = $before; after writes (valid, verify rows) = $after_writes"
    fi
    psql tasker_upgraded -c "SELECT count(*) FROM tasker_core.step_state_disable()" >/dev/null
  fi
  psql tasker_upgraded -f "$here/catalog.sql" > /tmp/tasker_core_catalog_upgraded.txt
  if diff -u /tmp/tasker_core_catalog_fresh.txt /tmp/tasker_core_catalog_upgraded.txt > /tmp/tasker_core_catalog.diff; then
    passed=$((passed + 1)); echo "  ok: $old + upgrade == fresh $current ($(grep -c '^member' /tmp/tasker_core_catalog_fresh.txt) members compared)"
  else
    failed=$((failed + 1)); echo "  FAILED: $old + upgrade differs from fresh $current:"; head -40 /tmp/tasker_core_catalog.diff
  fi
  # The upgraded database keeps working: still native, triggers installable, exact restore.
  # (The functions newer than the old version are missing until enable() creates them.)
  works=$(psql tasker_upgraded -c "SELECT string_agg(DISTINCT state, ',') FROM tasker_core.status() WHERE kind = 'function' AND state <> 'missing'")
  psql tasker_upgraded -c "SELECT count(*) FROM tasker_core.enable()" >/dev/null
  trig=$(psql tasker_upgraded -c "SELECT count(*) FROM tasker_core.status() WHERE kind = 'trigger' AND state = 'installed'")
  state=$(psql tasker_upgraded -c "SELECT count(*) FROM tasker_core.step_state_enable()" \
               -c "SELECT count(*) FROM tasker_core.step_state_verify()" -c "SELECT count(*) FROM tasker_core.step_state_disable()" | sed -n 2p)
  psql tasker_upgraded -c "SELECT count(*) FROM tasker_core.disable()" >/dev/null
  after=$(psql tasker_upgraded -c "$rails_defs")
  if [ "$works" = native ] && [ "$trig" = 7 ] && [ "$state" = 0 ] && [ "$after" = "$original" ]; then
    passed=$((passed + 1)); echo "  ok: after upgrade from $old: functions still native, 7 triggers install, the step state builds exact, disable() restores Rails' definitions"
  else
    failed=$((failed + 1)); echo "  FAILED: upgraded $old database: status=$works triggers=$trig step_state_verify=$state"
  fi
done
echo "upgrade: $passed passed, $failed failed"
[ "$failed" = 0 ]
