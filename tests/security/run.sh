#!/usr/bin/env bash
# Security tests: a hostile application role against a DBA's tasker_core.
#
# The threat: the application role (tasker_app: it owns its database, the Tasker tables and
# Rails' functions, and may CREATE in schema public, as a Rails app that owns its database
# does) plants objects that shadow built-ins (tests/security/plant.sql): functions such as
# quote_ident(name), format(...), to_regclass(text), current_setting(text),
# pg_get_functiondef(oid), operators such as = on (oid, regclass) or (bigint, bigint) and <> on
# (bigint, bigint), in schema public and in a schema evil that sessions put first
# (search_path = evil, pg_catalog, public). Every planted object leaves evidence when it runs
# (a WARNING, a row in public.pwned, a sequence tick) and tries to make tasker_app a superuser.
#
# Nothing planted may run inside:
#   - a superuser's (the DBA's) call of every admin function (enable, disable, status,
#     release_all, read_paths, step_state_enable/disable/rebuild/verify, server_identity,
#     most_recent_index), with search_path "$user", public, with public, pg_catalog, and with
#     evil first; DROP EXTENSION (its guard) and CREATE EXTENSION / ALTER EXTENSION UPDATE;
#   - any trigger the extension installs: the guard triggers, the step-state maintenance
#     triggers, the DDL-watch event trigger (writers and DDL with evil first);
#   - the read functions on both read paths (the step state, and SQL), for the app, a reader
#     role and the superuser, with evil first.
# The guards must still refuse a cycle and an illegal move when = and <> lie.
# The app must not be able to make the DBA's enable()/disable() run its code by tampering with
# Rails' functions or with the saved copies (public.<name>_before_tasker_core) that disable()
# re-creates: injected text, SET clauses, owner and language changes. Values whose input runs a
# domain CHECK while the definition is parsed, and what the app attaches to its own tables (a
# partial index predicate, an extended statistics expression), run whenever PostgreSQL parses
# or plans over them, as whoever does: inside the extension's SECURITY DEFINER triggers and the
# DBA's calls they may run only as tasker_app, in a security-restricted operation (no SET
# ROLE), never as a superuser. Nor may a tasker_core schema that the app created before
# CREATE EXTENSION let the app's functions run inside them.
#
# Self-checks prove the evidence can fire: an unpinned function calling format() runs the
# planted one, the lying operators do fool unqualified SQL, and a superuser's own query over an
# app table runs the planted index predicate.
#
# Usage: tests/security/run.sh PSQL_CONNINFO   (a superuser, e.g. "host=/tmp/c port=56301 user=postgres";
# roles tasker_app and tasker_reader are created and log in without a password, as on the
# throwaway trust-auth clusters of scripts/cluster.sh). Creates database tasker_security
# (dropped first if it exists) and leaves it for a look.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
conn=${1:?connection string of a superuser}
db=tasker_security
export PGOPTIONS="-c client_min_messages=warning"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
passed=0; failed=0; escalations=0
check() { if [ "$1" = ok ]; then passed=$((passed + 1)); echo "  ok: $2"; else failed=$((failed + 1)); echo "  FAILED: $2"; fi; }

# The DBA: the superuser the connection string names.
dba=$(command psql "$conn dbname=postgres" -X -At -c "SELECT current_user")
[ "$(command psql "$conn dbname=postgres" -X -At -c "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")" = t ] \
  || { echo "run.sh: $dba is not a superuser" >&2; exit 2; }

EVIL="evil,pg_catalog,public"
PUBFIRST="public,pg_catalog"

# A session as ROLE ('-' path: the role's default search_path), phase LABEL; psql args follow.
as_role() {
  local role=$1 path=$2 label=$3; shift 3
  local opts="-c client_min_messages=warning -c tasker_security.phase=$label"
  [ "$path" = - ] || opts="$opts -c search_path=$path"
  PGOPTIONS="$opts" command psql "$conn dbname=$db user=$role" -X -q -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose "$@"
}
# Helpers that must not touch a plant: search_path = pg_catalog only, every table qualified.
sq() { as_role "$dba" pg_catalog setup "$@"; }
aq() { as_role tasker_app pg_catalog setup "$@"; }

app_is_super() { [ "$(sq -c "SELECT rolsuper FROM pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'tasker_app'")" = t ]; }

# The planted calls recorded for phase LABEL: warnings in its output and rows of public.pwned
# (rows only where the transaction committed; warnings always).
# With attached=1 (code the app attached to its own tables), only calls that ran as another
# role than tasker_app count: PostgreSQL runs such code for whoever plans a query over the
# table, so the promise is that it runs with the app's own rights, sandboxed, never a DBA's.
attached=0; attached_phases="''"
evidence() {
  local label=$1 rows warns not_app=""
  [ "$attached" = 1 ] && not_app="AND ran_as OPERATOR(pg_catalog.<>) 'tasker_app'"
  rows=$(sq -c "SELECT count(*) FROM public.pwned WHERE phase OPERATOR(pg_catalog.=) '$label' $not_app")
  if [ "$attached" = 1 ]; then
    warns=$(grep "TASKER_PWNED \[$label\] .* ran as " "$work/$label.out" | grep -vc " ran as tasker_app " || true)
  else
    warns=$(grep -c "TASKER_PWNED \[$label\] .* ran as " "$work/$label.out" || true)
  fi
  [ "$rows" -gt "$warns" ] && echo "$rows" || echo "$warns"
}
# Calls of code the app attached that ran as tasker_app in phase LABEL (shown, not a failure).
as_app_rows() { sq -c "SELECT count(*) FROM public.pwned WHERE phase OPERATOR(pg_catalog.=) '$1' AND ran_as OPERATOR(pg_catalog.=) 'tasker_app'"; }
show_evidence() {
  grep -o "TASKER_PWNED \[$1\].*" "$work/$1.out" | sed "s/^TASKER_PWNED \[$1\] //" | sort | uniq -c | sort -rn | head -${2:-6} \
    | sed 's/^ */    ran: /' || true
}
# Cleanup done as a superuser may itself run the app's code (that is what some checks find):
# undo any escalation it caused, so the next check starts clean.
reset_super() { sq -c "ALTER ROLE tasker_app NOSUPERUSER" >/dev/null; }
# Runs a setup command quietly (the app's own statements may warn about its own plants); shows
# its output and stops if it fails.
quiet() { local rc=0; "$@" >"$work/quiet.out" 2>&1 || rc=$?; [ "$rc" = 0 ] || { cat "$work/quiet.out" >&2; exit "$rc"; }; }
# Rows of public.pwned for a phase.
pwned_rows() { sq -c "SELECT count(*) FROM public.pwned WHERE phase OPERATOR(pg_catalog.=) '$1'"; }

