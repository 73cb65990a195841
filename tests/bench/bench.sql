-- Server-side benchmark: native tasker_core vs Rails' functions (schema public),
-- alternating A/B in one session over several rounds. Not a test: it asserts nothing.
CREATE SCHEMA IF NOT EXISTS tasker_bench;
CREATE OR REPLACE FUNCTION tasker_bench.time_ms(q text) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp(); n bigint;
BEGIN
    EXECUTE q INTO n;
    RETURN 1000 * extract(epoch FROM clock_timestamp() - t0);
END $$;

-- workloads: name, calls per statement, and the statement with %s for the schema.
-- Implementations: tasker_core reading the derived step state (tasker_core.step_state);
-- tasker_core with the step state marked not valid for the statement (its SQL reads of the
-- Tasker tables); tasker_core forming result rows with PostgreSQL's tuplestore_putvalues
-- (tasker_core.row_former = postgres, where the setting exists); and Rails' functions (schema
-- public, as in a Rails database). The floor of the step-row workloads is an index scan that reads every step
-- row through its last column: the practical lower bound for anything that looks at the rows.
DROP FUNCTION IF EXISTS tasker_bench.run(int, bigint, bigint);
CREATE OR REPLACE FUNCTION tasker_bench.run(rounds int, big_task bigint, lattice_task bigint)
RETURNS TABLE (workload text, calls int, native_ms float8, off_ms float8, rails_ms float8, floor_ms float8, pg_former_ms float8)
LANGUAGE plpgsql AS $$
DECLARE
    ids text := (SELECT array_agg(task_id ORDER BY task_id)::text FROM tasker_tasks WHERE task_id NOT IN (big_task, lattice_task));
    n int := (SELECT count(*) FROM tasker_tasks WHERE task_id NOT IN (big_task, lattice_task));
    -- Every tenth task: a batch small enough to be read by index (tasker_core.batch_scan = auto).
    tenth text := (SELECT array_agg(task_id ORDER BY task_id)::text FROM tasker_tasks
                   WHERE task_id NOT IN (big_task, lattice_task) AND task_id % 10 = 0);
    former text;
    w record; r int; impl text; t float8; order_ text[];
    per_task text := 'SELECT %s FROM unnest(%L::bigint[]) x, LATERAL (SELECT * FROM tasker_workflow_steps s WHERE s.task_id = x) s';
