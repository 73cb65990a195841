#!/usr/bin/env python3
"""Writes sql/tasker_core--0.3.0--0.4.0.sql while 0.4.0 is unreleased (then the file is frozen).

The upgrade is the 0.4.0 install script turned into replacements: every function is created or
replaced (functions whose result type changed are dropped first), tables and indexes that exist
since 0.3.0 are altered by hand-written steps, and what 0.4.0 no longer has is dropped. The
hand-written steps come first (PREAMBLE) and last (POSTAMBLE). tests/upgrade/run.sh proves the
result equals a fresh install, object for object. Usage (from the repository root):
    scripts/make_upgrade_0.4.0.py
"""
import re
import subprocess
import tempfile

with tempfile.NamedTemporaryFile(suffix='.sql') as out:
    subprocess.run(['cargo', 'pgrx', 'schema', 'pg15', '-o', out.name], check=True, capture_output=True)
    schema = open(out.name).read()


def statements(sql):
    """Splits SQL text into statements (dollar quotes and comments respected)."""
    out, cur, i, quote = [], [], 0, None
    while i < len(sql):
        if quote:
            end = sql.find(quote, i)
            cur.append(sql[i:end + len(quote)])
            i = end + len(quote)
            quote = None
            continue
        if sql.startswith('--', i):
            end = sql.find('\n', i)
            end = len(sql) if end < 0 else end
            cur.append(sql[i:end])
            i = end
            continue
        if sql.startswith('/*', i):
            end = sql.find('*/', i) + 2
            i = end
            continue
        m = re.match(r'\$[A-Za-z_]*\$', sql[i:])
        if m:
            quote = m.group(0)
            cur.append(quote)
            i += len(quote)
            continue
        if sql[i] == "'":
            end = i + 1
            while True:
                end = sql.find("'", end)
                if sql.startswith("''", end):
                    end += 2
                    continue
                break
            cur.append(sql[i:end + 1])
            i = end + 1
            continue
        if sql[i] == ';':
            text = ''.join(cur).strip()
            if text:
                out.append(text + ';')
            cur = []
            i += 1
            continue
        cur.append(sql[i])
        i += 1
    return out


def code(stmt):
    """The statement without the comment lines before it."""
    lines = stmt.split('\n')
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith('--')):
        lines.pop(0)
    return '\n'.join(lines).strip()


KEEP_AS_IS = ('REVOKE ', 'GRANT ', 'ALTER FUNCTION ', 'ALTER EVENT TRIGGER ', 'ALTER TABLE tasker_core.step_state REPLICA',
              'ALTER TABLE tasker_core.step_state_log REPLICA', 'COMMENT ON TABLE tasker_core.events ')
SKIP = ('CREATE TABLE ', 'CREATE INDEX ', 'CREATE UNIQUE INDEX ', 'CREATE EVENT TRIGGER tasker_core_step_state_watch', 'DO $check$')
# The step state's table and indexes are created anew (PREAMBLE moves the 0.3.0 ones aside).
RECREATED = re.compile(r'^CREATE (TABLE tasker_core\.step_state \(|(UNIQUE )?INDEX step_state_\w+ ON tasker_core\.step_state )'
                       r'|^CREATE TABLE tasker_core\.step_state_log \('
                       r'|^CREATE TABLE tasker_core\.events \(|^CREATE INDEX events_\w+ ON tasker_core\.events '
                       r'|^CREATE TABLE tasker_core\.event_consumers \(')
NEW_EVENT_TRIGGERS = ('CREATE EVENT TRIGGER tasker_core_before_drop', 'CREATE EVENT TRIGGER tasker_core_step_state_rewrite')

