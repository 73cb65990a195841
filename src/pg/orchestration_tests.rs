// `#[pg_test]`s of the orchestration functions (orchestration.md A.5, B.5, C.8, D.5): every
// outcome of a transition, the executor's writes, claiming, finalization and backoff. Expected
// values are worked out by hand from the spec. (Included into `mod tests` after tests.rs, whose
// helpers it uses: tasker_db, diamond, one, text, error_of.)

/// The history of a step, oldest first: `to_state:sort_key:most_recent:metadata`.
fn step_history(step: i64) -> String {
    text(&format!(
        "SELECT string_agg(format('%s:%s:%s:%s', to_state, sort_key, most_recent::text, metadata), ' ' ORDER BY sort_key)
           FROM tasker_workflow_step_transitions WHERE workflow_step_id = {step}"
    ))
}

fn task_history(task: i64) -> String {
    text(&format!(
        "SELECT coalesce(string_agg(format('%s:%s:%s', to_state, sort_key, most_recent::text), ' ' ORDER BY sort_key), '')
           FROM tasker_task_transitions WHERE task_id = {task}"
    ))
}

fn outcome(sql: &str) -> String {
    text(&format!(
        "SELECT format('%s %s>%s %s', outcome, pg_temp.n(previous_state), pg_temp.n(current_state), pg_temp.n(sort_key)) FROM {sql}"
    ))
}

/// The diamond of tests.rs, and `pg_temp.n(x)`: x as text, NULL as `<NULL>`.
fn orchestration_db() {
    diamond();
    Spi::run("CREATE FUNCTION pg_temp.n(x anyelement) RETURNS text LANGUAGE sql AS $$ SELECT coalesce(x::text, '<NULL>') $$")
        .unwrap();
}

#[pg_test]
fn transition_step_outcomes() {
    orchestration_db();
    // Step 3 is pending (one row, sort_key 10) with its parent done.
    assert_eq!(outcome("tasker_core.transition_step(3, 'in_progress')"), "transitioned pending>in_progress 20");
    assert_eq!(step_history(3), "pending:10:false:{} in_progress:20:true:{}");
    // The row is Statesman's shape: from_state NULL, created_at = updated_at, UTC wall clock.
    assert_eq!(
        text(
            "SELECT format('%s %s %s', (from_state IS NULL)::text, (created_at = updated_at)::text,
                           (abs(extract(epoch FROM created_at - (clock_timestamp() AT TIME ZONE 'UTC'))) < 60)::text)
               FROM tasker_workflow_step_transitions WHERE workflow_step_id = 3 AND most_recent"
        ),
        "true true true"
    );
    assert_eq!(outcome("tasker_core.transition_step(3, 'in_progress')"), "already_in_state in_progress>in_progress <NULL>");
    assert_eq!(outcome("tasker_core.transition_step(3, 'complete', 'pending')"), "state_mismatch in_progress>in_progress <NULL>");
    // Step 4's parent 3 is not done: the guard.
    assert_eq!(outcome("tasker_core.transition_step(4, 'in_progress')"), "guard_failed pending>pending <NULL>");
    assert_eq!(outcome("tasker_core.transition_step(4, 'complete')"), "invalid_transition pending>pending <NULL>");
    assert_eq!(outcome("tasker_core.transition_step(1, 'pending')"), "invalid_transition complete>complete <NULL>");
    assert_eq!(outcome("tasker_core.transition_step(3, 'Complete')"), "invalid_transition in_progress>in_progress <NULL>");
    assert_eq!(outcome("tasker_core.transition_step(999, 'complete')"), "not_found <NULL>><NULL> <NULL>");
    assert_eq!(
        outcome("tasker_core.transition_step(3, 'complete', 'in_progress', '{\"by\": \"worker 7\"}')"),
        "transitioned in_progress>complete 30"
    );
    assert_eq!(step_history(3), "pending:10:false:{} in_progress:20:false:{} complete:30:true:{\"by\": \"worker 7\"}");
    // Nothing was written by the refused calls: step 4 still has no row.
    assert_eq!(step_history(4), "<null>");
    // A step without any transition is pending: its first row gets sort_key 10.
    assert_eq!(outcome("tasker_core.transition_step(4, 'in_progress')"), "transitioned pending>in_progress 10");
    // Bad arguments are errors, not outcomes.
    assert!(error_of("SELECT * FROM tasker_core.transition_step(4, NULL)").unwrap().starts_with("22023"));
    assert!(error_of("SELECT * FROM tasker_core.transition_step(4, 'complete', NULL, '[1]')").unwrap().starts_with("22023"));
}

