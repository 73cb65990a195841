// `#[pg_test]`s: each rule and edge case of the drop-in functions and of enable/disable,
// run inside a real PostgreSQL (each test in its own rolled-back transaction). Expected
// values are worked out by hand from functions.md, never copied from the code's output.

use pgrx::prelude::*;

const SCHEMA: &str = include_str!("../../tests/fixtures/tasker_schema.sql");
const RAILS_FUNCTIONS: &str = include_str!("../../tests/fixtures/reference_functions.sql");

/// The Tasker tables plus a few reference rows and two helpers:
/// `pg_temp.step(id, task, named_step)` and `pg_temp.move(step, state [, at])`.
fn tasker_db() {
    Spi::run(SCHEMA).unwrap();
    Spi::run(
        r#"
        INSERT INTO tasker_task_namespaces (task_namespace_id, name, created_at, updated_at) VALUES (1, 'default', now(), now());
        INSERT INTO tasker_dependent_systems (dependent_system_id, name, created_at, updated_at) VALUES (1, 'sys', now(), now());
        INSERT INTO tasker_named_tasks (named_task_id, name, task_namespace_id, created_at, updated_at) VALUES (7, 'job', 1, now(), now());
        INSERT INTO tasker_named_steps (named_step_id, dependent_system_id, name, created_at, updated_at)
             SELECT g, 1, 'step_' || g, now(), now() FROM generate_series(1, 20) g;
        INSERT INTO tasker_tasks (task_id, named_task_id, requested_at, identity_hash, created_at, updated_at)
             SELECT g, 7, now(), 'h' || g, now(), now() FROM generate_series(1, 5) g;
        CREATE FUNCTION pg_temp.step(id bigint, task bigint, named integer) RETURNS void LANGUAGE sql AS $$
            INSERT INTO tasker_workflow_steps (workflow_step_id, task_id, named_step_id, attempts, created_at, updated_at)
            VALUES (id, task, named, 0, now(), now()) $$;
        CREATE FUNCTION pg_temp.move(s bigint, state text, at timestamp DEFAULT (now() AT TIME ZONE 'UTC')) RETURNS void LANGUAGE sql AS $$
            UPDATE tasker_workflow_step_transitions SET most_recent = false WHERE workflow_step_id = s AND most_recent;
            INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
            SELECT s, state, coalesce(max(sort_key), 0) + 10, true, at, at FROM tasker_workflow_step_transitions WHERE workflow_step_id = s $$;
        CREATE FUNCTION pg_temp.edge(a bigint, b bigint) RETURNS void LANGUAGE sql AS $$
            INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at) VALUES (a, b, 'provides', now(), now()) $$;
        "#,
    )
    .unwrap();
}

/// Runs `sql`; returns "SQLSTATE: message" if it raised, None otherwise.
fn error_of(sql: &str) -> Option<String> {
    Spi::run(
        "CREATE OR REPLACE FUNCTION pg_temp.try_sql(q text) RETURNS text LANGUAGE plpgsql AS $$
         BEGIN EXECUTE q; RETURN NULL;
         EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE || ': ' || SQLERRM; END $$",
    )
    .unwrap();
    Spi::get_one_with_args::<String>("SELECT pg_temp.try_sql($1)", &[sql.into()]).unwrap()
}

fn one<T: FromDatum + IntoDatum>(sql: &str) -> Option<T> {
    Spi::get_one::<T>(sql).unwrap()
}

fn text(sql: &str) -> String {
    one::<String>(sql).unwrap_or_else(|| "<null>".into())
}

/// A diamond 1 -> {2, 3} -> 4 in task 1; 1 complete, 2 resolved_manually, 3 pending.
fn diamond() {
    tasker_db();
    Spi::run(
        "SELECT pg_temp.step(g, 1, g::int) FROM generate_series(1, 4) g;
         SELECT pg_temp.edge(1, 2), pg_temp.edge(1, 3), pg_temp.edge(2, 4), pg_temp.edge(3, 4);
         SELECT pg_temp.move(1, 'pending'), pg_temp.move(1, 'in_progress'), pg_temp.move(1, 'complete');
         SELECT pg_temp.move(2, 'pending'), pg_temp.move(2, 'resolved_manually');
         SELECT pg_temp.move(3, 'pending');",
    )
    .unwrap();
}

