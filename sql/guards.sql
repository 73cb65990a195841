-- tasker_core: the trigger functions enable() attaches to the Tasker tables.
-- The rules, locks and reads are in Rust (tasker_core.check_transition / check_transition_update /
-- check_flag / check_edge); these thin PL/pgSQL functions raise the verdict, because only RAISE
-- can set the constraint, table and schema fields of an error (SQLSTATE 23514 check_violation).
-- They run with search_path = pg_catalog, pg_temp whatever the writer's search_path is, and the
-- checks name every table with the trigger's schema: a writer cannot make them use its own
-- operators or functions (docs/security.md).

CREATE FUNCTION tasker_core.raise_verdict(v record, tbl name, sch name)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
SET search_path = pg_catalog, pg_temp
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
SET search_path = pg_catalog, pg_temp
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
SET search_path = pg_catalog, pg_temp
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
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE v record;
BEGIN
    SELECT * INTO v FROM tasker_core.check_transition_update('task', OLD.task_id, NEW.task_id,
        OLD.to_state, NEW.to_state, OLD.from_state, NEW.from_state, OLD.sort_key, NEW.sort_key);
    PERFORM tasker_core.raise_verdict(v, TG_TABLE_NAME, TG_TABLE_SCHEMA);
    RETURN NEW;
END
$$;

-- The most_recent flag set on an existing transition (its trigger's WHEN clause passes only a
-- false-to-true move): allowed on the owner's latest transition only.
CREATE FUNCTION tasker_core.guard_step_transition_flag()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE v record;
BEGIN
    SELECT * INTO v FROM tasker_core.check_flag('step', TG_TABLE_SCHEMA, NEW.id, NEW.workflow_step_id, NEW.sort_key);
    PERFORM tasker_core.raise_verdict(v, TG_TABLE_NAME, TG_TABLE_SCHEMA);
    RETURN NEW;
END
$$;

CREATE FUNCTION tasker_core.guard_task_transition_flag()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE v record;
BEGIN
    SELECT * INTO v FROM tasker_core.check_flag('task', TG_TABLE_SCHEMA, NEW.id, NEW.task_id, NEW.sort_key);
    PERFORM tasker_core.raise_verdict(v, TG_TABLE_NAME, TG_TABLE_SCHEMA);
    RETURN NEW;
END
$$;

CREATE FUNCTION tasker_core.guard_step_edge()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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

-- The triggers enable() manages: name, table, timing/events, WHEN condition, function.
CREATE FUNCTION tasker_core.guard_triggers()
RETURNS TABLE (trigger_name name, table_name name, events text, condition text, function_name text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    VALUES ('tasker_core_step_transition_insert'::name, 'tasker_workflow_step_transitions'::name, 'BEFORE INSERT', '',
            'tasker_core.guard_step_transition_insert()'),
           ('tasker_core_step_transition_update', 'tasker_workflow_step_transitions',
            'BEFORE UPDATE OF workflow_step_id, to_state, from_state, sort_key', '',
            'tasker_core.guard_step_transition_update()'),
           ('tasker_core_step_transition_flag', 'tasker_workflow_step_transitions', 'BEFORE UPDATE OF most_recent',
            'WHEN (new.most_recent AND NOT old.most_recent)', 'tasker_core.guard_step_transition_flag()'),
           ('tasker_core_task_transition_insert', 'tasker_task_transitions', 'BEFORE INSERT', '',
            'tasker_core.guard_task_transition_insert()'),
           ('tasker_core_task_transition_update', 'tasker_task_transitions',
            'BEFORE UPDATE OF task_id, to_state, from_state, sort_key', '', 'tasker_core.guard_task_transition_update()'),
           ('tasker_core_task_transition_flag', 'tasker_task_transitions', 'BEFORE UPDATE OF most_recent',
            'WHEN (new.most_recent AND NOT old.most_recent)', 'tasker_core.guard_task_transition_flag()'),
           ('tasker_core_step_edge_guard', 'tasker_workflow_step_edges',
            'BEFORE INSERT OR UPDATE OF from_step_id, to_step_id', '', 'tasker_core.guard_step_edge()')
$$;