#[pg_test]
fn a_lost_race_is_the_outcome_conflict_and_leaves_nothing() {
    orchestration_db();
    // A writer without locks that appends first: a trigger that inserts the row our insert will
    // collide with (same step, same sort_key), as a Rails writer racing us would.
    Spi::run(
        "CREATE FUNCTION pg_temp.racer() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.metadata ? 'race' AND pg_trigger_depth() = 1 THEN
                 INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, created_at, updated_at)
                 VALUES (NEW.workflow_step_id, 'cancelled', NEW.sort_key, false, now(), now());
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER racer BEFORE INSERT ON tasker_workflow_step_transitions FOR EACH ROW EXECUTE FUNCTION pg_temp.racer();",
    )
    .unwrap();
    assert_eq!(
        outcome("tasker_core.transition_step(3, 'in_progress', NULL, '{\"race\": true}')"),
        "conflict pending>pending <NULL>"
    );
    // The subtransaction took everything back: the racer's row, our flag update, our row.
    assert_eq!(step_history(3), "pending:10:true:{}");
    // The transaction goes on: the same move without the race is made.
    assert_eq!(outcome("tasker_core.transition_step(3, 'in_progress')"), "transitioned pending>in_progress 20");
    // Claiming loses the same way without raising.
    Spi::run("SELECT pg_temp.step(5, 1, 5)").unwrap();
    assert_eq!(
        one::<i64>("SELECT count(*) FROM tasker_core.claim_ready_steps(1, NULL, '{5}', '{\"race\": 1}')"),
        Some(0)
    );
    assert_eq!(step_history(5), "<null>");
}

#[pg_test]
fn transition_task_sets_the_complete_flag_with_the_last_row() {
    orchestration_db();
    Spi::run("SELECT pg_temp.step(20, 3, 1); SELECT pg_temp.move(20, 'complete')").unwrap();
    assert_eq!(outcome("tasker_core.transition_task(3, 'in_progress')"), "transitioned pending>in_progress 10");
    assert_eq!(
        outcome("tasker_core.transition_task(3, 'complete', 'in_progress', '{}', true)"),
        "transitioned in_progress>complete 20"
    );
    assert_eq!(text("SELECT complete::text FROM tasker_tasks WHERE task_id = 3"), "true");
    // Task 1 has steps that are not done: the guard refuses, and the flag is not set.
    assert_eq!(outcome("tasker_core.transition_task(1, 'in_progress')"), "transitioned pending>in_progress 10");
    assert_eq!(
        outcome("tasker_core.transition_task(1, 'complete', NULL, '{}', true)"),
        "guard_failed in_progress>in_progress <NULL>"
    );
    assert_eq!(text("SELECT complete::text FROM tasker_tasks WHERE task_id = 1"), "false");
    assert_eq!(outcome("tasker_core.transition_task(77, 'complete')"), "not_found <NULL>><NULL> <NULL>");
}