body = []
for stmt in statements(schema):
    c = code(stmt)
    if not c:
        continue
    if RECREATED.match(c):
        body.append(c)
        continue
    if c.startswith(SKIP):
        continue
    if c.startswith('CREATE PROCEDURE '):
        body.append(re.sub(r'^CREATE PROCEDURE ', 'CREATE OR REPLACE PROCEDURE ', c))
    elif c.startswith(('CREATE FUNCTION ', 'CREATE  FUNCTION ')):
        c = re.sub(r'^CREATE\s+FUNCTION\s+"([a-z_0-9]+)"', r'CREATE OR REPLACE FUNCTION tasker_core."\1"', c)
        c = re.sub(r'^CREATE\s+FUNCTION\s+', 'CREATE OR REPLACE FUNCTION ', c)
        body.append(c)
    elif c.startswith('ALTER EVENT TRIGGER tasker_core_step_state_watch'):
        continue  # at the end (POSTAMBLE)
    elif c.startswith(KEEP_AS_IS) or c.startswith(NEW_EVENT_TRIGGERS):
        body.append(c)
    else:
        raise SystemExit(f'make_upgrade_0.4.0.py: no rule for:\n{c[:200]}')

PREAMBLE = r'''-- tasker_core 0.3.0 -> 0.4.0 (docs/adoption.md, "Upgrading").
-- Written by scripts/make_upgrade_0.4.0.py until 0.4.0 is released, then frozen;
-- tests/upgrade/run.sh proves 0.3.0 (and 0.1.0, 0.2.0) + this == a fresh 0.4.0.
--
-- What changes: every function pins search_path = pg_catalog, pg_temp; Rails' definitions are
-- kept as functions next to Rails' (<name>_before_tasker_core) instead of in
-- tasker_core.replaced_functions, so they survive schema-only dumps; the step state gains
-- parent counters, a replica identity, and the identity of the server that built it; a guard on
-- the most_recent flag; a DROP EXTENSION guard; read_paths(), read_path_stats(); the native
-- view tasker_step_dag_relationships (enable(views => true)); the orchestration functions.

-- Rails' definitions recorded by 0.1.0-0.3.0 move next to the functions they belong to. Each
-- was rendered by pg_get_functiondef and written only by SECURITY DEFINER recorders.
-- keep_recorded_definition (this script's alone: declared here, dropped below) creates each
-- copy as the function's owner in a security-restricted operation, so nothing the owner put
-- in the text (a default, a domain-typed literal) runs with the upgrading superuser's rights.
-- (Extension scripts run with check_function_bodies off, and 0.1.0-0.3.0 recorded only
-- definitions whose arguments and defaults matched the native ones, so nothing in the text is
-- evaluated today; the sandbox keeps it so.)
-- The copies are not members of the extension: they travel with dumps of the Rails schema.
CREATE FUNCTION tasker_core.keep_recorded_definition(definition text, target oid) RETURNS oid
STRICT VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'keep_recorded_definition_wrapper';
DO $migrate$
DECLARE
    r record;
    target regprocedure;
    copy oid;
BEGIN
    IF pg_catalog.to_regclass('tasker_core.replaced_functions') IS NULL THEN
        RETURN;
    END IF;
    FOR r IN SELECT * FROM tasker_core.replaced_functions WHERE definition IS NOT NULL LOOP
        target := pg_catalog.to_regprocedure(pg_catalog.format('%I.%I(%s)', r.schema_name, r.function_name, r.identity_args));
        CONTINUE WHEN target IS NULL;
        copy := tasker_core.keep_recorded_definition(r.definition, target);
        CONTINUE WHEN copy IS NULL;
        EXECUTE pg_catalog.format('ALTER EXTENSION tasker_core DROP FUNCTION %s', copy::pg_catalog.regprocedure);
        EXECUTE pg_catalog.format('COMMENT ON FUNCTION %s IS %L', copy::pg_catalog.regprocedure,
            pg_catalog.concat('Rails'' own definition of ',
                              pg_catalog.format('%I.%I(%s)', r.schema_name, r.function_name, r.identity_args),
                              ', kept by tasker_core.enable(); tasker_core.disable() puts it back.'));
    END LOOP;
END
$migrate$;
DROP FUNCTION tasker_core.keep_recorded_definition(text, oid);
DROP FUNCTION tasker_core.remember_original(name, name, text);
DROP FUNCTION tasker_core.forget_original(name, name, text);
-- Leaving the extension first takes the table off its list of configuration tables.
ALTER EXTENSION tasker_core DROP TABLE tasker_core.replaced_functions;
DROP TABLE tasker_core.replaced_functions;

-- Result types that changed, and functions 0.4.0 no longer has.
DROP FUNCTION tasker_core.guard_triggers();
DROP FUNCTION tasker_core.step_state_refresh_states(bigint[], oid);
-- The REPEATABLE READ writers' check now compares the snapshot's mode with the latest.
DROP FUNCTION tasker_core.step_state_check_not_missed();
-- enable() gained its views and events arguments.
DROP FUNCTION tasker_core.enable(name, boolean, boolean);
-- The guard triggers are C now: the checks they called and the PL/pgSQL raise are gone.
DROP FUNCTION tasker_core.check_transition(text, text, bigint, text, text, integer, boolean);
DROP FUNCTION tasker_core.check_transition_update(text, bigint, bigint, text, text, text, text, integer, integer);
DROP FUNCTION tasker_core.check_edge(text, bigint, bigint, bigint);
DROP FUNCTION tasker_core.raise_verdict(record, name, name);

-- The step state: a new column order (the columns reads deform first; parents last), parent
-- counters, the steps' creation times and the index of unsettled steps (analytics), a replica
-- identity, the identity of the server that built it. The 0.3.0 table steps
-- aside here, the new one is created below as a fresh install creates it, and it is filled from
-- the old one at the end (the same rows: a copy that was valid stays valid).
-- The DDL watch judges the step state after every DDL command; this script's own commands
-- leave it half built until the end, so the watch sleeps until then (last statement).
ALTER EVENT TRIGGER tasker_core_step_state_watch DISABLE;
ALTER EXTENSION tasker_core DROP TABLE tasker_core.step_state;
ALTER TABLE tasker_core.step_state RENAME TO step_state_0_3_0;
ALTER INDEX tasker_core.step_state_by_task RENAME TO step_state_0_3_0_by_task;
ALTER INDEX tasker_core.step_state_by_step RENAME TO step_state_0_3_0_by_step;
ALTER INDEX tasker_core.step_state_task_row RENAME TO step_state_0_3_0_task_row;
ALTER INDEX tasker_core.step_state_by_named_step RENAME TO step_state_0_3_0_by_named_step;
ALTER TABLE tasker_core.step_state_source ADD COLUMN built_on text, ADD COLUMN fingerprint text,
    ADD COLUMN building text CHECK (building IN ('capture', 'catch_up')), ADD CHECK (NOT (valid AND building IS NOT NULL));
'''

