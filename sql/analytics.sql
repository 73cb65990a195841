-- tasker_core: the analytics functions of Rails' schema (orchestration.md F), with Rails'
-- names, arguments, defaults and result columns, in schema tasker_core; enable() routes Rails'
-- to them like the six read functions. Hand-written; loaded into the install script by
-- extension_sql_file! (src/lib.rs).
--
-- Like the read functions they find the Tasker tables through the caller's search_path (Rails'
-- statements name them unqualified: docs/security.md), so they are not pinned; every function,
-- operator and type in them is schema-qualified. They are SQL, so PostgreSQL inlines them.

-- get_analytics_metrics_v01: the counts come from tasker_core.analytics_counts (src/pg/
-- analytics.rs: the step state when it may be read, else SQL over the Tasker tables); the
-- rates, the health score and the averages are computed here exactly as Rails' query computes
-- them, in numeric: an average is (sum of the epoch differences) / count, the differences being
-- microseconds at scale 6 as EXTRACT(EPOCH ...) gives them.
CREATE FUNCTION tasker_core.get_analytics_metrics_v01(since_timestamp timestamp with time zone DEFAULT NULL::timestamp with time zone)
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

-- get_slowest_steps_v01: what Rails' definition means to return (its own fails on every call:
-- it declares timestamptz columns over timestamp values; docs/compatibility.md). The stored
-- UTC times are returned as timestamptz read as UTC; ties of duration in step order.
CREATE FUNCTION tasker_core.get_slowest_steps_v01(since_timestamp timestamp with time zone DEFAULT NULL::timestamp with time zone,
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

-- get_slowest_tasks_v01: likewise (Rails' own fails on every call). Its step counts are Rails'
-- by default: Rails joins each step to all of its transitions, so a step counts once per
-- transition (once when it has none), and a complete or error step once per transition of
-- its own; with tasker_core.analytics_step_counts = distinct each step counts once.
-- completed_at is the latest most_recent complete or error transition of the task's steps.
CREATE FUNCTION tasker_core.get_slowest_tasks_v01(since_timestamp timestamp with time zone DEFAULT NULL::timestamp with time zone,
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
