// `#[pg_test]`s: each rule and edge case of the drop-in functions and of enable/disable,
// run inside a real PostgreSQL (each test in its own rolled-back transaction). Expected
// values are worked out by hand from functions.md, never copied from the code's output.

use pgrx::prelude::*;

/// The Tasker schema as Rails ships it (the facts of the engine's structure.sql).
const SCHEMA: &str = include_str!("../../tests/fixtures/tasker_schema.sql");
/// The schema as the spec summarizes it: other column orders and index names, and the
/// most_recent index written `WHERE most_recent`.
const MINIMAL_SCHEMA: &str = include_str!("../../tests/fixtures/tasker_schema_minimal.sql");
const RAILS_FUNCTIONS: &str = include_str!("../../tests/fixtures/reference_functions.sql");
const RAILS_ANALYTICS: &str = include_str!("../../tests/fixtures/reference_analytics.sql");

thread_local! {
    /// Set by the `*_on_step_state` twins: `tasker_db` then enables the derived step state
    /// before any row exists, so its triggers follow every write of the test.
    static STEP_STATE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Set by `on_another_layout`: `tasker_db` then alters step_state before enabling it.
    static ANOTHER_LAYOUT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Set by the `*_on_minimal_schema` twins: `tasker_db` loads the minimal fixture.
    static MINIMAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs a test body with the derived step state enabled from the start, then checks it was
/// used and stayed exact: still valid, every read took the step state, and
/// step_state_verify() finds nothing.
fn on_step_state(body: fn()) {
    Spi::run("SELECT tasker_core.read_path_stats_reset()").unwrap();
    with_flag(&STEP_STATE, body);
    assert_eq!(one::<bool>("SELECT valid FROM tasker_core.step_state_source"), Some(true), "step_state still valid");
    assert_eq!(verify(), "exact");
    // A read that fell back to SQL without the test asking for it would be a silent fallback.
    let paths = text("SELECT coalesce(string_agg(DISTINCT path, ','), 'none') FROM tasker_core.read_path_stats()");
    assert!(paths == "step_state" || paths == "sql,step_state" || paths == "none", "paths taken: {paths}");
    assert_ne!(paths, "none", "the test read nothing through the read functions");
}

/// Runs a test body on the minimal fixture (the spec's summary of the schema).
fn on_minimal_schema(body: fn()) {
    with_flag(&MINIMAL, body);
}

/// Generates a `#[pg_test]` twin of each named test that runs it on the minimal fixture, with
/// the step state.
macro_rules! on_minimal_schema_too {
    ($($test:ident => $twin:ident),* $(,)?) => {$(
        #[pg_test]
        fn $twin() {
            on_minimal_schema(|| on_step_state($test));
        }
    )*};
}

on_minimal_schema_too!(
    diamond_readiness => diamond_readiness_on_minimal_schema,
    execution_context => execution_context_on_minimal_schema,
    batch_scans_agree_with_the_reference => batch_scans_on_minimal_schema,
    health_counts_match_the_reference => health_counts_on_minimal_schema,
);

/// Runs `body` with `flag` set, and clears it however `body` ends.
fn with_flag(flag: &'static std::thread::LocalKey<std::cell::Cell<bool>>, body: impl FnOnce()) {
    struct Reset(&'static std::thread::LocalKey<std::cell::Cell<bool>>);
    impl Drop for Reset {
        fn drop(&mut self) {
            self.0.with(|s| s.set(false));
        }
    }
    let _reset = Reset(flag);
    flag.with(|s| s.set(true));
    body();
}

/// Generates a `#[pg_test]` twin of each named test that runs it on the derived step state.
macro_rules! on_step_state_too {
    ($($test:ident => $twin:ident),* $(,)?) => {$(
        #[pg_test]
        fn $twin() {
            on_step_state($test);
        }
    )*};
}

on_step_state_too!(
    diamond_readiness => diamond_readiness_on_step_state,
    readiness_arguments => readiness_arguments_on_step_state,
    duplicate_and_cross_task_edges_count_as_parents => duplicate_and_cross_task_edges_on_step_state,
    step_without_named_step_is_left_out => step_without_named_step_on_step_state,
    retry_backoff_rules => retry_backoff_rules_on_step_state,
    session_time_zone_reads_stored_timestamps_as_local => session_time_zone_on_step_state,
    backoff_overflow_raises_like_the_original => backoff_overflow_on_step_state,
    execution_context => execution_context_on_step_state,
    dependency_levels_and_cycles => dependency_levels_and_cycles_on_step_state,
    row_level_security_is_applied_as_sql_applies_it => row_level_security_on_step_state,
    both_read_paths_agree => both_read_paths_agree_on_step_state,
    result_rows_read_back_as_the_reference_writes_them => result_rows_read_back_on_step_state,
    health_counts_match_the_reference => health_counts_on_step_state,
    batch_scans_agree_with_the_reference => batch_scans_on_step_state,
);

/// The Tasker tables plus a few reference rows and two helpers:
/// `pg_temp.step(id, task, named_step)` and `pg_temp.move(step, state [, at])`.
fn tasker_db() {
    Spi::run(if MINIMAL.with(|m| m.get()) { MINIMAL_SCHEMA } else { SCHEMA }).unwrap();
    if STEP_STATE.with(|s| s.get()) {
        if ANOTHER_LAYOUT.with(|s| s.get()) {
            // Only now: the tests run concurrently, and creating the Tasker tables (above) is
            // where they wait for one another. Altering the shared step_state before that
            // deadlocked with a test that had enabled it and was waiting there for this one.
            Spi::run(
                "ALTER TABLE tasker_core.step_state ADD COLUMN spare integer DEFAULT 7;
                 ALTER TABLE tasker_core.step_state DROP COLUMN spare;",
            )
            .unwrap();
        }
        Spi::run("SELECT count(*) FROM tasker_core.step_state_enable()").unwrap();
    }
    Spi::run(
        r#"
        INSERT INTO tasker_task_namespaces (task_namespace_id, name, created_at, updated_at) VALUES (1, 'default', now(), now());
        INSERT INTO tasker_dependent_systems (dependent_system_id, name, created_at, updated_at) VALUES (1, 'sys', now(), now());
        INSERT INTO tasker_named_tasks (named_task_id, name, task_namespace_id, created_at, updated_at) VALUES (7, 'job', 1, now(), now());
        INSERT INTO tasker_named_steps (named_step_id, dependent_system_id, name, created_at, updated_at)
             SELECT g, 1, 'step_' || g, now(), now() FROM generate_series(1, 20) g;
        INSERT INTO tasker_tasks (task_id, named_task_id, requested_at, identity_hash, created_at, updated_at)
             SELECT g, 7, now(), 'h' || g, now(), now() FROM generate_series(1, 5) g;
        CREATE OR REPLACE FUNCTION pg_temp.step(id bigint, task bigint, named integer) RETURNS void LANGUAGE sql AS $$
            INSERT INTO tasker_workflow_steps (workflow_step_id, task_id, named_step_id, attempts, created_at, updated_at)
            VALUES (id, task, named, 0, now(), now());
            SELECT tests.as_at_commit() $$;
        CREATE OR REPLACE FUNCTION pg_temp.move(s bigint, state text, at timestamp DEFAULT (now() AT TIME ZONE 'UTC')) RETURNS void LANGUAGE sql AS $$
            UPDATE tasker_workflow_step_transitions SET most_recent = false WHERE workflow_step_id = s AND most_recent;
            INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
            SELECT s, state, coalesce(max(sort_key), 0) + 10, true, at, at FROM tasker_workflow_step_transitions WHERE workflow_step_id = s;
            SELECT tests.as_at_commit() $$;
        CREATE OR REPLACE FUNCTION pg_temp.edge(a bigint, b bigint) RETURNS void LANGUAGE sql AS $$
            INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at) VALUES (a, b, 'provides', now(), now());
            SELECT tests.as_at_commit() $$;
        "#,
    )
    .unwrap();
}

/// Does to the step state what a commit of the test's transaction would (each test runs in one
/// rolled-back transaction): refreshes the rows of what it wrote (pg::step_state::deferred).
/// `pg_temp.move`, `pg_temp.step` and `pg_temp.edge` call it, so the reads that follow use the
/// step state, as after a commit; until then they read with SQL.
#[pg_extern]
fn as_at_commit() {
    crate::pg::step_state::deferred::apply();
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

/// Runs `sql`; returns "SQLSTATE constraint table: message" if it raised, None otherwise.
fn violation_of(sql: &str) -> Option<String> {
    Spi::run(
        "CREATE OR REPLACE FUNCTION pg_temp.try_violation(q text) RETURNS text LANGUAGE plpgsql AS $$
         DECLARE c text; t text;
         BEGIN EXECUTE q; RETURN NULL;
         EXCEPTION WHEN OTHERS THEN
             GET STACKED DIAGNOSTICS c = CONSTRAINT_NAME, t = TABLE_NAME;
             RETURN SQLSTATE || ' ' || coalesce(nullif(c, ''), '-') || ' ' || coalesce(nullif(t, ''), '-') || ': ' || SQLERRM;
         END $$",
    )
    .unwrap();
    Spi::get_one_with_args::<String>("SELECT pg_temp.try_violation($1)", &[sql.into()]).unwrap()
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
    // Called in the select list (ProjectSet) rather than FROM (FunctionScan).
    assert_eq!(one::<i64>("SELECT count(*) FROM (SELECT tasker_core.get_step_readiness_status(1)) s"), Some(4));
    assert_eq!(
        text("SELECT (tasker_core.calculate_dependency_levels(1)).dependency_level::text ORDER BY 1 DESC LIMIT 1"),
        "2"
    );
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
         UPDATE tasker_workflow_steps SET retryable = false WHERE workflow_step_id = 5;
         SELECT tests.as_at_commit();",
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
         UPDATE tasker_workflow_steps SET backoff_request_seconds = 60, last_attempted_at = now() AT TIME ZONE 'UTC';
         SELECT tests.as_at_commit();",
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
         VALUES (1, 'in_progress', 10, true, now(), now());
         SELECT tests.as_at_commit();",
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
    Spi::run(RAILS_ANALYTICS).unwrap();
    let defs = "SELECT string_agg(pg_get_functiondef(p.oid), E'\\n' ORDER BY p.proname) FROM pg_proc p
                 WHERE p.pronamespace = 'public'::regnamespace AND p.proname IN (SELECT function_name FROM tasker_core.drop_in_functions())";
    let before = text(defs);
    assert_eq!(text("SELECT string_agg(DISTINCT state, ',') FROM tasker_core.status() WHERE kind = 'function'"), "original");
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.enable() WHERE action = 'replaced with native'"), Some(9));
    assert_eq!(text("SELECT string_agg(DISTINCT state, ',') FROM tasker_core.status() WHERE kind = 'function'"), "native");
    // Idempotent.
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.enable() WHERE action = 'already native'"), Some(9));
    // Rails' own SQL text now runs the native code: the function statistics of this
    // transaction count a call of tasker_core.get_step_readiness_status.
    Spi::run("SET LOCAL track_functions = 'all'").unwrap();
    assert_eq!(one::<i64>("SELECT count(*) FROM get_step_readiness_status(1::BIGINT, NULL::BIGINT[])"), Some(4));
    assert_eq!(
        one::<i64>("SELECT calls FROM pg_stat_xact_user_functions WHERE schemaname = 'tasker_core' AND funcname = 'get_step_readiness_status'"),
        Some(1)
    );
    assert!(text("SELECT pg_get_functiondef('public.get_step_readiness_status(bigint,bigint[])'::regprocedure)").contains("tasker_core.get_step_readiness_status"));
    // Rails' definitions are kept next to Rails' functions, as functions of the same owner.
    assert_eq!(
        one::<i64>("SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND proname LIKE '%\\_before\\_tasker\\_core'"),
        Some(9)
    );
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.disable() WHERE action = 'restored'"), Some(9));
    assert_eq!(text(defs), before, "disable must restore the Rails definitions exactly");
    assert_eq!(text("SELECT string_agg(DISTINCT state, ',') FROM tasker_core.status() WHERE kind = 'function'"), "original");
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.disable()"), Some(0));
    assert_eq!(
        one::<i64>("SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND proname LIKE '%\\_before\\_tasker\\_core'"),
        Some(0),
        "disable drops the copies it restored from"
    );
}

#[pg_test]
fn enable_creates_missing_functions_and_disable_drops_them() {
    tasker_db();
    assert_eq!(text("SELECT string_agg(DISTINCT state, ',') FROM tasker_core.status() WHERE kind = 'function'"), "missing");
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.enable() WHERE action = 'created native'"), Some(9));
    assert_eq!(one::<i64>("SELECT count(*) FROM get_task_execution_context(1::BIGINT)"), Some(1));
    assert_eq!(one::<i64>("SELECT count(*) FROM get_analytics_metrics_v01()"), Some(1));
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.disable() WHERE action LIKE 'dropped%'"), Some(9));
    assert_eq!(text("SELECT string_agg(DISTINCT state, ',') FROM tasker_core.status() WHERE kind = 'function'"), "missing");
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
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.status() WHERE kind = 'function' AND state = 'native'"), Some(0));
    assert_eq!(error_of("SELECT * FROM tasker_core.enable('no_such_schema')").as_deref(), Some("3F000: schema \"no_such_schema\" does not exist"));
}

// ---------------------------------------------------------------------------------------
// Guards (triggers). Expected tables are written out from state-machines.md by hand.

const STATES: [&str; 6] = ["pending", "in_progress", "complete", "error", "cancelled", "resolved_manually"];

/// Step moves allowed by state-machines.md; `None` is "no rows yet".
fn spec_step_allows(from: Option<&str>, to: &str) -> bool {
    let allowed: &[&str] = match from {
        None => &["pending", "in_progress", "error", "cancelled", "resolved_manually"],
        Some("pending") => &["in_progress", "error", "cancelled", "resolved_manually"],
        Some("in_progress") => &["complete", "error", "cancelled"],
        Some("error") => &["pending", "resolved_manually"],
        _ => &[],
    };
    allowed.contains(&to)
}

fn spec_task_allows(from: Option<&str>, to: &str) -> bool {
    let allowed: &[&str] = match from {
        None => &["pending", "in_progress", "cancelled", "error"],
        Some("pending") => &["in_progress", "cancelled", "error"],
        Some("in_progress") => &["complete", "error", "cancelled", "pending"],
        Some("error") => &["pending", "resolved_manually"],
        Some("complete") | Some("resolved_manually") => &["cancelled"],
        _ => &[],
    };
    allowed.contains(&to)
}

/// Tasker tables with the guard triggers installed (functions left alone).
fn guarded_db() {
    tasker_db();
    Spi::run("SELECT * FROM tasker_core.enable(functions => false)").unwrap();
}

/// Inserts a transition the way Statesman does (clear the flag, then insert with sort_key + 10).
fn statesman_step(step: i64, to: &str) -> Option<String> {
    violation_of(&format!(
        "UPDATE tasker_workflow_step_transitions SET most_recent = false WHERE workflow_step_id = {step} AND most_recent;
         INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
         SELECT {step}, '{to}', coalesce(max(sort_key), 0) + 10, true, now(), now() FROM tasker_workflow_step_transitions WHERE workflow_step_id = {step}"
    ))
}

fn statesman_task(task: i64, to: &str) -> Option<String> {
    violation_of(&format!(
        "UPDATE tasker_task_transitions SET most_recent = false WHERE task_id = {task} AND most_recent;
         INSERT INTO tasker_task_transitions (task_id, to_state, sort_key, most_recent, created_at, updated_at)
         SELECT {task}, '{to}', coalesce(max(sort_key), 0) + 10, true, now(), now() FROM tasker_task_transitions WHERE task_id = {task}"
    ))
}

#[pg_test]
fn every_step_move_matches_the_spec() {
    guarded_db();
    let mut id = 100;
    for from in std::iter::once(None).chain(STATES.iter().map(|s| Some(*s))) {
        for to in STATES {
            id += 1;
            Spi::run(&format!("SELECT pg_temp.step({id}, 1, 1)")).unwrap();
            if let Some(f) = from {
                // Put the step in `from` without the guards (legacy data may be anything).
                Spi::run(&format!("SET LOCAL tasker_core.guard_mode = 'off'; SELECT pg_temp.move({id}, '{f}'); SET LOCAL tasker_core.guard_mode = 'enforce';")).unwrap();
            }
            let err = statesman_step(id, to);
            let expect = spec_step_allows(from, to);
            assert_eq!(err.is_none(), expect, "step {from:?} -> {to}: {err:?}");
            if let Some(e) = err {
                assert!(e.starts_with("23514 tasker_step_transition_allowed tasker_workflow_step_transitions: "), "{e}");
            }
        }
    }
}

#[pg_test]
fn every_task_move_matches_the_spec() {
    guarded_db();
    // Task guard: completing needs every step done; these tasks have no steps.
    Spi::run("INSERT INTO tasker_tasks (task_id, named_task_id, requested_at, identity_hash, created_at, updated_at)
              SELECT g, 7, now(), 'x' || g, now(), now() FROM generate_series(100, 160) g").unwrap();
    let mut id = 99;
    for from in std::iter::once(None).chain(STATES.iter().map(|s| Some(*s))) {
        for to in STATES {
            id += 1;
            if let Some(f) = from {
                Spi::run(&format!("SET LOCAL tasker_core.guard_mode = 'off';
                    INSERT INTO tasker_task_transitions (task_id, to_state, sort_key, most_recent, created_at, updated_at) VALUES ({id}, '{f}', 10, true, now(), now());
                    SET LOCAL tasker_core.guard_mode = 'enforce';")).unwrap();
            }
            let err = statesman_task(id, to);
            assert_eq!(err.is_none(), spec_task_allows(from, to), "task {from:?} -> {to}: {err:?}");
        }
    }
}

#[pg_test]
fn both_writer_orders_leave_one_most_recent_row() {
    guarded_db();
    Spi::run("SELECT pg_temp.step(1, 1, 1)").unwrap();
    assert_eq!(statesman_step(1, "pending"), None);
    // Insert first (flag still set on the old row), clear afterwards.
    Spi::run(
        "INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
         VALUES (1, 'in_progress', 20, true, now(), now());
         UPDATE tasker_workflow_step_transitions SET most_recent = false WHERE workflow_step_id = 1 AND most_recent AND sort_key < 20;",
    )
    .unwrap();
    assert_eq!(
        text("SELECT string_agg(format('%s:%s:%s:%s', sort_key, coalesce(from_state, '-'), to_state, most_recent), ' ' ORDER BY sort_key) FROM tasker_workflow_step_transitions WHERE workflow_step_id = 1"),
        "10:-:pending:f 20:pending:in_progress:t"
    );
}

/// The guard clears the flag on the owner's other rows only when one is flagged: a Statesman
/// move (flag cleared first) runs no UPDATE of its own, which would fire the tables' statement
/// triggers (the step state's, the application's) for nothing. Counted by a statement trigger.
#[pg_test]
fn a_statesman_move_runs_no_update_of_the_guards() {
    guarded_db();
    Spi::run("SELECT pg_temp.step(1, 1, 1)").unwrap();
    Spi::run(
        "CREATE TEMP TABLE update_statements (n int); INSERT INTO update_statements VALUES (0);
         CREATE FUNCTION pg_temp.count_updates() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN UPDATE update_statements SET n = n + 1; RETURN NULL; END $$;
         CREATE TRIGGER count_updates AFTER UPDATE ON tasker_workflow_step_transitions
           FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.count_updates();",
    )
    .unwrap();
    let updates = || text("SELECT n::text FROM update_statements");
    assert_eq!(statesman_step(1, "pending"), None);
    assert_eq!(statesman_step(1, "in_progress"), None);
    assert_eq!(updates(), "2", "the writer's two UPDATEs, none of the guard's");
    // Insert first: the old row is still flagged, so the guard clears it (one UPDATE).
    Spi::run(
        "INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
         VALUES (1, 'complete', 30, true, now(), now())",
    )
    .unwrap();
    assert_eq!(updates(), "3");
    assert_eq!(
        text("SELECT string_agg(format('%s:%s', sort_key, most_recent), ' ' ORDER BY sort_key) FROM tasker_workflow_step_transitions WHERE workflow_step_id = 1"),
        "10:f 20:f 30:t"
    );
}

#[pg_test]
fn from_state_and_sort_key_are_filled_or_checked() {
    guarded_db();
    Spi::run("SELECT pg_temp.step(1, 1, 1)").unwrap();
    Spi::run("INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
              VALUES (1, 'pending', NULL, true, now(), now())").unwrap();
    Spi::run("INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, from_state, sort_key, most_recent, created_at, updated_at)
              VALUES (1, 'in_progress', NULL, NULL, true, now(), now())").unwrap();
    assert_eq!(
        text("SELECT string_agg(format('%s:%s:%s', sort_key, coalesce(from_state, '-'), to_state), ' ' ORDER BY sort_key) FROM tasker_workflow_step_transitions WHERE workflow_step_id = 1"),
        "10:-:pending 20:pending:in_progress"
    );
    let e = violation_of("INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, from_state, sort_key, most_recent, created_at, updated_at)
                          VALUES (1, 'complete', 'pending', NULL, true, now(), now())").unwrap();
    assert_eq!(e, "23514 tasker_transition_from_state tasker_workflow_step_transitions: workflow step 1: from_state 'pending' does not match the current state 'in_progress'");
    let e = violation_of("INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
                          VALUES (1, 'complete', 20, true, now(), now())").unwrap();
    assert!(e.starts_with("23514 tasker_transition_sort_key "), "{e}");
    assert_eq!(violation_of("INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, from_state, sort_key, most_recent, created_at, updated_at)
                             VALUES (1, 'complete', 'in_progress', 25, true, now(), now())"), None);
    let e = violation_of("INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, most_recent, created_at, updated_at)
                          VALUES (1, 'Complete', true, now(), now())").unwrap();
    assert!(e.starts_with("23514 tasker_transition_state tasker_workflow_step_transitions: workflow step 1: 'Complete' is not a state"), "{e}");
}

#[pg_test]
fn step_guard_needs_finished_parents() {
    guarded_db();
    Spi::run("SELECT pg_temp.step(g, 1, g::int) FROM generate_series(1, 3) g; SELECT pg_temp.edge(1, 3), pg_temp.edge(2, 3);").unwrap();
    for s in 1..=3 {
        assert_eq!(statesman_step(s, "pending"), None);
    }
    assert_eq!(statesman_step(1, "in_progress"), None);
    assert_eq!(statesman_step(1, "complete"), None);
    let e = statesman_step(3, "in_progress").unwrap();
    assert_eq!(e, "23514 tasker_step_dependencies_met tasker_workflow_step_transitions: workflow step 3 cannot start: 1 of its 2 parent steps are not finished");
    assert_eq!(statesman_step(2, "resolved_manually"), None);
    assert_eq!(statesman_step(3, "in_progress"), None);
}

#[pg_test]
fn task_guard_needs_finished_steps() {
    guarded_db();
    Spi::run("SELECT pg_temp.step(g, 1, g::int) FROM generate_series(1, 2) g;").unwrap();
    assert_eq!(statesman_task(1, "pending"), None);
    assert_eq!(statesman_task(1, "in_progress"), None);
    let e = statesman_task(1, "complete").unwrap();
    assert!(e.starts_with("23514 tasker_task_steps_complete tasker_task_transitions: task 1 cannot complete: 2 of its 2 steps are not finished"), "{e}");
    for (s, path) in [(1, ["pending", "in_progress", "complete"].as_slice()), (2, ["pending", "resolved_manually"].as_slice())] {
        for to in path {
            assert_eq!(statesman_step(s, to), None);
        }
    }
    assert_eq!(statesman_task(1, "complete"), None);
    // A task with no steps may complete.
    assert_eq!(statesman_task(2, "in_progress"), None);
    assert_eq!(statesman_task(2, "complete"), None);
}

#[pg_test]
fn history_is_append_only_but_flags_and_deletes_are_allowed() {
    guarded_db();
    Spi::run("SELECT pg_temp.step(1, 1, 1)").unwrap();
    assert_eq!(statesman_step(1, "pending"), None);
    let e = violation_of("UPDATE tasker_workflow_step_transitions SET to_state = 'complete' WHERE workflow_step_id = 1").unwrap();
    assert!(e.starts_with("23514 tasker_transition_append_only tasker_workflow_step_transitions: workflow step 1: transition history is append-only; cannot change to_state"), "{e}");
    assert!(violation_of("UPDATE tasker_workflow_step_transitions SET sort_key = 5").is_some());
    // A NULL is a change too: the guard refuses it before (and without) the NOT NULL constraint.
    let e = violation_of("UPDATE tasker_workflow_step_transitions SET sort_key = NULL WHERE workflow_step_id = 1").unwrap();
    assert!(e.starts_with("23514 tasker_transition_append_only tasker_workflow_step_transitions: workflow step 1: transition history is append-only; cannot change sort_key"), "{e}");
    assert_eq!(violation_of("UPDATE tasker_workflow_step_transitions SET most_recent = false, metadata = '{\"a\": 1}', updated_at = now()"), None);
    assert_eq!(violation_of("UPDATE tasker_workflow_step_transitions SET to_state = to_state"), None);
    assert_eq!(violation_of("DELETE FROM tasker_workflow_step_transitions WHERE workflow_step_id = 1"), None);
}

#[pg_test]
fn edges_stay_a_dag_within_one_task() {
    guarded_db();
    Spi::run("SELECT pg_temp.step(g, 1, g::int) FROM generate_series(1, 4) g; SELECT pg_temp.step(9, 2, 9);").unwrap();
    let edge = |a: i64, b: i64| violation_of(&format!("SELECT pg_temp.edge({a}, {b})"));
    assert_eq!(edge(1, 2), None);
    assert_eq!(edge(2, 3), None);
    assert_eq!(edge(3, 4), None);
    assert_eq!(edge(1, 3), None); // a diamond is fine
    assert_eq!(edge(1, 3), None); // so is a duplicate edge
    // Breadth first: the shortest closing path (1 -> 3 is a direct edge).
    assert_eq!(edge(4, 1).unwrap(), "23514 tasker_edge_acyclic tasker_workflow_step_edges: edge 4 -> 1 would close a cycle: 4 -> 1 -> 3 -> 4");
    assert_eq!(edge(2, 2).unwrap(), "23514 tasker_edge_no_self_loop tasker_workflow_step_edges: edge 2 -> 2: a step cannot depend on itself");
    assert_eq!(edge(1, 9).unwrap(), "23514 tasker_edge_same_task tasker_workflow_step_edges: edge 1 -> 9 joins steps of different tasks (1 and 2)");
    // Re-pointing an edge is checked without the edge being changed: 3 -> 4 may become 4 -> 2
    // (once 3 -> 4 is gone nothing leads from 2 back to 4)...
    assert_eq!(
        violation_of("UPDATE tasker_workflow_step_edges SET from_step_id = 4, to_step_id = 2 WHERE from_step_id = 3 AND to_step_id = 4"),
        None
    );
    // ...but 1 -> 2 may not become 3 -> 1, since 1 -> 3 exists.
    let e = violation_of("UPDATE tasker_workflow_step_edges SET from_step_id = 3, to_step_id = 1 WHERE from_step_id = 1 AND to_step_id = 2").unwrap();
    assert_eq!(e, "23514 tasker_edge_acyclic tasker_workflow_step_edges: edge 3 -> 1 would close a cycle: 3 -> 1 -> 3");
    assert_eq!(violation_of("UPDATE tasker_workflow_step_edges SET to_step_id = 4 WHERE from_step_id = 1 AND to_step_id = 2"), None);
    assert_eq!(violation_of("UPDATE tasker_workflow_step_edges SET name = 'renamed'"), None);
}

#[pg_test]
fn enabling_guards_never_rewrites_existing_rows() {
    tasker_db();
    // Legacy data: a cycle and an illegal history, written before the guards exist.
    Spi::run("SELECT pg_temp.step(1, 1, 1), pg_temp.step(2, 1, 2); SELECT pg_temp.edge(1, 2), pg_temp.edge(2, 1);
              SELECT pg_temp.move(1, 'complete'), pg_temp.move(1, 'pending');").unwrap();
    let snapshot = "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM (SELECT * FROM tasker_workflow_step_transitions) t";
    let edges = "SELECT md5(string_agg(e::text, ',' ORDER BY e::text)) FROM tasker_workflow_step_edges e";
    let (before_t, before_e) = (text(snapshot), text(edges));
    Spi::run("SELECT * FROM tasker_core.enable(functions => false)").unwrap();
    assert_eq!((text(snapshot), text(edges)), (before_t, before_e));
    assert_eq!(text("SELECT string_agg(DISTINCT state, ',') FROM tasker_core.status() WHERE kind = 'trigger'"), "installed");
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.status() WHERE kind = 'trigger'"), Some(7));
    // Idempotent, and disable removes them.
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.enable(functions => false) WHERE action = 'already installed'"), Some(7));
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.disable() WHERE action = 'removed'"), Some(7));
    assert_eq!(text("SELECT string_agg(DISTINCT state, ',') FROM tasker_core.status() WHERE kind = 'trigger'"), "absent");
}

#[pg_test]
fn guard_modes() {
    guarded_db();
    Spi::run("SELECT pg_temp.step(1, 1, 1)").unwrap();
    assert_eq!(statesman_step(1, "pending"), None);
    Spi::run("SET LOCAL tasker_core.guard_mode = 'warn'").unwrap();
    assert_eq!(statesman_step(1, "complete"), None, "warn accepts the row");
    assert_eq!(text("SELECT from_state FROM tasker_workflow_step_transitions WHERE workflow_step_id = 1 AND most_recent"), "pending");
    Spi::run("SET LOCAL tasker_core.guard_mode = 'off'").unwrap();
    assert_eq!(statesman_step(1, "bogus"), None, "off checks nothing");
    Spi::run("SET LOCAL tasker_core.guard_mode = 'enforce'").unwrap();
    assert!(statesman_step(1, "pending").is_some(), "no move out of an unknown state");
    assert_eq!(error_of("SET LOCAL tasker_core.guard_mode = 'sometimes'").map(|e| e[..5].to_string()).as_deref(), Some("22023"));
}

#[pg_test]
fn copy_goes_through_the_guards_and_replica_role_skips_them() {
    guarded_db();
    Spi::run("SELECT pg_temp.step(1, 1, 1)").unwrap();
    let file = format!("/tmp/tasker_core_copy_{}.csv", std::process::id());
    // The server writes the file; remove it however the test ends (it was left behind).
    struct Remove(String);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _remove = Remove(file.clone());
    Spi::run(&format!("COPY (SELECT 1::bigint AS workflow_step_id, 'complete' AS to_state, 10 AS sort_key, true AS most_recent, now()::timestamp AS created_at, now()::timestamp AS updated_at) TO '{file}' CSV")).unwrap();
    let copy = format!("COPY tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at) FROM '{file}' CSV");
    let e = violation_of(&copy).unwrap();
    assert!(e.starts_with("23514 tasker_step_transition_allowed "), "{e}");
    Spi::run("SET LOCAL session_replication_role = replica").unwrap();
    assert_eq!(violation_of(&copy), None);
    Spi::run("SET LOCAL session_replication_role = origin").unwrap();
}

#[pg_test]
fn one_transaction_may_write_twenty_thousand_transitions() {
    // Per-owner locks are row locks: a bulk load in one transaction does not run out of the
    // shared lock table (20,000 advisory locks would exceed max_locks_per_transaction * max_connections).
    guarded_db();
    Spi::run(
        "INSERT INTO tasker_workflow_steps (workflow_step_id, task_id, named_step_id, created_at, updated_at)
         SELECT g, 1, 1, now(), now() FROM generate_series(1, 20000) g;
         INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, most_recent, created_at, updated_at)
         SELECT g, 'pending', true, now(), now() FROM generate_series(1, 20000) g;",
    )
    .unwrap();
    assert_eq!(
        one::<i64>("SELECT count(*) FROM tasker_workflow_step_transitions WHERE sort_key = 10 AND from_state IS NULL AND most_recent"),
        Some(20000)
    );
}

#[pg_test]
fn row_level_security_is_applied_as_sql_applies_it() {
    // With RLS on a table the step state stands aside and the SQL path applies the policies,
    // exactly as the Rails function would.
    diamond();
    Spi::run(
        "CREATE ROLE tasker_rls_reader NOLOGIN;
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO tasker_rls_reader;
         ALTER TABLE tasker_workflow_steps ENABLE ROW LEVEL SECURITY;
         CREATE POLICY hide_step_4 ON tasker_workflow_steps FOR SELECT USING (workflow_step_id <> 4);",
    )
    .unwrap();
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.get_step_readiness_status(1)"), Some(4), "the owner is not subject to RLS");
    Spi::run("SET LOCAL ROLE tasker_rls_reader").unwrap();
    assert_eq!(text("SELECT string_agg(workflow_step_id::text, ',') FROM tasker_core.get_step_readiness_status(1)"), "1,2,3");
    assert_eq!(one::<i64>("SELECT total_steps FROM tasker_core.get_task_execution_context(1)"), Some(3));
    Spi::run("RESET ROLE").unwrap();
}

/// A superuser's call on the SQL path reads as the tables' owner (pg::sql_read, docs/security.md):
/// what the owner may not read, the superuser's call may not read either; the owner of
/// tasker_workflow_steps must read the other five in full; and an error inside restores the
/// caller.
#[pg_test]
fn a_superuser_reads_the_sql_path_as_the_tables_owner() {
    diamond();
    Spi::run(
        "CREATE ROLE tasker_test_owner_a NOLOGIN;
         CREATE ROLE tasker_test_owner_b NOLOGIN;
         ALTER TABLE tasker_workflow_steps OWNER TO tasker_test_owner_a;
         ALTER TABLE tasker_named_steps OWNER TO tasker_test_owner_a;
         ALTER TABLE tasker_workflow_step_transitions OWNER TO tasker_test_owner_a;
         ALTER TABLE tasker_workflow_step_edges OWNER TO tasker_test_owner_a;
         ALTER TABLE tasker_tasks OWNER TO tasker_test_owner_a;
         ALTER TABLE tasker_task_transitions OWNER TO tasker_test_owner_a;
         SET LOCAL tasker_core.direct_reads = off;",
    )
    .unwrap();
    let readiness = "SELECT count(*) FROM tasker_core.get_step_readiness_status(1)";
    let levels = "SELECT count(*) FROM tasker_core.calculate_dependency_levels(1)";
    assert_eq!(one::<i64>(readiness), Some(4));
    Spi::run("REVOKE SELECT ON tasker_workflow_step_edges FROM tasker_test_owner_a").unwrap();
    let refused = error_of(readiness).unwrap_or_default();
    assert!(refused.starts_with("42501: permission denied for table tasker_workflow_step_edges"), "{refused}");
    assert_eq!(text("SELECT current_user::text"), "postgres", "the error restored the caller");
    assert!(error_of(levels).unwrap_or_default().starts_with("42501"));
    Spi::run("GRANT SELECT ON tasker_workflow_step_edges TO tasker_test_owner_a").unwrap();
    // Another owner: the owner of tasker_workflow_steps needs SELECT there, with no RLS.
    Spi::run("ALTER TABLE tasker_named_steps OWNER TO tasker_test_owner_b").unwrap();
    let refused = error_of(readiness).unwrap_or_default();
    assert!(
        refused.contains("42501: a superuser reads the Tasker tables as their owner tasker_test_owner_a, who cannot read")
            && refused.contains("tasker_named_steps in full (no SELECT privilege)"),
        "{refused}"
    );
    Spi::run("GRANT SELECT ON tasker_named_steps TO tasker_test_owner_a").unwrap();
    assert_eq!(one::<i64>(readiness), Some(4));
    Spi::run("ALTER TABLE tasker_named_steps ENABLE ROW LEVEL SECURITY").unwrap();
    let refused = error_of(readiness).unwrap_or_default();
    assert!(refused.contains("(row level security applies)"), "{refused}");
}

#[pg_test]
fn both_read_paths_agree() {
    diamond();
    Spi::run("SELECT pg_temp.step(9, 2, 9); SELECT pg_temp.edge(9, 4); SELECT pg_temp.move(9, 'complete');").unwrap();
    let all = "SELECT string_agg(r::text, ';' ORDER BY r.workflow_step_id) FROM tasker_core.get_step_readiness_status_batch('{1,2}') r";
    let ctx = "SELECT string_agg(c::text, ';') FROM tasker_core.get_task_execution_contexts_batch('{2,1,1}') c";
    let lvl = "SELECT string_agg(l::text, ';') FROM tasker_core.calculate_dependency_levels(1) l";
    Spi::run("SET LOCAL tasker_core.direct_reads = on").unwrap();
    let direct = (text(all), text(ctx), text(lvl));
    Spi::run("SET LOCAL tasker_core.direct_reads = off").unwrap();
    let sql = (text(all), text(ctx), text(lvl));
    Spi::run("SET LOCAL tasker_core.direct_reads = on").unwrap();
    assert_eq!(direct, sql);
    assert!(direct.0.contains("(4,1,4,step_4,pending,f,t,f,,,3,2,0,3,,)"), "{}", direct.0);
}

/// Readiness rows are formed by pg::former: names at and past the 1-byte varlena header limit
/// (126 and 127 bytes of text), NULL and non-NULL timestamps, read back through PostgreSQL's
/// own deforming and compared with the reference SQL functions, with either former (debug
/// builds also compare every row's bytes with heap_form_minimal_tuple).
#[pg_test]
fn result_rows_read_back_as_the_reference_writes_them() {
    for former in ["specialized", "postgres"] {
        Spi::run(&format!("SET LOCAL tasker_core.row_former = {former}")).unwrap();
        result_rows_read_back(former);
        Spi::run("RESET tasker_core.row_former").unwrap();
        if STEP_STATE.with(|s| s.get()) {
            Spi::run("SELECT count(*) FROM tasker_core.step_state_disable()").unwrap();
        }
        Spi::run("DROP TABLE tasker_workflow_step_edges, tasker_workflow_step_transitions, tasker_task_transitions, tasker_workflow_steps, tasker_tasks, tasker_named_tasks_named_steps, tasker_named_steps, tasker_named_tasks, tasker_task_annotations, tasker_annotation_types, tasker_dependent_system_object_maps, tasker_dependent_systems, tasker_task_namespaces CASCADE; DROP TABLE IF EXISTS ar_internal_metadata, schema_migrations").unwrap();
    }
    // What the twin's final checks look at: a step state that is enabled and exact.
    diamond();
}

fn result_rows_read_back(former: &str) {
    diamond();
    Spi::run(RAILS_FUNCTIONS).unwrap();
    Spi::run(
        "UPDATE tasker_named_steps SET name = repeat('n', 126) WHERE named_step_id = 1;
         UPDATE tasker_named_steps SET name = repeat('m', 127) WHERE named_step_id = 2;
         UPDATE tasker_named_steps SET name = repeat('é', 128) WHERE named_step_id = 3;
         UPDATE tasker_workflow_steps SET attempts = 2, last_attempted_at = now() AT TIME ZONE 'UTC',
                backoff_request_seconds = 30 WHERE workflow_step_id = 3;
         SELECT pg_temp.move(3, 'error');",
    )
    .unwrap();
    for (native, reference) in [
        (
            "SELECT string_agg(r::text, ';' ORDER BY r.workflow_step_id) FROM tasker_core.get_step_readiness_status_batch('{1}') r",
            "SELECT string_agg(r::text, ';' ORDER BY r.workflow_step_id) FROM public.get_step_readiness_status_batch('{1}') r",
        ),
        (
            "SELECT string_agg(c::text, ';') FROM tasker_core.get_task_execution_contexts_batch('{1,2}') c",
            "SELECT string_agg(c::text, ';') FROM public.get_task_execution_contexts_batch('{1,2}') c",
        ),
    ] {
        let ours = text(native);
        assert_eq!(ours, text(reference), "{former}");
        assert!(ours.len() > 500 || native.contains("contexts"), "{ours}");
    }
    assert_eq!(
        one::<i32>("SELECT length(name) FROM tasker_core.get_step_readiness_status(1) WHERE workflow_step_id = 2"),
        Some(127)
    );
}

/// Whole-database counts (from one pass over step_state when it is enabled): the same row as
/// the reference SQL, and the hand-counted figures of the diamond plus an erroring step.
#[pg_test]
fn health_counts_match_the_reference() {
    diamond();
    Spi::run(RAILS_FUNCTIONS).unwrap();
    Spi::run(
        "SELECT pg_temp.step(5, 2, 5); SELECT pg_temp.move(5, 'pending'), pg_temp.move(5, 'error');
         UPDATE tasker_workflow_steps SET attempts = 1, retry_limit = 3, last_attempted_at = now() AT TIME ZONE 'UTC'
          WHERE workflow_step_id = 5;
         SELECT tests.as_at_commit();",
    )
    .unwrap();
    let cols = "total_tasks, pending_tasks, total_steps, pending_steps, complete_steps, error_steps,
                retryable_error_steps, exhausted_retry_steps, in_backoff_steps";
    let native = text(&format!("SELECT format('%s', ({cols})) FROM tasker_core.get_system_health_counts_v01()"));
    let reference = text(&format!("SELECT format('%s', ({cols})) FROM public.get_system_health_counts_v01()"));
    assert_eq!(native, reference);
    // 5 tasks, none with a transition (only in the total); steps 1-5: 1 complete, 2
    // resolved_manually (counted in no state column), 3 pending, 4 without a transition (only
    // in the total), 5 in error with retries left and a last attempt (retryable, in backoff).
    assert_eq!(native, "(5,0,5,1,1,1,1,0,1)");
}

/// The batch functions read step_state by index or in one sequential pass
/// (`tasker_core.batch_scan`). Rows stored out of (task, step) order (steps written in reverse,
/// then moved) and batches with duplicates, NULLs, unknown and unordered ids give the reference
/// SQL's rows, in its order, whichever way they are read.
#[pg_test]
fn batch_scans_agree_with_the_reference() {
    diamond();
    Spi::run(RAILS_FUNCTIONS).unwrap();
    Spi::run(
        "SELECT pg_temp.step(g, 6 - g / 10, (g % 20 + 1)::int) FROM generate_series(49, 10, -1) g;
         SELECT pg_temp.edge(g, g + 1) FROM generate_series(48, 10, -1) g WHERE g % 10 <> 9;
         SELECT pg_temp.edge(1, 45), pg_temp.edge(44, 46);
         SELECT pg_temp.move(g, 'pending') FROM generate_series(10, 49) g WHERE g % 3 <> 0;
         SELECT pg_temp.move(g, 'in_progress'), pg_temp.move(g, 'complete') FROM generate_series(49, 10, -1) g WHERE g % 10 < 4;
         SELECT pg_temp.move(g, 'in_progress'), pg_temp.move(g, 'error') FROM generate_series(10, 49) g WHERE g % 10 = 5;
         UPDATE tasker_workflow_steps SET attempts = 1, last_attempted_at = now() AT TIME ZONE 'UTC', backoff_request_seconds = 60
          WHERE workflow_step_id % 10 = 5;
         -- A legacy state too long for a 1-byte varlena header: a 4-byte header in the
         -- result row, aligned past padding.
         SELECT pg_temp.move(46, repeat('s', 200)), pg_temp.move(13, repeat('t', 127));",
    )
    .unwrap();
    let readiness = |schema: &str, ask: &str| {
        text(&format!(
            "SELECT string_agg(r::text, ';' ORDER BY r.o) FROM {schema}.get_step_readiness_status_batch({ask}) WITH ORDINALITY r(a, b, c, d, e, f, g, h, i, j, k, l, m, n, p, q, o)"
        ))
    };
    let contexts = |schema: &str, ask: &str| {
        text(&format!(
            "SELECT string_agg(c::text, ';' ORDER BY c.o) FROM {schema}.get_task_execution_contexts_batch({ask}) WITH ORDINALITY c(a, b, d, e, f, g, h, i, j, k, l, m, n, o)"
        ))
    };
    for ask in ["ARRAY(SELECT task_id FROM tasker_tasks)", "'{5,3,3,NULL,2,99}'", "'{4,2}'", "'{4}'", "'{}'"] {
        let reference = (readiness("public", ask), contexts("public", ask));
        assert!(ask.contains('{') || reference.0.matches(';').count() > 40, "{}", reference.0);
        for mode in ["sequential", "index", "auto"] {
            Spi::run(&format!("SET LOCAL tasker_core.batch_scan = {mode}")).unwrap();
            assert_eq!((readiness("tasker_core", ask), contexts("tasker_core", ask)), reference, "{mode}: {ask}");
        }
    }
    Spi::run("RESET tasker_core.batch_scan").unwrap();
}

/// A step_state whose columns are not the layout this library was built for (here a column
/// added and dropped again by hand: the dropped column stays in the catalog and in the rows
/// written since) is read through PostgreSQL's own deform: through a slot sequentially, by
/// index, and for only the first columns (dependency levels); same rows as the reference.
fn on_another_layout(body: fn()) {
    with_flag(&ANOTHER_LAYOUT, || on_step_state(body));
    assert_eq!(
        one::<i64>("SELECT count(*) FROM pg_attribute WHERE attrelid = 'tasker_core.step_state'::regclass AND attnum > 0"),
        Some(19)
    );
}

#[pg_test]
fn batch_scans_on_another_layout() {
    on_another_layout(batch_scans_agree_with_the_reference);
}

#[pg_test]
fn health_counts_on_another_layout() {
    on_another_layout(health_counts_match_the_reference);
}

#[pg_test]
fn dependency_levels_on_another_layout() {
    on_another_layout(dependency_levels_and_cycles);
}

#[pg_test]
fn a_partitioned_table_is_read_through_sql_not_directly() {
    // A (temp) partitioned table shadowing the Tasker table: the step state mirrors the public
    // one, so it stands aside (no crash) and the SQL path answers.
    diamond();
    Spi::run(
        "CREATE TEMP TABLE tasker_workflow_steps (LIKE public.tasker_workflow_steps INCLUDING DEFAULTS) PARTITION BY RANGE (task_id);
         CREATE TEMP TABLE tasker_workflow_steps_p PARTITION OF tasker_workflow_steps FOR VALUES FROM (0) TO (1000);
         CREATE INDEX ON tasker_workflow_steps (task_id);
         INSERT INTO tasker_workflow_steps SELECT * FROM public.tasker_workflow_steps WHERE workflow_step_id <> 2;",
    )
    .unwrap();
    assert_eq!(text("SELECT string_agg(workflow_step_id::text, ',') FROM tasker_core.get_step_readiness_status(1)"), "1,3,4");
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.calculate_dependency_levels(1)"), Some(3));
}

#[pg_test]
fn index_changes_are_picked_up_in_the_same_session() {
    // Dropping and re-creating the Tasker tables' indexes in the same session must neither
    // break nor change the answers.
    diamond();
    let rows = "SELECT string_agg(r::text, ';' ORDER BY r.workflow_step_id) FROM tasker_core.get_step_readiness_status(1) r";
    let before = text(rows);
    let drop_all = "DO $$ DECLARE i record; BEGIN
        FOR i IN SELECT indexrelid::regclass AS name FROM pg_index
                  WHERE indrelid = 'tasker_workflow_steps'::regclass AND NOT indisprimary LOOP
            EXECUTE format('DROP INDEX %s', i.name);
        END LOOP; END $$";
    Spi::run(drop_all).unwrap();
    assert_eq!(text(rows), before, "no index on task_id: the SQL path answers");
    Spi::run("CREATE INDEX steps_by_task ON tasker_workflow_steps (task_id)").unwrap();
    assert_eq!(text(rows), before, "a new index is found");
    Spi::run("SELECT pg_temp.step(5, 1, 5)").unwrap();
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.get_step_readiness_status(1)"), Some(5));
}

// The derived step state (sql/step_state.sql, docs/step_state.md).

/// Every step's readiness, context and levels as text, read with the current settings.
fn all_answers() -> (String, String, String) {
    (
        text("SELECT string_agg(r::text, ';' ORDER BY r.task_id, r.workflow_step_id) FROM tasker_core.get_step_readiness_status_batch(ARRAY(SELECT task_id FROM tasker_tasks)) r"),
        text("SELECT string_agg(c::text, ';' ORDER BY c.task_id) FROM tasker_core.get_task_execution_contexts_batch(ARRAY(SELECT task_id FROM tasker_tasks)) c"),
        text("SELECT string_agg(l::text, ';') FROM tasker_tasks t, tasker_core.calculate_dependency_levels(t.task_id) l"),
    )
}

/// The answers through SQL (direct reads off), for comparison.
fn sql_answers() -> (String, String, String) {
    Spi::run("SET LOCAL tasker_core.direct_reads = off").unwrap();
    let a = all_answers();
    Spi::run("SET LOCAL tasker_core.direct_reads = on").unwrap();
    a
}

fn verify() -> String {
    text(
        "SELECT coalesce(string_agg(coalesce(workflow_step_id::text, 'task ' || task_id) || ' ' || problem, '; '), 'exact')
           FROM tasker_core.step_state_verify()",
    )
}

#[pg_test]
fn step_state_follows_every_kind_of_write() {
    diamond();
    // With the guard triggers too, as in production (insert-first writers rely on them).
    Spi::run("SELECT count(*) FROM tasker_core.enable(functions => false)").unwrap();
    // Rows that existed before: enable builds them.
    assert!(text("SELECT string_agg(action, ',') FROM tasker_core.step_state_enable()").ends_with("built (4 steps)"));
    assert_eq!(verify(), "exact");
    // ...and analyzes it: the 5 tasks' own rows are counted in the index the batch functions
    // estimate the number of tasks from (never analyzed, it would say -1 or 0).
    assert_eq!(
        one::<f32>("SELECT reltuples FROM pg_class WHERE oid = 'tasker_core.step_state_task_row'::regclass"),
        Some(5.0)
    );
    let writes = [
        // bulk insert of steps, edges and transitions in one statement each
        "SELECT pg_temp.step(g, 3, (g % 20 + 1)::int) FROM generate_series(100, 160) g",
        "INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at)
         SELECT g, g + 1, 'provides', now(), now() FROM generate_series(100, 159) g",
        "INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
         SELECT g, 'pending', 10, true, now(), now() FROM generate_series(100, 160) g",
        // Statesman moves, both writer orders
        "SELECT pg_temp.move(3, 'in_progress')",
        "INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
         VALUES (3, 'complete', 1000, true, now(), now());
         UPDATE tasker_workflow_step_transitions SET most_recent = false WHERE workflow_step_id = 3 AND most_recent AND sort_key < 1000",
        // step columns, a no-op update, a named step renamed, a step moved to another task
        "UPDATE tasker_workflow_steps SET attempts = 2, last_attempted_at = now() AT TIME ZONE 'UTC', backoff_request_seconds = 5 WHERE workflow_step_id IN (4, 100)",
        "UPDATE tasker_workflow_steps SET updated_at = now()",
        "UPDATE tasker_named_steps SET name = 'renamed_' || named_step_id WHERE named_step_id IN (2, 4)",
        "UPDATE tasker_workflow_steps SET task_id = 4 WHERE workflow_step_id = 160",
        // edges re-pointed and deleted, a transition deleted, a step deleted
        "UPDATE tasker_workflow_step_edges SET from_step_id = 1 WHERE to_step_id = 4 AND from_step_id = 3",
        "DELETE FROM tasker_workflow_step_edges WHERE to_step_id = 150",
        "DELETE FROM tasker_workflow_step_transitions WHERE workflow_step_id = 2 AND most_recent",
        "DELETE FROM tasker_workflow_step_edges WHERE from_step_id = 159 OR to_step_id = 159;
         DELETE FROM tasker_workflow_step_transitions WHERE workflow_step_id = 159;
         DELETE FROM tasker_workflow_steps WHERE workflow_step_id = 159",
        // writes that skip ordinary triggers: replication role
        "SET LOCAL session_replication_role = replica;
         SELECT pg_temp.move(100, 'complete');
         SELECT pg_temp.step(200, 5, 3);
         SET LOCAL session_replication_role = origin",
        // a step's id changed: the row of the old id goes (as for a deleted step)
        "UPDATE tasker_workflow_steps SET workflow_step_id = 201 WHERE workflow_step_id = 200",
        // tasks: a Statesman task move, a new task without steps, a task deleted
        "UPDATE tasker_task_transitions SET most_recent = false WHERE task_id = 1 AND most_recent;
         INSERT INTO tasker_task_transitions (task_id, to_state, sort_key, most_recent, created_at, updated_at)
         VALUES (1, 'in_progress', 10, true, now(), now())",
        "INSERT INTO tasker_tasks (task_id, named_task_id, requested_at, identity_hash, created_at, updated_at)
         VALUES (6, 7, now(), 'h6', now(), now())",
        "DELETE FROM tasker_tasks WHERE task_id = 2",
        // INSERT ... ON CONFLICT DO UPDATE on a step
        "INSERT INTO tasker_workflow_steps (workflow_step_id, task_id, named_step_id, attempts, created_at, updated_at)
         VALUES (100, 3, 1, 1, now(), now())
         ON CONFLICT (workflow_step_id) DO UPDATE SET attempts = EXCLUDED.attempts + 1",
    ];
    for w in writes {
        Spi::run(w).unwrap();
        assert_eq!(verify(), "exact", "after: {w}");
        assert_eq!(all_answers(), sql_answers(), "after: {w}");
    }
    assert_eq!(one::<bool>("SELECT valid FROM tasker_core.step_state_source"), Some(true));
    // It really is read: corrupt one row behind the triggers' back.
    Spi::run("UPDATE tasker_core.step_state SET current_state = 'complete' WHERE workflow_step_id = 4").unwrap();
    assert_eq!(text("SELECT current_state FROM tasker_core.get_step_readiness_status(1, '{4}')"), "complete");
    assert_eq!(verify(), "4 differs in current_state");
    assert_eq!(one::<i64>("SELECT tasker_core.step_state_rebuild()"), one::<i64>("SELECT count(*) FROM tasker_workflow_steps"));
    assert_eq!(verify(), "exact");
}

#[pg_test]
fn step_state_stops_being_used_when_it_could_be_bypassed() {
    diamond();
    Spi::run("SELECT count(*) FROM tasker_core.step_state_enable()").unwrap();
    let source = "SELECT format('%s %s', valid, coalesce(reason, '-')) FROM tasker_core.step_state_source";
    // Triggers disabled: writes would bypass it, so it is marked stale at once.
    Spi::run("ALTER TABLE tasker_workflow_step_edges DISABLE TRIGGER ALL").unwrap();
    assert_eq!(text(source), "f after ALTER TABLE: trigger tasker_core_state_insert on public.tasker_workflow_step_edges is not ENABLE ALWAYS");
    Spi::run("SELECT pg_temp.edge(3, 2)").unwrap();
    assert_eq!(all_answers(), sql_answers(), "readers use the Tasker tables meanwhile");
    // A rebuild sets its own triggers back to ENABLE ALWAYS (a data-only restore with
    // --disable-triggers leaves them ordinary): but these were disabled outright.
    assert!(error_of("SELECT tasker_core.step_state_rebuild()").unwrap().starts_with("55000: cannot rebuild the step state: trigger"));
    Spi::run(
        "ALTER TABLE tasker_workflow_step_edges ENABLE TRIGGER ALL;
         ALTER TABLE tasker_workflow_step_edges ENABLE ALWAYS TRIGGER tasker_core_state_insert;
         ALTER TABLE tasker_workflow_step_edges ENABLE ALWAYS TRIGGER tasker_core_state_update;
         ALTER TABLE tasker_workflow_step_edges ENABLE ALWAYS TRIGGER tasker_core_state_delete;
         ALTER TABLE tasker_workflow_step_edges ENABLE ALWAYS TRIGGER tasker_core_state_truncate;",
    )
    .unwrap();
    assert_eq!(text(source), "f after ALTER TABLE: trigger tasker_core_state_insert on public.tasker_workflow_step_edges is not ENABLE ALWAYS", "re-enabling does not make it valid");
    Spi::run("SELECT tasker_core.step_state_rebuild()").unwrap();
    assert_eq!(text(source), "t -");
    assert_eq!(verify(), "exact");
    assert_eq!(all_answers(), sql_answers());
    // ENABLE (not ALWAYS) would skip replica-role writes.
    Spi::run("ALTER TABLE tasker_workflow_steps ENABLE TRIGGER tasker_core_state_update").unwrap();
    assert_eq!(text(source), "f after ALTER TABLE: trigger tasker_core_state_update on public.tasker_workflow_steps is not ENABLE ALWAYS");
    Spi::run("SELECT count(*) FROM tasker_core.step_state_enable()").unwrap();
    assert_eq!(text(source), "t -");
    // A dropped trigger, the unique most_recent index dropped, a column retyped: each marks it
    // stale in the same (sub)transaction, and rolls back with it.
    Spi::run(
        "CREATE FUNCTION pg_temp.probe(ddl text) RETURNS text LANGUAGE plpgsql AS $$
         DECLARE r text;
         BEGIN
             EXECUTE ddl;
             SELECT format('%s %s', valid, coalesce(reason, '-')) INTO r FROM tasker_core.step_state_source;
             RAISE EXCEPTION USING MESSAGE = r;
         EXCEPTION WHEN raise_exception THEN RETURN SQLERRM;
         END $$",
    )
    .unwrap();
    // The unique most_recent index by what it is, not by name: Rails calls it
    // idx_on_workflow_step_id_most_recent_97d5374ad6 (WHERE (most_recent = true)), the
    // minimal fixture index_step_transitions_parent_most_recent (WHERE most_recent).
    let drop_most_recent = format!(
        "DROP INDEX {}",
        text("SELECT string_agg(indexrelid::regclass::text, ', ') FROM pg_index
               WHERE indrelid = 'tasker_workflow_step_transitions'::regclass AND indisunique AND indpred IS NOT NULL")
    );
    for (ddl, why) in [
        ("DROP TRIGGER tasker_core_state_delete ON tasker_named_steps", "after DROP TRIGGER: trigger tasker_core_state_delete on public.tasker_named_steps is missing"),
        (drop_most_recent.as_str(),
         "after DROP INDEX: public.tasker_workflow_step_transitions has no valid unique index allowing one most_recent row per workflow_step_id (such as Rails' (workflow_step_id, most_recent) WHERE (most_recent = true))"),
        ("ALTER TABLE tasker_workflow_steps ALTER COLUMN attempts TYPE bigint",
         "after ALTER TABLE: tasker_workflow_steps.attempts is bigint, not integer"),
    ] {
        assert_eq!(text(&format!("SELECT pg_temp.probe('{ddl}')")), format!("f {why}"), "{ddl}");
        assert_eq!(text(source), "t -", "rolled back with the DDL: {ddl}");
    }
    // TRUNCATE (row triggers do not see it).
    Spi::run("TRUNCATE tasker_workflow_step_edges").unwrap();
    assert_eq!(text(source), "f public.tasker_workflow_step_edges was truncated");
    assert_eq!(all_answers(), sql_answers());
}

#[pg_test]
fn step_state_keeps_privileges_and_one_source() {
    diamond();
    Spi::run("SELECT count(*) FROM tasker_core.step_state_enable()").unwrap();
    Spi::run("CREATE ROLE tasker_no_steps NOLOGIN; GRANT USAGE ON SCHEMA tasker_core TO tasker_no_steps").unwrap();
    Spi::run("SET LOCAL ROLE tasker_no_steps").unwrap();
    let denied = error_of("SELECT * FROM tasker_core.get_step_readiness_status(1)").unwrap();
    assert!(denied.starts_with("42501: permission denied for table tasker_"), "{denied}");
    assert!(error_of("SELECT * FROM tasker_core.step_state").unwrap().starts_with("42501:"));
    assert!(error_of("SELECT tasker_core.step_state_rebuild()").unwrap().starts_with("42501:"));
    Spi::run("RESET ROLE").unwrap();
    Spi::run("CREATE SCHEMA other_tasker; SET LOCAL search_path = other_tasker, public").unwrap();
    Spi::run(SCHEMA).unwrap();
    assert_eq!(
        error_of("SELECT * FROM tasker_core.step_state_enable('other_tasker')").as_deref(),
        Some("55000: the step state already mirrors public.tasker_workflow_steps")
    );
    // The other schema's (empty) tables come first in the search_path: the step state, which
    // mirrors public, must not answer for them.
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.get_step_readiness_status(1)"), Some(0));
    Spi::run("SET LOCAL search_path = public").unwrap();
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.get_step_readiness_status(1)"), Some(4));
    assert_eq!(text("SELECT string_agg(action, ',' ORDER BY action) FROM tasker_core.step_state_disable()"), format!("emptied,{}", vec!["removed"; 24].join(",")));
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.step_state"), Some(0));
    assert_eq!(one::<i64>("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'tasker_core_state_%'"), Some(0));
}

#[pg_test]
fn kept_scans_end_with_their_statement() {
    // A function called once per task in one statement: the same transaction can alter the
    // table afterwards, and an error inside a caught subtransaction leaves nothing behind.
    diamond();
    Spi::run("SELECT pg_temp.step(10, 2, 10); SELECT pg_temp.move(10, 'pending'); SELECT count(*) FROM tasker_core.step_state_enable()")
        .unwrap();
    let lateral = "SELECT string_agg(r::text, ';' ORDER BY r.task_id, r.workflow_step_id)
                     FROM generate_series(1, 5) t, tasker_core.get_step_readiness_status(t) r";
    let expected = text(lateral);
    assert_eq!(expected.matches(";").count(), 4, "5 steps in tasks 1 and 2: {expected}");
    Spi::run("ALTER TABLE tasker_core.step_state SET (fillfactor = 75)").unwrap();
    assert_eq!(text(lateral), expected);
    // An error raised mid-statement (after some calls), caught by a subtransaction.
    Spi::run("UPDATE tasker_workflow_steps SET attempts = 50, retry_limit = 99 WHERE workflow_step_id = 10; SELECT pg_temp.move(10, 'error')")
        .unwrap();
    assert_eq!(
        error_of("SELECT count(*) FROM generate_series(1, 5) t, tasker_core.get_step_readiness_status(t)").as_deref(),
        Some("22008: interval out of range")
    );
    Spi::run("UPDATE tasker_workflow_steps SET attempts = 0 WHERE workflow_step_id = 10").unwrap();
    assert_eq!(all_answers(), sql_answers());
    Spi::run("ALTER TABLE tasker_core.step_state SET (fillfactor = 80)").unwrap();
    assert_eq!(verify(), "exact");
}

#[pg_test]
fn one_statement_may_mix_the_read_functions_on_the_direct_path() {
    // The direct reads remember their checks per statement and call site: dependency levels
    // (one column of the steps) and readiness (ten) in one statement must not share them.
    diamond();
    assert_eq!(
        text(
            "SELECT format('%s %s %s', (SELECT count(*) FROM tasker_core.calculate_dependency_levels(1)),
                                       (SELECT count(*) FROM tasker_core.get_step_readiness_status(1)),
                                       (SELECT total_steps FROM tasker_core.get_task_execution_context(1)))"
        ),
        "4 4 4"
    );
}

// ---------------------------------------------------------------------------------------
// Issue 11: the schema as Rails ships it, no silently stale step state, no privilege escalation.

/// The unique index that allows one most_recent row per owner is recognized by what it means:
/// each form a DBA or Rails may write proves it, nothing that does not prove it passes.
#[pg_test]
fn the_most_recent_index_is_decided_by_meaning() {
    tasker_db();
    let proves = |ddl: &str| -> bool {
        Spi::run("DO $$ DECLARE i record; BEGIN FOR i IN SELECT indexrelid::regclass AS n FROM pg_index
                  WHERE indrelid = 'tasker_workflow_step_transitions'::regclass AND NOT indisprimary LOOP
                  EXECUTE format('DROP INDEX %s', i.n); END LOOP; END $$")
            .unwrap();
        Spi::run(ddl).unwrap();
        one::<bool>("SELECT tasker_core.most_recent_index('tasker_workflow_step_transitions'::regclass, 'workflow_step_id') IS NOT NULL")
            .unwrap()
    };
    let t = "tasker_workflow_step_transitions";
    for (ddl, expected) in [
        // Rails' structure.sql
        (format!("CREATE UNIQUE INDEX ON {t} (workflow_step_id, most_recent) WHERE (most_recent = true)"), true),
        (format!("CREATE UNIQUE INDEX ON {t} (workflow_step_id, most_recent) WHERE most_recent"), true),
        (format!("CREATE UNIQUE INDEX ON {t} (workflow_step_id) WHERE most_recent"), true),
        (format!("CREATE UNIQUE INDEX ON {t} (workflow_step_id) WHERE most_recent IS TRUE"), true),
        (format!("CREATE UNIQUE INDEX ON {t} (most_recent, workflow_step_id) WHERE most_recent = true"), true),
        (format!("CREATE UNIQUE INDEX ON {t} (workflow_step_id) WHERE most_recent AND workflow_step_id > 0 OR most_recent"), true),
        // One row per step at all also proves it.
        (format!("CREATE UNIQUE INDEX ON {t} (workflow_step_id)"), true),
        // Not unique, a narrower predicate, another key, an expression, not enforced at once.
        (format!("CREATE INDEX ON {t} (workflow_step_id, most_recent) WHERE most_recent = true"), false),
        (format!("CREATE UNIQUE INDEX ON {t} (workflow_step_id) WHERE most_recent AND to_state = 'error'"), false),
        (format!("CREATE UNIQUE INDEX ON {t} (workflow_step_id) WHERE NOT most_recent"), false),
        (format!("CREATE UNIQUE INDEX ON {t} (workflow_step_id, sort_key) WHERE most_recent"), false),
        (format!("CREATE UNIQUE INDEX ON {t} ((workflow_step_id + 0)) WHERE most_recent"), false),
        (format!("ALTER TABLE {t} ADD CONSTRAINT one_recent UNIQUE (workflow_step_id, most_recent) DEFERRABLE"), false),
    ] {
        assert_eq!(proves(&ddl), expected, "{ddl}");
    }
}

/// Every reason for not reading the step state is said by read_paths(), and every call is
/// counted by the path it took.
#[pg_test]
fn read_paths_say_which_path_and_why() {
    diamond();
    let paths = || text("SELECT string_agg(DISTINCT path || coalesce(': ' || reason, ''), ' | ') FROM tasker_core.read_paths()");
    assert_eq!(paths(), "sql: the step state is not enabled (tasker_core.step_state_enable())");
    Spi::run("SELECT count(*) FROM tasker_core.step_state_enable()").unwrap();
    assert_eq!(paths(), "step_state");
    assert_eq!(text("SELECT string_agg(DISTINCT state, ',') FROM tasker_core.status() WHERE kind = 'read path'"), "step_state");
    Spi::run("SELECT tasker_core.read_path_stats_reset()").unwrap();
    Spi::run("SELECT count(*) FROM generate_series(1, 3) t, tasker_core.get_step_readiness_status(t)").unwrap();
    Spi::run("SET LOCAL tasker_core.direct_reads = off").unwrap();
    assert_eq!(paths(), "sql: tasker_core.direct_reads is off");
    Spi::run("SELECT count(*) FROM tasker_core.get_step_readiness_status(1)").unwrap();
    Spi::run("SET LOCAL tasker_core.direct_reads = on").unwrap();
    assert_eq!(
        text("SELECT string_agg(function_name || ' ' || path || ' ' || calls, ', ' ORDER BY path) FROM tasker_core.read_path_stats()"),
        "get_step_readiness_status sql 1, get_step_readiness_status step_state 3"
    );
    // Privileges and row level security: SQL applies them.
    Spi::run("CREATE ROLE tasker_paths_reader NOLOGIN; GRANT USAGE ON SCHEMA tasker_core TO tasker_paths_reader;
              GRANT SELECT ON ALL TABLES IN SCHEMA public TO tasker_paths_reader;
              REVOKE SELECT ON tasker_named_steps FROM tasker_paths_reader;
              GRANT SELECT (named_step_id, name) ON tasker_named_steps TO tasker_paths_reader;")
        .unwrap();
    Spi::run("SET LOCAL ROLE tasker_paths_reader").unwrap();
    assert_eq!(paths(), "sql: the current user may not SELECT from public.tasker_named_steps: SQL applies the privilege checks");
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.get_step_readiness_status(1)"), Some(4), "column privileges suffice for SQL");
    Spi::run("RESET ROLE").unwrap();
    Spi::run("GRANT SELECT ON tasker_named_steps TO tasker_paths_reader;
              ALTER TABLE tasker_tasks ENABLE ROW LEVEL SECURITY;
              CREATE POLICY all_tasks ON tasker_tasks FOR SELECT USING (true);").unwrap();
    assert_eq!(paths(), "step_state", "the owner (a superuser here) is not subject to the policies");
    Spi::run("SET LOCAL ROLE tasker_paths_reader").unwrap();
    assert_eq!(paths(), "sql: row level security applies to public.tasker_tasks: SQL applies its policies");
    Spi::run("RESET ROLE").unwrap();
    Spi::run("ALTER TABLE tasker_tasks DISABLE ROW LEVEL SECURITY").unwrap();
    // Another schema's tables first on the search_path.
    Spi::run("CREATE SCHEMA other_paths; SET LOCAL search_path = other_paths, public").unwrap();
    Spi::run(SCHEMA).unwrap();
    assert!(paths().starts_with("sql: the step state mirrors public.tasker_workflow_steps, "), "{}", paths());
    assert_eq!(text("SELECT string_agg(DISTINCT path, ',') FROM tasker_core.read_paths('public')"), "step_state");
    Spi::run("SET LOCAL search_path = public").unwrap();
    // A copy that arrived from another server (logical replication, a restore elsewhere).
    Spi::run("UPDATE tasker_core.step_state_source SET built_on = '42'").unwrap();
    assert!(paths().starts_with("sql: the step state was built on another server (system identifier 42, this server "), "{}", paths());
    Spi::run("UPDATE tasker_core.step_state_source SET built_on = tasker_core.server_identity()").unwrap();
    // Its own table altered by hand.
    Spi::run("ALTER TABLE tasker_core.step_state RENAME COLUMN done_parents TO done").unwrap();
    assert_eq!(paths(), "sql: the step state's table has been altered: tasker_core.step_state has no column done_parents");
    Spi::run("ALTER TABLE tasker_core.step_state RENAME COLUMN done TO done_parents").unwrap();
    assert_eq!(paths(), "step_state");
    // Not valid (a TRUNCATE).
    Spi::run("TRUNCATE tasker_workflow_step_edges").unwrap();
    assert_eq!(paths(), "sql: the step state is not valid: public.tasker_workflow_step_edges was truncated");
}

/// DDL that changes mirrored values without firing a trigger stops the step state from being
/// used, and DDL that cannot change them leaves it alone; either way the reads equal SQL's.
#[pg_test]
fn ddl_that_rewrites_a_mirrored_table_invalidates_the_step_state() {
    let state = || text("SELECT format('%s %s', valid, coalesce(reason, '-')) FROM tasker_core.step_state_source");
    for (ddl, stays_valid) in [
        // From the issue: same type, new values.
        ("ALTER TABLE tasker_workflow_steps ALTER COLUMN retry_limit TYPE integer USING COALESCE(retry_limit, 3) + 2", false),
        ("ALTER TABLE tasker_workflow_step_transitions ALTER COLUMN created_at TYPE timestamp(0)", false),
        ("ALTER TABLE tasker_workflow_steps DROP COLUMN attempts, ADD COLUMN attempts integer DEFAULT 1", false),
        ("ALTER TABLE tasker_named_steps ALTER COLUMN name TYPE varchar(128) USING upper(name)", false),
        ("ALTER TABLE tasker_task_transitions ALTER COLUMN to_state TYPE varchar USING upper(to_state)", false),
        ("ALTER TABLE tasker_tasks ALTER COLUMN named_task_id TYPE integer USING named_task_id * 1", false),
        // Cannot change a mirrored value.
        ("ALTER TABLE tasker_workflow_steps ADD COLUMN note text", true),
        ("ALTER TABLE tasker_workflow_steps ALTER COLUMN retry_limit SET DEFAULT 5", true),
        ("CREATE INDEX ON tasker_workflow_steps (attempts)", true),
        ("ALTER TABLE tasker_named_steps ALTER COLUMN name TYPE varchar(200)", true),
        // New storage, the same rows (VACUUM FULL and pg_repack alike; CLUSTER is the one a
        // transaction block allows), then DDL the watch sees.
        ("CLUSTER tasker_workflow_steps USING tasker_workflow_steps_pkey; ALTER TABLE tasker_workflow_steps ADD COLUMN note text", true),
    ] {
        // A fresh world for each form (a test cannot roll back to a savepoint through SPI).
        Spi::run("DROP SCHEMA IF EXISTS ddl_case CASCADE; CREATE SCHEMA ddl_case; SET LOCAL search_path = ddl_case").unwrap();
        diamond();
        Spi::run("SELECT pg_temp.move(4, 'pending'); UPDATE tasker_workflow_steps SET retry_limit = NULL WHERE workflow_step_id = 4;").unwrap();
        Spi::run("SELECT count(*) FROM tasker_core.step_state_enable('ddl_case')").unwrap();
        assert_eq!(state(), "t -");
        Spi::run(ddl).unwrap();
        let after = state();
        assert_eq!(after.starts_with("t "), stays_valid, "{ddl}: {after}");
        if !stays_valid {
            assert_eq!(verify_or_invalid(), "invalid", "{ddl}");
        } else {
            assert_eq!(verify(), "exact", "{ddl}");
        }
        assert_eq!(all_answers(), sql_answers(), "{ddl}");
        Spi::run("SELECT count(*) FROM tasker_core.step_state_disable('ddl_case')").unwrap();
    }
    Spi::run("SET LOCAL search_path = public").unwrap();
}

/// step_state_verify() where the copy is valid, "invalid" where it says it is not.
fn verify_or_invalid() -> String {
    if one::<bool>("SELECT valid FROM tasker_core.step_state_source") == Some(true) {
        verify()
    } else {
        "invalid".into()
    }
}

/// A column Rails might widen: the step state refuses it with a clear reason and the read
/// functions answer through SQL, as Rails' functions do.
#[pg_test]
fn a_widened_attempts_column_is_refused_by_the_step_state_and_read_by_sql() {
    diamond();
    Spi::run("ALTER TABLE tasker_workflow_steps ALTER COLUMN attempts TYPE bigint").unwrap();
    let e = error_of("SELECT * FROM tasker_core.step_state_enable()").unwrap();
    assert_eq!(e, "55000: cannot enable the step state: tasker_workflow_steps.attempts is bigint, not integer");
    // Rails' function casts the column (COALESCE(ws.attempts, 0)::INTEGER) and keeps working;
    // so do the read functions, through SQL.
    assert_eq!(text("SELECT string_agg(DISTINCT path, ',') FROM tasker_core.read_paths()"), "sql");
    assert_eq!(
        text("SELECT string_agg(format('%s:%s:%s', workflow_step_id, attempts, ready_for_execution), ' ' ORDER BY 1) FROM tasker_core.get_step_readiness_status(1)"),
        "1:0:f 2:0:f 3:0:t 4:0:f"
    );
    // A value that does not fit the integer result column: the same error as Rails' cast.
    Spi::run("UPDATE tasker_workflow_steps SET attempts = 5000000000 WHERE workflow_step_id = 1").unwrap();
    assert_eq!(error_of("SELECT * FROM tasker_core.get_step_readiness_status(1)").as_deref(), Some("22003: integer out of range"));
}

/// most_recent may move only to the owner's latest transition; both writer orders stay legal.
#[pg_test]
fn the_most_recent_flag_may_only_move_to_the_latest_transition() {
    guarded_db();
    Spi::run("SELECT pg_temp.step(1, 1, 1)").unwrap();
    for to in ["pending", "in_progress", "complete"] {
        assert_eq!(statesman_step(1, to), None);
    }
    let e = violation_of("UPDATE tasker_workflow_step_transitions SET most_recent = true WHERE workflow_step_id = 1 AND sort_key = 10").unwrap();
    assert_eq!(e, "23514 tasker_step_transition_most_recent tasker_workflow_step_transitions: workflow step 1: most_recent may only be set on its latest transition (sort_key 30), not on sort_key 10");
    assert_eq!(text("SELECT current_state FROM tasker_core.get_step_readiness_status(1)"), "complete");
    // A writer that inserts unflagged, then flags its new row (Statesman's MySQL path).
    Spi::run("SELECT pg_temp.step(2, 1, 2)").unwrap();
    assert_eq!(
        violation_of(
            "INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
             VALUES (2, 'pending', 10, false, now(), now());
             UPDATE tasker_workflow_step_transitions SET most_recent = (id = (SELECT max(id) FROM tasker_workflow_step_transitions WHERE workflow_step_id = 2))
              WHERE workflow_step_id = 2"
        ),
        None
    );
    // The latest row deleted, the flag moved back to the one now latest.
    assert_eq!(
        violation_of(
            "DELETE FROM tasker_workflow_step_transitions WHERE workflow_step_id = 1 AND sort_key = 30;
             UPDATE tasker_workflow_step_transitions SET most_recent = true WHERE workflow_step_id = 1 AND sort_key = 20"
        ),
        None
    );
    // The same for tasks.
    assert_eq!(statesman_task(1, "pending"), None);
    assert_eq!(statesman_task(1, "in_progress"), None);
    let e = violation_of("UPDATE tasker_task_transitions SET most_recent = true WHERE task_id = 1 AND sort_key = 10").unwrap();
    assert!(e.starts_with("23514 tasker_task_transition_most_recent "), "{e}");
}

/// step_state_disable() of a schema it does not mirror changes nothing.
#[pg_test]
fn step_state_disable_of_another_schema_changes_nothing() {
    diamond();
    Spi::run("SELECT count(*) FROM tasker_core.step_state_enable()").unwrap();
    assert_eq!(
        error_of("SELECT * FROM tasker_core.step_state_disable('pg_catalog')").as_deref(),
        Some("55000: the step state mirrors public.tasker_workflow_steps, not the Tasker tables of schema pg_catalog")
    );
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.step_state WHERE workflow_step_id IS NOT NULL"), Some(4));
    assert_eq!(one::<i64>("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'tasker_core_state_%'"), Some(24));
    assert_eq!(text("SELECT string_agg(DISTINCT path, ',') FROM tasker_core.read_paths()"), "step_state");
}

/// A writer cannot switch a guard off by putting its own operators before pg_catalog.
#[pg_test]
fn a_writer_cannot_bypass_the_guards_with_its_own_operators() {
    guarded_db();
    Spi::run("SELECT pg_temp.step(g, 1, g::int) FROM generate_series(1, 3) g; SELECT pg_temp.edge(1, 2), pg_temp.edge(2, 3);").unwrap();
    Spi::run(
        "CREATE SCHEMA evil;
         CREATE FUNCTION evil.never(bigint, bigint) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT false';
         CREATE FUNCTION evil.always(bigint, bigint) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
         CREATE OPERATOR evil.<> (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.never);
         CREATE OPERATOR evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.always);
         CREATE FUNCTION evil.never_t(text, text) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT false';
         CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.never_t);
         CREATE OPERATOR evil.<> (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.never_t);
         SET LOCAL search_path = evil, pg_catalog, public;",
    )
    .unwrap();
    assert!(violation_of("SELECT pg_temp.edge(3, 1)").unwrap().starts_with("23514 tasker_edge_acyclic "));
    assert!(statesman_step(1, "complete").unwrap().starts_with("23514 tasker_step_transition_allowed "));
    assert!(violation_of("UPDATE tasker_workflow_step_transitions SET to_state = 'complete'").is_none(), "no rows yet");
    Spi::run("SET LOCAL search_path = public").unwrap();
}

/// Guard checks of a long chain built from its sink: a step of search per edge, not the chain.
#[pg_test]
fn a_chain_built_from_its_sink_is_checked_in_linear_time() {
    guarded_db();
    Spi::run("INSERT INTO tasker_workflow_steps (workflow_step_id, task_id, named_step_id, created_at, updated_at)
              SELECT g, 1, 1, now(), now() FROM generate_series(1, 2000) g").unwrap();
    let started = std::time::Instant::now();
    Spi::run("SELECT pg_temp.edge(g, g + 1) FROM generate_series(1999, 1, -1) g").unwrap();
    let sink_first = started.elapsed();
    // Measured before the two-sided search: 7.2 s for 2,000 steps; now well under a second
    // (a generous bound: the machine may be busy).
    assert!(sink_first.as_secs_f64() < 3.0, "2,000 edges sink first took {sink_first:?}");
    assert!(violation_of("SELECT pg_temp.edge(2000, 1)").unwrap().starts_with("23514 tasker_edge_acyclic "));
}

#[pg_test]
fn a_kept_query_text_is_built_again_when_the_catalogs_change() {
    use crate::pg::texts;
    Spi::run("CREATE TABLE pg_temp.kept_text_probe (id bigint)").unwrap();
    let oid = pg_sys::Oid::from(one::<i64>("SELECT 'pg_temp.kept_text_probe'::regclass::oid::bigint").unwrap() as u32);
    let builds = std::cell::Cell::new(0);
    let name = || {
        texts::text("test: probe", &[oid], || {
            builds.set(builds.get() + 1);
            Ok(crate::pg::tasker::qualified(oid))
        })
        .unwrap()
        .to_string()
    };
    // Tests in other sessions change the catalogs too (their invalidations move the generation
    // here as well): "kept" is checked over calls between which the generation did not move.
    let kept = || {
        let mut pairs = 0;
        for _ in 0..50 {
            let (generation, built) = (texts::generation(), builds.get());
            let text = name();
            if texts::generation() == generation {
                assert_eq!(builds.get(), built, "kept while nothing changed");
                pairs += 1;
            }
            assert!(!text.is_empty());
        }
        assert!(pairs > 0, "no two calls without an invalidation between them");
    };
    let before = name();
    assert!(before.ends_with(".kept_text_probe"), "{before}");
    kept();
    assert_eq!(name(), before);
    // A rename changes the text: built again, with the new name.
    Spi::run("ALTER TABLE pg_temp.kept_text_probe RENAME TO kept_text_renamed").unwrap();
    let after = name();
    assert!(after.ends_with(".kept_text_renamed"), "{after}");
    kept();
    // A column added (the step state's refresh lists step_state's columns) also forgets it.
    let built = builds.get();
    Spi::run("ALTER TABLE pg_temp.kept_text_renamed ADD COLUMN extra integer").unwrap();
    assert_eq!(name(), after);
    assert!(builds.get() > built, "built again after a column was added");
    kept();
}