#[pg_test]
fn the_executors_writes() {
    orchestration_db();
    Spi::run("SELECT * FROM tasker_core.transition_step(3, 'in_progress')").unwrap();
    // A failure: attempts + 1, the error merged into results, the server's backoff kept,
    // retryable set, the move to error; next_retry_at is the readiness function's.
    Spi::run("UPDATE tasker_workflow_steps SET results = '{\"partial\": 1}', backoff_request_seconds = 99 WHERE workflow_step_id = 3")
        .unwrap();
    assert_eq!(
        text(
            "SELECT format('%s %s', outcome, attempts)
               FROM tasker_core.record_step_failure(3, '{\"error\": \"boom\"}', 7, false)"
        ),
        "transitioned 1"
    );
    assert_eq!(
        text(
            "SELECT format('%s %s %s %s %s', attempts, results, backoff_request_seconds, retryable::text, processed::text)
               FROM tasker_workflow_steps WHERE workflow_step_id = 3"
        ),
        "1 {\"error\": \"boom\", \"partial\": 1} 7 false false"
    );
    assert_eq!(
        text(
            "SELECT (r.next_retry_at = s.last_attempted_at + interval '7 seconds')::text
               FROM tasker_core.get_step_readiness_status(1, '{3}') r JOIN tasker_workflow_steps s USING (workflow_step_id)"
        ),
        "true"
    );
    assert_eq!(step_history(3), "pending:10:false:{} in_progress:20:false:{} error:30:true:{}");
    // NULL clears a stale server backoff.
    Spi::run("SELECT pg_temp.move(3, 'pending'), pg_temp.move(3, 'in_progress')").unwrap();
    Spi::run("SELECT * FROM tasker_core.record_step_failure(3, '{}')").unwrap();
    assert_eq!(
        text("SELECT format('%s %s %s', attempts, (backoff_request_seconds IS NULL)::text, retryable::text) FROM tasker_workflow_steps WHERE workflow_step_id = 3"),
        "2 true false"
    );
    // Not in progress: nothing is written, columns included.
    assert_eq!(
        text("SELECT format('%s %s', outcome, pg_temp.n(attempts)) FROM tasker_core.record_step_success(3, '{\"ok\": 1}')"),
        "state_mismatch <NULL>"
    );
    assert_eq!(text("SELECT attempts::text FROM tasker_workflow_steps WHERE workflow_step_id = 3"), "2");
    // A success.
    Spi::run("SELECT pg_temp.move(3, 'pending'), pg_temp.move(3, 'in_progress')").unwrap();
    assert_eq!(
        text("SELECT format('%s %s', outcome, attempts) FROM tasker_core.record_step_success(3, '{\"ok\": 1}')"),
        "transitioned 3"
    );
    assert_eq!(
        text(
            "SELECT format('%s %s %s %s', results, processed::text, (processed_at = last_attempted_at)::text, in_process::text)
               FROM tasker_workflow_steps WHERE workflow_step_id = 3"
        ),
        "{\"ok\": 1} true true false"
    );
    assert!(error_of("SELECT * FROM tasker_core.record_step_failure(3, '\"text\"')").unwrap().starts_with("22023"));
    assert!(error_of("SELECT * FROM tasker_core.record_step_failure(3, '{}', -1)").unwrap().starts_with("22023"));
}

