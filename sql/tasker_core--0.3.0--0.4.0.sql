-- tasker_core 0.3.0 -> 0.4.0 (docs/adoption.md, "Upgrading").
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

CREATE OR REPLACE FUNCTION tasker_core."get_step_readiness_status"(
	"input_task_id" bigint,
	"step_ids" bigint[] DEFAULT NULL
) RETURNS TABLE (
	"workflow_step_id" bigint,
	"task_id" bigint,
	"named_step_id" INT,
	"name" TEXT,
	"current_state" TEXT,
	"dependencies_satisfied" bool,
	"retry_eligible" bool,
	"ready_for_execution" bool,
	"last_failure_at" timestamp,
	"next_retry_at" timestamp,
	"total_parents" INT,
	"completed_parents" INT,
	"attempts" INT,
	"retry_limit" INT,
	"backoff_request_seconds" INT,
	"last_attempted_at" timestamp
)
STABLE
LANGUAGE c
AS 'MODULE_PATHNAME', 'get_step_readiness_status_wrapper';

CREATE OR REPLACE FUNCTION tasker_core."get_step_readiness_status_batch"(
	"input_task_ids" bigint[]
) RETURNS TABLE (
	"workflow_step_id" bigint,
	"task_id" bigint,
	"named_step_id" INT,
	"name" TEXT,
	"current_state" TEXT,
	"dependencies_satisfied" bool,
	"retry_eligible" bool,
	"ready_for_execution" bool,
	"last_failure_at" timestamp,
	"next_retry_at" timestamp,
	"total_parents" INT,
	"completed_parents" INT,
	"attempts" INT,
	"retry_limit" INT,
	"backoff_request_seconds" INT,
	"last_attempted_at" timestamp
)
STABLE
LANGUAGE c
AS 'MODULE_PATHNAME', 'get_step_readiness_status_batch_wrapper';

CREATE OR REPLACE FUNCTION tasker_core."get_task_execution_context"(
	"input_task_id" bigint
) RETURNS TABLE (
	"task_id" bigint,
	"named_task_id" INT,
	"status" TEXT,
	"total_steps" bigint,
	"pending_steps" bigint,
	"in_progress_steps" bigint,
	"completed_steps" bigint,
	"failed_steps" bigint,
	"ready_steps" bigint,
	"execution_status" TEXT,
	"recommended_action" TEXT,
	"completion_percentage" NUMERIC,
	"health_status" TEXT
)
STABLE
LANGUAGE c
AS 'MODULE_PATHNAME', 'get_task_execution_context_wrapper';

CREATE OR REPLACE FUNCTION tasker_core."get_task_execution_contexts_batch"(
	"input_task_ids" bigint[]
) RETURNS TABLE (
	"task_id" bigint,
	"named_task_id" INT,
	"status" TEXT,
	"total_steps" bigint,
	"pending_steps" bigint,
	"in_progress_steps" bigint,
	"completed_steps" bigint,
	"failed_steps" bigint,
	"ready_steps" bigint,
	"execution_status" TEXT,
	"recommended_action" TEXT,
	"completion_percentage" NUMERIC,
	"health_status" TEXT
)
STABLE
LANGUAGE c
AS 'MODULE_PATHNAME', 'get_task_execution_contexts_batch_wrapper';

CREATE OR REPLACE FUNCTION tasker_core."calculate_dependency_levels"(
	"input_task_id" bigint
) RETURNS TABLE (
	"workflow_step_id" bigint,
	"dependency_level" INT
)
STABLE
LANGUAGE c
AS 'MODULE_PATHNAME', 'calculate_dependency_levels_wrapper';

CREATE OR REPLACE FUNCTION tasker_core.guard_step_transition_insert() RETURNS trigger
LANGUAGE c SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'guard_step_transition_insert_wrapper';

CREATE OR REPLACE FUNCTION tasker_core.guard_task_transition_insert() RETURNS trigger
LANGUAGE c SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'guard_task_transition_insert_wrapper';

CREATE OR REPLACE FUNCTION tasker_core.guard_step_transition_update() RETURNS trigger
LANGUAGE c SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'guard_step_transition_update_wrapper';

CREATE OR REPLACE FUNCTION tasker_core.guard_task_transition_update() RETURNS trigger
LANGUAGE c SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'guard_task_transition_update_wrapper';

CREATE OR REPLACE FUNCTION tasker_core.guard_step_transition_flag() RETURNS trigger
LANGUAGE c SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'guard_step_transition_flag_wrapper';

CREATE OR REPLACE FUNCTION tasker_core.guard_task_transition_flag() RETURNS trigger
LANGUAGE c SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'guard_task_transition_flag_wrapper';

CREATE OR REPLACE FUNCTION tasker_core.guard_step_edge() RETURNS trigger
LANGUAGE c SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'guard_step_edge_wrapper';

CREATE OR REPLACE FUNCTION tasker_core.guard_triggers()
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

CREATE OR REPLACE FUNCTION tasker_core.parse_retry_after(header text, at timestamptz DEFAULT pg_catalog.now())
RETURNS integer
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET "TimeZone" = 'UTC'
AS $$
DECLARE
    t timestamptz;
BEGIN
    IF header IS NULL OR pg_catalog.btrim(header, E' \t\n\r\f\v') OPERATOR(pg_catalog.=) '' THEN
        RETURN 0;
    END IF;
    -- A date has digits: this keeps out the words timestamptz input also takes ('now',
    -- 'tomorrow', 'epoch', 'infinity'), which are not HTTP dates.
    IF header OPERATOR(pg_catalog.!~) '[0-9]' THEN
        RETURN NULL;
    END IF;
    BEGIN
        IF header OPERATOR(pg_catalog.~) '^[0-9]+$' THEN
            RETURN header::pg_catalog.int4;
        END IF;
        t := header::pg_catalog.timestamptz;
        RETURN GREATEST(pg_catalog.trunc(pg_catalog.date_part('epoch', t OPERATOR(pg_catalog.-) at)), 0)::pg_catalog.int4;
    EXCEPTION WHEN data_exception THEN
        RETURN NULL;
    END;