#[pg_test]
fn diamond_readiness() {
    diamond();
    let rows = text(
        "SELECT string_agg(format('%s:%s:%s:%s/%s:%s', workflow_step_id, current_state, dependencies_satisfied,
                                  completed_parents, total_parents, ready_for_execution), ' ' ORDER BY workflow_step_id)
           FROM tasker_core.get_step_readiness_status(1)",
    );
    assert_eq!(
        rows,
        "1:complete:t:0/0:f 2:resolved_manually:t:1/1:f 3:pending:t:1/1:t 4:pending:f:1/2:f"
    );
}

#[pg_test]
fn readiness_arguments() {
    diamond();
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.get_step_readiness_status(NULL)"), Some(0));
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.get_step_readiness_status(1, NULL)"), Some(4));
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.get_step_readiness_status(1)"), Some(4));
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.get_step_readiness_status(1, '{}')"), Some(0));
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.get_step_readiness_status(1, '{3,NULL,99}')"), Some(1));
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.get_step_readiness_status(2)"), Some(0));
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.get_step_readiness_status_batch(NULL)"), Some(0));
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.get_step_readiness_status_batch('{}')"), Some(0));
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.get_step_readiness_status_batch('{1,1,NULL,2}')"), Some(4));
    // A large array is an answer, not a hang: 200k ids, 4 steps.
    assert_eq!(
        one::<i64>(
            "SELECT count(*) FROM tasker_core.get_step_readiness_status_batch(ARRAY(SELECT generate_series(1, 200000)::bigint))"
        ),
        Some(4)
    );
}

#[pg_test]
fn duplicate_and_cross_task_edges_count_as_parents() {
    diamond();
    Spi::run(
        "SELECT pg_temp.step(10, 2, 10); SELECT pg_temp.edge(1, 4); SELECT pg_temp.edge(10, 4); SELECT pg_temp.move(10, 'complete');",
    )
    .unwrap();
    // Step 4: parents 2 (done), 3 (pending), 1 twice via a duplicate edge... 1 -> 4 once more, plus 10 from task 2 (done).
    assert_eq!(text("SELECT format('%s/%s', completed_parents, total_parents) FROM tasker_core.get_step_readiness_status(1, '{4}')"), "3/4");
}

#[pg_test]
fn step_without_named_step_is_left_out() {
    diamond();
    Spi::run("SET LOCAL session_replication_role = replica; SELECT pg_temp.step(11, 1, 999); SET LOCAL session_replication_role = origin;")
        .unwrap();
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.get_step_readiness_status(1)"), Some(4));
    assert_eq!(one::<i64>("SELECT total_steps FROM tasker_core.get_task_execution_context(1)"), Some(4));
    // ...but it is a step of the task for the dependency levels (a root).
    assert_eq!(one::<i32>("SELECT dependency_level FROM tasker_core.calculate_dependency_levels(1) WHERE workflow_step_id = 11"), Some(0));
}

#[pg_test]
fn retry_backoff_rules() {
    tasker_db();
    Spi::run(
        "SELECT pg_temp.step(g, 1, g::int) FROM generate_series(1, 5) g;
         -- 1: failed 1.5 s ago with NULL attempts: 2 s backoff, not over.
         UPDATE tasker_workflow_steps SET attempts = NULL WHERE workflow_step_id = 1;
         SELECT pg_temp.move(1, 'error', (now() AT TIME ZONE 'UTC') - interval '1.5 seconds');
         -- 2: failed 1.5 s ago with 0 attempts: 1 s backoff, over.
         SELECT pg_temp.move(2, 'error', (now() AT TIME ZONE 'UTC') - interval '1.5 seconds');
         -- 3: explicit backoff ends exactly now: inclusive.
         UPDATE tasker_workflow_steps SET backoff_request_seconds = 30, last_attempted_at = (now() AT TIME ZONE 'UTC') - interval '30 seconds' WHERE workflow_step_id = 3;
         -- 4: retries used up (NULL limit means 3).
         UPDATE tasker_workflow_steps SET attempts = 3, retry_limit = NULL WHERE workflow_step_id = 4;
         -- 5: not retryable.
         UPDATE tasker_workflow_steps SET retryable = false WHERE workflow_step_id = 5;",
    )
    .unwrap();
    Spi::run("SET LOCAL TimeZone = 'UTC'").unwrap();
    assert_eq!(
        text("SELECT string_agg(format('%s:%s:%s', workflow_step_id, ready_for_execution, retry_eligible), ' ' ORDER BY 1) FROM tasker_core.get_step_readiness_status(1)"),
        "1:f:t 2:t:t 3:t:t 4:f:f 5:f:t"
    );
    assert_eq!(
        one::<bool>("SELECT next_retry_at = last_failure_at + interval '2 seconds' FROM tasker_core.get_step_readiness_status(1, '{1}')"),
        Some(true)
    );
    assert_eq!(one::<i32>("SELECT retry_limit FROM tasker_core.get_step_readiness_status(1, '{4}')"), Some(3));
}