BEGIN
    -- The library registers its settings when it loads: load it first.
    PERFORM count(*) FROM tasker_core.get_step_readiness_status(0);
    former := current_setting('tasker_core.row_former', true);
    CREATE TEMP TABLE IF NOT EXISTS samples (workload text, impl text, ms float8) ON COMMIT DROP;
    FOR r IN 1..rounds LOOP
        FOR w IN SELECT * FROM (VALUES
            ('get_step_readiness_status, one task per call', n,
             format('SELECT count(*) FROM unnest(%L::bigint[]) x, LATERAL %%s.get_step_readiness_status(x)', ids),
             format(per_task, 'count(s.updated_at)', ids), true),
            ('get_step_readiness_status_batch, all tasks', 1,
             format('SELECT count(*) FROM %%s.get_step_readiness_status_batch(%L)', ids),
             format('SELECT count(s.updated_at) FROM tasker_workflow_steps s WHERE s.task_id = ANY(%L)', ids), true),
            ('get_step_readiness_status_batch, every tenth task', 1,
             format('SELECT count(*) FROM %%s.get_step_readiness_status_batch(%L)', tenth),
             format('SELECT count(s.updated_at) FROM tasker_workflow_steps s WHERE s.task_id = ANY(%L)', tenth), true),
            ('get_task_execution_context, one task per call', n,
             format('SELECT count(*) FROM unnest(%L::bigint[]) x, LATERAL %%s.get_task_execution_context(x)', ids), NULL, false),
            ('get_task_execution_contexts_batch, all tasks', 1,
             format('SELECT count(*) FROM %%s.get_task_execution_contexts_batch(%L)', ids), NULL, false),
            ('calculate_dependency_levels, one task per call', n,
             format('SELECT count(*) FROM unnest(%L::bigint[]) x, LATERAL %%s.calculate_dependency_levels(x)', ids), NULL, false),
            ('calculate_dependency_levels, 13x3 lattice', 1,
             format('SELECT count(*) FROM %%s.calculate_dependency_levels(%s)', lattice_task), NULL, false),
            (format('get_step_readiness_status, one task of %s steps', (SELECT count(*) FROM tasker_workflow_steps WHERE task_id = big_task)), 1,
             format('SELECT count(*) FROM %%s.get_step_readiness_status(%s)', big_task),
             format('SELECT count(s.updated_at) FROM tasker_workflow_steps s WHERE s.task_id = %s', big_task), true),
            ('get_system_health_counts_v01', 1, 'SELECT count(*) FROM %s.get_system_health_counts_v01()', NULL, false),
            ('get_analytics_metrics_v01, the last hour (its default)', 1, 'SELECT count(*) FROM %s.get_analytics_metrics_v01()', NULL, false),
            ('get_analytics_metrics_v01, the last 30 days', 1,
             'SELECT count(*) FROM %s.get_analytics_metrics_v01(now() - interval ''30 days'')', NULL, false)
          ) v(name, calls, q, floor_q, readiness)
        LOOP
            -- (the analytics functions are native only since 0.4.0: the code before has none)
            CONTINUE WHEN w.name LIKE 'get_analytics%' AND to_regprocedure('tasker_core.get_analytics_metrics_v01(timestamptz)') IS NULL;
            -- rotate which implementation goes first
            order_ := ARRAY['tasker_core', 'off', 'rails', 'pg_former'];
            order_ := order_[r % 4 + 1:4] || order_[1:r % 4];
            FOREACH impl IN ARRAY order_ LOOP
                CONTINUE WHEN impl = 'pg_former' AND NOT (w.readiness AND former IS NOT NULL);
                IF impl = 'off' THEN
                    UPDATE tasker_core.step_state_source SET valid = false;
                ELSIF impl = 'pg_former' THEN
                    PERFORM set_config('tasker_core.row_former', 'postgres', true);
                END IF;
                t := tasker_bench.time_ms(format(w.q, CASE impl WHEN 'rails' THEN 'public' ELSE 'tasker_core' END));
                IF impl = 'off' THEN
                    UPDATE tasker_core.step_state_source SET valid = true;
                ELSIF impl = 'pg_former' THEN
                    PERFORM set_config('tasker_core.row_former', former, true);
                END IF;
                INSERT INTO samples VALUES (w.name || '|' || w.calls, impl, t);
            END LOOP;
            IF w.floor_q IS NOT NULL THEN
                INSERT INTO samples VALUES (w.name || '|' || w.calls, 'floor', tasker_bench.time_ms(w.floor_q));
            END IF;
        END LOOP;
    END LOOP;
    RETURN QUERY
    SELECT split_part(s.workload, '|', 1), split_part(s.workload, '|', 2)::int,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY s.ms) FILTER (WHERE s.impl = 'tasker_core'),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY s.ms) FILTER (WHERE s.impl = 'off'),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY s.ms) FILTER (WHERE s.impl = 'rails'),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY s.ms) FILTER (WHERE s.impl = 'floor'),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY s.ms) FILTER (WHERE s.impl = 'pg_former')
      FROM samples s GROUP BY s.workload ORDER BY min(s.ctid);
END $$;

-- The generator's tasks written as an application writes them: in short transactions (of
-- `per_transaction` tasks), so PostgreSQL can prune old row versions as it goes. Each
-- transaction draws its own seed in [-1, 1).
CREATE OR REPLACE PROCEDURE tasker_bench.generate_committed(n_tasks int, per_transaction int, anchor timestamp)
LANGUAGE plpgsql AS $$
DECLARE i int := 0;
BEGIN
    WHILE i < n_tasks LOOP
        PERFORM tasker_gen.generate(((i * 0.6180339887)::numeric % 2 - 1)::float8, least(per_transaction, n_tasks - i), anchor => anchor);
        COMMIT;
        i := i + per_transaction;
    END LOOP;
END $$;

