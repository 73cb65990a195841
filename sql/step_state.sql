-- tasker_core: the derived step state (docs/step_state.md).
-- Hand-written; loaded into the install script by extension_sql_file! (src/lib.rs). Every
-- function runs with search_path = pg_catalog, pg_temp (docs/security.md).
--
-- One row per Tasker workflow step holding everything the read functions need about it: its
-- own columns, its named step's name, its current state, and the ids of its parents; plus one
-- row per task (workflow_step_id NULL) with its named task and current state. Kept up to date
-- by statement triggers on the six Tasker tables it mirrors, so a readiness or context call is
-- one index range scan (by task_id) instead of joins over six tables. The read functions use it only while
-- tasker_core.step_state_source says it is valid; otherwise they read the Tasker tables.

-- The reader finds the columns by name (src/pg/step_state/mod.rs); the order is for speed alone.
CREATE TABLE tasker_core.step_state (
    -- In the order reads deform them (docs/step_state.md, "Layout"): fixed-width NOT NULL
    -- columns first (PostgreSQL finds them at cached offsets); then parents, so a task's graph
    -- (dependency levels) reads five columns; then what health counts read; then the rest of
    -- what readiness reads; the task row's own column last.
    task_id                 bigint  NOT NULL,
    -- Parent edges into the step, and those whose parent is complete or resolved_manually
    -- (kept exact when a parent's state changes): a task's readiness reads no other row.
    total_parents           integer NOT NULL DEFAULT 0,
    done_parents            integer NOT NULL DEFAULT 0,
    workflow_step_id        bigint,    -- NULL: the row of the task itself
    parents                 bigint[] NOT NULL, -- from_step_id of every edge into the step, sorted
    retryable               boolean,
    in_process              boolean,
    processed               boolean,
    retry_limit             integer,
    attempts                integer,
    last_attempted_at       timestamp,
    current_state           text,      -- to_state of the step's (task's) most_recent transition; NULL: none
    state_since             timestamp, -- created_at of that transition
    step_created_at         timestamp, -- tasker_workflow_steps.created_at (analytics); NULL on the task's row
    backoff_request_seconds integer,
    named_step_id           integer,   -- NULL on the task's row
    name                    text,      -- tasker_named_steps.name; NULL: no such named step
    named_task_id           integer    -- the task's row only
) WITH (fillfactor = 80);
-- A task's steps by id, then (NULLs last) the task's own row: one range scan per task.
CREATE UNIQUE INDEX step_state_by_task ON tasker_core.step_state (task_id, workflow_step_id);
CREATE UNIQUE INDEX step_state_by_step ON tasker_core.step_state (workflow_step_id) WHERE workflow_step_id IS NOT NULL;
CREATE UNIQUE INDEX step_state_task_row ON tasker_core.step_state (task_id) WHERE workflow_step_id IS NULL;
CREATE INDEX step_state_by_named_step ON tasker_core.step_state (named_step_id) WHERE named_step_id IS NOT NULL;
-- The steps whose current state is not settled, by task: get_analytics_metrics_v01's active
-- tasks without a pass over every row. Its predicate names current_state, so a change of state
-- is never a HOT update (the write cost is measured in docs/benchmarks.md).
CREATE INDEX step_state_unsettled ON tasker_core.step_state (task_id)
 WHERE workflow_step_id IS NOT NULL
   AND current_state OPERATOR(pg_catalog.<>) ALL ('{complete,error,skipped,resolved_manually}'::pg_catalog.text[]);
-- A copy of Tasker data: nobody reads or writes it through SQL but the extension's owner and,
-- once step_state_enable() grants it, the Tasker tables' owner (the maintenance works with its
-- rights). The read functions check the caller's SELECT privilege on the Tasker tables themselves.
REVOKE ALL ON tasker_core.step_state FROM PUBLIC;
-- A publication FOR ALL TABLES (change data capture) publishes this table too; without a replica
-- identity every UPDATE of it, and so every write to a Tasker step, would fail (55000). The
-- task rows have no step id, so no index can be the identity: the whole row is.
ALTER TABLE tasker_core.step_state REPLICA IDENTITY FULL;

-- Which tables step_state mirrors, and whether it is exact (valid) right now. At most one row.
CREATE TABLE tasker_core.step_state_source (
    only_row    boolean     NOT NULL DEFAULT true PRIMARY KEY CHECK (only_row),
    steps       regclass    NOT NULL,
    named_steps regclass    NOT NULL,
    transitions regclass    NOT NULL,
    edges       regclass    NOT NULL,
    tasks       regclass    NOT NULL,
    task_transitions regclass NOT NULL,
    valid       boolean     NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    reason      text,       -- why it is not valid
    -- The server that built the copy (its system identifier): a copy that arrived by logical
    -- replication or a restore elsewhere is never trusted (src/pg/paths.rs).
    built_on    text,
    -- The mirrored tables' storage and columns when the copy was built: DDL that rewrites a
    -- table or replaces a column (rows changed without any trigger firing) changes it, and the
    -- DDL watch below then stops using the copy.
    fingerprint text,
    -- Being built online (CALL tasker_core.step_state_enable_concurrently(); not valid yet):
    -- 'capture', the maintenance triggers log which rows each write touched in step_state_log
    -- instead of refreshing them, while the build reads the tables; 'catch_up', they refresh
    -- them again while the build replays the log. NULL: no build under way.
    building    text        CHECK (building IN ('capture', 'catch_up')),
    CHECK (NOT (valid AND building IS NOT NULL))
);
REVOKE ALL ON tasker_core.step_state_source FROM PUBLIC;
GRANT SELECT ON tasker_core.step_state_source TO PUBLIC;

