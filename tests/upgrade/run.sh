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
psql postgres -c "DROP DATABASE IF EXISTS tasker_fresh" -c "CREATE DATABASE tasker_fresh"
psql tasker_fresh -c "CREATE EXTENSION tasker_core"
psql tasker_fresh -f "$here/catalog.sql" > /tmp/tasker_core_catalog_fresh.txt
for script in "$root"/sql/released/tasker_core--*.sql; do
  old=$(basename "$script" .sql); old=${old#tasker_core--}
  [ "$old" = "$current" ] && continue
  psql postgres -c "DROP DATABASE IF EXISTS tasker_upgraded" -c "CREATE DATABASE tasker_upgraded"
  psql tasker_upgraded -f "$root/tests/fixtures/${FIXTURE:-tasker_schema.sql}" -f "$root/tests/fixtures/reference_functions.sql"
  rails_defs="SELECT string_agg(pg_get_functiondef(p.oid), '' ORDER BY p.proname) FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace"
  original=$(psql tasker_upgraded -c "$rails_defs")
  psql tasker_upgraded -c "CREATE EXTENSION tasker_core VERSION '$old'" -c "SELECT count(*) FROM tasker_core.enable()" >/dev/null
  psql tasker_upgraded -c "ALTER EXTENSION tasker_core UPDATE"
  psql tasker_upgraded -f "$here/catalog.sql" > /tmp/tasker_core_catalog_upgraded.txt
  if diff -u /tmp/tasker_core_catalog_fresh.txt /tmp/tasker_core_catalog_upgraded.txt > /tmp/tasker_core_catalog.diff; then
    passed=$((passed + 1)); echo "  ok: $old + upgrade == fresh $current ($(grep -c '^member' /tmp/tasker_core_catalog_fresh.txt) members compared)"
  else
    failed=$((failed + 1)); echo "  FAILED: $old + upgrade differs from fresh $current:"; head -40 /tmp/tasker_core_catalog.diff
  fi
  # The upgraded database keeps working: still native, triggers installable, exact restore.
  works=$(psql tasker_upgraded -c "SELECT string_agg(DISTINCT state, ',') FROM tasker_core.status() WHERE kind = 'function'")
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