# step DESC ROLE PATH WANT  (SQL on stdin) in a fresh session. WANT: ok (must succeed),
# refused (must fail with SQLSTATE 23514) or any. Then: no planted object ran, and tasker_app
# is not a superuser (if it became one, it is reset so later checks still mean something).
n=0
step() {
  local desc=$1 role=$2 path=$3 want=$4 label rc=0 problems=""
  n=$((n + 1)); label="p$n"
  as_role "$role" "$path" "$label" >"$work/$label.out" 2>&1 || rc=$?
  case $want in
    ok) [ "$rc" = 0 ] || problems="$problems; it failed: $(grep -m1 -E 'ERROR|FATAL' "$work/$label.out" || echo "psql exit $rc")" ;;
    refused) { [ "$rc" != 0 ] && grep -Eq "ERROR: +23514" "$work/$label.out"; } \
               || problems="$problems; not refused with 23514 ($(grep -m1 ERROR "$work/$label.out" || echo "it succeeded"))" ;;
  esac
  local ran; ran=$(evidence "$label")
  [ "$ran" = 0 ] || problems="$problems; planted code ran $ran time(s)"
  if app_is_super; then
    problems="$problems; tasker_app became a SUPERUSER"; escalations=$((escalations + 1))
    sq -c "ALTER ROLE tasker_app NOSUPERUSER"
  fi
  [ "$attached" = 1 ] && attached_phases="$attached_phases,'$label'"
  if [ "$attached" = 1 ] && [ "$(as_app_rows "$label")" -gt 0 ]; then desc="$desc (it ran $(as_app_rows "$label") time(s) as tasker_app, sandboxed)"; fi
  if [ -z "$problems" ]; then check ok "$desc"; else check bad "$desc:${problems#;}"; show_evidence "$label"; fi
  last=$label
}
out() { cat "$work/$last.out"; }

echo "== setup: database $db, roles tasker_app (owns the database, the Tasker tables, Rails' functions) and tasker_reader"
command psql "$conn dbname=postgres" -X -q -v ON_ERROR_STOP=1 <<SQL
DROP DATABASE IF EXISTS $db;
DROP ROLE IF EXISTS tasker_app;
DROP ROLE IF EXISTS tasker_reader;
CREATE ROLE tasker_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
CREATE ROLE tasker_reader LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
CREATE DATABASE $db OWNER tasker_app;
SQL
sq <<'SQL'
GRANT CREATE, USAGE ON SCHEMA public TO tasker_app;
CREATE TABLE public.pwned (id bigserial, phase text, what text, ran_as name, session_user_name name,
                           at timestamptz DEFAULT clock_timestamp());
GRANT SELECT, INSERT ON public.pwned TO PUBLIC;
GRANT USAGE ON SEQUENCE public.pwned_id_seq TO PUBLIC;
CREATE SEQUENCE public.tasker_pwn_hits;
GRANT USAGE, SELECT, UPDATE ON SEQUENCE public.tasker_pwn_hits TO PUBLIC;
SQL
as_role tasker_app - setup -f "$here/../fixtures/tasker_schema.sql"
as_role tasker_app - setup -f "$here/../fixtures/reference_functions.sql"
as_role tasker_app - setup -f "$here/../fixtures/reference_view.sql"
as_role tasker_app - setup -f "$here/../fixtures/generator.sql"
steps=$(as_role tasker_app - setup -c "SELECT tasker_gen.generate(0.3, 30)")
aq -c "GRANT SELECT ON ALL TABLES IN SCHEMA public TO tasker_reader" 2>/dev/null
sq -c "CREATE EXTENSION tasker_core"
echo "  $steps steps generated; tasker_core $(sq -c "SELECT extversion FROM pg_extension WHERE extname OPERATOR(pg_catalog.=) 'tasker_core'") installed"

echo "== the app plants its objects (tests/security/plant.sql)"
quiet aq -f "$here/plant.sql"
echo "  planted: $(sq -c "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
                           WHERE n.nspname OPERATOR(pg_catalog.=) ANY ('{public,evil}') AND p.proowner OPERATOR(pg_catalog.=) 'tasker_app'::regrole
                             AND p.proname OPERATOR(pg_catalog.!~~) 'tasker_op_%'") functions and aggregates,"\
" $(sq -c "SELECT count(*) FROM pg_operator o JOIN pg_namespace n ON n.oid OPERATOR(pg_catalog.=) o.oprnamespace
             WHERE n.nspname OPERATOR(pg_catalog.=) ANY ('{public,evil}')") operators (schemas public and evil)"
app_is_super && { echo "tasker_app is a superuser before the tests start: stopping"; exit 1; }

echo "== self-checks: the evidence catches a planted object that runs"
sq <<'SQL'
CREATE SCHEMA tasker_security_selfcheck;
-- Deliberately unsafe: no pinned search_path, and it calls format() and quote_ident().
CREATE FUNCTION tasker_security_selfcheck.unsafe_qualify(s name, t name) RETURNS text
LANGUAGE plpgsql AS $$ BEGIN RETURN format('%I.%I', s, t) || quote_ident(s); END $$;
SQL
for path in - "$EVIL"; do
  label="self$((n = n + 1))"
  PGOPTIONS="-c client_min_messages=warning -c tasker_security.phase=$label -c tasker_security.selfcheck=on $([ "$path" = - ] || echo "-c search_path=$path")" \
    command psql "$conn dbname=$db user=$dba" -X -q -At -c "SELECT tasker_security_selfcheck.unsafe_qualify('public', 'tasker_tasks')" >"$work/$label.out" 2>&1 || true
  rows=$(pwned_rows "$label")
  [ "$rows" -gt 0 ] && check ok "self-check: an unpinned function calling format()/quote_ident() under search_path ${path/-/\"\$user\", public} ran planted code, caught in public.pwned ($rows rows: $(sq -c "SELECT string_agg(DISTINCT what, ', ') FROM public.pwned WHERE phase OPERATOR(pg_catalog.=) '$label'"))" \
    || check bad "self-check: the unsafe function under search_path $path left no evidence: this suite cannot tell"
done
truth=$(sq -c "SELECT count(*) FROM public.tasker_workflow_step_edges")
label="self$((n = n + 1))"
lied=$(PGOPTIONS="-c client_min_messages=warning -c tasker_security.phase=$label -c tasker_security.selfcheck=on -c search_path=$EVIL -c tasker_security.lie=false" \
  command psql "$conn dbname=$db user=tasker_app" -X -q -At -c "SELECT pg_catalog.count(*) FROM public.tasker_workflow_step_edges e WHERE e.from_step_id = e.from_step_id" 2>"$work/$label.out" || true)