END
$$;

CREATE OR REPLACE FUNCTION tasker_core."analytics_counts"(
	"start" timestamp with time zone 
) RETURNS TABLE (
	"active_tasks" bigint,  
	"namespaces" bigint,  
	"task_types" bigint,  
	"recent_completed" bigint,  
	"recent_errors" bigint,  
	"throughput" bigint,  
	"completions" bigint,  
	"errors" bigint,  
	"step_count" bigint,  
	"task_us" TEXT,  
	"task_n" bigint,  
	"step_us" TEXT,  
	"step_n" bigint  
)
STRICT STABLE PARALLEL SAFE
LANGUAGE c 
AS 'MODULE_PATHNAME', 'analytics_counts_wrapper';

CREATE OR REPLACE FUNCTION tasker_core.get_analytics_metrics_v01(since_timestamp timestamp with time zone DEFAULT NULL::timestamp with time zone)
RETURNS TABLE(active_tasks_count bigint, total_namespaces_count bigint, unique_task_types_count bigint, system_health_score numeric,
              task_throughput bigint, completion_count bigint, error_count bigint, completion_rate numeric, error_rate numeric,
              avg_task_duration numeric, avg_step_duration numeric, step_throughput bigint,
              analysis_period_start timestamp with time zone, calculated_at timestamp with time zone)
LANGUAGE sql STABLE
AS $$
SELECT c.active_tasks, c.namespaces, c.task_types,
       CASE WHEN (c.recent_completed OPERATOR(pg_catalog.+) c.recent_errors) OPERATOR(pg_catalog.>) 0
            THEN pg_catalog.round((c.recent_completed::pg_catalog.numeric
                                   OPERATOR(pg_catalog./) (c.recent_completed OPERATOR(pg_catalog.+) c.recent_errors)), 3)
            ELSE 1.0 END,
       c.throughput, c.completions, c.errors,
       CASE WHEN c.throughput OPERATOR(pg_catalog.>) 0
            THEN pg_catalog.round(((c.completions::pg_catalog.numeric OPERATOR(pg_catalog./) c.throughput) OPERATOR(pg_catalog.*) 100), 2)
            ELSE 0.0 END,
       CASE WHEN c.throughput OPERATOR(pg_catalog.>) 0
            THEN pg_catalog.round(((c.errors::pg_catalog.numeric OPERATOR(pg_catalog./) c.throughput) OPERATOR(pg_catalog.*) 100), 2)
            ELSE 0.0 END,
       pg_catalog.round(COALESCE((c.task_us::pg_catalog.numeric OPERATOR(pg_catalog.*) 0.000001)
                                 OPERATOR(pg_catalog./) NULLIF(c.task_n, 0), 0), 3),
       pg_catalog.round(COALESCE((c.step_us::pg_catalog.numeric OPERATOR(pg_catalog.*) 0.000001)
                                 OPERATOR(pg_catalog./) NULLIF(c.step_n, 0), 0), 3),
       c.step_count, s.start, pg_catalog.now()
  FROM (SELECT COALESCE(since_timestamp, pg_catalog.now() OPERATOR(pg_catalog.-) '1 hour'::pg_catalog.interval) AS start) s,
       tasker_core.analytics_counts(s.start) c
$$;

CREATE OR REPLACE FUNCTION tasker_core.get_slowest_steps_v01(since_timestamp timestamp with time zone DEFAULT NULL::timestamp with time zone,
                                                  limit_count integer DEFAULT 10, namespace_filter text DEFAULT NULL::text,
                                                  task_name_filter text DEFAULT NULL::text, version_filter text DEFAULT NULL::text)
RETURNS TABLE(workflow_step_id bigint, task_id bigint, step_name character varying, task_name character varying,
              namespace_name character varying, version character varying, duration_seconds numeric, attempts integer,
              created_at timestamp with time zone, completed_at timestamp with time zone, retryable boolean,
              step_status character varying)
LANGUAGE sql STABLE
AS $$
SELECT d.workflow_step_id, d.task_id, d.step_name, d.task_name, d.namespace_name, d.version,
       pg_catalog.round(d.seconds, 3), d.attempts,
       pg_catalog.timezone('UTC', d.created_at), pg_catalog.timezone('UTC', d.completed_at), d.retryable, d.state
  FROM (SELECT ws.workflow_step_id::pg_catalog.int8 AS workflow_step_id, ws.task_id::pg_catalog.int8 AS task_id,
               ns.name AS step_name, nt.name AS task_name, tn.name AS namespace_name, nt.version, ws.attempts, ws.retryable,
               ws.created_at, st.created_at AS completed_at, st.to_state AS state,
               EXTRACT(EPOCH FROM (st.created_at OPERATOR(pg_catalog.-) ws.created_at)) AS seconds
          FROM tasker_workflow_steps ws
          JOIN tasker_named_steps ns ON ns.named_step_id OPERATOR(pg_catalog.=) ws.named_step_id
          JOIN tasker_tasks t ON t.task_id OPERATOR(pg_catalog.=) ws.task_id
          JOIN tasker_named_tasks nt ON nt.named_task_id OPERATOR(pg_catalog.=) t.named_task_id
          JOIN tasker_task_namespaces tn ON tn.task_namespace_id OPERATOR(pg_catalog.=) nt.task_namespace_id
          JOIN tasker_workflow_step_transitions st ON st.workflow_step_id OPERATOR(pg_catalog.=) ws.workflow_step_id
         WHERE ws.created_at OPERATOR(pg_catalog.>) COALESCE(since_timestamp, pg_catalog.now() OPERATOR(pg_catalog.-) '24 hours'::pg_catalog.interval)
           AND st.most_recent AND st.to_state OPERATOR(pg_catalog.=) 'complete'
           AND (namespace_filter IS NULL OR tn.name OPERATOR(pg_catalog.=) namespace_filter)
           AND (task_name_filter IS NULL OR nt.name OPERATOR(pg_catalog.=) task_name_filter)
           AND (version_filter IS NULL OR nt.version OPERATOR(pg_catalog.=) version_filter)) d
 WHERE d.seconds OPERATOR(pg_catalog.>) 0
 ORDER BY d.seconds DESC, d.workflow_step_id
 LIMIT limit_count
