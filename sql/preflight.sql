-- tasker_core: preflight(), what tasker_core will find in a Tasker database before enable()
-- (docs/adoption.md). Hand-written; loaded into the install script by extension_sql_file!
-- (src/lib.rs).
--
-- One row per check: name, status (ok / warn / fail), detail: what was found (counts and one example),
-- and what to do. Read-only: it takes no lock but the ACCESS SHARE of the tables it reads (which
-- blocks no Rails write) and writes nothing, so it may run on a primary or a hot standby.
-- SECURITY INVOKER: it sees what the caller may read; a table it may not read is reported as
-- such, not skipped in silence.

CREATE FUNCTION tasker_core.preflight(schema name DEFAULT 'public')
RETURNS TABLE (name text, status text, detail text, action text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    n bigint;
    ex text;
    missing text[] := '{}';
    unreadable text[] := '{}';
    rel regclass;
    steps regclass;
    transitions regclass;
    edges regclass;
    tasks regclass;
    task_transitions regclass;
BEGIN
    -- The Tasker tables: present as plain tables, readable by the caller.
    FOR r IN SELECT t.table_name FROM tasker_core.step_state_tables() t(table_name)
             UNION ALL VALUES ('tasker_named_tasks'::name), ('tasker_task_namespaces') LOOP
        rel := pg_catalog.to_regclass(pg_catalog.format('%I.%I', schema, r.table_name));
        IF rel IS NULL OR (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = rel) <> 'r' THEN
            missing := missing || r.table_name::text;
        ELSIF NOT pg_catalog.has_table_privilege(rel, 'SELECT') THEN
            unreadable := unreadable || r.table_name::text;
        END IF;
    END LOOP;
    name := 'tables';
    IF pg_catalog.cardinality(missing) > 0 THEN
        status := 'fail';
        detail := pg_catalog.format('not plain tables in schema %I: %s', schema, pg_catalog.array_to_string(missing, ', '));
        action := 'load the Tasker schema (Rails'' structure.sql) or name the schema that holds it';
        RETURN NEXT;
        RETURN;
    END IF;
    IF pg_catalog.cardinality(unreadable) > 0 THEN
        status := 'fail';
        detail := pg_catalog.format('%s may not read: %s', current_user, pg_catalog.array_to_string(unreadable, ', '));
        action := 'run preflight() as the Tasker tables'' owner or a role that may read them';
        RETURN NEXT;
        RETURN;
    END IF;
    status := 'ok';
    detail := pg_catalog.format('the eight Tasker tables are in schema %I', schema);
    action := NULL;
    RETURN NEXT;
    steps := pg_catalog.format('%I.tasker_workflow_steps', schema)::pg_catalog.regclass;
    transitions := pg_catalog.format('%I.tasker_workflow_step_transitions', schema)::pg_catalog.regclass;
    edges := pg_catalog.format('%I.tasker_workflow_step_edges', schema)::pg_catalog.regclass;
    tasks := pg_catalog.format('%I.tasker_tasks', schema)::pg_catalog.regclass;
    task_transitions := pg_catalog.format('%I.tasker_task_transitions', schema)::pg_catalog.regclass;

    -- The columns the functions and the step state read, with their types.
    SELECT pg_catalog.string_agg(pg_catalog.format('%s.%s (%s)', c.table_name, c.column_name,
                                 COALESCE(pg_catalog.format_type(a.atttypid, NULL), 'missing')), ', ')
      INTO ex
      FROM tasker_core.step_state_columns() c
      LEFT JOIN pg_catalog.pg_attribute a
        ON a.attrelid = pg_catalog.format('%I.%I', schema, c.table_name)::pg_catalog.regclass
       AND a.attname = c.column_name AND NOT a.attisdropped
     WHERE a.atttypid IS NULL OR pg_catalog.format_type(a.atttypid, NULL) <> c.column_type;
    name := 'columns';
    status := CASE WHEN ex IS NULL THEN 'ok' ELSE 'fail' END;
    detail := COALESCE('missing or of another type: ' || ex, 'every column the functions read, of the expected type');
    action := CASE WHEN ex IS NULL THEN NULL ELSE 'bring the tables to the Tasker schema (docs/compatibility.md lists the columns)' END;
    RETURN NEXT;

    -- One most_recent transition per owner, proven by a unique index (by meaning).
    FOR r IN SELECT * FROM (VALUES ('step', transitions, 'workflow_step_id'::name), ('task', task_transitions, 'task_id')) v(kind, rel, owner) LOOP
        name := r.kind || ' most_recent index';
        IF tasker_core.most_recent_index(r.rel, r.owner) IS NULL THEN
            status := 'warn';
            detail := pg_catalog.format('%s has no valid unique index allowing one most_recent row per %s', r.rel, r.owner);
            action := pg_catalog.format('CREATE UNIQUE INDEX ON %s (%I, most_recent) WHERE (most_recent = true) (as Rails ships it); without it the step state cannot be enabled', r.rel, r.owner);
        ELSE
            status := 'ok';
            detail := pg_catalog.format('%s', tasker_core.most_recent_index(r.rel, r.owner)::pg_catalog.regclass);
            action := NULL;
        END IF;
        RETURN NEXT;
    END LOOP;

    -- The rows: transition histories (most_recent flags, state names, legal paths) and the step
    -- edges (self-loops, across tasks, cycles), read in Rust with the caller's rights
    -- (src/pg/preflight.rs).
    RETURN QUERY SELECT d.name, d.status, d.detail, d.action FROM tasker_core.preflight_data(schema::text) d;

    -- What would break writes or exactness.
    SELECT pg_catalog.count(*), pg_catalog.string_agg(DISTINCT p.pubname::text, ', ')
      INTO n, ex
      FROM pg_catalog.pg_publication p
     WHERE p.puballtables
        OR EXISTS (SELECT 1 FROM pg_catalog.pg_publication_rel pr JOIN pg_catalog.pg_class c ON c.oid = pr.prrelid
                    WHERE pr.prpubid = p.oid AND c.relnamespace = 'tasker_core'::pg_catalog.regnamespace);
    name := 'publications';
    status := CASE WHEN n = 0 THEN 'ok' ELSE 'warn' END;
    detail := CASE WHEN n = 0 THEN 'no publication includes the extension''s tables' ELSE pg_catalog.format('publications that include tasker_core''s tables: %s', ex) END;
    action := CASE WHEN n = 0 THEN NULL ELSE 'a subscriber never uses the step state it receives (it rebuilds its own); publish the Tasker tables only (docs/replication.md)' END;
    RETURN NEXT;

    SELECT pg_catalog.count(*) INTO n FROM pg_catalog.pg_subscription s
      JOIN pg_catalog.pg_database d ON d.oid = s.subdbid WHERE d.datname = pg_catalog.current_database();
    name := 'subscriptions';
    status := CASE WHEN n = 0 THEN 'ok' ELSE 'warn' END;
    detail := pg_catalog.format('%s logical replication subscriptions in this database', n);
    action := CASE WHEN n = 0 THEN NULL ELSE 'the step state cannot be kept here (apply workers fire no statement triggers): the read functions will read the Tasker tables' END;
    RETURN NEXT;

    name := 'session_replication_role';
    status := CASE WHEN pg_catalog.current_setting('session_replication_role') = 'origin' THEN 'ok' ELSE 'warn' END;
    detail := pg_catalog.current_setting('session_replication_role');
    action := CASE WHEN status = 'ok' THEN NULL ELSE 'under replica, ordinary triggers (the guards) do not fire; the step state''s are ENABLE ALWAYS' END;
    RETURN NEXT;

    SELECT pg_catalog.count(*), pg_catalog.string_agg(pg_catalog.format('%s on %s', t.tgname, t.tgrelid::pg_catalog.regclass), ', ' ORDER BY t.tgname)
      INTO n, ex
      FROM pg_catalog.pg_trigger t
      JOIN pg_catalog.pg_proc f ON f.oid = t.tgfoid
     WHERE t.tgrelid IN (steps, transitions, edges, tasks, task_transitions,
                         pg_catalog.format('%I.tasker_named_steps', schema)::pg_catalog.regclass)
       AND NOT t.tgisinternal
       AND f.pronamespace <> 'tasker_core'::pg_catalog.regnamespace;
    name := 'other triggers';
    status := CASE WHEN n = 0 THEN 'ok' ELSE 'warn' END;
    detail := COALESCE('triggers of others on the Tasker tables: ' || ex, 'no trigger but tasker_core''s on the Tasker tables');
    action := CASE WHEN n = 0 THEN NULL ELSE 'check they do not write the Tasker tables behind the guards (a trigger that changes a transition row is judged like any writer)' END;
    RETURN NEXT;

    -- Rails' functions and view, and who may switch them.
    FOR r IN SELECT s.object, s.kind, s.state FROM tasker_core.status(schema) s WHERE s.kind IN ('function', 'view') LOOP
        name := r.kind || ' ' || r.object;
        SELECT CASE r.kind WHEN 'function' THEN (SELECT p.proowner::pg_catalog.regrole::text || ' ' || l.lanname
                                                   FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
                                                  WHERE p.oid = pg_catalog.to_regprocedure(r.object))
                           ELSE (SELECT c.relowner::pg_catalog.regrole::text FROM pg_catalog.pg_class c
                                  WHERE c.oid = pg_catalog.to_regclass(r.object)) END INTO ex;
        IF r.state = 'missing' THEN
            status := 'warn';
            detail := 'missing';
            action := 'enable() skips it (Rails'' migrations create it)';
        ELSIF r.state = 'native' THEN
            status := 'ok';
            detail := 'already native (tasker_core enabled); owner ' || ex;
            action := NULL;
        ELSIF r.kind = 'function' AND pg_catalog.split_part(ex, ' ', 2) NOT IN ('plpgsql', 'sql') THEN
            status := 'warn';
            detail := 'not Rails'' definition: owner and language ' || ex;
            action := 'something else replaced it; enable() keeps whatever is there and disable() puts it back';
        ELSE
            status := 'ok';
            detail := 'Rails'' definition; owner ' || pg_catalog.split_part(ex, ' ', 1);
            action := 'enable() must run as this owner (or a member of it) or a superuser';
        END IF;
        RETURN NEXT;
    END LOOP;

    -- Privileges: writers need UPDATE for the guards' row locks; CREATE on the Tasker schema
    -- or public for others than the owner is the search_path risk (docs/security.md).
    SELECT pg_catalog.count(*), pg_catalog.string_agg(a.rolname::text, ', ' ORDER BY a.rolname)
      INTO n, ex
      FROM pg_catalog.pg_roles a
     WHERE a.rolname !~ '^pg_' AND NOT a.rolsuper
       AND pg_catalog.has_table_privilege(a.oid, transitions, 'INSERT')
       AND NOT pg_catalog.has_table_privilege(a.oid, steps, 'UPDATE');
    name := 'privileges: writers';
    status := CASE WHEN n = 0 THEN 'ok' ELSE 'warn' END;
    detail := COALESCE('roles that may insert transitions but not update steps: ' || ex, 'every role that writes transitions may also lock the rows the guards lock');
    action := CASE WHEN n = 0 THEN NULL ELSE 'GRANT UPDATE ON the Tasker tables to them: the guards lock rows (SELECT ... FOR UPDATE), which needs it' END;
    RETURN NEXT;

    SELECT pg_catalog.count(*), pg_catalog.string_agg(pg_catalog.format('%s on %s', a.rolname, s.nspname), ', ' ORDER BY a.rolname, s.nspname)
      INTO n, ex
      FROM pg_catalog.pg_roles a
      CROSS JOIN pg_catalog.pg_namespace s
     WHERE s.nspname IN (schema, 'public') AND a.rolname !~ '^pg_' AND NOT a.rolsuper
       AND a.oid <> s.nspowner
       AND pg_catalog.has_schema_privilege(a.oid, s.oid, 'CREATE');
    name := 'privileges: CREATE on the schema';
    status := CASE WHEN n = 0 THEN 'ok' ELSE 'warn' END;
    detail := COALESCE('roles other than the owner that may create objects: ' || ex, 'only the schemas'' owners may create objects in them');
    action := CASE WHEN n = 0 THEN NULL ELSE 'REVOKE CREATE ON SCHEMA from them (and PUBLIC): an object they plant could run inside another role''s unqualified query (docs/security.md)' END;
    RETURN NEXT;

    -- The step state and the read path each function would take now.
    SELECT s.valid, s.reason INTO r FROM tasker_core.step_state_source s;
    name := 'step state';
    status := CASE WHEN r IS NULL OR r.valid THEN 'ok' ELSE 'warn' END;
    detail := CASE WHEN r IS NULL THEN 'not enabled' WHEN r.valid THEN 'enabled and valid' ELSE 'enabled but not valid: ' || COALESCE(r.reason, '') END;
    action := CASE WHEN r IS NULL THEN 'step_state_enable() makes the read functions read a per-step copy (docs/step_state.md)'
                   WHEN r.valid THEN NULL ELSE 'step_state_rebuild()' END;
    RETURN NEXT;

    FOR r IN SELECT * FROM tasker_core.read_paths(schema::text) LOOP
        name := 'read path ' || r.function_name;
        status := 'ok';
        detail := r.path || COALESCE(': ' || r.reason, '');
        action := NULL;
        RETURN NEXT;
    END LOOP;
END
$$;