#[pg_test]
fn session_time_zone_reads_stored_timestamps_as_local() {
    tasker_db();
    // Rails stores UTC. A 60 s backoff that started "now" in UTC terms:
    Spi::run(
        "SELECT pg_temp.step(1, 1, 1);
         UPDATE tasker_workflow_steps SET backoff_request_seconds = 60, last_attempted_at = now() AT TIME ZONE 'UTC';",
    )
    .unwrap();
    // Under UTC the backoff runs for another minute.
    Spi::run("SET LOCAL TimeZone = 'UTC'").unwrap();
    assert_eq!(one::<bool>("SELECT ready_for_execution FROM tasker_core.get_step_readiness_status(1)"), Some(false));
    // Under +05:45 the stored value reads as 5h45 in the past: the backoff is over.
    Spi::run("SET LOCAL TimeZone = 'Asia/Kathmandu'").unwrap();
    assert_eq!(one::<bool>("SELECT ready_for_execution FROM tasker_core.get_step_readiness_status(1)"), Some(true));
    // Under UTC-5 it reads as 5 h in the future: not ready.
    Spi::run("SET LOCAL TimeZone = 'America/New_York'").unwrap();
    assert_eq!(one::<bool>("SELECT ready_for_execution FROM tasker_core.get_step_readiness_status(1)"), Some(false));
}

#[pg_test]
fn backoff_overflow_raises_like_the_original() {
    tasker_db();
    Spi::run("SELECT pg_temp.step(1, 1, 1); UPDATE tasker_workflow_steps SET attempts = 50, retry_limit = 99; SELECT pg_temp.move(1, 'error');")
        .unwrap();
    assert_eq!(error_of("SELECT * FROM tasker_core.get_step_readiness_status(1)").as_deref(), Some("22008: interval out of range"));
}

#[pg_test]
fn execution_context() {
    diamond();
    Spi::run(
        "INSERT INTO tasker_task_transitions (task_id, to_state, sort_key, most_recent, created_at, updated_at)
         VALUES (1, 'in_progress', 10, true, now(), now())",
    )
    .unwrap();
    assert_eq!(
        text("SELECT format('%s %s %s/%s/%s/%s/%s/%s %s %s %s %s', task_id, status, total_steps, pending_steps, in_progress_steps,
                             completed_steps, failed_steps, ready_steps, execution_status, recommended_action, completion_percentage, health_status)
                FROM tasker_core.get_task_execution_context(1)"),
        "1 in_progress 4/2/0/2/0/1 has_ready_steps execute_ready_steps 50.00 healthy"
    );
    // Task 2 exists without steps; 99 does not exist.
    assert_eq!(
        text("SELECT format('%s %s %s %s %s', status, total_steps, execution_status, completion_percentage, health_status) FROM tasker_core.get_task_execution_context(2)"),
        "pending 0 waiting_for_dependencies 0.0 healthy"
    );
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.get_task_execution_context(99)"), Some(0));
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.get_task_execution_context(NULL)"), Some(0));
    assert_eq!(
        text("SELECT string_agg(task_id::text, ',' ORDER BY ordinality) FROM tasker_core.get_task_execution_contexts_batch('{2,1,99,NULL,2}') WITH ORDINALITY"),
        "1,2,2"
    );
}

