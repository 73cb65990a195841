-- Differential comparison: native tasker_core functions against the reference SQL versions
-- in schema tasker_ref (tests/fixtures/reference_functions.sql, written from the spec).
-- Rows are compared in order (WITH ORDINALITY) and as text, so a different numeric scale,
-- timestamp, row order or row count is a mismatch.
CREATE SCHEMA IF NOT EXISTS tasker_test;

CREATE OR REPLACE FUNCTION tasker_test.diff(call text, reference name DEFAULT 'tasker_ref', OUT rows bigint, OUT mismatches bigint, OUT example text)
LANGUAGE plpgsql AS $$
-- `call` is a function call with the schema left as %s, e.g. 'get_step_readiness_status(5)'.
BEGIN
    EXECUTE format($q$
        SELECT count(*), count(*) FILTER (WHERE a.t IS DISTINCT FROM b.t),
               min(format('at row %%s: native=%%s reference=%%s', o, a.t, b.t)) FILTER (WHERE a.t IS DISTINCT FROM b.t)
          FROM (SELECT x::text AS t, x.ordinality AS o FROM tasker_core.%1$s WITH ORDINALITY x) a
          FULL JOIN (SELECT x::text AS t, x.ordinality AS o FROM %2$I.%1$s WITH ORDINALITY x) b USING (o)
    $q$, call, reference) INTO rows, mismatches, example;
END
$$;

-- Every comparison over the current database; one row per function.
CREATE OR REPLACE FUNCTION tasker_test.diff_all(label text, reference name DEFAULT 'tasker_ref')
RETURNS TABLE (run text, function_name text, calls bigint, rows bigint, mismatches bigint, example text)
LANGUAGE plpgsql AS $$
DECLARE
    ids text := (SELECT coalesce(array_agg(task_id ORDER BY task_id), '{}')::text FROM tasker_tasks);
    missing bigint := (SELECT coalesce(max(task_id), 0) + 1000 FROM tasker_tasks);
    call_list text[];
    c text;
    fname text;
    d record;
BEGIN
    run := label;
    FOR fname, call_list IN
        SELECT 'get_step_readiness_status',
               array_agg(format('get_step_readiness_status(%s)', t.task_id))
               || array_agg(format('get_step_readiness_status(%s, %L)', t.task_id,
                            (SELECT coalesce(array_agg(CASE WHEN random() < 0.1 THEN NULL ELSE s.workflow_step_id END), '{}')
                               FROM tasker_workflow_steps s WHERE s.task_id = t.task_id AND random() < 0.5)))
               || ARRAY[format('get_step_readiness_status(%s)', missing), 'get_step_readiness_status(NULL)',
                        format('get_step_readiness_status(%s, ''{}'')', coalesce(min(t.task_id), 1)),
                        format('get_step_readiness_status(%s, NULL)', coalesce(min(t.task_id), 1))]
          FROM tasker_tasks t
        UNION ALL
        SELECT 'get_step_readiness_status_batch',
               ARRAY[format('get_step_readiness_status_batch(%L)', ids),
                     format('get_step_readiness_status_batch(%L)', (SELECT coalesce(array_agg(CASE WHEN random() < 0.05 THEN NULL ELSE task_id END), '{}') FROM tasker_tasks, generate_series(1, 2) WHERE random() < 0.3)),
                     'get_step_readiness_status_batch(NULL)', 'get_step_readiness_status_batch(''{}'')']
        UNION ALL
        SELECT 'get_task_execution_context',
               array_agg(format('get_task_execution_context(%s)', t.task_id))
               || ARRAY[format('get_task_execution_context(%s)', missing), 'get_task_execution_context(NULL)']
          FROM tasker_tasks t
        UNION ALL
        SELECT 'get_task_execution_contexts_batch',
               ARRAY[format('get_task_execution_contexts_batch(%L)', ids),
                     format('get_task_execution_contexts_batch(%L)', (SELECT coalesce(array_agg(CASE WHEN random() < 0.05 THEN NULL WHEN random() < 0.05 THEN missing ELSE task_id END ORDER BY random()), '{}') FROM tasker_tasks, generate_series(1, 2) WHERE random() < 0.3)),
                     'get_task_execution_contexts_batch(NULL)', 'get_task_execution_contexts_batch(''{}'')']
        UNION ALL
        SELECT 'calculate_dependency_levels',
               array_agg(format('calculate_dependency_levels(%s)', t.task_id))
               || ARRAY[format('calculate_dependency_levels(%s)', missing), 'calculate_dependency_levels(NULL)']
          FROM tasker_tasks t
        UNION ALL
        SELECT 'get_system_health_counts_v01', ARRAY['get_system_health_counts_v01()']
    LOOP
        function_name := fname; calls := 0; rows := 0; mismatches := 0; example := NULL;
        FOREACH c IN ARRAY call_list LOOP
            d := tasker_test.diff(c, reference);
            calls := calls + 1;
            rows := rows + d.rows;
            mismatches := mismatches + d.mismatches;
            IF d.mismatches > 0 AND example IS NULL THEN
                example := c || ' ' || d.example;
            END IF;
        END LOOP;
        RETURN NEXT;
    END LOOP;
END
$$;
