-- tasker_core 0.1.0 -> 0.2.0: the guard triggers (state machines and DAG integrity), and
-- hardened enable/disable bookkeeping. Frozen once released: later changes go into a new
-- tasker_core--0.2.0--X.sql. Proven equal to a fresh 0.2.0 install by tests/upgrade/run.sh.
\echo Use "ALTER EXTENSION tasker_core UPDATE TO '0.2.0'" to load this file. \quit

-- The checks the triggers call (Rust).
CREATE  FUNCTION "check_edge"(
	"schema" TEXT, /* & str */
	"edge_id" bigint, /* Option < i64 > */
	"from_step" bigint, /* Option < i64 > */
	"to_step" bigint /* Option < i64 > */
) RETURNS TABLE (
	"mode" TEXT,  /* String */
	"constraint_name" TEXT,  /* Option < String > */
	"message" TEXT,  /* Option < String > */
	"detail" TEXT,  /* Option < String > */
	"hint" TEXT,  /* Option < String > */
	"from_state" TEXT,  /* Option < String > */
	"sort_key" INT  /* Option < i32 > */
)
VOLATILE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_edge_wrapper';

CREATE  FUNCTION "check_transition"(
	"machine" TEXT, /* & str */
	"schema" TEXT, /* & str */
	"owner" bigint, /* i64 */
	"to_state" TEXT, /* Option < String > */
	"from_state" TEXT, /* Option < String > */
	"sort_key" INT, /* Option < i32 > */
	"most_recent" bool /* Option < bool > */
) RETURNS TABLE (
	"mode" TEXT,  /* String */
	"constraint_name" TEXT,  /* Option < String > */
	"message" TEXT,  /* Option < String > */
	"detail" TEXT,  /* Option < String > */
	"hint" TEXT,  /* Option < String > */
	"from_state" TEXT,  /* Option < String > */
	"sort_key" INT  /* Option < i32 > */
)
VOLATILE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_transition_wrapper';

CREATE  FUNCTION "check_transition_update"(
	"machine" TEXT, /* & str */
	"old_owner" bigint, /* i64 */
	"new_owner" bigint, /* i64 */
	"old_to_state" TEXT, /* String */
	"new_to_state" TEXT, /* String */
	"old_from_state" TEXT, /* Option < String > */
	"new_from_state" TEXT, /* Option < String > */
	"old_sort_key" INT, /* i32 */
	"new_sort_key" INT /* i32 */
) RETURNS TABLE (
	"mode" TEXT,  /* String */
	"constraint_name" TEXT,  /* Option < String > */
	"message" TEXT,  /* Option < String > */
	"detail" TEXT,  /* Option < String > */
	"hint" TEXT,  /* Option < String > */
	"from_state" TEXT,  /* Option < String > */
	"sort_key" INT  /* Option < i32 > */
)
STABLE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_transition_update_wrapper';

-- requires:
--   pg::guards::check_transition
--   pg::guards::check_transition_update
--   pg::guards::check_edge

-- tasker_core: the trigger functions enable() attaches to the Tasker tables.
-- The rules, locks and reads are in Rust (tasker_core.check_transition / check_transition_update /
-- check_edge); these thin PL/pgSQL functions raise the verdict, because only RAISE can set the
-- constraint, table and schema fields of an error (SQLSTATE 23514 check_violation).

-- The trigger functions (PL/pgSQL wrappers that raise the verdicts).
CREATE FUNCTION tasker_core.raise_verdict(v record, tbl name, sch name)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    IF v.constraint_name IS NULL THEN
        RETURN;
    ELSIF v.mode = 'warn' THEN
        RAISE WARNING USING MESSAGE = v.message, DETAIL = v.detail, HINT = v.hint,
              CONSTRAINT = v.constraint_name, TABLE = tbl, SCHEMA = sch;
    ELSE
        RAISE EXCEPTION USING ERRCODE = 'check_violation', MESSAGE = v.message, DETAIL = v.detail,
              HINT = v.hint, CONSTRAINT = v.constraint_name, TABLE = tbl, SCHEMA = sch;
    END IF;
END
$$;