-- A 13-layer, width-3 lattice task (every node of a layer feeds every node of the next).
CREATE OR REPLACE FUNCTION tasker_bench.add_lattice(layers int, width int) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE t bigint; first_step bigint;
BEGIN
    INSERT INTO tasker_tasks (named_task_id, requested_at, identity_hash, created_at, updated_at)
    SELECT min(named_task_id), now(), 'lattice-' || clock_timestamp(), now(), now() FROM tasker_named_tasks RETURNING task_id INTO t;
    INSERT INTO tasker_workflow_steps (task_id, named_step_id, created_at, updated_at)
    SELECT t, (SELECT min(named_step_id) FROM tasker_named_steps), now(), now() FROM generate_series(1, layers * width);
    SELECT min(workflow_step_id) INTO first_step FROM tasker_workflow_steps WHERE task_id = t;
    INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at)
    SELECT first_step + l * width + a, first_step + (l + 1) * width + b, 'provides', now(), now()
      FROM generate_series(0, layers - 2) l, generate_series(0, width - 1) a, generate_series(0, width - 1) b;
    RETURN t;
END $$;

-- The ORIGINAL algorithm of Rails' calculate_dependency_levels (functions.md): a recursive
-- query that follows every path from every root (UNION ALL, no de-duplication) and keeps the
-- longest. Exponential on diamond-heavy DAGs; never ends on a reachable cycle. Benchmark only.
CREATE OR REPLACE FUNCTION tasker_bench.levels_path_enumeration(input_task_id bigint)
RETURNS TABLE (workflow_step_id bigint, dependency_level integer) LANGUAGE sql STABLE AS $$
    WITH RECURSIVE walk AS (
        SELECT ws.workflow_step_id, 0 AS level
          FROM tasker_workflow_steps ws
         WHERE ws.task_id = input_task_id
           AND NOT EXISTS (SELECT 1 FROM tasker_workflow_step_edges e WHERE e.to_step_id = ws.workflow_step_id)
        UNION ALL
        SELECT e.to_step_id, w.level + 1
          FROM walk w
          JOIN tasker_workflow_step_edges e ON e.from_step_id = w.workflow_step_id
          JOIN tasker_workflow_steps ws ON ws.workflow_step_id = e.to_step_id AND ws.task_id = input_task_id
    )
    SELECT walk.workflow_step_id, max(walk.level)::integer FROM walk GROUP BY 1 ORDER BY 2, 1
$$;

-- Filler for the growth series: n more tasks, each a 3-step chain with one pending transition
-- per step, bulk-inserted (triggers skipped) so the tables grow while the measured tasks stay.
CREATE OR REPLACE FUNCTION tasker_bench.add_filler(n int) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE first_task bigint; first_step bigint; nt int := (SELECT min(named_task_id) FROM tasker_named_tasks);
        ns int := (SELECT min(named_step_id) FROM tasker_named_steps);
BEGIN
    SET LOCAL session_replication_role = replica;
    INSERT INTO tasker_tasks (named_task_id, requested_at, identity_hash, created_at, updated_at)
    SELECT nt, now(), 'filler-' || clock_timestamp() || '-' || g, now(), now() FROM generate_series(1, n) g;
    first_task := currval(pg_get_serial_sequence('tasker_tasks', 'task_id')) - n + 1;
    INSERT INTO tasker_workflow_steps (task_id, named_step_id, created_at, updated_at)
    SELECT t, ns, now(), now() FROM generate_series(first_task, first_task + n - 1) t, generate_series(1, 3) s ORDER BY t, s;
    first_step := currval(pg_get_serial_sequence('tasker_workflow_steps', 'workflow_step_id')) - 3 * n + 1;
    INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at)
    SELECT s, s + 1, 'provides', now(), now() FROM generate_series(first_step, first_step + 3 * n - 1) s
     WHERE (s - first_step) % 3 <> 2;
    INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
    SELECT s, 'pending', 10, true, now(), now() FROM generate_series(first_step, first_step + 3 * n - 1) s;
    RETURN (SELECT count(*) FROM tasker_tasks);
END $$;