#[pg_test]
fn claiming_ready_steps() {
    orchestration_db();
    // Three independent roots in task 2, and step 3 of the diamond.
    Spi::run("SELECT pg_temp.step(g, 2, g::int) FROM generate_series(11, 13) g").unwrap();
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.claim_ready_steps(2, 0)"), Some(0));
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.claim_ready_steps(2, -1)"), Some(0));
    assert_eq!(
        text(
            "SELECT string_agg(format('%s:%s:%s', workflow_step_id, claimed_from, sort_key), ' ')
               FROM tasker_core.claim_ready_steps(2, 2, NULL, '{\"worker\": \"a\"}')"
        ),
        "11:pending:10 12:pending:10"
    );
    assert_eq!(step_history(11), "in_progress:10:true:{\"worker\": \"a\"}");
    assert_eq!(text("SELECT string_agg(workflow_step_id::text, ' ') FROM tasker_core.claim_ready_steps(2)"), "13");
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.claim_ready_steps(2)"), Some(0));
    // step_ids narrows the candidates.
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.claim_ready_steps(1, NULL, '{4}')"), Some(0));
    assert_eq!(
        text("SELECT format('%s %s %s', workflow_step_id, task_id, name) FROM tasker_core.claim_ready_steps(1, NULL, '{3}')"),
        "3 1 step_3"
    );
    // A failed step whose backoff has passed is ready: skipped unless asked for, then retried
    // through pending (the move the engine never writes).
    Spi::run(
        "SELECT pg_temp.step(30, 4, 1);
         UPDATE tasker_workflow_steps SET attempts = 1, retry_limit = 3 WHERE workflow_step_id = 30;
         SELECT pg_temp.move(30, 'in_progress', (now() AT TIME ZONE 'UTC') - interval '1 hour');
         SELECT pg_temp.move(30, 'error', (now() AT TIME ZONE 'UTC') - interval '1 hour');",
    )
    .unwrap();
    assert_eq!(
        text("SELECT ready_for_execution::text FROM tasker_core.get_step_readiness_status(4)"),
        "true"
    );
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.claim_ready_steps(4)"), Some(0));
    assert_eq!(
        text("SELECT format('%s %s %s', claimed_from, attempts, sort_key) FROM tasker_core.claim_ready_steps(4, NULL, NULL, '{}', true)"),
        "error 1 40"
    );
    assert_eq!(step_history(30), "in_progress:10:false:{} error:20:false:{} pending:30:false:{\"retry\": true} in_progress:40:true:{}");
    assert!(error_of("SELECT * FROM tasker_core.claim_ready_steps(4, NULL, NULL, '7')").unwrap().starts_with("22023"));
}

#[pg_test]
fn finalizing_tasks() {
    orchestration_db();
    // Task 3: all steps complete, task in error: error -> pending -> in_progress -> complete.
    Spi::run(
        "SELECT pg_temp.step(20, 3, 1); SELECT pg_temp.move(20, 'complete');
         SELECT * FROM tasker_core.transition_task(3, 'in_progress');
         SELECT * FROM tasker_core.transition_task(3, 'error');",
    )
    .unwrap();
    assert_eq!(
        text(
            "SELECT format('%s %s %s>%s %s %s %s %s', decision, pg_temp.n(reason), previous_state, final_state, transitions_written,
                           pg_temp.n(delay_seconds), execution_status, total_steps)
               FROM tasker_core.finalize_task(3)"
        ),
        "complete <NULL> error>complete 3 <NULL> all_complete 1"
    );
    assert_eq!(task_history(3), "in_progress:10:false error:20:false pending:30:false in_progress:40:false complete:50:true");
    assert_eq!(text("SELECT complete::text FROM tasker_tasks WHERE task_id = 3"), "true");
    // Again: already complete, only the flag (nothing written).
    assert_eq!(text("SELECT format('%s %s', decision, transitions_written) FROM tasker_core.finalize_task(3)"), "complete 0");
    // Task 1 (the diamond) has a ready step: synchronous finalization starts the task.
    assert_eq!(
        text("SELECT format('%s %s %s>%s', decision, reason, previous_state, final_state) FROM tasker_core.finalize_task(1)"),
        "ready ready_for_processing pending>in_progress"
    );
    // Asynchronously: re-enqueue now, the task back to pending.
    assert_eq!(
        text("SELECT format('%s %s %s %s>%s', decision, reason, delay_seconds, previous_state, final_state) FROM tasker_core.finalize_task(1, false)"),
        "reenqueue ready_steps_available 0 in_progress>pending"
    );
    // Blocked by a failure that cannot be retried: the error path.
    Spi::run(
        "SELECT pg_temp.step(40, 5, 1);
         UPDATE tasker_workflow_steps SET attempts = 3, retry_limit = 3 WHERE workflow_step_id = 40;
         SELECT pg_temp.move(40, 'error');
         SELECT * FROM tasker_core.transition_task(5, 'in_progress');",
    )
    .unwrap();
    assert_eq!(
        text("SELECT format('%s %s %s %s', decision, reason, final_state, execution_status) FROM tasker_core.finalize_task(5)"),
        "error steps_in_error_state error blocked_by_failures"
    );
    assert_eq!(text("SELECT format('%s %s', decision, transitions_written) FROM tasker_core.finalize_task(5)"), "noop 0");
    assert!(error_of("SELECT * FROM tasker_core.finalize_task(404)").unwrap().starts_with("P0002"));
    assert!(error_of("SELECT * FROM tasker_core.finalize_task(1, true, '{\"buffer\": 1}')").unwrap().starts_with("22023"));
    // The delay alone.
    assert_eq!(one::<i32>("SELECT tasker_core.reenqueue_delay_seconds(404)"), Some(30));
    assert_eq!(one::<i32>("SELECT tasker_core.reenqueue_delay_seconds(1)"), Some(0));
}

