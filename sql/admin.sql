-- tasker_core: switching Rails over to the native functions, and back.
-- Hand-written; loaded into the install script by extension_sql_file! (src/lib.rs).

GRANT USAGE ON SCHEMA tasker_core TO PUBLIC;

-- The Rails definitions that enable() replaced, so disable() can put them back exactly.
-- Written only through the two SECURITY DEFINER recorders below (never by PUBLIC), so an
-- application role cannot plant text here that a DBA's disable() would later execute.
CREATE TABLE tasker_core.replaced_functions (
    schema_name  name        NOT NULL,
    function_name name       NOT NULL,
    identity_args text       NOT NULL,
    definition   text,       -- pg_get_functiondef() of the original; NULL: enable() created it
    replaced_at  timestamptz NOT NULL DEFAULT now(),
    replaced_by  name        NOT NULL DEFAULT session_user,
    PRIMARY KEY (schema_name, function_name, identity_args)
);
REVOKE ALL ON tasker_core.replaced_functions FROM PUBLIC;
GRANT SELECT ON tasker_core.replaced_functions TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('tasker_core.replaced_functions', '');

-- The drop-in functions: name, identity arguments, and the call that forwards the arguments.
CREATE FUNCTION tasker_core.drop_in_functions()
RETURNS TABLE (function_name name, identity_args text, call_args text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    VALUES ('get_step_readiness_status'::name,        'bigint, bigint[]', 'input_task_id, step_ids'),
           ('get_step_readiness_status_batch'::name,  'bigint[]',         'input_task_ids'),
           ('get_task_execution_context'::name,       'bigint',           'input_task_id'),
           ('get_task_execution_contexts_batch'::name,'bigint[]',         'input_task_ids'),
           ('calculate_dependency_levels'::name,      'bigint',           'input_task_id'),
           ('get_system_health_counts_v01'::name,     '',                 '')
$$;

-- Is `target` currently a tasker_core wrapper of `native`? On PostgreSQL 14+ the wrapper's
-- SQL-standard body records a dependency on the native function; on 13 the body is a string,
-- which must be exactly the one enable() writes (no pattern match: nothing else may pass).
CREATE FUNCTION tasker_core.is_native_wrapper(target regprocedure, native regprocedure)
RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = target
                      AND d.refclassid = 'pg_catalog.pg_proc'::regclass AND d.refobjid = native)
        OR EXISTS (SELECT 1 FROM pg_catalog.pg_proc p, pg_catalog.pg_proc n, tasker_core.drop_in_functions() f
                    WHERE p.oid = target AND n.oid = native AND f.function_name = n.proname
                      AND p.prolang = (SELECT oid FROM pg_catalog.pg_language WHERE lanname = 'sql')
                      AND p.prosrc = format('SELECT * FROM tasker_core.%I(%s)', f.function_name, f.call_args))
$$;