-- While the copy is built online: what each write touched, for the build to recompute. kind:
-- 's' a step (its row, its parents), 'x' a step whose transitions changed (its row and its
-- children's parent counters), 't' a task's own row, 'n' a named step (its steps' names).
-- Written by the maintenance trigger (as the extension's owner), emptied by the build.
CREATE TABLE tasker_core.step_state_log (
    kind "char" NOT NULL,
    id   bigint NOT NULL
);
REVOKE ALL ON tasker_core.step_state_log FROM PUBLIC;
-- Like step_state: a publication FOR ALL TABLES must not make its DELETE fail.
ALTER TABLE tasker_core.step_state_log REPLICA IDENTITY FULL;

-- The columns step_state copies, with the types it stores them as (schema.md).
CREATE FUNCTION tasker_core.step_state_columns()
RETURNS TABLE (table_name name, column_name name, column_type text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    VALUES ('tasker_workflow_steps'::name, 'workflow_step_id'::name, 'bigint'),
           ('tasker_workflow_steps', 'task_id', 'bigint'),
           ('tasker_workflow_steps', 'named_step_id', 'integer'),
           ('tasker_workflow_steps', 'retryable', 'boolean'),
           ('tasker_workflow_steps', 'retry_limit', 'integer'),
           ('tasker_workflow_steps', 'in_process', 'boolean'),
           ('tasker_workflow_steps', 'processed', 'boolean'),
           ('tasker_workflow_steps', 'attempts', 'integer'),
           ('tasker_workflow_steps', 'last_attempted_at', 'timestamp without time zone'),
           ('tasker_workflow_steps', 'backoff_request_seconds', 'integer'),
           ('tasker_workflow_steps', 'created_at', 'timestamp without time zone'),
           ('tasker_named_steps', 'named_step_id', 'integer'),
           ('tasker_named_steps', 'name', 'character varying'),
           ('tasker_workflow_step_transitions', 'id', 'bigint'),
           ('tasker_workflow_step_transitions', 'workflow_step_id', 'bigint'),
           ('tasker_workflow_step_transitions', 'to_state', 'character varying'),
           ('tasker_workflow_step_transitions', 'most_recent', 'boolean'),
           ('tasker_workflow_step_transitions', 'created_at', 'timestamp without time zone'),
           ('tasker_workflow_step_edges', 'id', 'bigint'),
           ('tasker_workflow_step_edges', 'from_step_id', 'bigint'),
           ('tasker_workflow_step_edges', 'to_step_id', 'bigint'),
           ('tasker_tasks', 'task_id', 'bigint'),
           ('tasker_tasks', 'named_task_id', 'integer'),
           ('tasker_task_transitions', 'id', 'bigint'),
           ('tasker_task_transitions', 'task_id', 'bigint'),
           ('tasker_task_transitions', 'to_state', 'character varying'),
           ('tasker_task_transitions', 'most_recent', 'boolean'),
           ('tasker_task_transitions', 'created_at', 'timestamp without time zone')
$$;

-- The tables step_state mirrors.
CREATE FUNCTION tasker_core.step_state_tables()
RETURNS SETOF name
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    VALUES ('tasker_workflow_steps'::name), ('tasker_named_steps'), ('tasker_workflow_step_transitions'),
           ('tasker_workflow_step_edges'), ('tasker_tasks'), ('tasker_task_transitions')
$$;

-- The maintenance triggers: (trigger, event, transition tables), on each of those tables.
CREATE FUNCTION tasker_core.step_state_triggers()
RETURNS TABLE (trigger_name name, event text, referencing text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    VALUES ('tasker_core_state_insert'::name, 'INSERT', 'REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT'),
           ('tasker_core_state_update', 'UPDATE', 'REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT'),
           ('tasker_core_state_delete', 'DELETE', 'REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT'),
           ('tasker_core_state_truncate', 'TRUNCATE', 'FOR EACH STATEMENT')
$$;

-- NULL when step_state can be kept exact for `src`, else why not. Checked by enable and rebuild,
-- and after every DDL command that could break it (the event trigger below).
CREATE FUNCTION tasker_core.step_state_problem(src tasker_core.step_state_source)
RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    rel regclass;
BEGIN
    FOR r IN SELECT c.table_name, c.column_name, c.column_type, a.atttypid, a.attnotnull
               FROM tasker_core.step_state_columns() c
               LEFT JOIN pg_catalog.pg_class t ON t.oid = CASE c.table_name
                        WHEN 'tasker_workflow_steps' THEN src.steps WHEN 'tasker_named_steps' THEN src.named_steps
                        WHEN 'tasker_workflow_step_transitions' THEN src.transitions WHEN 'tasker_workflow_step_edges' THEN src.edges
                        WHEN 'tasker_tasks' THEN src.tasks ELSE src.task_transitions END
               LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attname = c.column_name AND NOT a.attisdropped
    LOOP
        IF r.atttypid IS NULL THEN
            RETURN pg_catalog.format('%s has no column %s', r.table_name, r.column_name);
        ELSIF pg_catalog.format_type(r.atttypid, NULL) <> r.column_type THEN
            RETURN pg_catalog.format('%s.%s is %s, not %s', r.table_name, r.column_name, pg_catalog.format_type(r.atttypid, NULL), r.column_type);
        END IF;
    END LOOP;
    FOREACH rel IN ARRAY ARRAY[src.steps, src.named_steps, src.transitions, src.edges, src.tasks, src.task_transitions] LOOP
        IF (SELECT relkind FROM pg_catalog.pg_class WHERE oid = rel) IS DISTINCT FROM 'r' THEN
            RETURN pg_catalog.format('%s is not a plain table', rel);
        END IF;
        FOR r IN SELECT g.trigger_name, t.tgenabled, t.tgfoid
                   FROM tasker_core.step_state_triggers() WITH ORDINALITY g(trigger_name, event, referencing, n)
                   LEFT JOIN pg_catalog.pg_trigger t ON t.tgrelid = rel AND t.tgname = g.trigger_name ORDER BY g.n LOOP
            IF r.tgenabled IS NULL OR r.tgfoid <> 'tasker_core.step_state_sync()'::pg_catalog.regprocedure THEN
                RETURN pg_catalog.format('trigger %s on %s is missing', r.trigger_name, rel);
            ELSIF r.tgenabled <> 'A' THEN
                RETURN pg_catalog.format('trigger %s on %s is not ENABLE ALWAYS', r.trigger_name, rel);
            END IF;
        END LOOP;
    END LOOP;
    -- The maintenance reads the Tasker tables and writes the copy with the tables' owner's rights
    -- (src/pg/sandbox.rs): one owner, who may write the copy (step_state_enable() grants it).
    IF (SELECT pg_catalog.count(DISTINCT c.relowner) FROM pg_catalog.pg_class c
         WHERE c.oid = ANY (ARRAY[src.steps, src.named_steps, src.transitions, src.edges, src.tasks, src.task_transitions])) <> 1 THEN
        RETURN 'the six Tasker tables have more than one owner';
    END IF;
    IF NOT pg_catalog.has_table_privilege((SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = src.steps),
                                          'tasker_core.step_state', 'SELECT, INSERT, UPDATE, DELETE') THEN
        RETURN pg_catalog.format('%s, the owner of the Tasker tables, may not write tasker_core.step_state',
                                 (SELECT c.relowner::pg_catalog.regrole FROM pg_catalog.pg_class c WHERE c.oid = src.steps));
    END IF;
    -- Logical replication applies rows with row triggers only: statement triggers never fire
    -- for the apply worker, so a subscriber's copy would drift.
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_subscription s JOIN pg_catalog.pg_database d ON d.oid = s.subdbid WHERE d.datname = current_database()) THEN
        RETURN 'this database has logical replication subscriptions (their apply workers fire no statement triggers)';
    END IF;
    -- One most_recent transition per step and per task, as the read functions assume (schema.md):
    -- a unique index that proves it, decided by meaning (tasker_core.most_recent_index).
    FOR r IN SELECT * FROM (VALUES (src.transitions, 'workflow_step_id'::name), (src.task_transitions, 'task_id')) v(rel, owner) LOOP
        IF tasker_core.most_recent_index(r.rel, r.owner) IS NULL THEN
            RETURN pg_catalog.format('%s has no valid unique index allowing one most_recent row per %s '
                                     '(such as Rails'' (%s, most_recent) WHERE (most_recent = true))', r.rel, r.owner, r.owner);
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

-- The mirrored tables' storage (relfilenode: a rewrite gives a new one) and mirrored columns
-- (name, number, type): what DDL can change without firing a trigger on the rows.
CREATE FUNCTION tasker_core.step_state_fingerprint(src tasker_core.step_state_source)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.string_agg(pg_catalog.format('%s:%s', c.oid,
               (SELECT pg_catalog.string_agg(pg_catalog.format('%s=%s/%s', a.attname, a.attnum,
                                                               a.atttypid), ',' ORDER BY a.attnum)
                  FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                   AND a.attname IN (SELECT x.column_name FROM tasker_core.step_state_columns() x WHERE x.table_name = c.relname))),
               ';' ORDER BY t.n)
      FROM pg_catalog.unnest(ARRAY[src.steps, src.named_steps, src.transitions, src.edges, src.tasks, src.task_transitions])
           WITH ORDINALITY t(rel, n)
      JOIN pg_catalog.pg_class c ON c.oid = t.rel
$$;

-- Sets the maintenance triggers on the mirrored tables back to ENABLE ALWAYS where something
-- (a data-only pg_restore --disable-triggers, whose ENABLE TRIGGER ALL makes them ordinary
-- triggers) changed that. Run by step_state_rebuild() before it checks the tables.
CREATE FUNCTION tasker_core.step_state_enable_always(src tasker_core.step_state_source)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT t.tgrelid::pg_catalog.regclass AS rel, t.tgname
               FROM pg_catalog.pg_trigger t
              WHERE t.tgrelid = ANY (ARRAY[src.steps, src.named_steps, src.transitions, src.edges, src.tasks, src.task_transitions])
                AND t.tgname IN (SELECT g.trigger_name FROM tasker_core.step_state_triggers() g)
                AND t.tgfoid = 'tasker_core.step_state_sync()'::pg_catalog.regprocedure
                AND t.tgenabled = 'O'
    LOOP
        EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', r.rel, r.tgname);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION tasker_core.step_state_enable_always(tasker_core.step_state_source) FROM PUBLIC;

-- Marks step_state as not valid (the readers go back to the Tasker tables) and says so.
CREATE FUNCTION tasker_core.step_state_invalidate(why text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    was_valid boolean;
BEGIN
    -- (An online build under way stops: its next step finds building NULL and says why.)
    SELECT s.valid INTO was_valid FROM tasker_core.step_state_source s WHERE s.valid OR s.building IS NOT NULL FOR UPDATE;
    UPDATE tasker_core.step_state_source s SET valid = false, building = NULL, reason = why, changed_at = pg_catalog.now()
     WHERE s.valid OR s.building IS NOT NULL;
    IF was_valid THEN
        RAISE WARNING 'tasker_core: the derived step state is no longer used: %', why
            USING HINT = 'The read functions read the Tasker tables until SELECT tasker_core.step_state_rebuild() runs.';
    ELSIF FOUND THEN
        RAISE WARNING 'tasker_core: the online build of the step state stops: %', why
            USING HINT = 'Run CALL tasker_core.step_state_enable_concurrently() again.';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION tasker_core.step_state_invalidate(text) FROM PUBLIC;

-- The maintenance trigger function (statement level, with transition tables): finds the rows a
-- statement changed and has their step_state rows recomputed (src/pg/step_state/sync.rs).
-- SECURITY DEFINER: writers of the Tasker tables get no privilege on tasker_core.step_state.
CREATE FUNCTION tasker_core.step_state_sync()
RETURNS trigger
LANGUAGE c SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'step_state_sync_wrapper';

-- After DDL that may touch the mirrored tables (triggers disabled or dropped, a column retyped,
-- the unique most_recent index dropped, a table renamed away), stop trusting step_state.
CREATE FUNCTION tasker_core.step_state_watch()
RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    src tasker_core.step_state_source;
    why text;
BEGIN
    SELECT * INTO src FROM tasker_core.step_state_source s WHERE s.valid OR s.building IS NOT NULL;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    why := tasker_core.step_state_problem(src);
    -- (No fingerprint yet: only while ALTER EXTENSION UPDATE from 0.3.0 runs; its last
    -- statement records it.)
    IF why IS NULL AND src.fingerprint IS NOT NULL AND src.fingerprint <> tasker_core.step_state_fingerprint(src) THEN
        -- A column dropped and added again, or retyped without a rewrite: its values may have
        -- changed without any trigger firing. (Rewrites are caught as they start: below.)
        why := 'a mirrored column was replaced or retyped, which can change rows without firing triggers';
    END IF;
    IF why IS NOT NULL THEN
        PERFORM tasker_core.step_state_invalidate(pg_catalog.format('after %s: %s', tg_tag, why));
    END IF;
END
$$;

CREATE EVENT TRIGGER tasker_core_step_state_watch ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'DROP TABLE', 'CREATE TRIGGER', 'DROP TRIGGER', 'ALTER TRIGGER',
                 'DROP INDEX', 'ALTER INDEX', 'ALTER SCHEMA', 'DROP SCHEMA',
                 'DROP FUNCTION', 'ALTER FUNCTION', 'CREATE FUNCTION', 'CREATE SUBSCRIPTION', 'ALTER SUBSCRIPTION')
    EXECUTE FUNCTION tasker_core.step_state_watch();
-- Fire under session_replication_role = replica too (pg_restore, logical replication apply).
ALTER EVENT TRIGGER tasker_core_step_state_watch ENABLE ALWAYS;

-- When ALTER TABLE or ALTER TYPE is about to rewrite a mirrored table (ALTER COLUMN ... TYPE
-- ... USING, a new typmod), stop trusting step_state: the rewrite can change any row's values
-- without firing a trigger. VACUUM FULL, CLUSTER and pg_repack also give a table new storage
-- but keep every row as it is; they fire no event and change nothing here.
CREATE FUNCTION tasker_core.step_state_rewritten()
RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    src tasker_core.step_state_source;
    rel pg_catalog.oid := pg_catalog.pg_event_trigger_table_rewrite_oid();
BEGIN
    SELECT * INTO src FROM tasker_core.step_state_source s WHERE s.valid OR s.building IS NOT NULL;
    IF FOUND AND rel OPERATOR(pg_catalog.=) ANY (ARRAY[src.steps, src.named_steps, src.transitions, src.edges,
                                                      src.tasks, src.task_transitions]::pg_catalog.oid[]) THEN
        -- The catalog already has the new column types: say so when one is why a rebuild
        -- would not help.
        PERFORM tasker_core.step_state_invalidate(pg_catalog.format('after %s: %s', tg_tag,
            COALESCE(tasker_core.step_state_problem(src),
                     pg_catalog.format('%s is being rewritten, which can change rows without firing triggers',
                                       rel::pg_catalog.regclass))));
    END IF;
END
$$;
REVOKE ALL ON FUNCTION tasker_core.step_state_rewritten() FROM PUBLIC;
CREATE EVENT TRIGGER tasker_core_step_state_rewrite ON table_rewrite
    EXECUTE FUNCTION tasker_core.step_state_rewritten();
ALTER EVENT TRIGGER tasker_core_step_state_rewrite ENABLE ALWAYS;
REVOKE ALL ON FUNCTION tasker_core.step_state_problem(tasker_core.step_state_source) FROM PUBLIC;

-- The six Tasker tables of `schema`, in step_state_tables() order; raises when the schema or a
-- table is missing (3F000, 42P01) or the step state mirrors another schema (55000).
CREATE FUNCTION tasker_core.step_state_tables_of(schema name)
RETURNS regclass[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tbl name;
BEGIN
    IF pg_catalog.to_regnamespace(pg_catalog.quote_ident(schema)) IS NULL THEN
        RAISE EXCEPTION 'schema "%" does not exist', schema USING ERRCODE = '3F000';
    END IF;
    FOR tbl IN SELECT * FROM tasker_core.step_state_tables() LOOP
        IF pg_catalog.to_regclass(pg_catalog.format('%I.%I', schema, tbl)) IS NULL THEN
            RAISE EXCEPTION 'cannot enable the step state: table %.% does not exist', schema, tbl
                USING ERRCODE = '42P01', HINT = 'Pass the schema that holds the Tasker tables.';
        END IF;
    END LOOP;
    IF EXISTS (SELECT 1 FROM tasker_core.step_state_source s
                WHERE s.steps <> pg_catalog.format('%I.tasker_workflow_steps', schema)::pg_catalog.regclass) THEN
        RAISE EXCEPTION 'the step state already mirrors %', (SELECT s.steps FROM tasker_core.step_state_source s)
            USING ERRCODE = '55000', HINT = 'Run tasker_core.step_state_disable() for that schema first.';
    END IF;
    RETURN ARRAY(SELECT pg_catalog.format('%I.%I', schema, t)::pg_catalog.regclass FROM tasker_core.step_state_tables() t);
END
$$;

-- Puts the maintenance triggers on `rel` as step_state_problem wants them (step_state_sync,
-- ENABLE ALWAYS: they fire for replicas and bulk loads too), changing only what differs: a
-- missing trigger is created and one set to ENABLE (a data-only restore does that) is set back,
-- both under a SHARE ROW EXCLUSIVE lock; only a trigger of that name running another function
-- is dropped first (ACCESS EXCLUSIVE). One row per trigger, saying what it did.
CREATE FUNCTION tasker_core.step_state_install_triggers(rel regclass)
RETURNS TABLE (object text, action text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT t.*, x.tgfoid, x.tgenabled
               FROM tasker_core.step_state_triggers() WITH ORDINALITY t(trigger_name, event, referencing, n)
               LEFT JOIN pg_catalog.pg_trigger x ON x.tgrelid = rel AND x.tgname = t.trigger_name
              ORDER BY t.n LOOP
        object := pg_catalog.format('trigger %I on %s', g.trigger_name, rel);
        IF g.tgfoid = 'tasker_core.step_state_sync()'::pg_catalog.regprocedure THEN
            IF g.tgenabled = 'A' THEN
                action := 'already installed';
            ELSE
                EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', rel, g.trigger_name);
                action := 'set to ENABLE ALWAYS';
            END IF;
        ELSE
            IF g.tgfoid IS NOT NULL THEN
                EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', g.trigger_name, rel);
                action := 'reinstalled';
            ELSE
                action := 'installed';
            END IF;
            EXECUTE pg_catalog.format('CREATE TRIGGER %I AFTER %s ON %s %s EXECUTE FUNCTION tasker_core.step_state_sync()',
                                      g.trigger_name, g.event, rel, g.referencing);
            EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', rel, g.trigger_name);
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

-- Records the Tasker tables of `schema` as the mirrored ones, not valid (the triggers do nothing
-- until a build), and grants their owner its rights on step_state: the maintenance works with
-- that role's rights (src/pg/sandbox.rs).
CREATE FUNCTION tasker_core.step_state_record(schema name)
RETURNS tasker_core.step_state_source
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    src tasker_core.step_state_source;
BEGIN
    INSERT INTO tasker_core.step_state_source AS s (steps, named_steps, transitions, edges, tasks, task_transitions, valid, reason)
    VALUES (pg_catalog.format('%I.tasker_workflow_steps', schema)::pg_catalog.regclass, pg_catalog.format('%I.tasker_named_steps', schema)::pg_catalog.regclass,
            pg_catalog.format('%I.tasker_workflow_step_transitions', schema)::pg_catalog.regclass,
            pg_catalog.format('%I.tasker_workflow_step_edges', schema)::pg_catalog.regclass, pg_catalog.format('%I.tasker_tasks', schema)::pg_catalog.regclass,
            pg_catalog.format('%I.tasker_task_transitions', schema)::pg_catalog.regclass, false, 'being built')
    ON CONFLICT (only_row) DO UPDATE SET valid = false, building = NULL, reason = 'being rebuilt', changed_at = pg_catalog.now()
    RETURNING * INTO src;
    EXECUTE pg_catalog.format('GRANT SELECT, INSERT, UPDATE, DELETE ON tasker_core.step_state TO %s',
                              (SELECT c.relowner::pg_catalog.regrole FROM pg_catalog.pg_class c WHERE c.oid = src.steps));
    RETURN src;
END
$$;

-- Starts mirroring the Tasker tables of `schema` into step_state: installs the maintenance
-- triggers and builds every row in one transaction, blocking writers of the six tables while it
-- builds. (CALL tasker_core.step_state_enable_concurrently() does the same without blocking them.)
CREATE FUNCTION tasker_core.step_state_enable(schema name DEFAULT 'public')
RETURNS TABLE (object text, action text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tables regclass[] := tasker_core.step_state_tables_of(schema);
    src tasker_core.step_state_source := tasker_core.step_state_record(schema);
    rel regclass;
    why text;
BEGIN
    -- All six at once, giving way to writers (rather than deadlocking with one).
    PERFORM tasker_core.lock_briefly(tables);
    FOREACH rel IN ARRAY tables LOOP
        RETURN QUERY SELECT * FROM tasker_core.step_state_install_triggers(rel);
    END LOOP;
    why := tasker_core.step_state_problem(src);
    IF why IS NOT NULL THEN
        RAISE EXCEPTION 'cannot enable the step state: %', why USING ERRCODE = '55000';
    END IF;
    object := 'tasker_core.step_state';
    action := pg_catalog.format('built (%s steps)', tasker_core.step_state_rebuild());
    RETURN NEXT;
END
$$;

-- Locks the tables `rels` against writers (SHARE ROW EXCLUSIVE, as CREATE TRIGGER does) without
-- making writers queue behind it for long, and without deadlocking with a writer that holds one
-- of them and waits for another: each try asks for all of them in one statement and waits at
-- most `wait` (lock_timeout, far below deadlock_timeout); a try that times out releases what it
-- took and sleeps a little so the queued writers go first. Under writers so busy that ten tries
-- in a row fail, the wait doubles (to at most 1 s: a writer then waits that long, once). After
-- `tries` tries it raises 55P03.
-- Returns the tries it took; the transaction keeps the locks. Used by enable(),
-- step_state_enable(), step_state_rebuild() (as the tables' owner) and the online build's trigger
-- installation. Everyone may run it: LOCK TABLE checks the caller's own privileges.
CREATE FUNCTION tasker_core.lock_briefly(rels regclass[], wait interval DEFAULT '20ms', tries integer DEFAULT 100)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    before text := pg_catalog.current_setting('lock_timeout');
    names text := (SELECT pg_catalog.string_agg(r::text, ', ' ORDER BY n) FROM pg_catalog.unnest(rels) WITH ORDINALITY u(r, n));
BEGIN
    IF wait IS NULL OR wait <= interval '0' THEN
        RAISE EXCEPTION 'lock_wait must be a positive interval, not %', COALESCE(wait::text, 'NULL') USING ERRCODE = '22023',
            HINT = 'It bounds how long each try to lock waits, and so how long writers queue behind it (20 ms by default).';
    END IF;
    IF names IS NULL THEN
        RETURN 0;
    END IF;
    FOR attempt IN 1..tries LOOP
        BEGIN
            PERFORM pg_catalog.set_config('lock_timeout',
                pg_catalog.ceil(LEAST(pg_catalog.date_part('epoch', wait) * 1000 * 2 ^ ((attempt - 1) / 10), 1000.0))::bigint::text || 'ms', true);
            EXECUTE pg_catalog.format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', names);
            PERFORM pg_catalog.set_config('lock_timeout', before, true);
            RETURN attempt;
        EXCEPTION WHEN lock_not_available THEN
            PERFORM pg_catalog.pg_sleep(0.02 + 0.08 * pg_catalog.random());
        END;
    END LOOP;
    RAISE EXCEPTION 'could not lock % against writers in % tries of at most %', names, tries, wait
        USING ERRCODE = '55P03',
              HINT = 'A long transaction writes one of them. Try again when that is over.';
END
$$;

-- The online build's first step: the tables of `schema` that need the maintenance triggers
-- (re)installed, after checking them as step_state_enable() does. Records them as the mirrored
-- tables, not valid, unless the step state already mirrors them with every trigger in place (a
-- rebuild: the copy stays in use until the capture starts). One online build at a time: it
-- takes a session-level advisory lock (55006 if another session holds it), which
-- step_state_finish_online() releases (or the end of the session, if the build fails).
CREATE FUNCTION tasker_core.step_state_prepare_online(schema name)
RETURNS regclass[]
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tables regclass[] := tasker_core.step_state_tables_of(schema);
    missing regclass[];
    key integer := 'tasker_core.step_state_log'::regclass::oid::integer;
BEGIN
    -- (Held already by this session if an earlier CALL here failed: not taken twice.)
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_locks l
                    WHERE l.locktype = 'advisory' AND l.pid = pg_catalog.pg_backend_pid() AND l.granted
                      AND l.classid::integer = key AND l.objid::integer = 1 AND l.objsubid = 2)
       AND NOT pg_catalog.pg_try_advisory_lock(key, 1) THEN
        RAISE EXCEPTION 'another session is building the step state online (%)',
            (SELECT pg_catalog.string_agg(pg_catalog.format('pid %s, %s', l.pid, COALESCE(a.state, 'gone')), '; ')
               FROM pg_catalog.pg_locks l LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
              WHERE l.locktype = 'advisory' AND l.granted AND l.classid::integer = key AND l.objid::integer = 1 AND l.objsubid = 2)
            USING ERRCODE = '55006',
                  HINT = 'Wait for its CALL to end. If that session is idle, its CALL failed and it still holds the build''s lock: '
                         'run the CALL again in that session, or end the session (pg_terminate_backend).';
    END IF;
    missing := ARRAY(SELECT t FROM pg_catalog.unnest(tables) WITH ORDINALITY u(t, n)
                      WHERE EXISTS (SELECT 1 FROM tasker_core.step_state_triggers() g
                                     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger x
                                                        WHERE x.tgrelid = u.t AND x.tgname = g.trigger_name AND x.tgenabled = 'A'
                                                          AND x.tgfoid = 'tasker_core.step_state_sync()'::pg_catalog.regprocedure))
                      ORDER BY u.n);
    IF NOT EXISTS (SELECT 1 FROM tasker_core.step_state_source s WHERE s.valid) OR pg_catalog.cardinality(missing) > 0 THEN
        PERFORM tasker_core.step_state_record(schema);
    END IF;
    RETURN missing;
END
$$;

-- Installs the maintenance triggers on `rel` (they do nothing until the capture starts) under
-- a brief lock; returns the tries the lock took.
CREATE FUNCTION tasker_core.step_state_install_online(rel regclass, lock_wait interval)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tries integer := tasker_core.lock_briefly(ARRAY[rel], lock_wait, 100);
BEGIN
    PERFORM 1 FROM tasker_core.step_state_install_triggers(rel);
    RETURN tries;
END
$$;

-- Starts the capture: checks the tables (55000 if step_state_problem objects), empties the log,
-- and sets the copy not valid and building = 'capture': from the commit on, every write logs
-- what it touched.
CREATE FUNCTION tasker_core.step_state_capture()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    src tasker_core.step_state_source;
    why text;
BEGIN
    SELECT * INTO src FROM tasker_core.step_state_source s FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the step state is not enabled' USING ERRCODE = '55000';
    END IF;
    why := tasker_core.step_state_problem(src);
    IF why IS NOT NULL THEN
        RAISE EXCEPTION 'cannot enable the step state: %', why USING ERRCODE = '55000';
    END IF;
    DELETE FROM tasker_core.step_state_log;
    UPDATE tasker_core.step_state_source s
       SET valid = false, building = 'capture', reason = 'being built online', changed_at = pg_catalog.now(),
           fingerprint = tasker_core.step_state_fingerprint(s);
END
$$;

-- Waits until every transaction that holds a lock for writing rows (ROW EXCLUSIVE, EXCLUSIVE or
-- ACCESS EXCLUSIVE) on a mirrored table when it is called has ended, as CREATE INDEX CONCURRENTLY waits for the
-- writers of its table: after a step of the online build commits, every write that may have
-- read the step before is then over (a write takes that lock before its trigger reads the step,
-- and keeps it to its end). Prepared transactions count. Returns the seconds it waited; every
-- 10 s a NOTICE names the sessions it waits for.
CREATE FUNCTION tasker_core.step_state_wait_for_writers()
RETURNS numeric
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    src tasker_core.step_state_source;
    writers text[];
    xids xid[];
    started timestamptz := pg_catalog.clock_timestamp();
    told timestamptz := pg_catalog.clock_timestamp();
BEGIN
    SELECT * INTO src FROM tasker_core.step_state_source s;
    -- One read of the lock table: the writers by virtual transaction id, and the transaction ids
    -- they have (a writer that runs PREPARE TRANSACTION meanwhile moves its locks from the one to
    -- the other, and keeps them until COMMIT PREPARED).
    WITH l AS (SELECT * FROM pg_catalog.pg_locks),
         w AS (SELECT DISTINCT l.virtualtransaction FROM l
                WHERE l.locktype = 'relation' AND l.granted
                  AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())
                  AND l.relation = ANY (ARRAY[src.steps, src.named_steps, src.transitions, src.edges, src.tasks,
                                              src.task_transitions]::pg_catalog.oid[])
                  -- The modes of writes (not of VACUUM, ANALYZE or CREATE INDEX, which write no rows).
                  AND l.mode IN ('RowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')
                  AND l.pid IS DISTINCT FROM pg_catalog.pg_backend_pid())
    SELECT ARRAY(SELECT w.virtualtransaction FROM w),
           ARRAY(SELECT l.transactionid FROM l JOIN w USING (virtualtransaction)
                  WHERE l.locktype = 'transactionid' AND l.granted AND l.mode = 'ExclusiveLock')
      INTO writers, xids;
    -- A transaction holds locks under its virtual transaction id, and its transaction id's lock,
    -- until it ends.
    WHILE EXISTS (SELECT 1 FROM pg_catalog.pg_locks l
                   WHERE l.virtualtransaction = ANY (writers)
                      OR (l.locktype = 'transactionid' AND l.granted AND l.mode = 'ExclusiveLock' AND l.transactionid = ANY (xids))) LOOP
        IF pg_catalog.clock_timestamp() - told > interval '10 seconds' THEN
            RAISE NOTICE 'tasker_core: waiting for transactions that write the Tasker tables to end: %',
                (SELECT pg_catalog.string_agg(DISTINCT COALESCE('pid ' || l.pid, 'prepared transaction ' || l.virtualtransaction), ', ')
                   FROM pg_catalog.pg_locks l WHERE l.virtualtransaction = ANY (writers));
            told := pg_catalog.clock_timestamp();
        END IF;
        PERFORM pg_catalog.pg_sleep(0.005);
    END LOOP;
    RETURN pg_catalog.round(pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() - started)::numeric, 3);
END
$$;

-- Recomputes the step_state rows that the writes logged in step_state_log touched and empties
-- the log; returns how many entries it replayed. Raises 55000 when the online build stopped
-- (DDL, a TRUNCATE, a blocking rebuild or disable since it started). A deadlock with a writer
-- (the replay locks many rows) undoes the round and it tries again.
CREATE FUNCTION tasker_core.step_state_replay()
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    src tasker_core.step_state_source;
    n bigint;
    steps bigint[];
    moved bigint[];
    tasks bigint[];
    named bigint[];
    children bigint[];
BEGIN
    SELECT * INTO src FROM tasker_core.step_state_source s;
    IF NOT FOUND OR src.building IS NULL THEN
        RAISE EXCEPTION 'cannot build the step state online: it stopped: %',
            COALESCE(src.reason, CASE WHEN src.valid THEN 'step_state_rebuild() or step_state_enable() ran meanwhile'
                                      ELSE 'the step state is not enabled' END)
            USING ERRCODE = '55000', HINT = 'Run CALL tasker_core.step_state_enable_concurrently() again.';
    END IF;
    FOR attempt IN 1..10 LOOP
        BEGIN
            WITH taken AS (DELETE FROM tasker_core.step_state_log RETURNING kind, id)
            SELECT pg_catalog.count(*),
                   pg_catalog.array_agg(DISTINCT t.id) FILTER (WHERE t.kind = 's'),
                   pg_catalog.array_agg(DISTINCT t.id) FILTER (WHERE t.kind = 'x'),
                   pg_catalog.array_agg(DISTINCT t.id) FILTER (WHERE t.kind = 't'),
                   pg_catalog.array_agg(DISTINCT t.id) FILTER (WHERE t.kind = 'n')
              INTO n, steps, moved, tasks, named FROM taken t;
            -- A step whose transitions changed may have become done or stopped being done: its
            -- children's parent counters are recomputed too.
            IF moved IS NOT NULL THEN
                EXECUTE pg_catalog.format('SELECT pg_catalog.array_agg(e.to_step_id) FROM %s e WHERE e.from_step_id = ANY ($1)', src.edges)
                   INTO children USING moved;
                steps := steps || moved || children;
            END IF;
            IF named IS NOT NULL THEN
                steps := steps || ARRAY(SELECT d.workflow_step_id FROM tasker_core.step_state d WHERE d.named_step_id = ANY (named));
            END IF;
            IF steps IS NOT NULL THEN
                PERFORM tasker_core.step_state_refresh(steps, src.steps::pg_catalog.oid, src.named_steps::pg_catalog.oid,
                                                        src.transitions::pg_catalog.oid, src.edges::pg_catalog.oid);
            END IF;
            IF tasks IS NOT NULL THEN
                PERFORM tasker_core.step_state_refresh_tasks(tasks, src.tasks::pg_catalog.oid, src.task_transitions::pg_catalog.oid);
            END IF;
            RETURN n;
        EXCEPTION WHEN deadlock_detected THEN
            IF attempt = 10 THEN
                RAISE;
            END IF;
        END;
    END LOOP;
END
$$;

-- Ends the capture: building = 'catch_up', so from the commit on the triggers refresh the copy
-- themselves again (the readers still read the Tasker tables).
CREATE FUNCTION tasker_core.step_state_catch_up()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM tasker_core.step_state_replay();
    UPDATE tasker_core.step_state_source s SET building = 'catch_up', changed_at = pg_catalog.now();
END
$$;

-- The online build's last step: with the six tables briefly locked against writers (tries of at
-- most `lock_wait`), replays what the log still holds, checks the tables once more and marks the
-- copy valid and built on this server. Every write that logged is over (step_state_wait_for_writers
-- ran since step_state_catch_up). The lock is needed because a row the log has not replayed yet
-- (a step created during the capture) is missing from the copy, so a catch-up writer that changes
-- it refreshes nothing: under the lock the replay sees every such change. Returns the entries
-- replayed, the tries the lock took, and how long writers were held back.
CREATE FUNCTION tasker_core.step_state_finish_online(lock_wait interval DEFAULT '20ms',
                                                     OUT replayed bigint, OUT tries integer, OUT held_ms numeric)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    src tasker_core.step_state_source;
    why text;
    locked timestamptz;
    kinds "char"[];
    ids bigint[];
BEGIN
    SELECT * INTO src FROM tasker_core.step_state_source s;
    IF src.building IS DISTINCT FROM 'catch_up' THEN
        RAISE EXCEPTION 'cannot build the step state online: %',
            CASE WHEN src.building = 'capture' THEN 'step_state_catch_up() has not run'
                 ELSE pg_catalog.format('it stopped: %s', COALESCE(src.reason, CASE WHEN src.valid THEN 'step_state_rebuild() or step_state_enable() ran meanwhile'
                                                                                    ELSE 'the step state is not enabled' END)) END
            USING ERRCODE = '55000';
    END IF;
    -- The replay rounds deleted most of the log, but a scan of it still reads every dead row
    -- until a VACUUM (100 ms after a 300,000-entry round): carry the few live entries over to
    -- fresh storage first, before writers are held back. Nothing else writes the log now (the
    -- triggers refresh the copy in catch-up, and every writer that logged is over).
    SELECT pg_catalog.array_agg(l.kind), pg_catalog.array_agg(l.id) INTO kinds, ids FROM tasker_core.step_state_log l;
    TRUNCATE tasker_core.step_state_log;
    INSERT INTO tasker_core.step_state_log (kind, id) SELECT * FROM ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids));
    tries := tasker_core.lock_briefly(ARRAY[src.steps, src.named_steps, src.transitions, src.edges, src.tasks, src.task_transitions],
                                      lock_wait, 100);
    locked := pg_catalog.clock_timestamp();
    replayed := tasker_core.step_state_replay();
    SELECT * INTO src FROM tasker_core.step_state_source s FOR UPDATE;
    why := tasker_core.step_state_problem(src);
    IF why IS NULL AND src.fingerprint IS DISTINCT FROM tasker_core.step_state_fingerprint(src) THEN
        why := 'a mirrored column was replaced or retyped during the build';
    END IF;
    IF why IS NOT NULL THEN
        RAISE EXCEPTION 'cannot build the step state online: %', why USING ERRCODE = '55000';
    END IF;
    UPDATE tasker_core.step_state_source s
       SET valid = true, building = NULL, reason = NULL, changed_at = pg_catalog.now(),
           built_on = tasker_core.server_identity(), fingerprint = tasker_core.step_state_fingerprint(s);
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_locks l
                WHERE l.locktype = 'advisory' AND l.pid = pg_catalog.pg_backend_pid() AND l.granted
                  AND l.classid::integer = 'tasker_core.step_state_log'::regclass::oid::integer AND l.objid::integer = 1 AND l.objsubid = 2) THEN
        PERFORM pg_catalog.pg_advisory_unlock('tasker_core.step_state_log'::regclass::oid::integer, 1);
    END IF;
    held_ms := pg_catalog.round((pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() - locked) * 1000)::numeric, 1);
