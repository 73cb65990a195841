//! Task finalization (orchestration.md C.8) and the backoff formulas (D.5): `finalize_task`,
//! `finalization_plan` (the pure decision), `reenqueue_delay_seconds`, `backoff_seconds`.
//!
//! `finalize_task` locks the task row, reads the execution context once (the native context
//! function, after the lock), asks `rules::finalize` for the plan, and makes its moves with the
//! compare-and-swap writer of `pg::transitions`, under the one lock. It publishes nothing.

use pgrx::prelude::*;
use pgrx::{AnyNumeric, JsonB};

use crate::error::TaskerError;
use crate::pg::report::OrRaise;
use crate::pg::spi::{self, Arg};
use crate::pg::transitions::{Latest, Writer};
use crate::rules::backoff::BackoffConfig;
use crate::rules::finalize::{self, Plan};
use crate::rules::state::Machine;
use crate::rules::transition::Outcome;

fn config(backoff: Option<JsonB>) -> Result<BackoffConfig, TaskerError> {
    BackoffConfig::from_json(backoff.map(|JsonB(v)| v))
        .map_err(|e| TaskerError::InvalidArgument { argument: "backoff config", reason: e.0 })
}

/// The context row finalization reads (the native `get_task_execution_context`).
struct Context {
    execution_status: String,
    health_status: Option<String>,
    completion_percentage: Option<String>,
    total_steps: Option<i64>,
    ready_steps: Option<i64>,
    failed_steps: Option<i64>,
}

/// `read_only`: under the caller's snapshot (a STABLE function); otherwise a fresh one (after a lock).
fn context(task_id: i64, read_only: bool) -> Result<Option<Context>, TaskerError> {
    spi::run(
        "SELECT c.execution_status, c.health_status, c.completion_percentage::pg_catalog.text, \
                c.total_steps, c.ready_steps, c.failed_steps \
           FROM tasker_core.get_task_execution_context($1) c",
        &[Arg::Int8(task_id)],
        read_only,
        |rows| {
            (!rows.is_empty()).then(|| Context {
                execution_status: rows.string(0, 1).unwrap_or_default(),
                health_status: rows.string(0, 2),
                completion_percentage: rows.string(0, 3),
                total_steps: rows.i64(0, 4),
                ready_steps: rows.i64(0, 5),
                failed_steps: rows.i64(0, 6),
            })
        },
    )
}

/// For each step in `error`, not ready, with a `next_retry_at`: whole seconds from now() until
/// then (negative when passed), as `DelayCalculator#calculate_optimal_backoff_delay` reads them.
fn retry_waits(task_id: i64, read_only: bool) -> Result<Vec<i64>, TaskerError> {
    spi::run(
        "SELECT pg_catalog.trunc(pg_catalog.date_part('epoch'::pg_catalog.text, \
                    r.next_retry_at OPERATOR(pg_catalog.-) pg_catalog.timezone('UTC'::pg_catalog.text, pg_catalog.now())))::pg_catalog.int8 \
           FROM tasker_core.get_step_readiness_status($1) r \
          WHERE r.current_state OPERATOR(pg_catalog.=) 'error'::pg_catalog.text \
            AND NOT r.ready_for_execution AND r.next_retry_at IS NOT NULL",
        &[Arg::Int8(task_id)],
        read_only,
        |rows| (0..rows.len()).filter_map(|r| rows.i64(r, 1)).collect(),
    )
}

/// The plan's moves made one by one under the task's lock; returns what was made and the state
/// after.
fn carry_out(w: &Writer, task_id: i64, plan: &Plan, mut latest: Latest) -> Result<(Vec<bool>, Latest), TaskerError> {
    if plan.set_complete_only {
        w.set_task_complete(task_id)?;
    }
    let empty = serde_json::Value::Object(Default::default());
    let mut made = Vec::new();
    for m in &plan.moves {
        let answer = w.transition_locked(Machine::Task, task_id, &latest, m.to, None, &empty, || {
            if m.set_complete {
                w.set_task_complete(task_id)
            } else {
                Ok(())
            }
        })?;
        let ok = answer.outcome == Outcome::Transitioned;
        made.push(ok);
        if ok {
            latest = Latest { state: answer.current_state, max_sort_key: answer.sort_key };
        } else if m.required {
            break;
        }
    }
    Ok((made, latest))
}