$$;

CREATE OR REPLACE FUNCTION tasker_core.get_slowest_tasks_v01(since_timestamp timestamp with time zone DEFAULT NULL::timestamp with time zone,
                                                  limit_count integer DEFAULT 10, namespace_filter text DEFAULT NULL::text,
                                                  task_name_filter text DEFAULT NULL::text, version_filter text DEFAULT NULL::text)
RETURNS TABLE(task_id bigint, task_name character varying, namespace_name character varying, version character varying,
              duration_seconds numeric, step_count bigint, completed_steps bigint, error_steps bigint,
              created_at timestamp with time zone, completed_at timestamp with time zone, initiator character varying,
              source_system character varying)
LANGUAGE sql STABLE
AS $$
SELECT g.task_id, g.task_name, g.namespace_name, g.version,
       pg_catalog.round(EXTRACT(EPOCH FROM (g.last_at OPERATOR(pg_catalog.-) g.created_at)), 3),
       g.steps, g.complete, g.errors, pg_catalog.timezone('UTC', g.created_at), pg_catalog.timezone('UTC', g.last_at),
       g.initiator, g.source_system
  FROM (SELECT s.task_id, s.task_name, s.namespace_name, s.version, s.created_at, s.initiator, s.source_system,
               pg_catalog.max(s.state_at) FILTER (WHERE s.state OPERATOR(pg_catalog.=) ANY (ARRAY['complete', 'error'])) AS last_at,
               pg_catalog.sum(s.weight)::pg_catalog.int8 AS steps,
               COALESCE(pg_catalog.sum(s.weight) FILTER (WHERE s.state OPERATOR(pg_catalog.=) 'complete'), 0)::pg_catalog.int8 AS complete,
               COALESCE(pg_catalog.sum(s.weight) FILTER (WHERE s.state OPERATOR(pg_catalog.=) 'error'), 0)::pg_catalog.int8 AS errors
          FROM (SELECT t.task_id::pg_catalog.int8 AS task_id, nt.name AS task_name, tn.name AS namespace_name, nt.version,
                       t.created_at, t.initiator, t.source_system, st.to_state AS state, st.created_at AS state_at,
                       CASE WHEN COALESCE(pg_catalog.current_setting('tasker_core.analytics_step_counts', true), 'rails')
                                 OPERATOR(pg_catalog.=) 'distinct' THEN 1::pg_catalog.int8
                            ELSE pg_catalog.int8larger((SELECT pg_catalog.count(*) FROM tasker_workflow_step_transitions x
                                                         WHERE x.workflow_step_id OPERATOR(pg_catalog.=) ws.workflow_step_id), 1) END AS weight
                  FROM tasker_tasks t
                  JOIN tasker_named_tasks nt ON nt.named_task_id OPERATOR(pg_catalog.=) t.named_task_id
                  JOIN tasker_task_namespaces tn ON tn.task_namespace_id OPERATOR(pg_catalog.=) nt.task_namespace_id
                  JOIN tasker_workflow_steps ws ON ws.task_id OPERATOR(pg_catalog.=) t.task_id
                  LEFT JOIN tasker_workflow_step_transitions st
                         ON st.workflow_step_id OPERATOR(pg_catalog.=) ws.workflow_step_id AND st.most_recent
                 WHERE t.created_at OPERATOR(pg_catalog.>) COALESCE(since_timestamp, pg_catalog.now() OPERATOR(pg_catalog.-) '24 hours'::pg_catalog.interval)
                   AND (namespace_filter IS NULL OR tn.name OPERATOR(pg_catalog.=) namespace_filter)
                   AND (task_name_filter IS NULL OR nt.name OPERATOR(pg_catalog.=) task_name_filter)
                   AND (version_filter IS NULL OR nt.version OPERATOR(pg_catalog.=) version_filter)) s
         GROUP BY s.task_id, s.task_name, s.namespace_name, s.version, s.created_at, s.initiator, s.source_system) g
 WHERE g.last_at IS NOT NULL
 ORDER BY EXTRACT(EPOCH FROM (g.last_at OPERATOR(pg_catalog.-) g.created_at)) DESC, g.task_id
 LIMIT limit_count
$$;

CREATE OR REPLACE FUNCTION tasker_core."backoff_seconds"(
	"attempt_number" INT, 
	"jitter" bool DEFAULT true, 
	"config" jsonb DEFAULT NULL 
) RETURNS INT 
VOLATILE PARALLEL RESTRICTED
SET search_path TO pg_catalog, pg_temp
LANGUAGE c 
AS 'MODULE_PATHNAME', 'backoff_seconds_wrapper';

CREATE OR REPLACE FUNCTION tasker_core."claim_ready_steps"(
	"input_task_id" bigint, 
	"max_steps" INT DEFAULT NULL, 
	"step_ids" bigint[] DEFAULT NULL, 
	"claim_metadata" jsonb DEFAULT '{}'::jsonb, 
	"include_error_steps" bool DEFAULT false 
) RETURNS TABLE (
	"workflow_step_id" bigint,  
	"task_id" bigint,  
	"named_step_id" INT,  
	"name" TEXT,  
	"claimed_from" TEXT,  
	"attempts" INT,  
	"retry_limit" INT,  
	"transition_id" bigint,  
	"sort_key" INT  
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c 
AS 'MODULE_PATHNAME', 'claim_ready_steps_wrapper';

CREATE OR REPLACE FUNCTION tasker_core."define_view_as"(
	"target_schema" TEXT, 
	"target_name" TEXT, 
	"definition" TEXT, 
	"owner" oid 
) RETURNS void
STRICT VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c 
AS 'MODULE_PATHNAME', 'define_view_as_wrapper';

CREATE OR REPLACE FUNCTION tasker_core."events_record"(
	"transitions" oid, 
	"ids" bigint[] 
) RETURNS bigint 
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c 
AS 'MODULE_PATHNAME', 'events_record_wrapper';

CREATE TABLE tasker_core.events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The recording transaction (top level).
    xid xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
    name text NOT NULL,
    task_id bigint NOT NULL,
    step_id bigint,
    -- The state before the transition (the one with the next lower sort_key; NULL for the first).
    from_state text,
    to_state text NOT NULL,
    transition_id bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.statement_timestamp(),
    payload jsonb NOT NULL
);

