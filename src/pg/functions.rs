//! The drop-in read functions (functions.md): same names, argument names, types, defaults
//! and result columns as the Rails PL/pgSQL functions, in schema `tasker_core`.
//! None is STRICT (a NULL argument gives the spec's answer); all are STABLE.
//!
//! pgrx reads the result columns from the literal `TableIterator<(name!(..), ..)>` in each
//! signature (a type alias is rejected), hence the long signatures.
#![allow(clippy::type_complexity)]

use std::collections::{HashMap, HashSet};

use pgrx::prelude::*;

use crate::pg::clock::TransactionClock;
use crate::pg::read;
use crate::pg::report::OrRaise;
use crate::rules::context::TaskTally;
use crate::rules::levels::dependency_levels;
use crate::rules::readiness::{evaluate, ParentTally, StepFacts};

type ReadinessRow = (
    name!(workflow_step_id, i64),
    name!(task_id, i64),
    name!(named_step_id, i32),
    name!(name, String),
    name!(current_state, String),
    name!(dependencies_satisfied, bool),
    name!(retry_eligible, bool),
    name!(ready_for_execution, bool),
    name!(last_failure_at, Option<Timestamp>),
    name!(next_retry_at, Option<Timestamp>),
    name!(total_parents, i32),
    name!(completed_parents, i32),
    name!(attempts, i32),
    name!(retry_limit, i32),
    name!(backoff_request_seconds, Option<i32>),
    name!(last_attempted_at, Option<Timestamp>),
);

type ContextRow = (
    name!(task_id, i64),
    name!(named_task_id, i32),
    name!(status, String),
    name!(total_steps, i64),
    name!(pending_steps, i64),
    name!(in_progress_steps, i64),
    name!(completed_steps, i64),
    name!(failed_steps, i64),
    name!(ready_steps, i64),
    name!(execution_status, String),
    name!(recommended_action, String),
    name!(completion_percentage, AnyNumeric),
    name!(health_status, String),
);