#[pg_test]
fn dependency_levels_and_cycles() {
    diamond();
    assert_eq!(
        text("SELECT string_agg(workflow_step_id || '@' || dependency_level, ' ' ORDER BY ordinality) FROM tasker_core.calculate_dependency_levels(1) WITH ORDINALITY"),
        "1@0 2@1 3@1 4@2"
    );
    // A cycle nobody reaches from a root: its steps are absent.
    Spi::run("SELECT pg_temp.step(5, 1, 5), pg_temp.step(6, 1, 6); SELECT pg_temp.edge(5, 6), pg_temp.edge(6, 5);").unwrap();
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.calculate_dependency_levels(1)"), Some(4));
    // A cycle reachable from root 1: a clear error instead of running forever.
    Spi::run("SELECT pg_temp.edge(4, 2)").unwrap();
    let err = error_of("SELECT * FROM tasker_core.calculate_dependency_levels(1)").unwrap();
    assert!(err.starts_with("22000: workflow step graph of task 1 has a cycle reachable from a root step: "), "{err}");
    assert!(err.contains("2 -> 4 -> 2"), "{err}");
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.calculate_dependency_levels(NULL)"), Some(0));
}

#[pg_test]
fn enable_and_disable_round_trip() {
    diamond();
    Spi::run(RAILS_FUNCTIONS).unwrap();
    let defs = "SELECT string_agg(pg_get_functiondef(p.oid), E'\\n' ORDER BY p.proname) FROM pg_proc p
                 WHERE p.pronamespace = 'public'::regnamespace AND p.proname IN (SELECT function_name FROM tasker_core.drop_in_functions())";
    let before = text(defs);
    assert_eq!(text("SELECT string_agg(DISTINCT state, ',') FROM tasker_core.status()"), "original");
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.enable() WHERE action = 'replaced with native'"), Some(6));
    assert_eq!(text("SELECT string_agg(DISTINCT state, ',') FROM tasker_core.status()"), "native");
    // Idempotent.
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.enable() WHERE action = 'already native'"), Some(6));
    // Rails' own SQL text now runs the native code: the function statistics of this
    // transaction count a call of tasker_core.get_step_readiness_status.
    Spi::run("SET LOCAL track_functions = 'all'").unwrap();
    assert_eq!(one::<i64>("SELECT count(*) FROM get_step_readiness_status(1::BIGINT, NULL::BIGINT[])"), Some(4));
    assert_eq!(
        one::<i64>("SELECT calls FROM pg_stat_xact_user_functions WHERE schemaname = 'tasker_core' AND funcname = 'get_step_readiness_status'"),
        Some(1)
    );
    assert!(text("SELECT pg_get_functiondef('public.get_step_readiness_status(bigint,bigint[])'::regprocedure)").contains("tasker_core.get_step_readiness_status"));
    // The extension cannot be dropped from under Rails while enabled.
    assert!(error_of("DROP EXTENSION tasker_core").unwrap().starts_with("2BP01:"));
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.disable() WHERE action = 'restored'"), Some(6));
    assert_eq!(text(defs), before, "disable must restore the Rails definitions exactly");
    assert_eq!(text("SELECT string_agg(DISTINCT state, ',') FROM tasker_core.status()"), "original");
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.disable()"), Some(0));
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.replaced_functions"), Some(0));
}

#[pg_test]
fn enable_creates_missing_functions_and_disable_drops_them() {
    tasker_db();
    assert_eq!(text("SELECT string_agg(DISTINCT state, ',') FROM tasker_core.status()"), "missing");
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.enable() WHERE action = 'created native'"), Some(6));
    assert_eq!(one::<i64>("SELECT count(*) FROM get_task_execution_context(1::BIGINT)"), Some(1));
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.disable() WHERE action LIKE 'dropped%'"), Some(6));
    assert_eq!(text("SELECT string_agg(DISTINCT state, ',') FROM tasker_core.status()"), "missing");
}

#[pg_test]
fn enable_refuses_a_different_signature_and_changes_nothing() {
    tasker_db();
    Spi::run(RAILS_FUNCTIONS).unwrap();
    Spi::run("DROP FUNCTION public.calculate_dependency_levels(bigint);
              CREATE FUNCTION public.calculate_dependency_levels(input_task_id bigint) RETURNS TABLE (step bigint, lvl int)
              LANGUAGE sql AS 'SELECT 1::bigint, 1'").unwrap();
    let err = error_of("SELECT * FROM tasker_core.enable()").unwrap();
    assert!(err.starts_with("42P13: cannot enable tasker_core: public.calculate_dependency_levels has a different signature"), "{err}");
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.status() WHERE state = 'native'"), Some(0));
    assert_eq!(error_of("SELECT * FROM tasker_core.enable('no_such_schema')").as_deref(), Some("3F000: schema \"no_such_schema\" does not exist"));
}