#[pg_test]
fn the_pure_finalization_plan() {
    assert_eq!(
        text("SELECT format('%s %s %s %s', moves, sets_complete::text, decision, fallback) FROM tasker_core.finalization_plan('all_complete', 'error')"),
        "{pending,in_progress,complete} true complete complete_refused"
    );
    assert_eq!(
        text("SELECT format('%s %s %s', moves, reason, delay_seconds) FROM tasker_core.finalization_plan('waiting_for_dependencies', 'in_progress', false, '{12,-3}')"),
        "{} awaiting_dependencies 17"
    );
    assert_eq!(
        text("SELECT format('%s %s', moves, delay_seconds) FROM tasker_core.finalization_plan('processing', 'in_progress', false, NULL, '{\"reenqueue_delays\": {\"processing\": 0}}')"),
        "{pending} 0"
    );
}

#[pg_test]
fn backoff_seconds_and_retry_after() {
    assert_eq!(
        text("SELECT string_agg(tasker_core.backoff_seconds(n, false)::text, ' ' ORDER BY n) FROM generate_series(0, 8) n"),
        "0 1 2 4 8 16 32 49 64"
    );
    assert_eq!(one::<i32>("SELECT tasker_core.backoff_seconds(100, false)"), Some(300));
    assert_eq!(one::<i32>("SELECT tasker_core.backoff_seconds(3, false, '{\"default_backoff_seconds\": [5]}')"), Some(9));
    // With jitter: within +-round(10%), never outside, and not always the same value.
    assert_eq!(
        text(
            "SELECT format('%s %s %s', (min(b) >= 270)::text, (max(b) <= 330)::text, (count(DISTINCT b) > 1)::text)
               FROM (SELECT tasker_core.backoff_seconds(30) b FROM generate_series(1, 300)) s"
        ),
        "true true true"
    );
    assert!(error_of("SELECT tasker_core.backoff_seconds(1, true, '{\"jitter\": true}')").unwrap().starts_with("22023"));
    // Retry-After: seconds, blank, dates (any session zone), garbage.
    Spi::run("SET LOCAL TimeZone = 'America/New_York'").unwrap();
    assert_eq!(one::<i32>("SELECT tasker_core.parse_retry_after('120')"), Some(120));
    assert_eq!(one::<i32>("SELECT tasker_core.parse_retry_after('  ')"), Some(0));
    assert_eq!(one::<i32>("SELECT tasker_core.parse_retry_after(NULL)"), Some(0));
    assert_eq!(
        one::<i32>("SELECT tasker_core.parse_retry_after('Wed, 21 Oct 2015 07:28:00 GMT', '2015-10-21 07:26:59.5+00')"),
        Some(60)
    );
    assert_eq!(one::<i32>("SELECT tasker_core.parse_retry_after('2015-10-21 07:28:00', '2015-10-21 07:27:00+00')"), Some(60));
    assert_eq!(one::<i32>("SELECT tasker_core.parse_retry_after('Wed, 21 Oct 2015 07:28:00 GMT', '2016-01-01')"), Some(0));
    assert_eq!(one::<i32>("SELECT tasker_core.parse_retry_after('soon, please')"), None);
    assert_eq!(one::<i32>("SELECT tasker_core.parse_retry_after('tomorrow')"), None);
    assert_eq!(one::<i32>("SELECT tasker_core.parse_retry_after('infinity')"), None);
    assert_eq!(one::<i32>("SELECT tasker_core.parse_retry_after('99999999999')"), None);
}