/// The non-NULL ids of an array argument, sorted and without duplicates.
fn distinct_ids(ids: Option<Vec<Option<i64>>>) -> Vec<i64> {
    let mut v: Vec<i64> = ids.unwrap_or_default().into_iter().flatten().collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn ts(raw: Option<i64>) -> Option<Timestamp> {
    // Values come from stored timestamps plus range-checked arithmetic: always valid.
    raw.map(Timestamp::saturating_from_raw)
}

/// Evaluates every step; calls `each` with the step and its computed row.
fn readiness_rows(
    task_ids: &[i64],
    keep: impl Fn(&StepFacts) -> bool,
    function: &'static str,
) -> Vec<(StepFacts, ReadinessRow)> {
    if task_ids.is_empty() {
        return Vec::new();
    }
    let data = read::steps_and_parents(read::TaskIds::of(task_ids), function);
    let clock = TransactionClock::now();
    data.steps
        .into_iter()
        .filter(|s| keep(s))
        .map(|s| {
            let parents = data.parents.get(&s.workflow_step_id).copied().unwrap_or(ParentTally::default());
            let r = evaluate(&s, parents, &clock).or_raise(function);
            let row = (
                s.workflow_step_id,
                s.task_id,
                s.named_step_id,
                s.name.clone(),
                s.current_state().to_string(),
                r.dependencies_satisfied,
                r.retry_eligible,
                r.ready_for_execution,
                ts(r.last_failure_at),
                ts(r.next_retry_at),
                r.total_parents,
                r.completed_parents,
                s.attempts_or_zero(),
                s.retry_limit_or_default(),
                s.backoff_request_seconds,
                ts(s.last_attempted_at),
            );
            (s, row)
        })
        .collect()
}

/// Readiness of the steps of one task (all of them, or those in `step_ids` when it is not NULL).
#[pg_extern(stable)]
fn get_step_readiness_status(
    input_task_id: Option<i64>,
    step_ids: default!(Option<Vec<Option<i64>>>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(workflow_step_id, i64),
        name!(task_id, i64),
        name!(named_step_id, i32),
        name!(name, String),
        name!(current_state, String),
        name!(dependencies_satisfied, bool),
        name!(retry_eligible, bool),
        name!(ready_for_execution, bool),
        name!(last_failure_at, Option<Timestamp>),
        name!(next_retry_at, Option<Timestamp>),
        name!(total_parents, i32),
        name!(completed_parents, i32),
        name!(attempts, i32),
        name!(retry_limit, i32),
        name!(backoff_request_seconds, Option<i32>),
        name!(last_attempted_at, Option<Timestamp>),
    ),
> {
    const F: &str = "get_step_readiness_status";
    let Some(task_id) = input_task_id else {
        return TableIterator::empty();
    };
    let wanted: Option<HashSet<i64>> = step_ids.map(|ids| ids.into_iter().flatten().collect());
    if wanted.as_ref().is_some_and(HashSet::is_empty) {
        return TableIterator::empty();
    }
    let rows = readiness_rows(&[task_id], |s| wanted.as_ref().is_none_or(|w| w.contains(&s.workflow_step_id)), F);
    TableIterator::new(rows.into_iter().map(|(_, row)| row))
}

/// Readiness of every step of the given tasks, ordered by (task_id, workflow_step_id).
#[pg_extern(stable)]
fn get_step_readiness_status_batch(
    input_task_ids: Option<Vec<Option<i64>>>,
) -> TableIterator<
    'static,
    (
        name!(workflow_step_id, i64),
        name!(task_id, i64),
        name!(named_step_id, i32),
        name!(name, String),
        name!(current_state, String),
        name!(dependencies_satisfied, bool),
        name!(retry_eligible, bool),
        name!(ready_for_execution, bool),
        name!(last_failure_at, Option<Timestamp>),
        name!(next_retry_at, Option<Timestamp>),
        name!(total_parents, i32),
        name!(completed_parents, i32),
        name!(attempts, i32),
        name!(retry_limit, i32),
        name!(backoff_request_seconds, Option<i32>),
        name!(last_attempted_at, Option<Timestamp>),
    ),
> {
    let ids = distinct_ids(input_task_ids);
    let rows = readiness_rows(&ids, |_| true, "get_step_readiness_status_batch");
    TableIterator::new(rows.into_iter().map(|(_, row)| row))
}

/// One execution-context row per existing task id in `requested` (duplicates repeat), by task_id.
fn contexts(requested: Vec<i64>, function: &'static str) -> Vec<ContextRow> {
    let mut ids = requested.clone();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Vec::new();
    }
    let tasks: HashMap<i64, read::TaskRow> =
        read::tasks(read::TaskIds::of(&ids), function).into_iter().map(|t| (t.task_id, t)).collect();
    let mut tallies: HashMap<i64, TaskTally> = HashMap::with_capacity(tasks.len());
    for (s, row) in readiness_rows(&ids, |_| true, function) {
        tallies.entry(s.task_id).or_default().add(s.current_state(), row.7, s.retries_exhausted());
    }
    let mut out: Vec<ContextRow> = requested
        .into_iter()
        .filter_map(|id| tasks.get(&id))
        .map(|task| {
            let t = tallies.get(&task.task_id).copied().unwrap_or_default();
            let pct = AnyNumeric::try_from(t.completion_percentage().as_str())
                .unwrap_or_else(|e| pgrx::error!("tasker_core: bad completion percentage: {e}"));
            (
                task.task_id,
                task.named_task_id,
                task.state.clone().unwrap_or_else(|| crate::rules::state::PENDING.to_string()),
                t.total,
                t.pending,
                t.in_progress,
                t.completed,
                t.failed,
                t.ready,
                t.execution_status().to_string(),
                t.recommended_action().to_string(),
                pct,
                t.health_status().to_string(),
            )
        })
        .collect();
    out.sort_by_key(|row| row.0);
    out
}

/// What one task should do next; no row when the task does not exist.
#[pg_extern(stable)]
fn get_task_execution_context(
    input_task_id: Option<i64>,
) -> TableIterator<
    'static,
    (
        name!(task_id, i64),
        name!(named_task_id, i32),
        name!(status, String),
        name!(total_steps, i64),
        name!(pending_steps, i64),
        name!(in_progress_steps, i64),
        name!(completed_steps, i64),
        name!(failed_steps, i64),
        name!(ready_steps, i64),
        name!(execution_status, String),
        name!(recommended_action, String),
        name!(completion_percentage, AnyNumeric),
        name!(health_status, String),
    ),
> {
    TableIterator::new(contexts(input_task_id.into_iter().collect(), "get_task_execution_context"))
}

/// One row per element naming an existing task (a repeated id repeats its row), by task_id.
#[pg_extern(stable)]
fn get_task_execution_contexts_batch(
    input_task_ids: Option<Vec<Option<i64>>>,
) -> TableIterator<
    'static,
    (
        name!(task_id, i64),
        name!(named_task_id, i32),
        name!(status, String),
        name!(total_steps, i64),
        name!(pending_steps, i64),
        name!(in_progress_steps, i64),
        name!(completed_steps, i64),
        name!(failed_steps, i64),
        name!(ready_steps, i64),
        name!(execution_status, String),
        name!(recommended_action, String),
        name!(completion_percentage, AnyNumeric),
        name!(health_status, String),
    ),
> {
    let requested: Vec<i64> = input_task_ids.unwrap_or_default().into_iter().flatten().collect();
    TableIterator::new(contexts(requested, "get_task_execution_contexts_batch"))
}

/// Longest-path level of every step reachable from a root, by (dependency_level, workflow_step_id).
#[pg_extern(stable)]
fn calculate_dependency_levels(
    input_task_id: Option<i64>,
) -> TableIterator<'static, (name!(workflow_step_id, i64), name!(dependency_level, i32))> {
    const F: &str = "calculate_dependency_levels";
    let Some(task_id) = input_task_id else {
        return TableIterator::empty();
    };
    let (steps, edges) = read::task_graph(task_id, F);
    let targets: HashSet<i64> = edges.iter().map(|&(_, to)| to).collect();
    let rows = dependency_levels(task_id, &steps, |s| targets.contains(&s), &edges).or_raise(F);
    TableIterator::new(rows)
}

