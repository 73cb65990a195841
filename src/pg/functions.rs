//! The drop-in read functions (functions.md): same names, argument names, types, defaults
//! and result columns as the Rails PL/pgSQL functions, in schema `tasker_core`.
//! None is STRICT (a NULL argument gives the spec's answer); all are STABLE.
//!
//! The health counts use pgrx's `TableIterator`; the five per-task functions are written as
//! plain V1 functions in materialize mode (see below and pg::srf).

use std::cell::RefCell;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::pg::clock::TransactionClock;
use crate::pg::read;
use crate::pg::report::OrRaise;
use crate::pg::srf;
use crate::rules::context::TaskTally;
use crate::rules::idhash::{IdMap, IdSet};
use crate::rules::levels::dependency_levels;
use crate::rules::readiness::{evaluate, Readiness, StepFacts};

/// The non-NULL ids of an array argument, sorted and without duplicates.
pub(crate) fn distinct_ids(ids: Option<Vec<Option<i64>>>) -> Vec<i64> {
    let mut v: Vec<i64> = ids.unwrap_or_default().into_iter().flatten().collect();
    v.sort_unstable();
    v.dedup();
    v
}

thread_local! {
    /// The rows of the last readiness read, kept so the next call reuses the buffers.
    static READ: RefCell<read::StepsAndParents> = RefCell::new(read::StepsAndParents::default());
}

/// Evaluates every step of `task_ids` that `keep` accepts, in (task_id, workflow_step_id)
/// order, and hands each with its name and readiness to `each`. Returns the tasks' own rows
/// when they were read along (the step state).
fn for_each_readiness(
    task_ids: &[i64],
    with_tasks: bool,
    keep: impl Fn(&StepFacts) -> bool,
    function: &'static str,
    mut each: impl FnMut(&StepFacts, &str, &Readiness),
) -> Option<Vec<read::TaskRow>> {
    if task_ids.is_empty() {
        return None;
    }
    READ.with(|cell| {
        // A nested call (a policy or view calling a read function) gets its own buffers.
        let mut fresh = read::StepsAndParents::default();
        let mut guard = cell.try_borrow_mut();
        let data = match guard.as_deref_mut() {
            Ok(data) => data,
            Err(_) => &mut fresh,
        };
        read::steps_and_parents(read::TaskIds::of(task_ids), with_tasks, function, data);
        let clock = TransactionClock::now();
        for i in data.ordered() {
            let s = &data.steps[i];
            if keep(s) {
                let r = evaluate(s, data.tallies[i], &clock).or_raise(function);
                each(s, data.names.get(i), &r);
            }
        }
        data.tasks.take()
    })
}

// The five per-task functions are plain V1 C functions in materialize mode (pg::srf) rather
// than pgrx `#[pg_extern]`s: their SQL declarations (below) are the ones 0.1.0 and 0.2.0
// shipped, symbol names included, so older install scripts still load this library.

/// How the readiness functions' result columns are stored.
static READINESS: [srf::Stored; 16] = {
    use srf::Stored::{Bool, Int4, Int8, Text};
    [Int8, Int8, Int4, Text, Text, Bool, Bool, Bool, Int8, Int8, Int4, Int4, Int4, Int4, Int4, Int8]
};

/// One readiness row, written column by column when the result has the declared shape.
fn readiness_row(out: &mut srf::Output, s: &StepFacts, name: &str, r: &Readiness) {
    let state = s.current_state();
    let nulls = (r.last_failure_at.is_none() as u64) << 8
        | (r.next_retry_at.is_none() as u64) << 9
        | (s.backoff_request_seconds.is_none() as u64) << 14
        | (s.last_attempted_at.is_none() as u64) << 15;
    if let Some(mut w) = out.shaped(&READINESS, nulls, name.len() + state.len()) {
        w.int8(s.workflow_step_id);
        w.int8(s.task_id);
        w.int4(s.named_step_id);
        w.text(name);
        w.text(state);
        w.bool(r.dependencies_satisfied);
        w.bool(r.retry_eligible);
        w.bool(r.ready_for_execution);
        w.opt_int8(r.last_failure_at);
        w.opt_int8(r.next_retry_at);
        w.int4(r.total_parents);
        w.int4(r.completed_parents);
        w.int4(s.attempts_or_zero());
        w.int4(s.retry_limit_or_default());
        w.opt_int4(s.backoff_request_seconds);
        w.opt_int8(s.last_attempted_at);
        w.finish(|| readiness_values(s, r).to_vec(), &[(3, name), (4, state)]);
        return;
    }
    let mut values = readiness_values(s, r);
    out.row_with_texts(&mut values, &[(3, name), (4, state)]);
}

