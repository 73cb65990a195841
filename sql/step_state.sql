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
    fingerprint text
);
REVOKE ALL ON tasker_core.step_state_source FROM PUBLIC;
GRANT SELECT ON tasker_core.step_state_source TO PUBLIC;

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
BEGIN
    UPDATE tasker_core.step_state_source SET valid = false, reason = why, changed_at = pg_catalog.now() WHERE valid;
    IF FOUND THEN
        RAISE WARNING 'tasker_core: the derived step state is no longer used: %', why
            USING HINT = 'The read functions read the Tasker tables until SELECT tasker_core.step_state_rebuild() runs.';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION tasker_core.step_state_invalidate(text) FROM PUBLIC;

-- The maintenance trigger function (statement level, with transition tables): finds the steps a
-- statement changed and recomputes their step_state rows (tasker_core.step_state_refresh).
-- SECURITY DEFINER: writers of the Tasker tables get no privilege on tasker_core.step_state.
CREATE FUNCTION tasker_core.step_state_sync()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    src tasker_core.step_state_source;
    ids bigint[];
    named integer[];
BEGIN
    SELECT * INTO src FROM tasker_core.step_state_source s WHERE s.valid;
    IF NOT FOUND THEN
        -- Under REPEATABLE READ the snapshot may predate a rebuild that committed since: the
        -- copy is valid for everyone else but would miss this write. Refuse (40001) then.
        IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
            PERFORM tasker_core.step_state_check_not_missed();
        END IF;
        RETURN NULL;
    END IF;
    IF TG_RELID NOT IN (src.steps, src.named_steps, src.transitions, src.edges, src.tasks, src.task_transitions) THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM tasker_core.step_state_invalidate(pg_catalog.format('%s was truncated', TG_RELID::pg_catalog.regclass));
        RETURN NULL;
    END IF;
    -- Each transition table is named only in the branch of the event that has it.
    IF TG_RELID = src.steps THEN
        IF TG_OP = 'INSERT' THEN
            ids := ARRAY(SELECT n.workflow_step_id FROM new_rows n);
        ELSIF TG_OP = 'DELETE' THEN
            ids := ARRAY(SELECT o.workflow_step_id FROM old_rows o);
        ELSE
            ids := ARRAY(SELECT c.workflow_step_id FROM (
                (SELECT workflow_step_id, task_id, named_step_id, retryable, retry_limit, in_process, processed,
                        attempts, last_attempted_at, backoff_request_seconds, created_at FROM new_rows
                 EXCEPT ALL
                 SELECT workflow_step_id, task_id, named_step_id, retryable, retry_limit, in_process, processed,
                        attempts, last_attempted_at, backoff_request_seconds, created_at FROM old_rows)
                UNION ALL
                (SELECT workflow_step_id, task_id, named_step_id, retryable, retry_limit, in_process, processed,
                        attempts, last_attempted_at, backoff_request_seconds, created_at FROM old_rows
                 EXCEPT ALL
                 SELECT workflow_step_id, task_id, named_step_id, retryable, retry_limit, in_process, processed,
                        attempts, last_attempted_at, backoff_request_seconds, created_at FROM new_rows)) c);
        END IF;
    ELSIF TG_RELID = src.transitions THEN
        IF TG_OP = 'INSERT' THEN
            ids := ARRAY(SELECT n.workflow_step_id FROM new_rows n);
        ELSIF TG_OP = 'DELETE' THEN
            ids := ARRAY(SELECT o.workflow_step_id FROM old_rows o);
        ELSE
            ids := ARRAY(SELECT c.workflow_step_id FROM (
                (SELECT id, workflow_step_id, to_state, most_recent, created_at FROM new_rows
                 EXCEPT ALL SELECT id, workflow_step_id, to_state, most_recent, created_at FROM old_rows)
                UNION ALL
                (SELECT id, workflow_step_id, to_state, most_recent, created_at FROM old_rows
                 EXCEPT ALL SELECT id, workflow_step_id, to_state, most_recent, created_at FROM new_rows)) c);
        END IF;
        -- Transitions decide only the state columns (and the children's done_parents where a
        -- step became done or stopped being done): the cheaper refresh of just those.
        IF pg_catalog.cardinality(ids) > 0 THEN
            PERFORM tasker_core.step_state_refresh_transitions(ids, src.transitions::pg_catalog.oid, src.edges::pg_catalog.oid);
        END IF;
        RETURN NULL;
    ELSIF TG_RELID = src.edges THEN
        IF TG_OP = 'INSERT' THEN
            ids := ARRAY(SELECT n.to_step_id FROM new_rows n);
        ELSIF TG_OP = 'DELETE' THEN
            ids := ARRAY(SELECT o.to_step_id FROM old_rows o);
        ELSE
            ids := ARRAY(SELECT c.to_step_id FROM (
                (SELECT id, from_step_id, to_step_id FROM new_rows EXCEPT ALL SELECT id, from_step_id, to_step_id FROM old_rows)
                UNION ALL
                (SELECT id, from_step_id, to_step_id FROM old_rows EXCEPT ALL SELECT id, from_step_id, to_step_id FROM new_rows)) c);
        END IF;
    ELSIF TG_RELID = src.tasks OR TG_RELID = src.task_transitions THEN
        IF TG_OP = 'INSERT' THEN
            ids := ARRAY(SELECT n.task_id FROM new_rows n);
        ELSIF TG_OP = 'DELETE' THEN
            ids := ARRAY(SELECT o.task_id FROM old_rows o);
        ELSIF TG_RELID = src.tasks THEN
            ids := ARRAY(SELECT c.task_id FROM (
                (SELECT task_id, named_task_id FROM new_rows EXCEPT ALL SELECT task_id, named_task_id FROM old_rows)
                UNION ALL
                (SELECT task_id, named_task_id FROM old_rows EXCEPT ALL SELECT task_id, named_task_id FROM new_rows)) c);
        ELSE
            ids := ARRAY(SELECT c.task_id FROM (
                (SELECT id, task_id, to_state, most_recent, created_at FROM new_rows
                 EXCEPT ALL SELECT id, task_id, to_state, most_recent, created_at FROM old_rows)
                UNION ALL
                (SELECT id, task_id, to_state, most_recent, created_at FROM old_rows
                 EXCEPT ALL SELECT id, task_id, to_state, most_recent, created_at FROM new_rows)) c);
        END IF;
        IF pg_catalog.cardinality(ids) > 0 THEN
            PERFORM tasker_core.step_state_refresh_tasks(ids, src.tasks::pg_catalog.oid, src.task_transitions::pg_catalog.oid);
        END IF;
        RETURN NULL;
    ELSIF TG_RELID = src.named_steps THEN
        IF TG_OP = 'INSERT' THEN
            named := ARRAY(SELECT n.named_step_id FROM new_rows n);
        ELSIF TG_OP = 'DELETE' THEN
            named := ARRAY(SELECT o.named_step_id FROM old_rows o);
        ELSE
            named := ARRAY(SELECT c.named_step_id FROM (
                (SELECT named_step_id, name FROM new_rows EXCEPT ALL SELECT named_step_id, name FROM old_rows)
                UNION ALL
                (SELECT named_step_id, name FROM old_rows EXCEPT ALL SELECT named_step_id, name FROM new_rows)) c);
        END IF;
        IF pg_catalog.cardinality(named) = 0 THEN
            RETURN NULL;
        END IF;
        -- A step inserted (or re-pointed) concurrently with this rename must not keep the old
        -- name. Its foreign key check holds FOR KEY SHARE on the named step, which FOR UPDATE
        -- waits for (then, under READ COMMITTED, the query below sees that step); a later one
        -- waits for this transaction. Under REPEATABLE READ this snapshot could not see such a
        -- step, so a rename there marks the copy stale instead (renames are rare).
        IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
            PERFORM tasker_core.step_state_invalidate(pg_catalog.format('a named step of %s was renamed under %s', TG_RELID::pg_catalog.regclass,
                                                             pg_catalog.current_setting('transaction_isolation')));
            RETURN NULL;
        END IF;
        PERFORM tasker_core.step_state_lock_named(named, src.named_steps::pg_catalog.oid);
        ids := ARRAY(SELECT s.workflow_step_id FROM tasker_core.step_state s WHERE s.named_step_id = ANY(named));
    ELSE
        RETURN NULL;
    END IF;
    IF pg_catalog.cardinality(ids) > 0 THEN
        PERFORM tasker_core.step_state_refresh(ids, src.steps::pg_catalog.oid, src.named_steps::pg_catalog.oid,
                                                src.transitions::pg_catalog.oid, src.edges::pg_catalog.oid);
    END IF;
    RETURN NULL;
