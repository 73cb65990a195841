-- tasker_core: switching Rails over to the native functions, and back.
-- Hand-written; loaded into the install script by extension_sql_file! (src/lib.rs).
--
-- Every function here runs with search_path = pg_catalog, pg_temp and names the extension's
-- own objects and the Rails schema's explicitly: nothing a user creates (a function, an
-- operator, a type, a table in a schema on the caller's path) is ever picked up inside a
-- DBA's call (docs/security.md). Identifiers in dynamic SQL are quoted with pg_catalog.format('%I');
-- no SQL is built from values.

GRANT USAGE ON SCHEMA tasker_core TO PUBLIC;

-- The drop-in functions: name, identity arguments, and the call that forwards the arguments.
CREATE FUNCTION tasker_core.drop_in_functions()
RETURNS TABLE (function_name name, identity_args text, call_args text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    VALUES ('get_step_readiness_status'::name,        'bigint, bigint[]', 'input_task_id, step_ids'),
           ('get_step_readiness_status_batch'::name,  'bigint[]',         'input_task_ids'),
           ('get_task_execution_context'::name,       'bigint',           'input_task_id'),
           ('get_task_execution_contexts_batch'::name,'bigint[]',         'input_task_ids'),
           ('calculate_dependency_levels'::name,      'bigint',           'input_task_id'),
           ('get_system_health_counts_v01'::name,     '',                 ''),
           ('get_analytics_metrics_v01'::name,        'timestamp with time zone', 'since_timestamp'),
           ('get_slowest_steps_v01'::name,            'timestamp with time zone, integer, text, text, text',
                                                      'since_timestamp, limit_count, namespace_filter, task_name_filter, version_filter'),
           ('get_slowest_tasks_v01'::name,            'timestamp with time zone, integer, text, text, text',
                                                      'since_timestamp, limit_count, namespace_filter, task_name_filter, version_filter')
$$;

-- Where enable() keeps Rails' own definition of a function it replaced: a copy under this name
-- in the same schema, owned by the same role. A copy is an ordinary function, so it travels
-- with every dump, including the schema-only dumps Rails makes for db/structure.sql, and
-- disable() can always put the original back.
CREATE FUNCTION tasker_core.saved_name(function_name name)
RETURNS name
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
SET search_path = pg_catalog, pg_temp
AS $$ SELECT (function_name::text || '_before_tasker_core')::name $$;

-- Is `target` currently a tasker_core wrapper of `native`? On PostgreSQL 14+ the wrapper's
-- SQL-standard body records a dependency on the native function; on 13 the body is a string,
-- which must be exactly the one enable() writes (no pattern match: nothing else may pass).
CREATE FUNCTION tasker_core.is_native_wrapper(target regprocedure, native regprocedure)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = target
                      AND d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.refobjid = native)
        OR EXISTS (SELECT 1 FROM pg_catalog.pg_proc p, pg_catalog.pg_proc n, tasker_core.drop_in_functions() f
                    WHERE p.oid = target AND n.oid = native AND f.function_name = n.proname
                      AND p.prolang = (SELECT l.oid FROM pg_catalog.pg_language l WHERE l.lanname = 'sql')
                      AND p.prosrc = pg_catalog.format('SELECT * FROM tasker_core.%I(%s)', f.function_name, f.call_args))
$$;

-- The guard triggers enable() attaches (sql/guards.sql lists them).
CREATE FUNCTION tasker_core.enable(schema name DEFAULT 'public', functions boolean DEFAULT true, triggers boolean DEFAULT true,
                                   views boolean DEFAULT true, events boolean DEFAULT false)