POSTAMBLE = r'''
-- The most_recent guard on tables whose other guards 0.3.0's enable() attached.
DO $flags$
DECLARE
    g record;
    r record;
BEGIN
    FOR g IN SELECT * FROM tasker_core.guard_triggers() WHERE trigger_name LIKE '%\_flag' LOOP
        FOR r IN SELECT DISTINCT c.oid::pg_catalog.regclass AS rel
                   FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
                  WHERE c.relname = g.table_name
                    AND t.tgname = pg_catalog.replace(g.trigger_name, '_flag', '_insert')
                    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger f WHERE f.tgrelid = c.oid AND f.tgname = g.trigger_name) LOOP
            EXECUTE pg_catalog.format('CREATE TRIGGER %I %s ON %s FOR EACH ROW %s EXECUTE FUNCTION %s',
                                      g.trigger_name, g.events, r.rel, g.condition, g.function_name);
        END LOOP;
    END LOOP;
END
$flags$;

-- The rows of the 0.3.0 step state, with the parent counts counted from the copy itself (exact
-- while it is valid; a rebuild recounts from the Tasker tables), and any privilege a DBA granted
-- on it.
INSERT INTO tasker_core.step_state
       (task_id, total_parents, done_parents, workflow_step_id, named_step_id, retry_limit, attempts,
        backoff_request_seconds, retryable, in_process, processed, state_since, last_attempted_at,
        named_task_id, current_state, name, parents)
SELECT s.task_id,
       CASE WHEN s.workflow_step_id IS NULL THEN 0 ELSE pg_catalog.cardinality(s.parents) END,
       CASE WHEN s.workflow_step_id IS NULL THEN 0
            ELSE (SELECT pg_catalog.count(*) FROM pg_catalog.unnest(s.parents) p(id)
                    JOIN tasker_core.step_state_0_3_0 ps ON ps.workflow_step_id = p.id
                   WHERE ps.current_state IN ('complete', 'resolved_manually')) END,
       s.workflow_step_id, s.named_step_id, s.retry_limit, s.attempts, s.backoff_request_seconds,
       s.retryable, s.in_process, s.processed, s.state_since, s.last_attempted_at, s.named_task_id,
       s.current_state, s.name, s.parents
  FROM tasker_core.step_state_0_3_0 s
 ORDER BY s.task_id, s.workflow_step_id NULLS LAST;
DO $grants$
DECLARE
    a record;
BEGIN
    FOR a IN SELECT x.grantee, x.privilege_type, x.is_grantable
               FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) x
              WHERE c.oid = 'tasker_core.step_state_0_3_0'::pg_catalog.regclass AND x.grantee <> c.relowner LOOP
        EXECUTE pg_catalog.format('GRANT %s ON tasker_core.step_state TO %s%s', a.privilege_type,
            CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END,
            CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
END
$grants$;
-- The steps' creation times (new in 0.4.0: the analytics read them), from the steps table the
-- copy mirrors.
DO $created$
DECLARE
    steps text;
BEGIN
    SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) INTO steps
      FROM tasker_core.step_state_source s
      JOIN pg_catalog.pg_class c ON c.oid = s.steps
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace;
    IF steps IS NOT NULL THEN
        EXECUTE pg_catalog.format(
            'UPDATE tasker_core.step_state d SET step_created_at = ws.created_at::pg_catalog."timestamp" FROM %s ws '
            'WHERE d.workflow_step_id OPERATOR(pg_catalog.=) ws.workflow_step_id', steps);
    END IF;
END
$created$;
DROP TABLE tasker_core.step_state_0_3_0;
ANALYZE tasker_core.step_state;
-- The maintenance now works with the Tasker tables' owner's rights (as step_state_enable()
-- grants them): grant them for a step state enabled under 0.3.0.
DO $owner$
DECLARE
    owner pg_catalog.regrole;
BEGIN
    SELECT c.relowner::pg_catalog.regrole INTO owner
      FROM tasker_core.step_state_source s JOIN pg_catalog.pg_class c ON c.oid = s.steps;
    IF owner IS NOT NULL THEN
        EXECUTE pg_catalog.format('GRANT SELECT, INSERT, UPDATE, DELETE ON tasker_core.step_state TO %s', owner);
    END IF;
END
$owner$;

-- The transition trigger of a step state enabled under 0.3.0 now calls the 0.4.0 refresh (its
-- function was replaced above); a valid copy was kept exact by this server's triggers.
UPDATE tasker_core.step_state_source s
   SET built_on = tasker_core.server_identity(), fingerprint = tasker_core.step_state_fingerprint(s)
 WHERE s.valid;
-- A copy the new checks find unusable (e.g. the six tables have more than one owner) stops
-- being used now, as the watch would have stopped it.
UPDATE tasker_core.step_state_source s
   SET valid = false, reason = tasker_core.step_state_problem(s), changed_at = pg_catalog.now()
 WHERE s.valid AND tasker_core.step_state_problem(s) IS NOT NULL;
ALTER EVENT TRIGGER tasker_core_step_state_watch ENABLE ALWAYS;
'''

text = PREAMBLE + '\n' + '\n\n'.join(body) + '\n' + POSTAMBLE
text = re.sub(r' /\*[^*]*\*/', '', text)
open('sql/tasker_core--0.3.0--0.4.0.sql', 'w').write(text)
print(f'sql/tasker_core--0.3.0--0.4.0.sql: {len(body)} statements from the 0.4.0 schema')
