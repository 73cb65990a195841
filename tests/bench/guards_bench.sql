-- Benchmarks of the guard triggers (not tests). Loaded by scripts/bench.sh.
CREATE SCHEMA IF NOT EXISTS tasker_bench;

-- n fresh tasks of `steps` steps each, no edges, no history; returns their step ids.
CREATE OR REPLACE FUNCTION tasker_bench.fresh_steps(n int, steps int) RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE first_task bigint; ns int := (SELECT min(named_step_id) FROM tasker_named_steps); ids bigint[];
BEGIN
    INSERT INTO tasker_tasks (named_task_id, requested_at, identity_hash, created_at, updated_at)
    SELECT (SELECT min(named_task_id) FROM tasker_named_tasks), now(), 'bench-' || clock_timestamp() || '-' || g, now(), now()
      FROM generate_series(1, n) g;
    first_task := currval(pg_get_serial_sequence('tasker_tasks', 'task_id')) - n + 1;
    WITH ins AS (
        INSERT INTO tasker_workflow_steps (task_id, named_step_id, created_at, updated_at)
        SELECT t, ns, now(), now() FROM generate_series(first_task, first_task + n - 1) t, generate_series(1, steps) s ORDER BY t, s
        RETURNING workflow_step_id)
    SELECT array_agg(workflow_step_id ORDER BY workflow_step_id) INTO ids FROM ins;
    RETURN ids;
END $$;

-- Statesman's write path for every step: (none) -> pending -> in_progress -> complete,
-- each move an UPDATE of the old flag and an INSERT with sort_key + 10. Returns ms.
-- Each move its own transaction, as Statesman's transition_to! writes it: the commit is part of
-- what is timed (the step state refreshes its rows when a transaction commits). CALL it outside
-- a transaction block; `ms` comes back.
DROP FUNCTION IF EXISTS tasker_bench.statesman_moves(bigint[]);
CREATE OR REPLACE PROCEDURE tasker_bench.statesman_moves(ids bigint[], INOUT ms float8 DEFAULT NULL) LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp(); s bigint; st text; k int;
BEGIN
    COMMIT;
    t0 := clock_timestamp();
    FOREACH s IN ARRAY ids LOOP
        k := 0;
        FOREACH st IN ARRAY ARRAY['pending', 'in_progress', 'complete'] LOOP
            k := k + 10;
            UPDATE tasker_workflow_step_transitions SET most_recent = false, updated_at = now()
             WHERE workflow_step_id = s AND most_recent;
            INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, metadata, created_at, updated_at)
            VALUES (s, st, k, true, '{}', now(), now());
            COMMIT;
        END LOOP;
    END LOOP;
    ms := 1000 * extract(epoch FROM clock_timestamp() - t0);
END $$;

-- The equivalent of Rails' cycle check before an edge insert: a recursive query over the
-- WHOLE edges table (all tasks) plus the new edge, looking for a path to -> ... -> from.
CREATE OR REPLACE FUNCTION tasker_bench.rails_cycle_check(from_id bigint, to_id bigint) RETURNS bigint LANGUAGE sql AS $$
    WITH RECURSIVE all_edges AS (
        SELECT from_step_id, to_step_id FROM tasker_workflow_step_edges
        UNION ALL SELECT from_id, to_id
    ), path AS (
        SELECT e.from_step_id, e.to_step_id, ARRAY[e.from_step_id] AS path FROM all_edges e WHERE e.from_step_id = to_id
        UNION ALL
        SELECT p.from_step_id, e.to_step_id, p.path || e.from_step_id
          FROM path p JOIN all_edges e ON e.from_step_id = p.to_step_id
         WHERE NOT e.from_step_id = ANY(p.path)
    )
    SELECT count(*) FROM path WHERE to_step_id = from_id
$$;

-- Grows the edges table to `target` edges with 11-step chain tasks (10 edges each), triggers off.
CREATE OR REPLACE FUNCTION tasker_bench.grow_edges(target bigint) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE have bigint := (SELECT count(*) FROM tasker_workflow_step_edges); ids bigint[]; n int;
BEGIN
    IF have >= target THEN RETURN have; END IF;
    n := ceil((target - have) / 10.0);
    SET LOCAL session_replication_role = replica;
    ids := tasker_bench.fresh_steps(n, 11);
    INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at)
    SELECT ids[i], ids[i + 1], 'provides', now(), now() FROM generate_subscripts(ids, 1) i WHERE i % 11 <> 0;
    SET LOCAL session_replication_role = origin;
    RETURN (SELECT count(*) FROM tasker_workflow_step_edges);
END $$;

-- Per-insert cost (ms) of adding the last edge of a 10-step chain in `tasks` fresh tasks:
-- with the trigger installed, or with Rails' whole-table check run first and no trigger.
CREATE OR REPLACE FUNCTION tasker_bench.edge_inserts(tasks int, rails_check boolean) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE ids bigint[] := tasker_bench.fresh_steps(tasks, 10); t0 timestamptz; i int; total float8 := 0;
BEGIN
    -- each task already has the chain 1..9; the timed insert adds 9 -> 10
    INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at)
    SELECT ids[j], ids[j + 1], 'provides', now(), now() FROM generate_subscripts(ids, 1) j WHERE j % 10 NOT IN (0, 9);
    FOR i IN 0 .. tasks - 1 LOOP
        t0 := clock_timestamp();
        IF rails_check THEN
            PERFORM tasker_bench.rails_cycle_check(ids[i * 10 + 9], ids[i * 10 + 10]);
        END IF;
        INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at)
        VALUES (ids[i * 10 + 9], ids[i * 10 + 10], 'provides', now(), now());
        total := total + 1000 * extract(epoch FROM clock_timestamp() - t0);
    END LOOP;
    RETURN total / tasks;
END $$;