RETURNS TABLE (object text, action text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f record;
    target regprocedure;
    native regprocedure;
    saved regprocedure;
    body text;
    g record;
    owner oid;
    v record;
    dag_view regclass;
    saved_view text;
BEGIN
    IF pg_catalog.to_regnamespace(pg_catalog.quote_ident(schema)) IS NULL THEN
        RAISE EXCEPTION 'schema "%" does not exist', schema USING ERRCODE = '3F000';
    END IF;
    IF triggers THEN
        -- CREATE TRIGGER locks its table against writers until the commit. Lock all the tables
        -- that get one at once first, giving way to writers: asked one by one, a writer holding
        -- one and waiting for another would deadlock with this transaction (and one of the two
        -- would fail after deadlock_timeout).
        PERFORM tasker_core.lock_briefly(ARRAY(
            SELECT DISTINCT pg_catalog.to_regclass(pg_catalog.format('%I.%I', schema, gt.table_name))
              FROM tasker_core.guard_triggers() gt
             WHERE pg_catalog.to_regclass(pg_catalog.format('%I.%I', schema, gt.table_name)) IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                                WHERE t.tgrelid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', schema, gt.table_name))
                                  AND t.tgname = gt.trigger_name)));
        FOR g IN SELECT * FROM tasker_core.guard_triggers() LOOP
            object := pg_catalog.format('trigger %I on %I.%I', g.trigger_name, schema, g.table_name);
            IF pg_catalog.to_regclass(pg_catalog.format('%I.%I', schema, g.table_name)) IS NULL THEN
                RAISE EXCEPTION 'cannot enable tasker_core triggers: table %.% does not exist', schema, g.table_name
                    USING ERRCODE = '42P01', HINT = 'Run enable() in the schema that holds the Tasker tables, or pass triggers => false.';
            END IF;
            IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                        WHERE t.tgrelid = pg_catalog.format('%I.%I', schema, g.table_name)::pg_catalog.regclass
                          AND t.tgname = g.trigger_name) THEN
                action := 'already installed';
            ELSE
                EXECUTE pg_catalog.format('CREATE TRIGGER %I %s ON %I.%I FOR EACH ROW %s EXECUTE FUNCTION %s',
                                          g.trigger_name, g.events, schema, g.table_name, g.condition, g.function_name);
                action := 'installed';
            END IF;
            RETURN NEXT;
        END LOOP;
    END IF;
    IF events THEN
        -- The event trigger reads the steps and tasks a transition belongs to with the rights of
        -- the transitions table's owner (src/pg/events.rs): that role must be able to.
        FOR g IN SELECT t.table_name, x.sibling
                   FROM tasker_core.event_triggers() t,
                        LATERAL (SELECT pg_catalog.unnest(CASE WHEN t.table_name = 'tasker_task_transitions'
                                     THEN ARRAY['tasker_tasks', 'tasker_named_tasks']::name[]
                                     ELSE ARRAY['tasker_workflow_steps', 'tasker_named_steps', 'tasker_workflow_step_edges']::name[] END)) x(sibling)
        LOOP
            IF pg_catalog.to_regclass(pg_catalog.format('%I.%I', schema, g.table_name)) IS NULL
               OR pg_catalog.to_regclass(pg_catalog.format('%I.%I', schema, g.sibling)) IS NULL THEN
                RAISE EXCEPTION 'cannot enable tasker_core events: table %.% does not exist', schema,
                    CASE WHEN pg_catalog.to_regclass(pg_catalog.format('%I.%I', schema, g.table_name)) IS NULL THEN g.table_name ELSE g.sibling END
                    USING ERRCODE = '42P01', HINT = 'Run enable() in the schema that holds the Tasker tables.';
            END IF;
            SELECT c.relowner INTO owner FROM pg_catalog.pg_class c
             WHERE c.oid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', schema, g.table_name));
            IF NOT pg_catalog.has_table_privilege(owner, pg_catalog.to_regclass(pg_catalog.format('%I.%I', schema, g.sibling)), 'SELECT') THEN
                RAISE EXCEPTION 'cannot enable tasker_core events: %, the owner of %.%, may not read %.%',
                    owner::pg_catalog.regrole, schema, g.table_name, schema, g.sibling
                    USING ERRCODE = '42501', HINT = 'The event trigger reads the steps and tasks with that role''s rights; grant it SELECT.';
            END IF;
        END LOOP;
        PERFORM tasker_core.lock_briefly(ARRAY(
            SELECT pg_catalog.to_regclass(pg_catalog.format('%I.%I', schema, et.table_name))
              FROM tasker_core.event_triggers() et
             WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                                WHERE t.tgrelid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', schema, et.table_name))
                                  AND t.tgname = et.trigger_name)));
        FOR g IN SELECT * FROM tasker_core.event_triggers() LOOP
            object := pg_catalog.format('trigger %I on %I.%I', g.trigger_name, schema, g.table_name);
            IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                        WHERE t.tgrelid = pg_catalog.format('%I.%I', schema, g.table_name)::pg_catalog.regclass
                          AND t.tgname = g.trigger_name) THEN
                action := 'already installed';
            ELSE
                EXECUTE pg_catalog.format('CREATE TRIGGER %I AFTER INSERT ON %I.%I REFERENCING NEW TABLE AS new_rows '
                                          'FOR EACH STATEMENT EXECUTE FUNCTION tasker_core.events_capture()',
                                          g.trigger_name, schema, g.table_name);
                action := 'installed';
            END IF;
            RETURN NEXT;
        END LOOP;
    END IF;
    -- Check every view and function before changing any, so enable() is all or nothing.
    IF views THEN
        FOR v IN SELECT * FROM tasker_core.drop_in_views() LOOP
            dag_view := pg_catalog.to_regclass(pg_catalog.format('%I.%I', schema, v.view_name));
            CONTINUE WHEN dag_view IS NULL;
            IF (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = dag_view) <> 'v' THEN
                RAISE EXCEPTION 'cannot enable tasker_core: %.% is not a view', schema, v.view_name USING ERRCODE = '42809',
                    HINT = 'Pass views => false to leave it alone.';
            END IF;
            IF tasker_core.view_columns(dag_view) IS DISTINCT FROM v.columns THEN
                RAISE EXCEPTION 'cannot enable tasker_core: view %.% has other columns than the native view', schema, v.view_name
                    USING ERRCODE = '42P13',
                          DETAIL = pg_catalog.format('%s has (%s); the native view has (%s).', dag_view, tasker_core.view_columns(dag_view), v.columns),
                          HINT = 'Rails and tasker_core disagree on this view; nothing was changed. See docs/compatibility.md.';
            END IF;
            IF NOT tasker_core.is_native_view(dag_view)
               AND NOT pg_catalog.pg_has_role((SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = dag_view), 'USAGE') THEN
                RAISE EXCEPTION 'must be owner of view %', dag_view USING ERRCODE = '42501',
                    HINT = 'Run tasker_core.enable() as the role that owns the Rails view (or a member of it), or pass views => false.';
            END IF;
        END LOOP;
    END IF;
    IF functions THEN
        FOR f IN SELECT * FROM tasker_core.drop_in_functions() LOOP
            target := pg_catalog.to_regprocedure(pg_catalog.format('%I.%I(%s)', schema, f.function_name, f.identity_args));
            native := pg_catalog.format('tasker_core.%I(%s)', f.function_name, f.identity_args)::pg_catalog.regprocedure;
            IF target IS NOT NULL AND NOT tasker_core.is_native_wrapper(target, native)
               AND (pg_catalog.pg_get_function_result(target) IS DISTINCT FROM pg_catalog.pg_get_function_result(native)
                    OR pg_catalog.pg_get_function_arguments(target) IS DISTINCT FROM pg_catalog.pg_get_function_arguments(native)) THEN
                RAISE EXCEPTION 'cannot enable tasker_core: %.% has a different signature than the native function', schema, f.function_name
                    USING ERRCODE = '42P13',
                          DETAIL = pg_catalog.format('%s(%s) returns %s; tasker_core.%s(%s) returns %s.',
                                          target, pg_catalog.pg_get_function_arguments(target), pg_catalog.pg_get_function_result(target),
                                          f.function_name, pg_catalog.pg_get_function_arguments(native), pg_catalog.pg_get_function_result(native)),
                          HINT = 'Rails and tasker_core disagree on this function; nothing was changed. See docs/compatibility.md.';
            END IF;
        END LOOP;
    END IF;
    IF views THEN
        FOR v IN SELECT * FROM tasker_core.drop_in_views() LOOP
            object := pg_catalog.format('view %I.%I', schema, v.view_name);
            dag_view := pg_catalog.to_regclass(pg_catalog.format('%I.%I', schema, v.view_name));
            IF dag_view IS NOT NULL AND tasker_core.is_native_view(dag_view) THEN
                action := 'already native';
                RETURN NEXT;
                CONTINUE;
            END IF;
            -- A schema without Rails' view (an older Tasker) is left without one.
            CONTINUE WHEN dag_view IS NULL;
            -- Rails' definition, kept as a view next to it before it is replaced: both created
            -- as the view's owner, sandboxed (tasker_core.define_view_as), so the copy is the
            -- owner's, with no other privileges.
            SELECT c.relowner INTO owner FROM pg_catalog.pg_class c WHERE c.oid = dag_view;
            saved_view := pg_catalog.format('%I.%I', schema, tasker_core.saved_name(v.view_name));
            PERFORM tasker_core.define_view_as(schema, tasker_core.saved_name(v.view_name), pg_catalog.pg_get_viewdef(dag_view), owner);
            EXECUTE pg_catalog.format('COMMENT ON VIEW %s IS %L', saved_view,
                'Rails'' own definition of ' || pg_catalog.format('%I.%I', schema, v.view_name)
                || ', kept by tasker_core.enable(); tasker_core.disable() puts it back.');
            PERFORM tasker_core.define_view_as(schema, v.view_name, pg_catalog.format(v.definition, schema, schema), owner);
            action := 'replaced with native';
            RETURN NEXT;
        END LOOP;
    END IF;
    IF NOT functions THEN
        RETURN;
    END IF;
    FOR f IN SELECT * FROM tasker_core.drop_in_functions() LOOP
        object := pg_catalog.format('%I.%I(%s)', schema, f.function_name, f.identity_args);
        target := pg_catalog.to_regprocedure(object);
        native := pg_catalog.format('tasker_core.%I(%s)', f.function_name, f.identity_args)::pg_catalog.regprocedure;
        IF target IS NOT NULL AND tasker_core.is_native_wrapper(target, native) THEN
            action := 'already native';
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF target IS NOT NULL THEN
            -- Rails' definition, copied next to it (as its owner) before it is replaced.
            SELECT p.proowner INTO owner FROM pg_catalog.pg_proc p WHERE p.oid = target;
            IF NOT pg_catalog.pg_has_role(owner, 'USAGE') THEN
                RAISE EXCEPTION 'must be owner of function %', target USING ERRCODE = '42501',
                    HINT = 'Run tasker_core.enable() as the role that owns the Rails functions (or a member of it).';
            END IF;
            PERFORM tasker_core.redefine_as(target, schema, tasker_core.saved_name(f.function_name), owner);
            saved := pg_catalog.to_regprocedure(pg_catalog.format('%I.%I(%s)', schema, tasker_core.saved_name(f.function_name), f.identity_args));
            EXECUTE pg_catalog.format('COMMENT ON FUNCTION %s IS %L', saved,
                'Rails'' own definition of ' || object || ', kept by tasker_core.enable(); tasker_core.disable() puts it back.');
        END IF;
        IF pg_catalog.current_setting('server_version_num')::int >= 140000 THEN
            body := pg_catalog.format('BEGIN ATOMIC SELECT * FROM tasker_core.%I(%s); END', f.function_name, f.call_args);
        ELSE
            body := pg_catalog.format('AS %L', pg_catalog.format('SELECT * FROM tasker_core.%I(%s)', f.function_name, f.call_args));
        END IF;
        EXECUTE pg_catalog.format('CREATE OR REPLACE FUNCTION %I.%I(%s) RETURNS %s LANGUAGE sql STABLE %s',
                       schema, f.function_name, pg_catalog.pg_get_function_arguments(native),
                       pg_catalog.pg_get_function_result(native), body);
        action := CASE WHEN target IS NULL THEN 'created native' ELSE 'replaced with native' END;
        RETURN NEXT;
    END LOOP;