CREATE INDEX events_delivery_order ON tasker_core.events (xid, id);

CREATE INDEX events_created_at ON tasker_core.events USING brin (created_at);

REVOKE ALL ON tasker_core.events FROM PUBLIC;

COMMENT ON TABLE tasker_core.events IS
    'Lifecycle events of committed transitions (docs/events.md). Read with tasker_core.events_since(); prune with tasker_core.prune_events().';

CREATE OR REPLACE FUNCTION tasker_core.event_triggers()
RETURNS TABLE (trigger_name name, table_name name)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    VALUES ('tasker_core_events'::name, 'tasker_workflow_step_transitions'::name),
           ('tasker_core_events', 'tasker_task_transitions')
$$;

CREATE OR REPLACE FUNCTION tasker_core.events_capture()
RETURNS trigger
LANGUAGE c SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'events_capture_wrapper';

REVOKE ALL ON FUNCTION tasker_core.events_capture() FROM PUBLIC;

REVOKE ALL ON FUNCTION tasker_core.events_record(oid, bigint[]) FROM PUBLIC;

CREATE OR REPLACE FUNCTION tasker_core.events_since(after bigint, max integer DEFAULT 1000)
RETURNS SETOF tasker_core.events
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    horizon xid8 := pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot());
    seen xid8;
BEGIN
    IF max IS NULL OR max OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'events_since: max must be a positive number of events, not %', COALESCE(max::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    IF after IS NULL OR after OPERATOR(pg_catalog.<) 0 THEN
        RAISE EXCEPTION 'events_since: after must be the id of an event, or 0 for the oldest, not %', COALESCE(after::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    IF after OPERATOR(pg_catalog.=) 0 THEN
        RETURN QUERY SELECT e.* FROM tasker_core.events e
                      WHERE e.xid OPERATOR(pg_catalog.<) horizon
                      ORDER BY e.xid, e.id LIMIT max;
        RETURN;
    END IF;
    SELECT e.xid INTO seen FROM tasker_core.events e WHERE e.id OPERATOR(pg_catalog.=) after;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'events_since: event % is not in tasker_core.events', after
            USING ERRCODE = '22023',
                  DETAIL = 'It was pruned (tasker_core.prune_events keeps the last event handed out, and no event not yet handed out), or it never existed.',
                  HINT = 'The events after it that were pruned are gone. Read from the oldest kept with events_since(0).';
    END IF;
    RETURN QUERY SELECT e.* FROM tasker_core.events e
                  WHERE e.xid OPERATOR(pg_catalog.>=) seen AND e.xid OPERATOR(pg_catalog.<) horizon
                    AND (e.xid OPERATOR(pg_catalog.>) seen OR e.id OPERATOR(pg_catalog.>) after)
                  ORDER BY e.xid, e.id LIMIT max;
END
$$;

CREATE TABLE tasker_core.event_consumers (
    name text PRIMARY KEY CHECK (name OPERATOR(pg_catalog.<>) ''),
    -- The last event acknowledged (0: none yet, read from the oldest kept).
    last_event bigint NOT NULL DEFAULT 0,
    -- Its transaction id (NULL with last_event 0): what prune_events() keeps after.
    last_xid xid8,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    acked_at timestamptz
);

REVOKE ALL ON tasker_core.event_consumers FROM PUBLIC;

CREATE OR REPLACE FUNCTION tasker_core.subscribe(consumer text, from_oldest boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    horizon xid8;
    latest_id bigint;
    latest_xid xid8;
    pos bigint;
BEGIN
    IF consumer IS NULL OR consumer OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION 'subscribe: a consumer needs a name' USING ERRCODE = '22023';
    END IF;
    -- No prune_events() under way while the position is read and stored (it waits, or this does).
    LOCK TABLE tasker_core.event_consumers IN ROW EXCLUSIVE MODE;
    horizon := pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot());
    IF NOT COALESCE(from_oldest, false) THEN
        SELECT e.id, e.xid INTO latest_id, latest_xid FROM tasker_core.events e WHERE e.xid OPERATOR(pg_catalog.<) horizon
         ORDER BY e.xid DESC, e.id DESC LIMIT 1;
    END IF;
    INSERT INTO tasker_core.event_consumers AS c (name, last_event, last_xid)
    VALUES (consumer, COALESCE(latest_id, 0), latest_xid)
    ON CONFLICT (name) DO NOTHING;
    SELECT c.last_event INTO pos FROM tasker_core.event_consumers c WHERE c.name OPERATOR(pg_catalog.=) consumer;
    RETURN pos;
END
$$;

CREATE OR REPLACE FUNCTION tasker_core.unsubscribe(consumer text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM tasker_core.event_consumers c WHERE c.name OPERATOR(pg_catalog.=) consumer;
    RETURN FOUND;
END
$$;

CREATE OR REPLACE FUNCTION tasker_core.consumer_events(consumer text, max integer DEFAULT 1000)
RETURNS SETOF tasker_core.events
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pos bigint;
BEGIN
    SELECT c.last_event INTO pos FROM tasker_core.event_consumers c WHERE c.name OPERATOR(pg_catalog.=) consumer;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'consumer_events: there is no consumer %', pg_catalog.quote_literal(consumer) USING ERRCODE = '42704',
            HINT = 'Register it first: SELECT tasker_core.subscribe(name).';
    END IF;
    RETURN QUERY SELECT * FROM tasker_core.events_since(pos, max);
END
$$;

CREATE OR REPLACE FUNCTION tasker_core.ack(consumer text, event_id bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    at xid8;
BEGIN
    IF event_id IS NULL OR event_id OPERATOR(pg_catalog.<) 0 THEN
        RAISE EXCEPTION 'ack: event_id must be the id of an event, or 0, not %', COALESCE(event_id::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    -- No prune_events() under way while the event is checked and the position stored.
    LOCK TABLE tasker_core.event_consumers IN ROW EXCLUSIVE MODE;
    IF event_id OPERATOR(pg_catalog.<>) 0 THEN
        SELECT e.xid INTO at FROM tasker_core.events e WHERE e.id OPERATOR(pg_catalog.=) event_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'ack: event % is not in tasker_core.events', event_id USING ERRCODE = '22023';
        END IF;
        -- An event events_since() would not hand out yet: past it, a late commit would be skipped.
        IF at OPERATOR(pg_catalog.>=) pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot()) THEN
            RAISE EXCEPTION 'ack: event % has not been handed out yet', event_id USING ERRCODE = '22023',
                DETAIL = 'A transaction that could still commit events before it is running.',
                HINT = 'Acknowledge only events that consumer_events() or events_since() returned.';
        END IF;
    END IF;
    UPDATE tasker_core.event_consumers c SET last_event = event_id, last_xid = at, acked_at = pg_catalog.now()
     WHERE c.name OPERATOR(pg_catalog.=) consumer;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ack: there is no consumer %', pg_catalog.quote_literal(consumer) USING ERRCODE = '42704',
            HINT = 'Register it first: SELECT tasker_core.subscribe(name).';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION tasker_core.prune_events(older_than interval, max_rows integer DEFAULT 100000)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    horizon xid8;
    keep bigint;
    slowest_xid xid8;
    slowest_id bigint;
    deleted bigint;
BEGIN
    IF older_than IS NULL OR older_than OPERATOR(pg_catalog.<) '0'::interval THEN
        RAISE EXCEPTION 'prune_events: older_than must be an interval of 0 or more, not %', COALESCE(older_than::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    IF max_rows IS NULL OR max_rows OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'prune_events: max_rows must be positive, not %', COALESCE(max_rows::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    -- The consumers' positions as committed, with no ack() or subscribe() under way until this
    -- transaction ends (they wait; writers of the Tasker tables never touch this table).
    LOCK TABLE tasker_core.event_consumers IN SHARE MODE;
    horizon := pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot());
    SELECT e.id INTO keep FROM tasker_core.events e WHERE e.xid OPERATOR(pg_catalog.<) horizon
     ORDER BY e.xid DESC, e.id DESC LIMIT 1;
    -- Nothing after the slowest named consumer's position: before it only (a consumer at 0 keeps
    -- everything).
    IF EXISTS (SELECT 1 FROM tasker_core.event_consumers c WHERE c.last_xid IS NULL) THEN
        RETURN 0;
    END IF;
    SELECT c.last_xid, c.last_event INTO slowest_xid, slowest_id FROM tasker_core.event_consumers c
     ORDER BY c.last_xid, c.last_event LIMIT 1;
    DELETE FROM tasker_core.events e
     WHERE e.id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT d.id FROM tasker_core.events d
                     WHERE d.created_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) older_than)
                       AND d.xid OPERATOR(pg_catalog.<) horizon
                       AND d.id OPERATOR(pg_catalog.<>) keep
                       AND (slowest_xid IS NULL OR d.xid OPERATOR(pg_catalog.<) slowest_xid
                            OR (d.xid OPERATOR(pg_catalog.=) slowest_xid AND d.id OPERATOR(pg_catalog.<) slowest_id))
                     LIMIT max_rows));
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END
$$;