END
$$;

-- Enables (or rebuilds) the step state of `schema` online, the way CREATE INDEX CONCURRENTLY
-- builds an index: no step locks the Tasker tables against writers but the installation of
-- missing triggers (CREATE TRIGGER, one table at a time, each try waiting at most `lock_wait`).
-- Each step is a transaction of its own, so CALL it outside a transaction block:
-- 1. the maintenance triggers are installed where missing (they do nothing yet);
-- 2. capture: each write logs what it touched; the build waits for the writes under way;
-- 3. every row is built from one snapshot (the readers read the Tasker tables meanwhile);
-- 4. the log is replayed until a round finds little left;
-- 5. catch up: the triggers refresh the copy again; once the writes that logged are over, the
--    rest of the log is replayed and the copy is marked valid.
-- NOTICEs report each step. No SET search_path (a procedure with one cannot COMMIT): it calls
-- only the pinned functions above, and qualifies every name and operator.
CREATE PROCEDURE tasker_core.step_state_enable_concurrently(schema name DEFAULT 'public', lock_wait interval DEFAULT '20ms')
LANGUAGE plpgsql
AS $$
DECLARE
    missing pg_catalog.regclass[];
    rel pg_catalog.regclass;
    tries pg_catalog.int4 := 0;
    waited pg_catalog.numeric;
    steps pg_catalog.int8;
    n pg_catalog.int8;
    previous pg_catalog.int8;
    rounds pg_catalog.int4 := 0;
    started pg_catalog.timestamptz;
    done record;