/// Whole-database task and step counts by state, plus connection counts.
#[pg_extern(stable)]
fn get_system_health_counts_v01() -> TableIterator<
    'static,
    (
        name!(total_tasks, i64),
        name!(pending_tasks, i64),
        name!(in_progress_tasks, i64),
        name!(complete_tasks, i64),
        name!(error_tasks, i64),
        name!(cancelled_tasks, i64),
        name!(total_steps, i64),
        name!(pending_steps, i64),
        name!(in_progress_steps, i64),
        name!(complete_steps, i64),
        name!(error_steps, i64),
        name!(retryable_error_steps, i64),
        name!(exhausted_retry_steps, i64),
        name!(in_backoff_steps, i64),
        name!(active_connections, i64),
        name!(max_connections, i64),
    ),
> {
    let (h, active, max) = read::health("get_system_health_counts_v01");
    TableIterator::once((
        h.total_tasks,
        h.pending_tasks,
        h.in_progress_tasks,
        h.complete_tasks,
        h.error_tasks,
        h.cancelled_tasks,
        h.total_steps,
        h.pending_steps,
        h.in_progress_steps,
        h.complete_steps,
        h.error_steps,
        h.retryable_error_steps,
        h.exhausted_retry_steps,
        h.in_backoff_steps,
        active,
        max,
    ))
}