REVOKE ALL ON FUNCTION tasker_core.prune_events(interval, integer) FROM PUBLIC;

REVOKE ALL ON FUNCTION tasker_core.subscribe(text, boolean) FROM PUBLIC;

REVOKE ALL ON FUNCTION tasker_core.unsubscribe(text) FROM PUBLIC;

REVOKE ALL ON FUNCTION tasker_core.consumer_events(text, integer) FROM PUBLIC;

REVOKE ALL ON FUNCTION tasker_core.ack(text, bigint) FROM PUBLIC;

CREATE OR REPLACE FUNCTION tasker_core."finalization_plan"(
	"execution_status" TEXT, 
	"task_state" TEXT, 
	"synchronous" bool DEFAULT true, 
	"retry_waits" bigint[] DEFAULT NULL, 
	"backoff" jsonb DEFAULT NULL 
) RETURNS TABLE (
	"moves" TEXT[],  
	"sets_complete" bool,  
	"decision" TEXT,  
	"fallback" TEXT,  
	"reason" TEXT,  
	"delay_seconds" INT  
)
IMMUTABLE PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c 
AS 'MODULE_PATHNAME', 'finalization_plan_wrapper';

CREATE OR REPLACE FUNCTION tasker_core."finalize_task"(
	"input_task_id" bigint, 
	"synchronous" bool DEFAULT true, 
	"backoff" jsonb DEFAULT NULL 
) RETURNS TABLE (
	"decision" TEXT,  
	"reason" TEXT,  
	"previous_state" TEXT,  
	"final_state" TEXT,  
	"transitions_written" INT,  
	"delay_seconds" INT,  
	"execution_status" TEXT,  
	"health_status" TEXT,  
	"completion_percentage" NUMERIC,  
	"total_steps" bigint,  
	"ready_steps" bigint,  
	"failed_steps" bigint  
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c 
AS 'MODULE_PATHNAME', 'finalize_task_wrapper';

CREATE OR REPLACE FUNCTION tasker_core."get_system_health_counts_v01"() RETURNS TABLE (
	"total_tasks" bigint,  
	"pending_tasks" bigint,  
	"in_progress_tasks" bigint,  
	"complete_tasks" bigint,  
	"error_tasks" bigint,  
	"cancelled_tasks" bigint,  
	"total_steps" bigint,  
	"pending_steps" bigint,  
	"in_progress_steps" bigint,  
	"complete_steps" bigint,  
	"error_steps" bigint,  
	"retryable_error_steps" bigint,  
	"exhausted_retry_steps" bigint,  
	"in_backoff_steps" bigint,  
	"active_connections" bigint,  
	"max_connections" bigint  
)
STRICT STABLE
LANGUAGE c 
AS 'MODULE_PATHNAME', 'get_system_health_counts_v01_wrapper';

CREATE OR REPLACE FUNCTION tasker_core."most_recent_index"(
	"rel" oid, 
	"owner" TEXT 
) RETURNS oid 
STRICT STABLE PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c 
AS 'MODULE_PATHNAME', 'most_recent_index_wrapper';

CREATE OR REPLACE FUNCTION tasker_core."preflight_data"(
	"tasker_schema" TEXT 
) RETURNS TABLE (
	"name" TEXT,  
	"status" TEXT,  
	"detail" TEXT,  
	"action" TEXT  
)
STRICT STABLE PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c 
AS 'MODULE_PATHNAME', 'preflight_data_wrapper';

CREATE OR REPLACE FUNCTION tasker_core."read_path_stats"() RETURNS TABLE (
	"function_name" TEXT,  
	"path" TEXT,  
	"calls" bigint  
)
STRICT VOLATILE PARALLEL RESTRICTED
SET search_path TO pg_catalog, pg_temp
LANGUAGE c 
AS 'MODULE_PATHNAME', 'read_path_stats_wrapper';

CREATE OR REPLACE FUNCTION tasker_core."read_path_stats_reset"() RETURNS void
STRICT VOLATILE PARALLEL RESTRICTED
SET search_path TO pg_catalog, pg_temp
LANGUAGE c 
AS 'MODULE_PATHNAME', 'read_path_stats_reset_wrapper';

CREATE OR REPLACE FUNCTION tasker_core."read_paths"(
	"schema" TEXT DEFAULT NULL 
) RETURNS TABLE (
	"function_name" TEXT,  
	"path" TEXT,  
	"reason" TEXT  
)
STABLE PARALLEL RESTRICTED
LANGUAGE c 
AS 'MODULE_PATHNAME', 'read_paths_wrapper';

CREATE OR REPLACE FUNCTION tasker_core."record_step_failure"(
	"input_step_id" bigint, 
	"error" jsonb, 
	"backoff_request_seconds" INT DEFAULT NULL, 
	"retryable" bool DEFAULT NULL, 
	"metadata" jsonb DEFAULT '{}'::jsonb 
) RETURNS TABLE (
	"outcome" TEXT,  
	"attempts" INT,  
	"next_retry_at" timestamp  
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c 
AS 'MODULE_PATHNAME', 'record_step_failure_wrapper';

CREATE OR REPLACE FUNCTION tasker_core."record_step_success"(
	"input_step_id" bigint, 
	"results" jsonb, 
	"metadata" jsonb DEFAULT '{}'::jsonb 
) RETURNS TABLE (
	"outcome" TEXT,  
	"attempts" INT  
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c 
AS 'MODULE_PATHNAME', 'record_step_success_wrapper';

CREATE OR REPLACE FUNCTION tasker_core."redefine_as"(
	"source" oid, 
	"target_schema" TEXT, 
	"target_name" TEXT, 
	"owner" oid 
) RETURNS void
STRICT VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c 
AS 'MODULE_PATHNAME', 'redefine_as_wrapper';

CREATE OR REPLACE FUNCTION tasker_core."reenqueue_delay_seconds"(
	"input_task_id" bigint, 
	"backoff" jsonb DEFAULT NULL 
) RETURNS INT 
STABLE
LANGUAGE c 
AS 'MODULE_PATHNAME', 'reenqueue_delay_seconds_wrapper';

CREATE OR REPLACE FUNCTION tasker_core."server_identity"() RETURNS TEXT 
STRICT STABLE PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c 
AS 'MODULE_PATHNAME', 'server_identity_wrapper';

CREATE OR REPLACE FUNCTION tasker_core."state_machine_moves"() RETURNS TABLE (
	"machine" TEXT,  
	"from_state" TEXT,  
	"to_state" TEXT  
)
IMMUTABLE STRICT PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c 
AS 'MODULE_PATHNAME', 'state_machine_moves_wrapper';

CREATE OR REPLACE FUNCTION tasker_core."step_min_depth_from_root"(
	"input_step_id" bigint 
) RETURNS INT 
STABLE PARALLEL SAFE
LANGUAGE c 
AS 'MODULE_PATHNAME', 'step_min_depth_from_root_wrapper';

CREATE OR REPLACE FUNCTION tasker_core."step_min_depth_from_root"(
	"input_step_id" bigint, 
	"tasker_schema" TEXT 
) RETURNS INT 
STABLE PARALLEL SAFE 
SET search_path TO pg_catalog, pg_temp
LANGUAGE c 
AS 'MODULE_PATHNAME', 'step_min_depth_from_root_in_wrapper';

CREATE OR REPLACE FUNCTION tasker_core.drop_in_views()
RETURNS TABLE (view_name name, columns text, definition text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    VALUES ('tasker_step_dag_relationships'::name,
            'workflow_step_id bigint, task_id bigint, named_step_id integer, parent_step_ids jsonb, '
            'child_step_ids jsonb, parent_count bigint, child_count bigint, is_root_step boolean, '
            'is_leaf_step boolean, min_depth_from_root integer',
            $view$SELECT ws.workflow_step_id,
    ws.task_id,
    ws.named_step_id,
    COALESCE(parents.ids, '[]'::jsonb) AS parent_step_ids,
    COALESCE(children.ids, '[]'::jsonb) AS child_step_ids,
    parents.n AS parent_count,
    children.n AS child_count,
    parents.n = 0 AS is_root_step,
    children.n = 0 AS is_leaf_step,
    tasker_core.step_min_depth_from_root(ws.workflow_step_id, %2$L) AS min_depth_from_root
   FROM %1$I.tasker_workflow_steps ws
     CROSS JOIN LATERAL ( SELECT jsonb_agg(e.from_step_id ORDER BY e.from_step_id) AS ids, count(*) AS n
           FROM %1$I.tasker_workflow_step_edges e
          WHERE e.to_step_id = ws.workflow_step_id) parents
     CROSS JOIN LATERAL ( SELECT jsonb_agg(e.to_step_id ORDER BY e.to_step_id) AS ids, count(*) AS n
           FROM %1$I.tasker_workflow_step_edges e
          WHERE e.from_step_id = ws.workflow_step_id) children$view$)
$$;

CREATE OR REPLACE FUNCTION tasker_core.view_columns(target regclass)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.string_agg(pg_catalog.format('%s %s', a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)),
                                 ', ' ORDER BY a.attnum)
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = target AND a.attnum > 0 AND NOT a.attisdropped
$$;

CREATE OR REPLACE FUNCTION tasker_core.is_native_view(target regclass)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite r
                     JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = r.oid
                     JOIN pg_catalog.pg_proc p ON d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.refobjid = p.oid
                    WHERE r.ev_class = target
                      AND p.pronamespace = 'tasker_core'::pg_catalog.regnamespace)
$$;

CREATE OR REPLACE FUNCTION tasker_core."step_state_build_online"() RETURNS bigint 
STRICT VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c 
AS 'MODULE_PATHNAME', 'step_state_build_online_wrapper';

CREATE OR REPLACE FUNCTION tasker_core."step_state_check_snapshot"(
	"valid" bool, 
	"building" TEXT 
) RETURNS void
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c 
AS 'MODULE_PATHNAME', 'step_state_check_snapshot_wrapper';

CREATE OR REPLACE FUNCTION tasker_core."step_state_check_top_level"() RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c 
AS 'MODULE_PATHNAME', 'step_state_check_top_level_wrapper';

CREATE OR REPLACE FUNCTION tasker_core."step_state_lock_named"(
	"named" INT[], 
	"named_steps" oid 
) RETURNS void
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c 
AS 'MODULE_PATHNAME', 'step_state_lock_named_wrapper';

CREATE OR REPLACE FUNCTION tasker_core."step_state_rebuild"() RETURNS bigint 
STRICT VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c 
AS 'MODULE_PATHNAME', 'step_state_rebuild_wrapper';

CREATE OR REPLACE FUNCTION tasker_core."step_state_refresh"(
	"ids" bigint[], 
	"steps" oid, 
	"named_steps" oid, 
	"transitions" oid, 
	"edges" oid 
) RETURNS void
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c 
AS 'MODULE_PATHNAME', 'step_state_refresh_wrapper';

CREATE OR REPLACE FUNCTION tasker_core."step_state_refresh_tasks"(
	"ids" bigint[], 
	"tasks" oid, 
	"task_transitions" oid 
) RETURNS void
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c 
AS 'MODULE_PATHNAME', 'step_state_refresh_tasks_wrapper';

CREATE OR REPLACE FUNCTION tasker_core."step_state_refresh_transitions"(
	"ids" bigint[], 
	"transitions" oid, 
	"edges" oid 
) RETURNS void
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c 
AS 'MODULE_PATHNAME', 'step_state_refresh_transitions_wrapper';

CREATE OR REPLACE FUNCTION tasker_core."step_state_verify"() RETURNS TABLE (
	"workflow_step_id" bigint,  
	"task_id" bigint,  
	"problem" TEXT  
)
STRICT VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c 
AS 'MODULE_PATHNAME', 'step_state_verify_wrapper';

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

CREATE UNIQUE INDEX step_state_by_task ON tasker_core.step_state (task_id, workflow_step_id);

CREATE UNIQUE INDEX step_state_by_step ON tasker_core.step_state (workflow_step_id) WHERE workflow_step_id IS NOT NULL;

CREATE UNIQUE INDEX step_state_task_row ON tasker_core.step_state (task_id) WHERE workflow_step_id IS NULL;

CREATE INDEX step_state_by_named_step ON tasker_core.step_state (named_step_id) WHERE named_step_id IS NOT NULL;

CREATE INDEX step_state_unsettled ON tasker_core.step_state (task_id)
 WHERE workflow_step_id IS NOT NULL
   AND current_state OPERATOR(pg_catalog.<>) ALL ('{complete,error,skipped,resolved_manually}'::pg_catalog.text[]);

REVOKE ALL ON tasker_core.step_state FROM PUBLIC;

ALTER TABLE tasker_core.step_state REPLICA IDENTITY FULL;

REVOKE ALL ON tasker_core.step_state_source FROM PUBLIC;

GRANT SELECT ON tasker_core.step_state_source TO PUBLIC;

CREATE TABLE tasker_core.step_state_log (
    kind "char" NOT NULL,
    id   bigint NOT NULL
);

REVOKE ALL ON tasker_core.step_state_log FROM PUBLIC;

ALTER TABLE tasker_core.step_state_log REPLICA IDENTITY FULL;

CREATE OR REPLACE FUNCTION tasker_core.step_state_columns()
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

CREATE OR REPLACE FUNCTION tasker_core.step_state_tables()
RETURNS SETOF name
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    VALUES ('tasker_workflow_steps'::name), ('tasker_named_steps'), ('tasker_workflow_step_transitions'),
           ('tasker_workflow_step_edges'), ('tasker_tasks'), ('tasker_task_transitions')
$$;

CREATE OR REPLACE FUNCTION tasker_core.step_state_triggers()
RETURNS TABLE (trigger_name name, event text, referencing text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    VALUES ('tasker_core_state_insert'::name, 'INSERT', 'REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT'),
           ('tasker_core_state_update', 'UPDATE', 'REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT'),
           ('tasker_core_state_delete', 'DELETE', 'REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT'),
           ('tasker_core_state_truncate', 'TRUNCATE', 'FOR EACH STATEMENT')
$$;

CREATE OR REPLACE FUNCTION tasker_core.step_state_problem(src tasker_core.step_state_source)
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

CREATE OR REPLACE FUNCTION tasker_core.step_state_fingerprint(src tasker_core.step_state_source)
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

CREATE OR REPLACE FUNCTION tasker_core.step_state_enable_always(src tasker_core.step_state_source)
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

CREATE OR REPLACE FUNCTION tasker_core.step_state_invalidate(why text)
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

CREATE OR REPLACE FUNCTION tasker_core.step_state_sync()
RETURNS trigger
LANGUAGE c SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'step_state_sync_wrapper';

CREATE OR REPLACE FUNCTION tasker_core.step_state_watch()
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

CREATE OR REPLACE FUNCTION tasker_core.step_state_rewritten()
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

CREATE OR REPLACE FUNCTION tasker_core.step_state_tables_of(schema name)
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

CREATE OR REPLACE FUNCTION tasker_core.step_state_install_triggers(rel regclass)
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

CREATE OR REPLACE FUNCTION tasker_core.step_state_record(schema name)
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

CREATE OR REPLACE FUNCTION tasker_core.step_state_enable(schema name DEFAULT 'public')
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

CREATE OR REPLACE FUNCTION tasker_core.lock_briefly(rels regclass[], wait interval DEFAULT '20ms', tries integer DEFAULT 100)
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

CREATE OR REPLACE FUNCTION tasker_core.step_state_prepare_online(schema name)
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

CREATE OR REPLACE FUNCTION tasker_core.step_state_install_online(rel regclass, lock_wait interval)
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

CREATE OR REPLACE FUNCTION tasker_core.step_state_capture()
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

CREATE OR REPLACE FUNCTION tasker_core.step_state_wait_for_writers()
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

CREATE OR REPLACE FUNCTION tasker_core.step_state_replay()
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

CREATE OR REPLACE FUNCTION tasker_core.step_state_catch_up()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM tasker_core.step_state_replay();
    UPDATE tasker_core.step_state_source s SET building = 'catch_up', changed_at = pg_catalog.now();
END
$$;

CREATE OR REPLACE FUNCTION tasker_core.step_state_finish_online(lock_wait interval DEFAULT '20ms',
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

CREATE OR REPLACE PROCEDURE tasker_core.step_state_enable_concurrently(schema name DEFAULT 'public', lock_wait interval DEFAULT '20ms')
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

CREATE OR REPLACE PROCEDURE tasker_core.step_state_rebuild_concurrently(lock_wait interval DEFAULT '20ms')
LANGUAGE plpgsql
AS $$
BEGIN
    CALL tasker_core.step_state_enable_concurrently(tasker_core.step_state_schema(), lock_wait);
END
$$;

CREATE OR REPLACE FUNCTION tasker_core.step_state_schema()
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

CREATE OR REPLACE FUNCTION tasker_core.step_state_disable(schema name DEFAULT 'public')
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

REVOKE ALL ON FUNCTION tasker_core.step_state_refresh(bigint[], oid, oid, oid, oid) FROM PUBLIC;

REVOKE ALL ON FUNCTION tasker_core.step_state_refresh_tasks(bigint[], oid, oid) FROM PUBLIC;

REVOKE ALL ON FUNCTION tasker_core.step_state_refresh_transitions(bigint[], oid, oid) FROM PUBLIC;

REVOKE ALL ON FUNCTION tasker_core.step_state_lock_named(integer[], oid) FROM PUBLIC;

REVOKE ALL ON FUNCTION tasker_core.step_state_rebuild() FROM PUBLIC;

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

REVOKE ALL ON FUNCTION tasker_core.step_state_sync() FROM PUBLIC;

REVOKE ALL ON FUNCTION tasker_core.step_state_watch() FROM PUBLIC;

REVOKE ALL ON FUNCTION tasker_core.step_state_enable(name) FROM PUBLIC;

REVOKE ALL ON FUNCTION tasker_core.step_state_disable(name) FROM PUBLIC;

CREATE OR REPLACE FUNCTION tasker_core.preflight(schema name DEFAULT 'public')
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

CREATE OR REPLACE FUNCTION tasker_core."transition_step"(
	"input_step_id" bigint, 
	"to_state" TEXT, 
	"expected_from_state" TEXT DEFAULT NULL, 
	"metadata" jsonb DEFAULT '{}'::jsonb 
) RETURNS TABLE (
	"outcome" TEXT,  
	"previous_state" TEXT,  
	"current_state" TEXT,  
	"transition_id" bigint,  
	"sort_key" INT  
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c 
AS 'MODULE_PATHNAME', 'transition_step_wrapper';

CREATE OR REPLACE FUNCTION tasker_core."transition_task"(
	"input_task_id" bigint, 
	"to_state" TEXT, 
	"expected_from_state" TEXT DEFAULT NULL, 
	"metadata" jsonb DEFAULT '{}'::jsonb, 
	"set_complete_flag" bool DEFAULT false 
) RETURNS TABLE (
	"outcome" TEXT,  
	"previous_state" TEXT,  
	"current_state" TEXT,  
	"transition_id" bigint,  
	"sort_key" INT  
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c 
AS 'MODULE_PATHNAME', 'transition_task_wrapper';

GRANT USAGE ON SCHEMA tasker_core TO PUBLIC;

CREATE OR REPLACE FUNCTION tasker_core.drop_in_functions()
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

CREATE OR REPLACE FUNCTION tasker_core.saved_name(function_name name)
RETURNS name
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
SET search_path = pg_catalog, pg_temp
AS $$ SELECT (function_name::text || '_before_tasker_core')::name $$;

CREATE OR REPLACE FUNCTION tasker_core.is_native_wrapper(target regprocedure, native regprocedure)
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

CREATE OR REPLACE FUNCTION tasker_core.enable(schema name DEFAULT 'public', functions boolean DEFAULT true, triggers boolean DEFAULT true,
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

CREATE OR REPLACE FUNCTION tasker_core.disable(schema name DEFAULT 'public')
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

CREATE OR REPLACE FUNCTION tasker_core.release_all()
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

CREATE OR REPLACE FUNCTION tasker_core.status(schema name DEFAULT 'public')
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

CREATE OR REPLACE FUNCTION tasker_core.before_drop()
RETURNS event_trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'tasker_core_before_drop';

CREATE EVENT TRIGGER tasker_core_before_drop ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION')
    EXECUTE FUNCTION tasker_core.before_drop();

ALTER EVENT TRIGGER tasker_core_before_drop ENABLE ALWAYS;

REVOKE ALL ON FUNCTION tasker_core.before_drop() FROM PUBLIC;

ALTER FUNCTION tasker_core.get_system_health_counts_v01() CALLED ON NULL INPUT;

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