BEGIN
    -- Each step commits: outside a transaction block or not at all (25001).
    PERFORM tasker_core.step_state_check_top_level();
    COMMIT;
    missing := tasker_core.step_state_prepare_online(schema);
    COMMIT;
    FOREACH rel IN ARRAY missing LOOP
        tries := tries OPERATOR(pg_catalog.+) tasker_core.step_state_install_online(rel, lock_wait);
        COMMIT;
    END LOOP;
    RAISE NOTICE 'tasker_core: step 1 of 5: maintenance triggers installed on % tables (% lock tries)', pg_catalog.cardinality(missing), tries;
    PERFORM tasker_core.step_state_capture();
    COMMIT;
    waited := tasker_core.step_state_wait_for_writers();
    COMMIT;
    RAISE NOTICE 'tasker_core: step 2 of 5: each write now logs what it touched (waited % s for the writes under way)', waited;
    started := pg_catalog.clock_timestamp();
    steps := tasker_core.step_state_build_online();
    COMMIT;
    RAISE NOTICE 'tasker_core: step 3 of 5: built % steps from one snapshot in % s', steps,
        pg_catalog.round(pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) started)::pg_catalog.numeric, 1);
    -- Replay until a round is small or stops shrinking (writers as fast as the replay).
    LOOP
        n := tasker_core.step_state_replay();
        COMMIT;
        rounds := rounds OPERATOR(pg_catalog.+) 1;
        RAISE NOTICE 'tasker_core: step 4 of 5: round %: replayed % logged writes', rounds, n;
        EXIT WHEN n OPERATOR(pg_catalog.<=) 256 OR rounds OPERATOR(pg_catalog.>=) 50
               OR (previous IS NOT NULL AND n OPERATOR(pg_catalog.>=) previous);
        previous := n;
    END LOOP;
    PERFORM tasker_core.step_state_catch_up();
    COMMIT;
    waited := tasker_core.step_state_wait_for_writers();
    COMMIT;
    SELECT * INTO done FROM tasker_core.step_state_finish_online(lock_wait);
    COMMIT;
    RAISE NOTICE 'tasker_core: step 5 of 5: valid; waited % s for the writes that logged, then held writers back for % ms (lock taken in % tries) to replay the last % logged writes',
        waited, done.held_ms, done.tries, done.replayed;