[ "$lied" = 0 ] && [ "$truth" -gt 0 ] && check ok "self-check: with evil first and lie=false, unqualified 'from_step_id = from_step_id' finds 0 of $truth edges (the lying = is used)" \
  || check bad "self-check: the lying operators are not picked up by unqualified SQL (found $lied of $truth): the bypass tests cannot tell"

echo "== the DBA (superuser) runs every admin function"
tt=$(sq -c "SELECT min(task_id) FROM public.tasker_workflow_steps")
for path in - "$PUBFIRST" "$EVIL"; do
  p=${path/-/\"\$user\", public}
  step "[$p] enable(events => true)" "$dba" "$path" ok <<<"SELECT object, action FROM tasker_core.enable(events => true)"
  step "[$p] status()" "$dba" "$path" ok <<<"SELECT object, kind, state FROM tasker_core.status()"
  natives=$(out | grep -c '|function|native$' || true); triggers=$(out | grep -c '|trigger|installed$' || true)
  views=$(out | grep -c '|view|native$' || true)
  [ "$natives" = 9 ] && [ "$triggers" = 7 ] && [ "$views" = 1 ] && check ok "[$p] status(): 9 functions native, 7 triggers installed, the view native" \
    || check bad "[$p] status(): $natives functions native, $triggers triggers installed, $views views native (want 9, 7 and 1)"
  step "[$p] the native view, whole and by task" "$dba" "$path" ok <<SQL
SELECT pg_catalog.count(*) FROM public.tasker_step_dag_relationships;
SELECT v.* FROM public.tasker_step_dag_relationships v WHERE v.task_id OPERATOR(pg_catalog.=) $tt;
SQL
  step "[$p] events_since(0) and prune_events('1 year')" "$dba" "$path" ok <<<"SELECT pg_catalog.count(*) FROM tasker_core.events_since(0); SELECT tasker_core.prune_events('1 year');"
  step "[$p] read_paths() and read_paths('public')" "$dba" "$path" ok <<<"SELECT * FROM tasker_core.read_paths(); SELECT * FROM tasker_core.read_paths('public');"
  step "[$p] server_identity(), most_recent_index()" "$dba" "$path" ok <<SQL
SELECT tasker_core.server_identity();
SELECT tasker_core.most_recent_index('public.tasker_workflow_step_transitions'::pg_catalog.regclass, 'workflow_step_id');
SELECT tasker_core.most_recent_index('public.tasker_task_transitions'::pg_catalog.regclass, 'task_id');
SQL
  step "[$p] step_state_enable()" "$dba" "$path" ok <<<"SELECT object, action FROM tasker_core.step_state_enable()"
  step "[$p] step_state_rebuild()" "$dba" "$path" ok <<<"SELECT tasker_core.step_state_rebuild()"
  step "[$p] step_state_verify()" "$dba" "$path" ok <<<"SELECT * FROM tasker_core.step_state_verify()"
  [ -z "$(out)" ] && check ok "[$p] step_state_verify(): the step state is exact" || check bad "[$p] step_state_verify() found: $(out | head -3 | tr '\n' ' ')"
  step "[$p] CALL step_state_rebuild_concurrently()" "$dba" "$path" ok <<<"CALL tasker_core.step_state_rebuild_concurrently()"
  step "[$p] step_state_disable()" "$dba" "$path" ok <<<"SELECT object, action FROM tasker_core.step_state_disable()"
  step "[$p] CALL step_state_enable_concurrently()" "$dba" "$path" ok <<<"CALL tasker_core.step_state_enable_concurrently()"
  step "[$p] step_state_verify() after the online build" "$dba" "$path" ok <<<"SELECT * FROM tasker_core.step_state_verify()"
  [ -z "$(out)" ] && check ok "[$p] the online build is exact" || check bad "[$p] step_state_verify() after the online build found: $(out | head -3 | tr '\n' ' ')"
  step "[$p] step_state_disable() again" "$dba" "$path" ok <<<"SELECT object, action FROM tasker_core.step_state_disable()"
  step "[$p] disable()" "$dba" "$path" ok <<<"SELECT object, action FROM tasker_core.disable()"
  restored=$(sq -c "SELECT count(*) FROM pg_proc p JOIN pg_language l ON l.oid OPERATOR(pg_catalog.=) p.prolang
                    WHERE p.pronamespace OPERATOR(pg_catalog.=) 'public'::regnamespace AND l.lanname OPERATOR(pg_catalog.=) 'plpgsql'
                      AND p.proname OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT function_name FROM tasker_core.drop_in_functions()))")
  [ "$restored" = 6 ] && check ok "[$p] disable() put Rails' 6 PL/pgSQL functions back" || check bad "[$p] disable() restored $restored of 6 Rails functions"
  step "[$p] enable() again, step_state_enable() again, then release_all()" "$dba" "$path" ok <<SQL
SELECT pg_catalog.count(*) FROM tasker_core.enable(events => true);
SELECT pg_catalog.count(*) FROM tasker_core.step_state_enable();
SELECT object, action FROM tasker_core.release_all();
SQL
  step "[$p] enable() and step_state_enable() after release_all()" "$dba" "$path" ok <<SQL
SELECT pg_catalog.count(*) FROM tasker_core.enable(events => true);
SELECT pg_catalog.count(*) FROM tasker_core.step_state_enable();
SQL
done