END
$$;

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
    SELECT * INTO src FROM tasker_core.step_state_source s WHERE s.valid;
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
    SELECT * INTO src FROM tasker_core.step_state_source s WHERE s.valid;
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

-- Starts mirroring the Tasker tables of `schema` into step_state: installs the maintenance
-- triggers (ENABLE ALWAYS: they fire for replicas and bulk loads too) and builds every row.
CREATE FUNCTION tasker_core.step_state_enable(schema name DEFAULT 'public')
RETURNS TABLE (object text, action text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    src tasker_core.step_state_source;
    tbl name;
    g record;
    why text;
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
    -- Not valid while the triggers are (re)installed and the rows rebuilt.
    INSERT INTO tasker_core.step_state_source AS s (steps, named_steps, transitions, edges, tasks, task_transitions, valid, reason)
    VALUES (pg_catalog.format('%I.tasker_workflow_steps', schema)::pg_catalog.regclass, pg_catalog.format('%I.tasker_named_steps', schema)::pg_catalog.regclass,
            pg_catalog.format('%I.tasker_workflow_step_transitions', schema)::pg_catalog.regclass,
            pg_catalog.format('%I.tasker_workflow_step_edges', schema)::pg_catalog.regclass, pg_catalog.format('%I.tasker_tasks', schema)::pg_catalog.regclass,
            pg_catalog.format('%I.tasker_task_transitions', schema)::pg_catalog.regclass, false, 'being built')
    ON CONFLICT (only_row) DO UPDATE SET valid = false, reason = 'being rebuilt', changed_at = pg_catalog.now()
    RETURNING * INTO src;
    FOR tbl IN SELECT * FROM tasker_core.step_state_tables() LOOP
        FOR g IN SELECT * FROM tasker_core.step_state_triggers() LOOP
            object := pg_catalog.format('trigger %I on %I.%I', g.trigger_name, schema, tbl);
            IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = pg_catalog.format('%I.%I', schema, tbl)::pg_catalog.regclass
                                                     AND t.tgname = g.trigger_name) THEN
                EXECUTE pg_catalog.format('DROP TRIGGER %I ON %I.%I', g.trigger_name, schema, tbl);
                action := 'reinstalled';
            ELSE
                action := 'installed';
            END IF;
            EXECUTE pg_catalog.format('CREATE TRIGGER %I AFTER %s ON %I.%I %s EXECUTE FUNCTION tasker_core.step_state_sync()',
                           g.trigger_name, g.event, schema, tbl, g.referencing);
            EXECUTE pg_catalog.format('ALTER TABLE %I.%I ENABLE ALWAYS TRIGGER %I', schema, tbl, g.trigger_name);
            RETURN NEXT;
        END LOOP;
    END LOOP;
    -- The maintenance works with the Tasker tables' owner's rights (src/pg/sandbox.rs): that
    -- role writes the copy of its own rows.
    EXECUTE pg_catalog.format('GRANT SELECT, INSERT, UPDATE, DELETE ON tasker_core.step_state TO %s',
                              (SELECT c.relowner::pg_catalog.regrole FROM pg_catalog.pg_class c WHERE c.oid = src.steps));
    why := tasker_core.step_state_problem(src);
    IF why IS NOT NULL THEN
        RAISE EXCEPTION 'cannot enable the step state: %', why USING ERRCODE = '55000';
    END IF;
    object := 'tasker_core.step_state';
    action := pg_catalog.format('built (%s steps)', tasker_core.step_state_rebuild());
    RETURN NEXT;
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
REVOKE ALL ON FUNCTION tasker_core.step_state_check_not_missed() FROM PUBLIC;
-- Firing a trigger needs no EXECUTE right, attaching one does: nobody may attach these to
-- tables of their own (the definer's rights are meant for the mirrored tables only).
REVOKE ALL ON FUNCTION tasker_core.step_state_sync() FROM PUBLIC;
REVOKE ALL ON FUNCTION tasker_core.step_state_watch() FROM PUBLIC;
REVOKE ALL ON FUNCTION tasker_core.step_state_enable(name) FROM PUBLIC;
REVOKE ALL ON FUNCTION tasker_core.step_state_disable(name) FROM PUBLIC;