END
$$;

-- Rebuilds the step state online: step_state_enable_concurrently() of the schema it mirrors.
CREATE PROCEDURE tasker_core.step_state_rebuild_concurrently(lock_wait interval DEFAULT '20ms')
LANGUAGE plpgsql
AS $$
BEGIN
    CALL tasker_core.step_state_enable_concurrently(tasker_core.step_state_schema(), lock_wait);
END
$$;

-- The schema of the tables the step state mirrors; 55000 when it is not enabled.
CREATE FUNCTION tasker_core.step_state_schema()
RETURNS name
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found_schema name;
BEGIN
    SELECT n.nspname INTO found_schema FROM tasker_core.step_state_source s
      JOIN pg_catalog.pg_class c ON c.oid = s.steps JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace;
    IF found_schema IS NULL THEN
        RAISE EXCEPTION 'the step state is not enabled' USING ERRCODE = '55000',
            HINT = 'Run CALL tasker_core.step_state_enable_concurrently(''public'') with the schema of the Tasker tables.';
    END IF;
    RETURN found_schema;
END
$$;

-- Stops mirroring: removes the maintenance triggers and empties step_state.
CREATE FUNCTION tasker_core.step_state_disable(schema name DEFAULT 'public')
RETURNS TABLE (object text, action text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tbl name;
    g record;
    mirrored regclass := (SELECT s.steps FROM tasker_core.step_state_source s);
BEGIN
    IF mirrored IS NOT NULL AND EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = mirrored)
       AND mirrored IS DISTINCT FROM pg_catalog.to_regclass(pg_catalog.format('%I.tasker_workflow_steps', schema)) THEN
        RAISE EXCEPTION 'the step state mirrors %, not the Tasker tables of schema %', mirrored, pg_catalog.quote_ident(schema)
            USING ERRCODE = '55000', HINT = 'Pass the schema of the mirrored tables; nothing was changed.';
    END IF;
    DELETE FROM tasker_core.step_state_source;
    IF mirrored IS NOT NULL AND EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = mirrored)
       AND (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = mirrored)
           <> (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = 'tasker_core.step_state'::pg_catalog.regclass) THEN
        EXECUTE pg_catalog.format('REVOKE ALL ON tasker_core.step_state FROM %s',
                                  (SELECT c.relowner::pg_catalog.regrole FROM pg_catalog.pg_class c WHERE c.oid = mirrored));
    END IF;
    FOR tbl IN SELECT * FROM tasker_core.step_state_tables() LOOP
        CONTINUE WHEN pg_catalog.to_regclass(pg_catalog.format('%I.%I', schema, tbl)) IS NULL;
        FOR g IN SELECT * FROM tasker_core.step_state_triggers() LOOP
            IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                        WHERE t.tgrelid = pg_catalog.format('%I.%I', schema, tbl)::pg_catalog.regclass
                          AND t.tgname = g.trigger_name) THEN
                EXECUTE pg_catalog.format('DROP TRIGGER %I ON %I.%I', g.trigger_name, schema, tbl);
                object := pg_catalog.format('trigger %I on %I.%I', g.trigger_name, schema, tbl);
                action := 'removed';
                RETURN NEXT;
            END IF;
        END LOOP;
    END LOOP;
    DELETE FROM tasker_core.step_state;
    DELETE FROM tasker_core.step_state_log;
    object := 'tasker_core.step_state';
    action := 'emptied';
    RETURN NEXT;