CREATE FUNCTION tasker_core.guard_step_transition_insert()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE v record;
BEGIN
    SELECT * INTO v FROM tasker_core.check_transition('step', TG_TABLE_SCHEMA, NEW.workflow_step_id, NEW.to_state,
                                                      NEW.from_state, NEW.sort_key, NEW.most_recent);
    PERFORM tasker_core.raise_verdict(v, TG_TABLE_NAME, TG_TABLE_SCHEMA);
    IF v.mode <> 'off' AND v.sort_key IS NOT NULL THEN
        NEW.from_state := v.from_state;
        NEW.sort_key := v.sort_key;
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION tasker_core.guard_task_transition_insert()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE v record;
BEGIN
    SELECT * INTO v FROM tasker_core.check_transition('task', TG_TABLE_SCHEMA, NEW.task_id, NEW.to_state,
                                                      NEW.from_state, NEW.sort_key, NEW.most_recent);
    PERFORM tasker_core.raise_verdict(v, TG_TABLE_NAME, TG_TABLE_SCHEMA);
    IF v.mode <> 'off' AND v.sort_key IS NOT NULL THEN
        NEW.from_state := v.from_state;
        NEW.sort_key := v.sort_key;
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION tasker_core.guard_step_transition_update()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE v record;
BEGIN
    SELECT * INTO v FROM tasker_core.check_transition_update('step', OLD.workflow_step_id, NEW.workflow_step_id,
        OLD.to_state, NEW.to_state, OLD.from_state, NEW.from_state, OLD.sort_key, NEW.sort_key);
    PERFORM tasker_core.raise_verdict(v, TG_TABLE_NAME, TG_TABLE_SCHEMA);
    RETURN NEW;
END
$$;

CREATE FUNCTION tasker_core.guard_task_transition_update()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE v record;
BEGIN
    SELECT * INTO v FROM tasker_core.check_transition_update('task', OLD.task_id, NEW.task_id,
        OLD.to_state, NEW.to_state, OLD.from_state, NEW.from_state, OLD.sort_key, NEW.sort_key);
    PERFORM tasker_core.raise_verdict(v, TG_TABLE_NAME, TG_TABLE_SCHEMA);
    RETURN NEW;
END
$$;

CREATE FUNCTION tasker_core.guard_step_edge()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE v record;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.from_step_id IS NOT DISTINCT FROM OLD.from_step_id
                        AND NEW.to_step_id IS NOT DISTINCT FROM OLD.to_step_id THEN
        RETURN NEW;
    END IF;
    SELECT * INTO v FROM tasker_core.check_edge(TG_TABLE_SCHEMA, NEW.id, NEW.from_step_id, NEW.to_step_id);
    PERFORM tasker_core.raise_verdict(v, TG_TABLE_NAME, TG_TABLE_SCHEMA);
    RETURN NEW;
END
$$;

-- The triggers enable() manages: name, table, timing/events, function.
CREATE FUNCTION tasker_core.guard_triggers()
RETURNS TABLE (trigger_name name, table_name name, events text, function_name text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    VALUES ('tasker_core_step_transition_insert'::name, 'tasker_workflow_step_transitions'::name, 'BEFORE INSERT',
            'tasker_core.guard_step_transition_insert()'),
           ('tasker_core_step_transition_update', 'tasker_workflow_step_transitions',
            'BEFORE UPDATE OF workflow_step_id, to_state, from_state, sort_key', 'tasker_core.guard_step_transition_update()'),
           ('tasker_core_task_transition_insert', 'tasker_task_transitions', 'BEFORE INSERT',
            'tasker_core.guard_task_transition_insert()'),
           ('tasker_core_task_transition_update', 'tasker_task_transitions',
            'BEFORE UPDATE OF task_id, to_state, from_state, sort_key', 'tasker_core.guard_task_transition_update()'),
           ('tasker_core_step_edge_guard', 'tasker_workflow_step_edges',
            'BEFORE INSERT OR UPDATE OF from_step_id, to_step_id', 'tasker_core.guard_step_edge()')
$$;

-- Wrapper detection without pattern matching; the recorders accept only the six drop-in
-- signatures (0.1.0 accepted any function name).
CREATE OR REPLACE FUNCTION tasker_core.is_native_wrapper(target regprocedure, native regprocedure)
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

CREATE OR REPLACE FUNCTION tasker_core.remember_original(schema_name name, function_name name, identity_args text)
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

CREATE OR REPLACE FUNCTION tasker_core.forget_original(schema_name name, function_name name, identity_args text)
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


-- enable() gains `triggers boolean DEFAULT true`; disable() and status() handle triggers, and
-- disable() restores definitions under the search_path they were rendered with.
DROP FUNCTION tasker_core.enable(name, boolean);
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

CREATE OR REPLACE FUNCTION tasker_core.disable(schema name DEFAULT 'public')
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

CREATE OR REPLACE FUNCTION tasker_core.status(schema name DEFAULT 'public')
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


-- 0.1.0 left the zero-argument health function STRICT (a pgrx default); Rails' is not.
ALTER FUNCTION tasker_core.get_system_health_counts_v01() CALLED ON NULL INPUT;