-- Per-call µs of readiness over the given tasks for native and the reference SQL: median of
-- `rounds` rounds, alternating which goes first, so that background work (a checkpoint, another
-- tenant of the machine) weighs on both alike.
CREATE OR REPLACE FUNCTION tasker_bench.per_call_pair_us(ids bigint[], rounds int, OUT native_us float8, OUT reference_us float8)
LANGUAGE plpgsql AS $$
DECLARE n float8[] := '{}'; s float8[] := '{}'; r int; impl text;
BEGIN
    FOR r IN 1..rounds LOOP
        FOREACH impl IN ARRAY CASE WHEN r % 2 = 1 THEN ARRAY['tasker_core', 'public'] ELSE ARRAY['public', 'tasker_core'] END LOOP
            IF impl = 'tasker_core' THEN
                n := n || tasker_bench.time_ms(format('SELECT count(*) FROM unnest(%L::bigint[]) x, LATERAL tasker_core.get_step_readiness_status(x)', ids));
            ELSE
                s := s || tasker_bench.time_ms(format('SELECT count(*) FROM unnest(%L::bigint[]) x, LATERAL public.get_step_readiness_status(x)', ids));
            END IF;
        END LOOP;
    END LOOP;
    native_us := 1000 * (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v) FROM unnest(n) v) / cardinality(ids);
    reference_us := 1000 * (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v) FROM unnest(s) v) / cardinality(ids);
END $$;

-- Per-call µs of readiness over the given tasks (median of `rounds`), for one implementation.
CREATE OR REPLACE FUNCTION tasker_bench.per_call_us(impl text, ids bigint[], rounds int) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE samples float8[] := '{}'; r int;
BEGIN
    FOR r IN 1..rounds LOOP
        samples := samples || tasker_bench.time_ms(format(
            'SELECT count(*) FROM unnest(%L::bigint[]) x, LATERAL %I.get_step_readiness_status(x)', ids, impl));
    END LOOP;
    RETURN 1000 * (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v) FROM unnest(samples) v) / cardinality(ids);
END $$;

-- The view tasker_step_dag_relationships looked up as Rails' model, serializers and GraphQL
-- types look it up: one statement per step (WHERE workflow_step_id = $1) or per task (WHERE
-- task_id = $1), every column computed (PERFORM of the whole row; count(*) would let the
-- planner drop the depth column on both sides). `which`: 'native' reads the view (native after
-- enable()), 'rails' Rails' definition kept as tasker_step_dag_relationships_before_tasker_core.
-- Static statements, so PL/pgSQL keeps their plans as a prepared statement would. Median µs.
CREATE OR REPLACE FUNCTION tasker_bench.dag_lookup_us(which text, by_task boolean, ids bigint[]) RETURNS float8
LANGUAGE plpgsql AS $$
DECLARE x bigint; t0 timestamptz; us float8[] := '{}';
BEGIN
    FOREACH x IN ARRAY ids LOOP
        t0 := clock_timestamp();
        IF which = 'native' AND by_task THEN
            PERFORM v.* FROM public.tasker_step_dag_relationships v WHERE v.task_id = x;
        ELSIF which = 'native' THEN
            PERFORM v.* FROM public.tasker_step_dag_relationships v WHERE v.workflow_step_id = x;
        ELSIF by_task THEN
            PERFORM v.* FROM public.tasker_step_dag_relationships_before_tasker_core v WHERE v.task_id = x;
        ELSE
            PERFORM v.* FROM public.tasker_step_dag_relationships_before_tasker_core v WHERE v.workflow_step_id = x;
        END IF;
        us := us || 1000000 * extract(epoch FROM clock_timestamp() - t0);
    END LOOP;
    RETURN (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY u) FROM unnest(us) u);
END $$;

-- The whole view read once (every row, every column): ms.
CREATE OR REPLACE FUNCTION tasker_bench.dag_whole_ms(which text) RETURNS float8
LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
    IF which = 'native' THEN
        PERFORM v.* FROM public.tasker_step_dag_relationships v;
    ELSE
        PERFORM v.* FROM public.tasker_step_dag_relationships_before_tasker_core v;
    END IF;
    RETURN 1000 * extract(epoch FROM clock_timestamp() - t0);
END $$;