END
$$;

-- Only the maintenance trigger (running as the extension owner) refreshes rows; rebuilding and
-- verifying is for the extension owner or a superuser.
REVOKE ALL ON FUNCTION tasker_core.step_state_refresh(bigint[], oid, oid, oid, oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION tasker_core.step_state_refresh_tasks(bigint[], oid, oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION tasker_core.step_state_refresh_transitions(bigint[], oid, oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION tasker_core.step_state_lock_named(integer[], oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION tasker_core.step_state_rebuild() FROM PUBLIC;
-- It reads the Tasker tables as their owner (pg::sandbox): the DBA's, as rebuild is.
REVOKE ALL ON FUNCTION tasker_core.step_state_verify() FROM PUBLIC;
REVOKE ALL ON FUNCTION tasker_core.step_state_check_snapshot(boolean, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION tasker_core.step_state_build_online() FROM PUBLIC;
REVOKE ALL ON FUNCTION tasker_core.step_state_check_top_level() FROM PUBLIC;
REVOKE ALL ON FUNCTION tasker_core.step_state_tables_of(name) FROM PUBLIC;
REVOKE ALL ON FUNCTION tasker_core.step_state_install_triggers(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION tasker_core.step_state_record(name) FROM PUBLIC;
REVOKE ALL ON FUNCTION tasker_core.step_state_prepare_online(name) FROM PUBLIC;
REVOKE ALL ON FUNCTION tasker_core.step_state_install_online(regclass, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION tasker_core.step_state_capture() FROM PUBLIC;
REVOKE ALL ON FUNCTION tasker_core.step_state_wait_for_writers() FROM PUBLIC;
REVOKE ALL ON FUNCTION tasker_core.step_state_replay() FROM PUBLIC;
REVOKE ALL ON FUNCTION tasker_core.step_state_catch_up() FROM PUBLIC;
REVOKE ALL ON FUNCTION tasker_core.step_state_finish_online(interval) FROM PUBLIC;
REVOKE ALL ON PROCEDURE tasker_core.step_state_enable_concurrently(name, interval) FROM PUBLIC;
REVOKE ALL ON PROCEDURE tasker_core.step_state_rebuild_concurrently(interval) FROM PUBLIC;
-- Firing a trigger needs no EXECUTE right, attaching one does: nobody may attach these to
-- tables of their own (the definer's rights are meant for the mirrored tables only).
REVOKE ALL ON FUNCTION tasker_core.step_state_sync() FROM PUBLIC;
REVOKE ALL ON FUNCTION tasker_core.step_state_watch() FROM PUBLIC;
REVOKE ALL ON FUNCTION tasker_core.step_state_enable(name) FROM PUBLIC;
REVOKE ALL ON FUNCTION tasker_core.step_state_disable(name) FROM PUBLIC;
