-- tasker_core: the trigger functions enable() attaches to the Tasker tables (src/pg/guards.rs).
-- They are C: the rules, locks and reads are in Rust, and a refusal is raised with SQLSTATE 23514
-- (check_violation) and its constraint, table and schema fields set, as RAISE ... USING
-- CONSTRAINT would. They run with search_path = pg_catalog, pg_temp whatever the writer's
-- search_path is, and the checks name every table with the trigger's schema: a writer cannot
-- make them use its own operators or functions (docs/security.md). SECURITY INVOKER: the writer
-- needs the row locks the checks take.

CREATE FUNCTION tasker_core.guard_step_transition_insert() RETURNS trigger
LANGUAGE c SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'guard_step_transition_insert_wrapper';

CREATE FUNCTION tasker_core.guard_task_transition_insert() RETURNS trigger
LANGUAGE c SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'guard_task_transition_insert_wrapper';

-- An UPDATE of a transition's key columns: history is append-only.
CREATE FUNCTION tasker_core.guard_step_transition_update() RETURNS trigger
LANGUAGE c SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'guard_step_transition_update_wrapper';

CREATE FUNCTION tasker_core.guard_task_transition_update() RETURNS trigger
LANGUAGE c SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'guard_task_transition_update_wrapper';

-- The most_recent flag set on an existing transition (its trigger's WHEN clause passes only a
-- false-to-true move): allowed on the owner's latest transition only.
CREATE FUNCTION tasker_core.guard_step_transition_flag() RETURNS trigger
LANGUAGE c SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'guard_step_transition_flag_wrapper';

CREATE FUNCTION tasker_core.guard_task_transition_flag() RETURNS trigger
LANGUAGE c SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'guard_task_transition_flag_wrapper';

-- A new or re-pointed edge: same task, no self-loop, no cycle.
CREATE FUNCTION tasker_core.guard_step_edge() RETURNS trigger
LANGUAGE c SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'guard_step_edge_wrapper';

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