END
$$;

CREATE FUNCTION tasker_core.disable(schema name DEFAULT 'public')
RETURNS TABLE (object text, action text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f record;
    target regprocedure;
    native regprocedure;
    saved regprocedure;
    g record;
    owner oid;
    saved_owner oid;
    v record;
    dag_view regclass;
    saved_view regclass;
BEGIN
    FOR v IN SELECT * FROM tasker_core.drop_in_views() LOOP
        object := pg_catalog.format('view %I.%I', schema, v.view_name);
        dag_view := pg_catalog.to_regclass(pg_catalog.format('%I.%I', schema, v.view_name));
        CONTINUE WHEN dag_view IS NULL OR NOT tasker_core.is_native_view(dag_view);
        SELECT c.relowner INTO owner FROM pg_catalog.pg_class c WHERE c.oid = dag_view;
        IF NOT pg_catalog.pg_has_role(owner, 'USAGE') THEN
            RAISE EXCEPTION 'must be owner of view %', dag_view USING ERRCODE = '42501',
                HINT = 'Run tasker_core.disable() as the role that owns the Rails view (or a member of it).';
        END IF;
        saved_view := pg_catalog.to_regclass(pg_catalog.format('%I.%I', schema, tasker_core.saved_name(v.view_name)));
        IF saved_view IS NULL THEN
            RAISE EXCEPTION 'cannot restore view %: Rails'' definition (%.%) is gone', dag_view, schema, tasker_core.saved_name(v.view_name)
                USING ERRCODE = '42P01',
                      HINT = 'Recreate the view from the Rails engine''s db/views/tasker_step_dag_relationships_v01.sql, or run disable() after restoring the saved copy from a dump.';
        END IF;
        PERFORM tasker_core.define_view_as(schema, v.view_name, pg_catalog.pg_get_viewdef(saved_view), owner);
        EXECUTE pg_catalog.format('DROP VIEW %s', saved_view);
        action := 'restored';
        RETURN NEXT;
    END LOOP;
    FOR g IN SELECT gt.trigger_name, gt.table_name FROM tasker_core.guard_triggers() gt
             UNION ALL SELECT et.trigger_name, et.table_name FROM tasker_core.event_triggers() et LOOP
        IF pg_catalog.to_regclass(pg_catalog.format('%I.%I', schema, g.table_name)) IS NOT NULL
           AND EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                        WHERE t.tgrelid = pg_catalog.format('%I.%I', schema, g.table_name)::pg_catalog.regclass
                          AND t.tgname = g.trigger_name) THEN
            EXECUTE pg_catalog.format('DROP TRIGGER %I ON %I.%I', g.trigger_name, schema, g.table_name);
            object := pg_catalog.format('trigger %I on %I.%I', g.trigger_name, schema, g.table_name);
            action := 'removed';
            RETURN NEXT;
        END IF;
    END LOOP;
    FOR f IN SELECT * FROM tasker_core.drop_in_functions() ORDER BY 1, 2 LOOP
        object := pg_catalog.format('%I.%I(%s)', schema, f.function_name, f.identity_args);
        target := pg_catalog.to_regprocedure(object);
        native := pg_catalog.to_regprocedure(pg_catalog.format('tasker_core.%I(%s)', f.function_name, f.identity_args));
        saved := pg_catalog.to_regprocedure(pg_catalog.format('%I.%I(%s)', schema, tasker_core.saved_name(f.function_name), f.identity_args));
        IF target IS NULL OR NOT tasker_core.is_native_wrapper(target, native) THEN
            CONTINUE;
        END IF;
        IF saved IS NULL THEN
            EXECUTE pg_catalog.format('DROP FUNCTION %s', target);
            action := 'dropped (enable had created it)';
        ELSE
            SELECT p.proowner INTO owner FROM pg_catalog.pg_proc p WHERE p.oid = target;
            SELECT p.proowner INTO saved_owner FROM pg_catalog.pg_proc p WHERE p.oid = saved;
            IF owner <> saved_owner THEN
                RAISE EXCEPTION 'cannot restore %: the saved definition % is owned by %, the function by %',
                                object, saved, saved_owner::regrole, owner::regrole
                    USING ERRCODE = '42501',
                          HINT = 'The saved copy and the function must have the same owner (ALTER FUNCTION ... OWNER TO).';
            END IF;
            IF NOT pg_catalog.pg_has_role(owner, 'USAGE') THEN
                RAISE EXCEPTION 'must be owner of function %', target USING ERRCODE = '42501',
                    HINT = 'Run tasker_core.disable() as the role that owns the Rails functions (or a member of it).';
            END IF;
            PERFORM tasker_core.redefine_as(saved, schema, f.function_name, owner);
            EXECUTE pg_catalog.format('DROP FUNCTION %s', saved);
            action := 'restored';
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