-- SECURITY DEFINER because replaced_functions is not writable by PUBLIC (see above). It only
-- stores what the catalog says about a function the calling login role owns (or may act as),
-- so the saved text is always PostgreSQL's own rendering of a real definition.
CREATE FUNCTION tasker_core.remember_original(schema_name name, function_name name, identity_args text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target regprocedure := pg_catalog.to_regprocedure(format('%I.%I(%s)', schema_name, function_name, identity_args));
    owner  oid;
BEGIN
    -- Only the six drop-in signatures (all of pg_catalog types) are ever recorded.
    IF NOT EXISTS (SELECT 1 FROM tasker_core.drop_in_functions() f
                    WHERE f.function_name = remember_original.function_name AND f.identity_args = remember_original.identity_args) THEN
        RAISE EXCEPTION '%(%) is not a tasker_core drop-in function', function_name, identity_args USING ERRCODE = '22023';
    END IF;
    IF target IS NULL THEN
        IF NOT pg_catalog.has_schema_privilege(session_user, schema_name, 'CREATE') THEN
            RAISE EXCEPTION 'permission denied for schema %', schema_name USING ERRCODE = '42501';
        END IF;
    ELSE
        SELECT p.proowner INTO owner FROM pg_catalog.pg_proc p WHERE p.oid = target;
        IF NOT pg_catalog.pg_has_role(session_user, owner, 'USAGE') THEN
            RAISE EXCEPTION 'must be owner of function %', target::text USING ERRCODE = '42501';
        END IF;
    END IF;
    INSERT INTO tasker_core.replaced_functions AS r (schema_name, function_name, identity_args, definition)
    VALUES (schema_name, function_name, identity_args,
            CASE WHEN target IS NULL THEN NULL ELSE pg_catalog.pg_get_functiondef(target) END)
    ON CONFLICT ON CONSTRAINT replaced_functions_pkey DO UPDATE
       SET definition = EXCLUDED.definition, replaced_at = now(), replaced_by = session_user;
END
$$;

-- SECURITY DEFINER for the same reason; forgets a record once its function is no longer a
-- wrapper (restored or dropped by the caller's disable()).
CREATE FUNCTION tasker_core.forget_original(schema_name name, function_name name, identity_args text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target regprocedure := pg_catalog.to_regprocedure(format('%I.%I(%s)', schema_name, function_name, identity_args));
    native regprocedure := pg_catalog.to_regprocedure(format('tasker_core.%I(%s)', function_name, identity_args));
BEGIN
    IF NOT EXISTS (SELECT 1 FROM tasker_core.drop_in_functions() f
                    WHERE f.function_name = forget_original.function_name AND f.identity_args = forget_original.identity_args) THEN
        RAISE EXCEPTION '%(%) is not a tasker_core drop-in function', function_name, identity_args USING ERRCODE = '22023';
    END IF;
    IF target IS NOT NULL AND tasker_core.is_native_wrapper(target, native) THEN
        RAISE EXCEPTION '%.% is still the tasker_core wrapper', schema_name, function_name USING ERRCODE = '55000';
    END IF;
    DELETE FROM tasker_core.replaced_functions r
     WHERE r.schema_name = forget_original.schema_name AND r.function_name = forget_original.function_name
       AND r.identity_args = forget_original.identity_args;
END
$$;

CREATE FUNCTION tasker_core.enable(schema name DEFAULT 'public', functions boolean DEFAULT true, triggers boolean DEFAULT true)
RETURNS TABLE (object text, action text)
LANGUAGE plpgsql
AS $$
DECLARE
    f record;
    target regprocedure;
    native regprocedure;
    body text;
    g record;
BEGIN
    IF to_regnamespace(quote_ident(schema)) IS NULL THEN
        RAISE EXCEPTION 'schema "%" does not exist', schema USING ERRCODE = '3F000';
    END IF;
    IF triggers THEN
        FOR g IN SELECT * FROM tasker_core.guard_triggers() LOOP
            object := format('trigger %I on %I.%I', g.trigger_name, schema, g.table_name);
            IF to_regclass(format('%I.%I', schema, g.table_name)) IS NULL THEN
                RAISE EXCEPTION 'cannot enable tasker_core triggers: table %.% does not exist', schema, g.table_name
                    USING ERRCODE = '42P01', HINT = 'Run enable() in the schema that holds the Tasker tables, or pass triggers => false.';
            END IF;
            IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = format('%I.%I', schema, g.table_name)::regclass
                                                     AND t.tgname = g.trigger_name) THEN
                action := 'already installed';
            ELSE
                EXECUTE format('CREATE TRIGGER %I %s ON %I.%I FOR EACH ROW EXECUTE FUNCTION %s',
                               g.trigger_name, g.events, schema, g.table_name, g.function_name);
                action := 'installed';
            END IF;
            RETURN NEXT;
        END LOOP;
    END IF;
    IF NOT functions THEN
        RETURN;
    END IF;
    -- Check every function before changing any, so enable() is all or nothing.
    FOR f IN SELECT * FROM tasker_core.drop_in_functions() LOOP
        target := to_regprocedure(format('%I.%I(%s)', schema, f.function_name, f.identity_args));
        native := format('tasker_core.%I(%s)', f.function_name, f.identity_args)::regprocedure;
        IF target IS NOT NULL AND NOT tasker_core.is_native_wrapper(target, native)
           AND (pg_get_function_result(target) IS DISTINCT FROM pg_get_function_result(native)
                OR pg_get_function_arguments(target) IS DISTINCT FROM pg_get_function_arguments(native)) THEN
            RAISE EXCEPTION 'cannot enable tasker_core: %.% has a different signature than the native function', schema, f.function_name
                USING ERRCODE = '42P13',
                      DETAIL = format('%s(%s) returns %s; tasker_core.%s(%s) returns %s.',
                                      target, pg_get_function_arguments(target), pg_get_function_result(target),
                                      f.function_name, pg_get_function_arguments(native), pg_get_function_result(native)),
                      HINT = 'Rails and tasker_core disagree on this function; nothing was changed. See docs/compatibility.md.';
        END IF;
    END LOOP;
    FOR f IN SELECT * FROM tasker_core.drop_in_functions() LOOP
        object := format('%I.%I(%s)', schema, f.function_name, f.identity_args);
        target := to_regprocedure(object);
        native := format('tasker_core.%I(%s)', f.function_name, f.identity_args)::regprocedure;
        IF target IS NOT NULL AND tasker_core.is_native_wrapper(target, native) THEN
            action := 'already native';
            RETURN NEXT;
            CONTINUE;
        END IF;
        PERFORM tasker_core.remember_original(schema, f.function_name, f.identity_args);
        IF current_setting('server_version_num')::int >= 140000 THEN
            body := format('BEGIN ATOMIC SELECT * FROM tasker_core.%I(%s); END', f.function_name, f.call_args);
        ELSE
            body := format('AS %L', format('SELECT * FROM tasker_core.%I(%s)', f.function_name, f.call_args));
        END IF;
        EXECUTE format('CREATE OR REPLACE FUNCTION %I.%I(%s) RETURNS %s LANGUAGE sql STABLE %s',
                       schema, f.function_name, pg_get_function_arguments(native),
                       pg_get_function_result(native), body);
        action := CASE WHEN target IS NULL THEN 'created native' ELSE 'replaced with native' END;
        RETURN NEXT;
    END LOOP;
END
$$;

CREATE FUNCTION tasker_core.disable(schema name DEFAULT 'public')
RETURNS TABLE (object text, action text)
LANGUAGE plpgsql
AS $$
DECLARE
    r record;
    target regprocedure;
    native regprocedure;
    g record;
    saved_path text;
BEGIN
    FOR g IN SELECT * FROM tasker_core.guard_triggers() LOOP
        IF to_regclass(format('%I.%I', schema, g.table_name)) IS NOT NULL
           AND EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = format('%I.%I', schema, g.table_name)::regclass
                                                    AND t.tgname = g.trigger_name) THEN
            EXECUTE format('DROP TRIGGER %I ON %I.%I', g.trigger_name, schema, g.table_name);
            object := format('trigger %I on %I.%I', g.trigger_name, schema, g.table_name);
            action := 'removed';
            RETURN NEXT;
        END IF;
    END LOOP;
    FOR r IN SELECT * FROM tasker_core.replaced_functions s WHERE s.schema_name = schema
             ORDER BY s.function_name, s.identity_args LOOP
        object := format('%I.%I(%s)', r.schema_name, r.function_name, r.identity_args);
        target := to_regprocedure(object);
        native := to_regprocedure(format('tasker_core.%I(%s)', r.function_name, r.identity_args));
        IF target IS NULL THEN
            action := 'missing (nothing to restore)';
        ELSIF NOT tasker_core.is_native_wrapper(target, native) THEN
            action := 'not native (left as it is)';
        ELSIF r.definition IS NULL THEN
            EXECUTE format('DROP FUNCTION %s', target);
            action := 'dropped (enable had created it)';
        ELSE
            -- pg_get_functiondef rendered the text under search_path = pg_catalog, pg_temp (in
            -- remember_original): run it under the same path so every name means what it meant.
            saved_path := current_setting('search_path');
            PERFORM set_config('search_path', 'pg_catalog, pg_temp', true);
            EXECUTE r.definition;
            PERFORM set_config('search_path', saved_path, true);
            action := 'restored';
        END IF;
        PERFORM tasker_core.forget_original(r.schema_name, r.function_name, r.identity_args);
        RETURN NEXT;
    END LOOP;
END
$$;

CREATE FUNCTION tasker_core.status(schema name DEFAULT 'public')
RETURNS TABLE (object text, kind text, state text)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    f record;
    g record;
    target regprocedure;
BEGIN
    FOR g IN SELECT * FROM tasker_core.guard_triggers() LOOP
        object := format('trigger %I on %I.%I', g.trigger_name, schema, g.table_name);
        kind := 'trigger';
        state := CASE
            WHEN to_regclass(format('%I.%I', schema, g.table_name)) IS NULL THEN 'missing table'
            WHEN EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = format('%I.%I', schema, g.table_name)::regclass
                                                       AND t.tgname = g.trigger_name) THEN 'installed'
            ELSE 'absent' END;
        RETURN NEXT;
    END LOOP;
    FOR f IN SELECT * FROM tasker_core.drop_in_functions() LOOP
        object := format('%I.%I(%s)', schema, f.function_name, f.identity_args);
        kind := 'function';
        target := to_regprocedure(object);
        state := CASE
            WHEN target IS NULL THEN 'missing'
            WHEN tasker_core.is_native_wrapper(target, format('tasker_core.%I(%s)', f.function_name, f.identity_args)::regprocedure) THEN 'native'
            ELSE 'original' END;
        RETURN NEXT;
    END LOOP;
END
$$;

-- pgrx marks a function without arguments STRICT; Rails' get_system_health_counts_v01 is not,
-- and the drop-in must match it in the catalog (the pgTAP suite checks).
ALTER FUNCTION tasker_core.get_system_health_counts_v01() CALLED ON NULL INPUT;