/// A readiness row's values, but for the name and current_state columns (3 and 4).
fn readiness_values(s: &StepFacts, r: &Readiness) -> [Option<pg_sys::Datum>; 16] {
    [
        Some(s.workflow_step_id.into()),
        Some(s.task_id.into()),
        Some(s.named_step_id.into()),
        None,
        None,
        Some(r.dependencies_satisfied.into()),
        Some(r.retry_eligible.into()),
        Some(r.ready_for_execution.into()),
        r.last_failure_at.map(pg_sys::Datum::from),
        r.next_retry_at.map(pg_sys::Datum::from),
        Some(r.total_parents.into()),
        Some(r.completed_parents.into()),
        Some(s.attempts_or_zero().into()),
        Some(s.retry_limit_or_default().into()),
        s.backoff_request_seconds.map(pg_sys::Datum::from),
        s.last_attempted_at.map(pg_sys::Datum::from),
    ]
}

/// Readiness of the steps of one task (all of them, or those in `step_ids` when it is not NULL).
///
/// # Safety
/// Called by PostgreSQL as `tasker_core.get_step_readiness_status(bigint, bigint[])`.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn get_step_readiness_status_wrapper(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    const F: &str = "get_step_readiness_status";
    let mut out = srf::Output::begin(fcinfo, 16);
    let Some(task_id) = srf::arg_i64(fcinfo, 0) else {
        return pg_sys::Datum::from(0);
    };
    let wanted: Option<Vec<i64>> = srf::arg_i64_array(fcinfo, 1).map(|ids| {
        let mut v: Vec<i64> = ids.into_iter().flatten().collect();
        v.sort_unstable();
        v
    });
    if wanted.as_ref().is_some_and(Vec::is_empty) {
        return pg_sys::Datum::from(0);
    }
    let keep = |s: &StepFacts| wanted.as_ref().is_none_or(|w| w.binary_search(&s.workflow_step_id).is_ok());
    for_each_readiness(&[task_id], false, keep, F, |s, name, r| readiness_row(&mut out, s, name, r));
    pg_sys::Datum::from(0)
}

/// Readiness of every step of the given tasks, ordered by (task_id, workflow_step_id).
///
/// # Safety
/// Called by PostgreSQL as `tasker_core.get_step_readiness_status_batch(bigint[])`.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn get_step_readiness_status_batch_wrapper(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    let mut out = srf::Output::begin(fcinfo, 16);
    let ids = distinct_ids(srf::arg_i64_array(fcinfo, 0));
    for_each_readiness(
        &ids,
        false,
        |_| true,
        "get_step_readiness_status_batch",
        |s, name, r| readiness_row(&mut out, s, name, r),
    );
    pg_sys::Datum::from(0)
}

/// One execution-context row per existing task id in `requested` (duplicates repeat), by task_id.
fn contexts(requested: Vec<i64>, function: &'static str, out: &mut srf::Output) {
    let mut ids = requested.clone();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return;
    }
    // Steps arrive ordered by task: tally each task's run of steps, no hashing per step.
    let mut tallies: Vec<(i64, TaskTally)> = Vec::with_capacity(ids.len());
    let read_along = for_each_readiness(
        &ids,
        true,
        |_| true,
        function,
        |s, _, r| {
            if tallies.last().is_none_or(|&(task, _)| task != s.task_id) {
                tallies.push((s.task_id, TaskTally::default()));
            }
            if let Some((_, t)) = tallies.last_mut() {
                t.add(s.current_state(), r.ready_for_execution, s.retries_exhausted());
            }
        },
    );
    // Both by task_id. The readers return steps and tasks in id order; should a task's steps
    // ever come in more than one run, its tallies are merged.
    if !tallies.is_sorted_by(|a, b| a.0 < b.0) {
        tallies.sort_by_key(|&(task, _)| task);
        tallies.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1.merge(&later.1);
            }
            same
        });
    }
    let mut tasks: Vec<read::TaskRow> = read_along.unwrap_or_else(|| read::tasks(read::TaskIds::of(&ids), function));
    if !tasks.is_sorted_by_key(|t| t.task_id) {
        tasks.sort_by_key(|t| t.task_id);
    }
    let task_of = |id: &i64| tasks.binary_search_by_key(id, |t| t.task_id).ok().map(|i| &tasks[i]);
    let tally_of =
        |id: i64| tallies.binary_search_by_key(&id, |&(task, _)| task).ok().map(|i| tallies[i].1).unwrap_or_default();
    let mut rows: Vec<&read::TaskRow> = requested.iter().filter_map(task_of).collect();
    rows.sort_by_key(|t| t.task_id);
    // Percentages repeat (few distinct completed/total pairs): convert each text once. The
    // numeric datums live in this call's memory; the tuplestore copies them.
    let mut percentages: IdMap<(i64, i64), Option<pg_sys::Datum>> = IdMap::default();
    for task in rows {
        let t = tally_of(task.task_id);
        let pct = *percentages.entry((t.completed, t.total)).or_insert_with(|| {
            AnyNumeric::try_from(t.completion_percentage().as_str())
                .unwrap_or_else(|e| pgrx::error!("tasker_core: bad completion percentage: {e}"))
                .into_datum()
        });
        let mut values = [
            Some(task.task_id.into()),
            Some(task.named_task_id.into()),
            None,
            Some(t.total.into()),
            Some(t.pending.into()),
            Some(t.in_progress.into()),
            Some(t.completed.into()),
            Some(t.failed.into()),
            Some(t.ready.into()),
            None,
            None,
            pct,
            None,
        ];
        out.row_with_texts(
            &mut values,
            &[
                (2, task.state.as_deref().unwrap_or(crate::rules::state::PENDING)),
                (9, t.execution_status()),
                (10, t.recommended_action()),
                (12, t.health_status()),
            ],
        );
    }
}