-- Everything tasker_core attached to any schema, undone: Rails' functions put back, the guard
-- and step-state triggers removed. The DROP EXTENSION guard runs it (src/pg/admin.rs).
CREATE FUNCTION tasker_core.release_all()
RETURNS TABLE (object text, action text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s name;
BEGIN
    FOR s IN
        SELECT DISTINCT n.nspname FROM pg_catalog.pg_trigger t
          JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE t.tgname IN (SELECT g.trigger_name FROM tasker_core.guard_triggers() g)
            OR (t.tgname IN (SELECT e.trigger_name FROM tasker_core.event_triggers() e)
                AND t.tgfoid = 'tasker_core.events_capture()'::pg_catalog.regprocedure)
        UNION
        SELECT n.nspname FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
          JOIN tasker_core.drop_in_functions() f ON f.function_name = p.proname
         WHERE n.nspname <> 'tasker_core'
           AND tasker_core.is_native_wrapper(p.oid::pg_catalog.regprocedure,
                   pg_catalog.to_regprocedure(pg_catalog.format('tasker_core.%I(%s)', f.function_name, f.identity_args)))
        UNION
        SELECT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          JOIN tasker_core.drop_in_views() v ON v.view_name = c.relname
         WHERE c.relkind = 'v' AND tasker_core.is_native_view(c.oid)
        ORDER BY 1
    LOOP
        RETURN QUERY SELECT * FROM tasker_core.disable(s);
    END LOOP;
    IF EXISTS (SELECT 1 FROM tasker_core.step_state_source) THEN
        RETURN QUERY SELECT * FROM tasker_core.step_state_disable(
            (SELECT n.nspname FROM tasker_core.step_state_source src
               JOIN pg_catalog.pg_class c ON c.oid = src.steps JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace));
    END IF;
END
$$;
REVOKE ALL ON FUNCTION tasker_core.release_all() FROM PUBLIC;

CREATE FUNCTION tasker_core.status(schema name DEFAULT 'public')
RETURNS TABLE (object text, kind text, state text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f record;
    g record;
    p record;
    target regprocedure;
BEGIN
    FOR g IN SELECT gt.trigger_name, gt.table_name, 'trigger' AS kind FROM tasker_core.guard_triggers() gt
             UNION ALL SELECT et.trigger_name, et.table_name, 'events' FROM tasker_core.event_triggers() et LOOP
        object := pg_catalog.format('trigger %I on %I.%I', g.trigger_name, schema, g.table_name);
        kind := g.kind;
        state := CASE
            WHEN pg_catalog.to_regclass(pg_catalog.format('%I.%I', schema, g.table_name)) IS NULL THEN 'missing table'
            WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                          WHERE t.tgrelid = pg_catalog.format('%I.%I', schema, g.table_name)::pg_catalog.regclass
                            AND t.tgname = g.trigger_name) THEN 'installed'
            ELSE 'absent' END;
        RETURN NEXT;
    END LOOP;
    FOR f IN SELECT * FROM tasker_core.drop_in_functions() LOOP
        object := pg_catalog.format('%I.%I(%s)', schema, f.function_name, f.identity_args);
        kind := 'function';
        target := pg_catalog.to_regprocedure(object);
        state := CASE
            WHEN target IS NULL THEN 'missing'
            WHEN tasker_core.is_native_wrapper(target, pg_catalog.format('tasker_core.%I(%s)', f.function_name, f.identity_args)::pg_catalog.regprocedure)
                THEN 'native'
            ELSE 'original' END;
        RETURN NEXT;
    END LOOP;
    FOR p IN SELECT * FROM tasker_core.drop_in_views() LOOP
        object := pg_catalog.format('%I.%I', schema, p.view_name);
        kind := 'view';
        state := CASE
            WHEN pg_catalog.to_regclass(object) IS NULL THEN 'missing'
            WHEN tasker_core.is_native_view(pg_catalog.to_regclass(object)) THEN 'native'
            ELSE 'original' END;
        RETURN NEXT;
    END LOOP;
    -- How each read function reads the Tasker tables of this schema right now.
    FOR p IN SELECT * FROM tasker_core.read_paths(schema) LOOP
        object := pg_catalog.format('tasker_core.%I', p.function_name);
        kind := 'read path';
        state := p.path || COALESCE(': ' || p.reason, '');
        RETURN NEXT;
    END LOOP;
END
$$;

-- The guard against DROP EXTENSION leaving Rails without its functions (src/pg/admin.rs).
CREATE FUNCTION tasker_core.before_drop()
RETURNS event_trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'tasker_core_before_drop';
CREATE EVENT TRIGGER tasker_core_before_drop ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION')
    EXECUTE FUNCTION tasker_core.before_drop();
ALTER EVENT TRIGGER tasker_core_before_drop ENABLE ALWAYS;
REVOKE ALL ON FUNCTION tasker_core.before_drop() FROM PUBLIC;

-- pgrx marks a function without arguments STRICT; Rails' get_system_health_counts_v01 is not,
-- and the drop-in must match it in the catalog (the pgTAP suite checks).
ALTER FUNCTION tasker_core.get_system_health_counts_v01() CALLED ON NULL INPUT;