echo "== writers (tasker_app, search_path evil first): the guard triggers, step-state maintenance and the DDL watch"
# A fresh task with four steps, written by the app through a clean path.
t1=$(aq -c "INSERT INTO public.tasker_tasks (named_task_id, requested_at, identity_hash, created_at, updated_at)
            SELECT min(named_task_id), LOCALTIMESTAMP, 'tasker-security-task-1', LOCALTIMESTAMP, LOCALTIMESTAMP
              FROM public.tasker_named_tasks RETURNING task_id")
read -r s1 s2 s3 s4 <<<"$(aq -c "INSERT INTO public.tasker_workflow_steps (task_id, named_step_id, created_at, updated_at)
            SELECT $t1, named_step_id, LOCALTIMESTAMP, LOCALTIMESTAMP FROM public.tasker_named_steps ORDER BY named_step_id LIMIT 4
            RETURNING workflow_step_id" | sort -n | tr '\n' ' ')"
[ -n "$s4" ] || { echo "could not create the test task's steps"; exit 1; }
edge() { echo "INSERT INTO public.tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at) VALUES ($1, $2, 'provides', LOCALTIMESTAMP, LOCALTIMESTAMP);"; }
move() { echo "INSERT INTO public.tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at) VALUES ($1, '$2', $3, true, LOCALTIMESTAMP, LOCALTIMESTAMP);"; }
task_move() { echo "INSERT INTO public.tasker_task_transitions (task_id, to_state, sort_key, most_recent, created_at, updated_at) VALUES ($1, '$2', $3, true, LOCALTIMESTAMP, LOCALTIMESTAMP);"; }
step "legal edges $s1->$s2->$s3->$s4 (edge guard, maintenance trigger)" tasker_app "$EVIL" ok <<<"$(edge $s1 $s2) $(edge $s2 $s3) $(edge $s3 $s4)"
step "an edge $s4->$s1 that closes a cycle is refused (23514)" tasker_app "$EVIL" refused <<<"$(edge $s4 $s1)"
step "legal step moves pending, in_progress, complete (transition guard, insert-first writer)" tasker_app "$EVIL" ok <<<"$(move $s1 pending 10) $(move $s1 in_progress 20) $(move $s1 complete 30)"
step "an illegal step move complete -> pending is refused (23514)" tasker_app "$EVIL" refused <<<"$(move $s1 pending 40)"
step "starting a step whose parents are done (parent check)" tasker_app "$EVIL" ok <<<"$(move $s2 pending 10) $(move $s2 in_progress 20)"
step "starting a step whose parent is not done is refused (23514)" tasker_app "$EVIL" refused <<<"$(move $s3 pending 10) $(move $s3 in_progress 20)"
step "legal task moves pending, in_progress" tasker_app "$EVIL" ok <<<"$(task_move $t1 pending 10) $(task_move $t1 in_progress 20)"
step "completing a task with unfinished steps is refused (23514)" tasker_app "$EVIL" refused <<<"$(task_move $t1 complete 30)"
tr_id=$(aq -c "SELECT max(id) FROM public.tasker_workflow_step_transitions WHERE workflow_step_id OPERATOR(pg_catalog.=) $s1")
step "rewriting a transition's to_state is refused (23514, update guard)" tasker_app "$EVIL" refused \
  <<<"UPDATE public.tasker_workflow_step_transitions SET to_state = 'error' WHERE id OPERATOR(pg_catalog.=) $tr_id;"
step "most_recent off and on again on the latest transition (flag guard)" tasker_app "$EVIL" ok <<SQL
UPDATE public.tasker_workflow_step_transitions SET most_recent = false WHERE id OPERATOR(pg_catalog.=) $tr_id;
UPDATE public.tasker_workflow_step_transitions SET most_recent = true WHERE id OPERATOR(pg_catalog.=) $tr_id;
SQL
step "re-pointing an edge (edge guard on UPDATE), deleting and re-adding one" tasker_app "$EVIL" ok <<SQL
$(edge $s1 $s4)
UPDATE public.tasker_workflow_step_edges SET from_step_id = $s2 WHERE from_step_id OPERATOR(pg_catalog.=) $s1 AND to_step_id OPERATOR(pg_catalog.=) $s4;
DELETE FROM public.tasker_workflow_step_edges WHERE from_step_id OPERATOR(pg_catalog.=) $s2 AND to_step_id OPERATOR(pg_catalog.=) $s4;
$(edge $s2 $s4)
SQL
step "updating steps and renaming a named step (maintenance trigger paths)" tasker_app "$EVIL" ok <<SQL
UPDATE public.tasker_workflow_steps SET attempts = 2, in_process = true, last_attempted_at = LOCALTIMESTAMP WHERE task_id OPERATOR(pg_catalog.=) $t1;
UPDATE public.tasker_named_steps SET name = 'tasker_security_renamed' WHERE named_step_id OPERATOR(pg_catalog.=) (SELECT named_step_id FROM public.tasker_workflow_steps WHERE workflow_step_id OPERATOR(pg_catalog.=) $s4);
DELETE FROM public.tasker_workflow_step_transitions WHERE workflow_step_id OPERATOR(pg_catalog.=) $s3;
SQL
step "DDL by the app (the DDL-watch event trigger)" tasker_app "$EVIL" ok <<'SQL'
ALTER TABLE public.tasker_workflow_steps ALTER COLUMN retry_limit SET DEFAULT 3;
ALTER INDEX public.index_workflow_steps_by_task SET (fillfactor = 90);
CREATE FUNCTION public.tasker_app_helper() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';
CREATE TRIGGER tasker_app_audit AFTER INSERT ON public.tasker_workflow_steps FOR EACH STATEMENT EXECUTE FUNCTION public.tasker_app_helper();
DROP TRIGGER tasker_app_audit ON public.tasker_workflow_steps;
ALTER FUNCTION public.tasker_app_helper() RENAME TO tasker_app_helper2;
DROP FUNCTION public.tasker_app_helper2();
SQL
# The event trigger casts the inserted ids to bigint[] as the extension owner: an id column
# retyped to the app's own type with an implicit cast of its own must not run that cast there.
step "a transitions id retyped to the app's type with an implicit cast to bigint: the event trigger refuses it (42804), the cast never runs" tasker_app "$EVIL" any <<SQL
BEGIN;
CREATE TYPE public.evil_id AS RANGE (subtype = pg_catalog.int8);
CREATE FUNCTION public.evil_id_to_int8(public.evil_id) RETURNS pg_catalog.int8 LANGUAGE plpgsql
  AS \$\$ BEGIN PERFORM public.tasker_pwn('an implicit cast evil_id -> bigint'); RETURN pg_catalog.lower(\$1); END \$\$;
CREATE CAST (public.evil_id AS pg_catalog.int8) WITH FUNCTION public.evil_id_to_int8(public.evil_id) AS IMPLICIT;
ALTER TABLE public.tasker_task_transitions ALTER COLUMN id DROP DEFAULT;
ALTER TABLE public.tasker_task_transitions ALTER COLUMN id TYPE public.evil_id USING public.evil_id(id, id OPERATOR(pg_catalog.+) 1);
INSERT INTO public.tasker_task_transitions (id, task_id, to_state, sort_key, most_recent, created_at, updated_at)
VALUES (public.evil_id(999999, 1000000), $t1, 'error', 30, true, LOCALTIMESTAMP, LOCALTIMESTAMP);
ROLLBACK;
SQL
grep -q "ERROR: *42804: tasker_core events: column id of public.tasker_task_transitions is not a bigint" "$work/$last.out" \
  && check ok "the retyped id was refused with 42804 by the event trigger" || check bad "the retyped id: $(grep -m1 ERROR "$work/$last.out")"
valid=$(sq -c "SELECT valid FROM tasker_core.step_state_source"); bad=$(sq -c "SELECT count(*) FROM tasker_core.step_state_verify()")
[ "$valid" = t ] && [ "$bad" = 0 ] && check ok "the step state stayed valid and exact through the hostile-path writes and DDL" \
  || check bad "after the hostile-path writes the step state is valid=$valid with $bad rows that differ"
evs=$(sq -c "SELECT pg_catalog.string_agg(e.name, ' ' ORDER BY e.xid, e.id) FROM tasker_core.events e WHERE e.step_id OPERATOR(pg_catalog.=) $s1")
[ "$evs" = "step.initialize_requested step.execution_requested step.completed" ] && check ok "the event trigger recorded the app's moves of step $s1 with search_path evil first" \
  || check bad "the events of step $s1 are '$evs'"

echo "== readers (search_path evil first), both read paths"
batch="'{$tt,$t1}'::pg_catalog.int8[]"
reads="SELECT pg_catalog.count(*) FROM tasker_core.get_step_readiness_status($tt);
SELECT pg_catalog.count(*) FROM tasker_core.get_step_readiness_status($t1, '{$s1,$s2}'::pg_catalog.int8[]);
SELECT pg_catalog.count(*) FROM tasker_core.get_step_readiness_status_batch($batch);
SELECT pg_catalog.count(*) FROM tasker_core.get_task_execution_context($tt);
SELECT pg_catalog.count(*) FROM tasker_core.get_task_execution_contexts_batch($batch);
SELECT pg_catalog.count(*) FROM tasker_core.calculate_dependency_levels($tt);
SELECT pg_catalog.count(*) FROM tasker_core.get_system_health_counts_v01();
SELECT pg_catalog.count(*) FROM public.get_step_readiness_status($t1);
SELECT pg_catalog.count(*) FROM public.get_task_execution_contexts_batch($batch);
SELECT 'path', path, calls FROM tasker_core.read_path_stats();"
for role in tasker_app tasker_reader "$dba"; do
  for mode in on off; do
    want=$([ $mode = on ] && echo step_state || echo sql)
    step "$role reads all six functions (and two Rails wrappers) on the $want path" $role "$EVIL" ok <<<"SET tasker_core.direct_reads = $mode; $reads"
    paths=$(out | grep '^path|' | cut -d'|' -f2 | sort -u | tr '\n' ' ' || true)
    [ "$paths" = "$want " ] && check ok "$role: every call took the $want path" || check bad "$role: calls took the paths '$paths', want only $want"
  done
done

echo "== guard bypass: = and <> that lie, search_path evil first"
for lie in false true; do
  step "lie=$lie: the cycle-closing edge $s4->$s1 is still refused (23514), no planted code ran" tasker_app "$EVIL" refused \
    <<<"SET tasker_security.lie = $lie; $(edge $s4 $s1)"
  step "lie=$lie: the 2-cycle edge $s2->$s1 is still refused (23514)" tasker_app "$EVIL" refused <<<"SET tasker_security.lie = $lie; $(edge $s2 $s1)"
  step "lie=$lie: the illegal move complete -> pending is still refused (23514)" tasker_app "$EVIL" refused \
    <<<"SET tasker_security.lie = $lie; $(move $s1 pending 40)"
done
cyc=$(sq -c "SELECT count(*) FROM public.tasker_workflow_step_edges WHERE to_step_id OPERATOR(pg_catalog.=) $s1")
[ "$cyc" = 0 ] && check ok "no edge into $s1 exists (no cycle was written)" || check bad "$cyc edges into $s1 were written"

echo "== DROP EXTENSION (its guard) and CREATE EXTENSION again"
step "[evil first] DROP EXTENSION tasker_core (the guard runs release_all)" "$dba" "$EVIL" ok <<<"DROP EXTENSION tasker_core"
restored=$(sq -c "SELECT count(*) FROM pg_proc p WHERE p.pronamespace OPERATOR(pg_catalog.=) 'public'::regnamespace
                    AND p.prolang OPERATOR(pg_catalog.=) (SELECT oid FROM pg_language WHERE lanname OPERATOR(pg_catalog.=) 'plpgsql')
                    AND p.proname OPERATOR(pg_catalog.=) ANY ('{get_step_readiness_status,get_step_readiness_status_batch,get_task_execution_context,get_task_execution_contexts_batch,calculate_dependency_levels,get_system_health_counts_v01}')")
[ "$restored" = 6 ] && check ok "DROP EXTENSION put Rails' 6 functions back" || check bad "after DROP EXTENSION $restored of Rails' 6 functions are back"
step "[evil first] CREATE EXTENSION tasker_core, enable(), step_state_enable()" "$dba" "$EVIL" ok <<SQL
CREATE EXTENSION tasker_core;
SELECT pg_catalog.count(*) FROM tasker_core.enable();
SELECT pg_catalog.count(*) FROM tasker_core.step_state_enable();
SQL
step "[\"\$user\", public] DROP EXTENSION tasker_core CASCADE" "$dba" - ok <<<"DROP EXTENSION tasker_core CASCADE"
step "[evil first] CREATE EXTENSION tasker_core VERSION '0.3.0', ALTER EXTENSION tasker_core UPDATE" "$dba" "$EVIL" ok <<SQL
CREATE EXTENSION tasker_core VERSION '0.3.0';
ALTER EXTENSION tasker_core UPDATE;
SQL
step "[\"\$user\", public] enable(), step_state_enable() on the updated extension" "$dba" - ok <<SQL
SELECT pg_catalog.count(*) FROM tasker_core.enable();
SELECT pg_catalog.count(*) FROM tasker_core.step_state_enable();
SQL

echo "== the app tampers with Rails' functions and the saved copies that disable() re-creates"
saved_owner=$(sq -c "SELECT string_agg(DISTINCT proowner::regrole::text, ',') FROM pg_proc WHERE proname OPERATOR(pg_catalog.~~) '%\\_before\\_tasker\\_core'")
[ "$saved_owner" = tasker_app ] && check ok "the saved copies are owned by tasker_app (the attacker can rewrite them)" \
  || check bad "the saved copies are owned by '$saved_owner', not tasker_app"
ctx_result=$(sq -c "SELECT pg_get_function_result('public.get_task_execution_context(bigint)'::regprocedure)")
lvl_result=$(sq -c "SELECT pg_get_function_result('public.calculate_dependency_levels(bigint)'::regprocedure)")
rdy_result=$(sq -c "SELECT pg_get_function_result('public.get_step_readiness_status(bigint,bigint[])'::regprocedure)")
# 1. Text that would end the definition's quoting early, with statements after it.
body=$'BEGIN\n-- $function$; ALTER ROLE tasker_app SUPERUSER; SELECT public.tasker_pwn(\'injected\'); $$ \' $_$ */ ; --\nRETURN;\nEND'
quiet aq -v body="$body" <<SQL
CREATE OR REPLACE FUNCTION public.get_task_execution_context_before_tasker_core(input_task_id bigint)
RETURNS $ctx_result LANGUAGE plpgsql STABLE AS :'body';
SQL
step "disable() with a saved copy whose body holds \$function\$, quotes and statements" "$dba" - ok <<<"SELECT object, action FROM tasker_core.disable()"
same=$(aq -v body="$body" <<<"SELECT prosrc OPERATOR(pg_catalog.=) :'body' FROM pg_proc WHERE oid OPERATOR(pg_catalog.=) 'public.get_task_execution_context(bigint)'::regprocedure")
[ "$same" = t ] && check ok "the restored function's body is exactly the tampered text (it was quoted, not run)" \
  || check bad "the restored function's body differs from the saved copy's"
step "enable() again over the tampered Rails function" "$dba" - ok <<<"SELECT pg_catalog.count(*) FROM tasker_core.enable()"
# 2. SET clauses: PostgreSQL takes role and session_authorization from a non-superuser (with a
# NOTICE); it refuses superuser-only settings.
aq -v dba="$dba" >"$work/set.out" 2>&1 <<'SQL' || true
\set ON_ERROR_STOP 0
ALTER FUNCTION public.get_task_execution_context_before_tasker_core(bigint) SET role = :'dba';
ALTER FUNCTION public.get_task_execution_context_before_tasker_core(bigint) SET session_authorization = :'dba';
ALTER FUNCTION public.get_task_execution_context_before_tasker_core(bigint) SET session_replication_role = 'replica';
ALTER FUNCTION public.get_task_execution_context_before_tasker_core(bigint) SET tasker_core.guard_mode = 'off';
ALTER FUNCTION public.get_task_execution_context_before_tasker_core(bigint) SET search_path = evil, pg_catalog, public;
SQL
echo "    the app's saved copy now has: $(sq -c "SELECT array_to_string(proconfig, ' ') FROM pg_proc WHERE oid OPERATOR(pg_catalog.=) 'public.get_task_execution_context_before_tasker_core(bigint)'::regprocedure")"
grep -q 'permission denied to set parameter "session_replication_role"' "$work/set.out" \
  && check ok "the app cannot give its function a superuser-only setting (session_replication_role refused)" \
  || check bad "the app set session_replication_role on its function: $(grep -m1 ERROR "$work/set.out")"
step "disable() with a saved copy carrying SET role/session_authorization = $dba and search_path = evil" "$dba" - any \
  <<<"SELECT object, action FROM tasker_core.disable()"
grep -m1 ERROR "$work/$last.out" | sed 's/^/    disable(): /' || true
aq -c "ALTER FUNCTION public.get_task_execution_context(bigint) RESET ALL" 2>/dev/null || true
aq -c "ALTER FUNCTION public.get_task_execution_context_before_tasker_core(bigint) RESET ALL" 2>/dev/null || true
step "disable() and enable() after the settings are reset" "$dba" - ok <<<"SELECT pg_catalog.count(*) FROM tasker_core.disable(); SELECT pg_catalog.count(*) FROM tasker_core.enable();"
# 3. Owner.
if aq -c "ALTER FUNCTION public.get_task_execution_context_before_tasker_core(bigint) OWNER TO $dba" >/dev/null 2>&1 \
   || aq -c "ALTER FUNCTION public.get_task_execution_context_before_tasker_core(bigint) OWNER TO tasker_reader" >/dev/null 2>&1; then
  check bad "the app handed its saved copy to another owner"
else
  check ok "the app cannot hand a saved copy to another owner (OWNER TO $dba / tasker_reader refused)"
fi
# 4. Language.
quiet aq <<SQL
CREATE OR REPLACE FUNCTION public.calculate_dependency_levels_before_tasker_core(input_task_id bigint)
RETURNS $lvl_result LANGUAGE sql STABLE AS \$\$ SELECT NULL::bigint, NULL::integer WHERE false \$\$;
SQL
step "disable() with a saved copy switched from PL/pgSQL to SQL" "$dba" - ok <<<"SELECT object, action FROM tasker_core.disable()"
step "enable() again over the SQL-language Rails function" "$dba" - ok <<<"SELECT pg_catalog.count(*) FROM tasker_core.enable()"
# 5. Values whose input runs a domain CHECK (the app's function) while PostgreSQL parses the
# definition: an SQL body (redefine_as() copies with check_function_bodies off, as pg_dump
# restores, so it is not parsed then; it would run as tasker_app if it were), and an argument
# default (parsed whatever check_function_bodies says). redefine_as() runs the definition as
# tasker_app, sandboxed, inside the DBA's session, where the session user is a superuser.
quiet aq <<SQL
CREATE OR REPLACE FUNCTION public.calculate_dependency_levels_before_tasker_core(input_task_id bigint)
RETURNS $lvl_result LANGUAGE sql STABLE
AS \$\$ SELECT NULL::bigint, NULL::integer FROM (SELECT '{saved copy body}'::public.tasker_pwn_dom[]) s WHERE false \$\$;
SQL
attached=1 # redefine_as() parses the definition as its owner, tasker_app, sandboxed
step "disable() re-creating a saved copy whose SQL body holds a domain-typed literal runs app code only as tasker_app" "$dba" - ok \
  <<<"SELECT object, action FROM tasker_core.disable()"
step "enable() over a Rails function whose SQL body holds a domain-typed literal runs app code only as tasker_app" "$dba" - ok \
  <<<"SELECT object, action FROM tasker_core.enable()"
quiet aq <<SQL
CREATE OR REPLACE FUNCTION public.calculate_dependency_levels_before_tasker_core(input_task_id bigint)
RETURNS $lvl_result LANGUAGE sql STABLE AS \$\$ SELECT NULL::bigint, NULL::integer WHERE false \$\$;
DROP FUNCTION public.get_step_readiness_status_before_tasker_core(bigint, bigint[]);
CREATE FUNCTION public.get_step_readiness_status_before_tasker_core(input_task_id bigint,
    step_ids bigint[] DEFAULT (CASE WHEN '{saved copy default}'::public.tasker_pwn_dom[] IS NULL THEN NULL END)::bigint[])
RETURNS $rdy_result LANGUAGE plpgsql STABLE AS \$\$ BEGIN RETURN; END \$\$;
SQL
step "disable() re-creating a saved copy whose argument DEFAULT holds a domain-typed literal runs app code only as tasker_app" "$dba" - ok \
  <<<"SET check_function_bodies = off; SELECT object, action FROM tasker_core.disable()"
# 6. The view: Rails' view and its saved copy are the app's. A domain-typed literal in either
# runs app code while disable() and enable() parse them: only as tasker_app (define_view_as).
# (disable() restores Rails' view from the tampered copy, so enable() then keeps a tampered view.)
quiet sq -c "SELECT count(*) FROM tasker_core.enable(functions => false, triggers => false)"
quiet aq <<SQL
CREATE OR REPLACE VIEW public.tasker_step_dag_relationships_before_tasker_core AS
SELECT ws.workflow_step_id, ws.task_id, ws.named_step_id, '[]'::jsonb AS parent_step_ids, '[]'::jsonb AS child_step_ids,
       0::bigint AS parent_count, 0::bigint AS child_count, true AS is_root_step, true AS is_leaf_step, NULL::integer AS min_depth_from_root
  FROM public.tasker_workflow_steps ws WHERE '{saved view}'::public.tasker_pwn_dom[] IS NOT NULL;
SQL
step "disable() re-creating Rails' view from a saved copy that holds a domain-typed literal runs app code only as tasker_app" "$dba" - ok \
  <<<"SELECT object, action FROM tasker_core.disable()"
[ "$(as_app_rows "$last")" -gt 0 ] && check ok "the saved copy's planted check did run (as tasker_app): the view attack is live" \
  || check bad "the saved copy's planted check never ran: the view attack tests nothing"
step "enable() keeping a Rails view that holds a domain-typed literal runs app code only as tasker_app" "$dba" - ok \
  <<<"SELECT object, action FROM tasker_core.enable(functions => false, triggers => false)"
[ "$(as_app_rows "$last")" -gt 0 ] && check ok "the Rails view's planted check did run (as tasker_app): the view attack is live" \
  || check bad "the Rails view's planted check never ran: the view attack tests nothing"
quiet sq -c "SELECT count(*) FROM tasker_core.disable()"
quiet aq -c "DROP VIEW public.tasker_step_dag_relationships"
quiet as_role tasker_app - setup -f "$here/../fixtures/reference_view.sql"
attached=0
# Leave Rails' functions clean and the extension enabled.
quiet aq <<SQL
CREATE OR REPLACE FUNCTION public.get_step_readiness_status(input_task_id bigint, step_ids bigint[] DEFAULT NULL::bigint[])
RETURNS $rdy_result LANGUAGE plpgsql STABLE AS \$\$ BEGIN RETURN; END \$\$;
CREATE OR REPLACE FUNCTION public.calculate_dependency_levels(input_task_id bigint)
RETURNS $lvl_result LANGUAGE plpgsql STABLE AS \$\$ BEGIN RETURN; END \$\$;
SQL
quiet sq -c "SELECT count(*) FROM tasker_core.enable()"; reset_super

echo "== the app attaches code to its own tables; the extension reads them as a superuser"
# PostgreSQL evaluates what a table's owner attached to it (an index predicate, a statistics
# expression) when a query over the table is planned, as whoever plans it. Inside the
# extension's SECURITY DEFINER triggers and a DBA's calls, planning runs as the table's owner
# in a security-restricted operation (src/pg/sandbox.rs): the app's code may run there, as
# tasker_app, and may not change role. These checks fail if it runs as any other role or
# makes tasker_app a superuser.
attached=1
sq -c "SELECT tasker_core.step_state_rebuild()" >/dev/null
# A partial index predicate is folded (its IMMUTABLE call evaluated) by whichever backend first
# loads the index into its relcache and plans a query over the table.
quiet aq -c "CREATE INDEX tasker_app_edges_partial ON public.tasker_workflow_step_edges (id) WHERE public.tasker_pwn_imm('index predicate on tasker_workflow_step_edges')"
label="self$((n = n + 1))"
PGOPTIONS="-c client_min_messages=warning -c tasker_security.phase=$label -c tasker_security.selfcheck=on" \
  command psql "$conn dbname=$db user=$dba" -X -q -At -c "SELECT pg_catalog.count(*) FROM public.tasker_workflow_step_edges WHERE id OPERATOR(pg_catalog.>) 0" >"$work/$label.out" 2>&1 || true
rows=$(pwned_rows "$label")
[ "$rows" -gt 0 ] && check ok "self-check: a superuser's own plain query over the edges table runs the planted index predicate ($rows rows in public.pwned): the checks below can fail" \
  || check bad "self-check: a superuser's query over the edges table did not run the planted index predicate: the checks below cannot tell"
named=$(aq -c "SELECT min(named_step_id) FROM public.tasker_named_steps")
# The maintenance trigger only reads the tables while the step state is valid.
valid_now() { [ "$(sq -c "SELECT valid FROM tasker_core.step_state_source")" = t ] || check bad "precondition: the step state is not valid here, so step_state_sync was not exercised"; }
valid_now
step "a new step written by the app (fresh session): step_state_sync (SECURITY DEFINER) runs app code only as tasker_app" tasker_app - ok \
  <<<"INSERT INTO public.tasker_workflow_steps (task_id, named_step_id, created_at, updated_at) VALUES ($t1, $named, LOCALTIMESTAMP, LOCALTIMESTAMP);"
step "the DBA's status() (fresh session) runs app code only as tasker_app" "$dba" - ok <<<"SELECT pg_catalog.count(*) FROM tasker_core.status()"
step "the DBA's step_state_rebuild() (fresh session) runs app code only as tasker_app" "$dba" - ok <<<"SELECT tasker_core.step_state_rebuild()"
step "the DBA's step_state_verify() (fresh session) runs app code only as tasker_app" "$dba" - ok <<<"SELECT pg_catalog.count(*) FROM tasker_core.step_state_verify()"
step "the DBA's read functions on the step_state path (fresh session) run app code only as tasker_app" "$dba" - ok \
  <<<"SELECT pg_catalog.count(*) FROM tasker_core.get_step_readiness_status($tt); SELECT pg_catalog.count(*) FROM tasker_core.calculate_dependency_levels($tt);"
# (Rails' own PL/pgSQL functions, like any query a superuser runs over the app's table, run it as
# the superuser; the native functions read as the tables' owner when a superuser calls them.)
step "the DBA's read functions on the sql path (fresh session) run app code only as tasker_app" "$dba" - ok \
  <<<"SET tasker_core.direct_reads = off; SELECT pg_catalog.count(*) FROM tasker_core.get_step_readiness_status($tt); SELECT pg_catalog.count(*) FROM tasker_core.calculate_dependency_levels($tt);"
quiet aq -c "DROP INDEX public.tasker_app_edges_partial"; reset_super
# An extended statistics expression is folded at every planning (no relcache to warm first).
quiet aq -c "CREATE STATISTICS public.tasker_app_edges_stats ON from_step_id, (to_step_id OPERATOR(pg_catalog.+) CASE WHEN public.tasker_pwn_imm('statistics expression on tasker_workflow_step_edges') THEN 0 ELSE 1 END) FROM public.tasker_workflow_step_edges"
valid_now
step "a new step written by the app after it planned the edges table itself: step_state_sync runs app code only as tasker_app" tasker_app - ok <<SQL
SET tasker_security.phase = 'warmup';
SELECT pg_catalog.count(*) FROM public.tasker_workflow_step_edges WHERE id OPERATOR(pg_catalog.>) 0;
SET tasker_security.phase = '$(echo "p$((n + 1))")';
INSERT INTO public.tasker_workflow_steps (task_id, named_step_id, created_at, updated_at) VALUES ($t1, $named, LOCALTIMESTAMP, LOCALTIMESTAMP);
SQL
quiet aq -c "DROP STATISTICS public.tasker_app_edges_stats"; reset_super
# A unique index the step state relies on (one most_recent transition per step), with a
# predicate that calls the app: most_recent_index() reads the predicate from the relcache, in
# the DDL watch (SECURITY DEFINER, fired by the app's own DDL) and in the DBA's calls.
sq -c "SELECT tasker_core.step_state_rebuild()" >/dev/null 2>&1 || true; reset_super
valid_now
quiet aq -c "CREATE UNIQUE INDEX tasker_app_one_current ON public.tasker_workflow_step_transitions (workflow_step_id) WHERE most_recent AND public.tasker_pwn_imm('unique index predicate on tasker_workflow_step_transitions')"
step "the app drops Rails' most_recent index (fresh session): the DDL watch (SECURITY DEFINER) runs app code only as tasker_app" tasker_app - ok \
  <<<"DROP INDEX public.idx_on_workflow_step_id_most_recent_97d5374ad6;"
step "the DBA's most_recent_index() (fresh session) runs app code only as tasker_app" "$dba" - ok \
  <<<"SELECT tasker_core.most_recent_index('public.tasker_workflow_step_transitions'::pg_catalog.regclass, 'workflow_step_id')"
step "the DBA's status() after it (fresh session) runs app code only as tasker_app" "$dba" - ok <<<"SELECT pg_catalog.count(*) FROM tasker_core.status()"
quiet aq <<'SQL'
CREATE UNIQUE INDEX idx_on_workflow_step_id_most_recent_97d5374ad6 ON public.tasker_workflow_step_transitions (workflow_step_id, most_recent) WHERE most_recent = true;
DROP INDEX public.tasker_app_one_current;
SQL
reset_super

attached=0

echo "== a tasker_core schema the app created before CREATE EXTENSION"
# After DROP EXTENSION the empty schema stays (the extension's NOTICE says DROP SCHEMA removes
# it); the app owns the database, so it may create a schema of that name first.
quiet sq <<'SQL'
DROP EXTENSION tasker_core;
DROP SCHEMA tasker_core;
SQL
reset_super
quiet aq <<'SQL'
CREATE SCHEMA tasker_core;
GRANT USAGE ON SCHEMA tasker_core TO PUBLIC;
-- A better match for the call step_state_sync() makes with regclass arguments.
CREATE FUNCTION tasker_core.step_state_refresh_transitions(ids bigint[], transitions regclass, edges regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$ BEGIN PERFORM public.tasker_pwn('tasker_core.step_state_refresh_transitions(bigint[], regclass, regclass) planted in the app''s tasker_core schema');
          PERFORM tasker_core.step_state_refresh_transitions(ids, transitions::oid, edges::oid); END $$;
SQL
n=$((n + 1)); label="p$n"; rc=0
as_role "$dba" - "$label" -c "CREATE EXTENSION tasker_core" >"$work/$label.out" 2>&1 || rc=$?
if [ "$rc" != 0 ]; then
  check ok "CREATE EXTENSION refuses a tasker_core schema owned by tasker_app ($(grep -m1 ERROR "$work/$label.out"))"
else
  check bad "CREATE EXTENSION accepted a tasker_core schema owned by tasker_app (the app can add functions next to the extension's)"
  step "the DBA's enable() and step_state_enable() in the app-owned schema run no app code" "$dba" - ok <<SQL
SELECT pg_catalog.count(*) FROM tasker_core.enable();
SELECT pg_catalog.count(*) FROM tasker_core.step_state_enable();
SQL
  s5=$(aq -c "INSERT INTO public.tasker_workflow_steps (task_id, named_step_id, created_at, updated_at) VALUES ($t1, $named, LOCALTIMESTAMP, LOCALTIMESTAMP) RETURNING workflow_step_id")
  valid_now
  step "a step move by the app runs no app code inside step_state_sync (SECURITY DEFINER)" tasker_app - ok <<<"$(move $s5 pending 10)"
fi

echo "== at the end"
outside="phase OPERATOR(pg_catalog.~~) 'p%' AND NOT (phase OPERATOR(pg_catalog.=) ANY (ARRAY[$attached_phases]) AND ran_as OPERATOR(pg_catalog.=) 'tasker_app')"
left=$(sq -c "SELECT count(*) FROM public.pwned WHERE $outside")
if [ "$left" = 0 ]; then
  check ok "the evidence table holds nothing outside the self-checks and the app's own code run as tasker_app ($(sq -c "SELECT count(*) FROM public.pwned WHERE phase OPERATOR(pg_catalog.=) ANY (ARRAY[$attached_phases])") such calls)"
else
  check bad "the evidence table holds $left rows outside the self-checks (by phase, what, ran as, session user):"
  sq -F ' | ' -c "SELECT phase, what, ran_as, session_user_name, count(*) FROM public.pwned WHERE $outside
                  GROUP BY 1, 2, 3, 4 ORDER BY min(id)" | sed 's/^/    /' | head -30
fi
if [ "$escalations" = 0 ] && ! app_is_super; then
  check ok "tasker_app never became a superuser"
else
  check bad "tasker_app became a superuser in $escalations steps (reset after each)"
  sq -c "ALTER ROLE tasker_app NOSUPERUSER"
fi

echo "security: $passed passed, $failed failed"
[ "$failed" = 0 ]