type FinalizeRow = (
    name!(decision, String),
    name!(reason, Option<String>),
    name!(previous_state, String),
    name!(final_state, String),
    name!(transitions_written, i32),
    name!(delay_seconds, Option<i32>),
    name!(execution_status, String),
    name!(health_status, Option<String>),
    name!(completion_percentage, Option<AnyNumeric>),
    name!(total_steps, Option<i64>),
    name!(ready_steps, Option<i64>),
    name!(failed_steps, Option<i64>),
);

/// A computed number of seconds as the `integer` result (22003 when it does not fit).
fn to_i32(seconds: i64) -> Result<i32, TaskerError> {
    i32::try_from(seconds).map_err(|_| TaskerError::IntegerOutOfRange)
}

fn delay_i32(delay: Option<i64>) -> Result<Option<i32>, TaskerError> {
    delay.map(to_i32).transpose()
}

/// TaskFinalizer in one call: orchestration.md C.8. Raises P0002 when the task does not exist.
#[pg_extern(volatile, parallel_unsafe)]
#[allow(clippy::type_complexity)] // pgrx reads the result columns from this literal type
fn finalize_task(
    input_task_id: i64,
    synchronous: default!(bool, true),
    backoff: default!(Option<JsonB>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(decision, String),
        name!(reason, Option<String>),
        name!(previous_state, String),
        name!(final_state, String),
        name!(transitions_written, i32),
        name!(delay_seconds, Option<i32>),
        name!(execution_status, String),
        name!(health_status, Option<String>),
        name!(completion_percentage, Option<AnyNumeric>),
        name!(total_steps, Option<i64>),
        name!(ready_steps, Option<i64>),
        name!(failed_steps, Option<i64>),
    ),
> {
    let config = config(backoff).or_raise();
    let row = Spi::connect(|_| {
        let w = Writer::resolve()?;
        if !w.lock(Machine::Task, input_task_id)? {
            return Err(TaskerError::TaskNotFound(input_task_id));
        }
        let latest = w.latest(Machine::Task, input_task_id)?;
        let ctx = context(input_task_id, false)?.ok_or(TaskerError::TaskNotFound(input_task_id))?;
        let waits = if ctx.execution_status == "waiting_for_dependencies" && !synchronous {
            retry_waits(input_task_id, false)?
        } else {
            Vec::new()
        };
        let plan = finalize::plan(&ctx.execution_status, latest.state.as_deref(), synchronous, &config, &waits);
        let previous = crate::rules::transition::current(latest.state.as_deref()).to_string();
        let (made, after) = carry_out(&w, input_task_id, &plan, latest)?;
        let decision = plan.outcome(&made);
        let written = made.iter().filter(|&&m| m).count() as i32;
        let percentage = ctx.completion_percentage.as_deref().and_then(|p| AnyNumeric::try_from(p).ok());
        Ok::<FinalizeRow, TaskerError>((
            decision.code().to_string(),
            plan.reason.map(str::to_string),
            previous,
            crate::rules::transition::current(after.state.as_deref()).to_string(),
            written,
            delay_i32(plan.delay_seconds)?,
            ctx.execution_status,
            ctx.health_status,
            percentage,
            ctx.total_steps,
            ctx.ready_steps,
            ctx.failed_steps,
        ))
    })
    .or_raise();
    TableIterator::once(row)
}

/// The finalizer's decision alone, from its inputs (no table is read): the moves it would try
/// in order, the decision when they are all made, and the reason and delay it reports.
#[pg_extern(immutable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::type_complexity)] // pgrx reads the result columns from this literal type
fn finalization_plan(
    execution_status: &str,
    task_state: Option<&str>,
    synchronous: default!(bool, true),
    retry_waits: default!(Option<Vec<Option<i64>>>, "NULL"),
    backoff: default!(Option<JsonB>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(moves, Vec<String>),
        name!(sets_complete, bool),
        name!(decision, String),
        name!(fallback, String),
        name!(reason, Option<String>),
        name!(delay_seconds, Option<i32>),
    ),
> {
    let config = config(backoff).or_raise();
    let waits: Vec<i64> = retry_waits.unwrap_or_default().into_iter().flatten().collect();
    let plan = finalize::plan(execution_status, task_state, synchronous, &config, &waits);
    TableIterator::once((
        plan.moves.iter().map(|m| m.to.to_string()).collect(),
        plan.set_complete_only || plan.moves.iter().any(|m| m.set_complete),
        plan.decision.code().to_string(),
        plan.fallback.code().to_string(),
        plan.reason.map(str::to_string),
        delay_i32(plan.delay_seconds).or_raise(),
    ))
}

/// `DelayCalculator.calculate_reenqueue_delay` for a task (C.5): seconds before it should run
/// again. A task without a context (it does not exist) gets `default_reenqueue_delay`, as the
/// engine gives a missing context.
#[pg_extern(stable)]
fn reenqueue_delay_seconds(input_task_id: i64, backoff: default!(Option<JsonB>, "NULL")) -> i32 {
    let config = config(backoff).or_raise();
    Spi::connect(|_| {
        let status = context(input_task_id, true)?.map(|c| c.execution_status);
        let waits = if status.as_deref() == Some("waiting_for_dependencies") {
            retry_waits(input_task_id, true)?
        } else {
            Vec::new()
        };
        to_i32(config.reenqueue_delay(status.as_deref(), &waits))
    })
    .or_raise()
}

/// BackoffCalculator's exponential backoff (D.1): seconds to wait after the `attempt_number`-th
/// attempt failed. Exact with `jitter` false; with jitter (and `jitter_enabled` in the config)
/// within ± round(t × jitter_max_percentage), drawn from PostgreSQL's own generator.
#[pg_extern(volatile, parallel_restricted)]
#[search_path(pg_catalog, pg_temp)]
fn backoff_seconds(attempt_number: i32, jitter: default!(bool, true), config: default!(Option<JsonB>, "NULL")) -> i32 {
    let config = self::config(config).or_raise();
    let mut draw = |range: i64| -> i64 {
        if range <= 0 {
            return 0;
        }
        let span = (range as u64).saturating_mul(2);
        uniform(span) as i64 - range
    };
    let seconds = config.backoff_seconds(attempt_number as i64, if jitter { Some(&mut draw) } else { None });
    to_i32(seconds).or_raise()
}

/// A uniform integer in `0..=span`, from PostgreSQL's own generator.
#[cfg(not(any(feature = "pg13", feature = "pg14")))]
fn uniform(span: u64) -> u64 {
    // SAFETY: the backend-global generator of pg_prng.h (15+); rmin <= rmax.
    unsafe { pg_sys::pg_prng_uint64_range(&raw mut pg_sys::pg_global_prng_state, 0, span) }
}

/// A uniform integer in `0..=span` (PostgreSQL 13 and 14 have no pg_prng: pg_strong_random,
/// with the small modulo bias of a 64-bit draw, irrelevant for a few seconds of jitter).
#[cfg(any(feature = "pg13", feature = "pg14"))]
fn uniform(span: u64) -> u64 {
    let mut buf = [0u8; 8];
    // SAFETY: writes 8 bytes into an 8-byte buffer.
    let ok = unsafe { pg_sys::pg_strong_random(buf.as_mut_ptr().cast(), buf.len()) };
    if !ok || span == u64::MAX {
        return 0;
    }
    u64::from_le_bytes(buf) % (span + 1)
}