/// What one task should do next; no row when the task does not exist.
///
/// # Safety
/// Called by PostgreSQL as `tasker_core.get_task_execution_context(bigint)`.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn get_task_execution_context_wrapper(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let mut out = srf::Output::begin(fcinfo, 13);
    contexts(srf::arg_i64(fcinfo, 0).into_iter().collect(), "get_task_execution_context", &mut out);
    pg_sys::Datum::from(0)
}

/// One row per element naming an existing task (a repeated id repeats its row), by task_id.
///
/// # Safety
/// Called by PostgreSQL as `tasker_core.get_task_execution_contexts_batch(bigint[])`.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn get_task_execution_contexts_batch_wrapper(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    let mut out = srf::Output::begin(fcinfo, 13);
    let requested: Vec<i64> = srf::arg_i64_array(fcinfo, 0).unwrap_or_default().into_iter().flatten().collect();
    contexts(requested, "get_task_execution_contexts_batch", &mut out);
    pg_sys::Datum::from(0)
}

/// Longest-path level of every step reachable from a root, by (dependency_level, workflow_step_id).
///
/// # Safety
/// Called by PostgreSQL as `tasker_core.calculate_dependency_levels(bigint)`.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn calculate_dependency_levels_wrapper(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    const F: &str = "calculate_dependency_levels";
    let mut out = srf::Output::begin(fcinfo, 2);
    let Some(task_id) = srf::arg_i64(fcinfo, 0) else {
        return pg_sys::Datum::from(0);
    };
    let (steps, edges) = read::task_graph(task_id, F);
    let targets: IdSet<i64> = edges.iter().map(|&(_, to)| to).collect();
    for (step, level) in dependency_levels(task_id, &steps, |s| targets.contains(&s), &edges).or_raise(F) {
        out.row(&[Some(step.into()), Some(level.into())]);
    }
    pg_sys::Datum::from(0)
}

macro_rules! finfo_v1 {
    ($($name:ident),*) => {$(
        #[no_mangle]
        #[doc(hidden)]
        pub extern "C" fn $name() -> &'static pg_sys::Pg_finfo_record {
            const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }
    )*};
}
finfo_v1!(
    pg_finfo_get_step_readiness_status_wrapper,
    pg_finfo_get_step_readiness_status_batch_wrapper,
    pg_finfo_get_task_execution_context_wrapper,
    pg_finfo_get_task_execution_contexts_batch_wrapper,
    pg_finfo_calculate_dependency_levels_wrapper
);

pgrx::extension_sql!(
    r#"
CREATE FUNCTION tasker_core."get_step_readiness_status"(
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

CREATE FUNCTION tasker_core."get_step_readiness_status_batch"(
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

CREATE FUNCTION tasker_core."get_task_execution_context"(
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

CREATE FUNCTION tasker_core."get_task_execution_contexts_batch"(
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

CREATE FUNCTION tasker_core."calculate_dependency_levels"(
	"input_task_id" bigint
) RETURNS TABLE (
	"workflow_step_id" bigint,
	"dependency_level" INT
)
STABLE
LANGUAGE c
AS 'MODULE_PATHNAME', 'calculate_dependency_levels_wrapper';
"#,
    name = "read_functions",
    bootstrap
);

/// Whole-database task and step counts by state, plus connection counts.
#[allow(clippy::type_complexity)] // pgrx needs the literal column list here
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
