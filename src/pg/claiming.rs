//! `claim_ready_steps` (orchestration.md A.5): the ready steps of a task, claimed atomically.
//!
//! Candidates are the rows of the native readiness function with `ready_for_execution`, in
//! `workflow_step_id` order. They are locked with `SKIP LOCKED` (a step another claimer holds
//! is passed over, never waited for), at most as many at a time as claims are still wanted, so a
//! claimer never holds a row it will not claim while another claimer could have. Under the lock
//! the step's state and its parents are read again (`rules::transition::claim`), and the claim
//! is the Statesman-shaped `in_progress` row (an `error` step, when asked for, goes through
//! `pending` first: the retry the engine never writes). A writer without locks that appended
//! first makes the claim a skip, never an error.

use pgrx::prelude::*;
use pgrx::JsonB;

use crate::error::TaskerError;
use crate::pg::report::OrRaise;
use crate::pg::spi::{self, Arg};
use crate::pg::subxact;
use crate::pg::transitions::{object_arg, Writer};
use crate::rules::state::{self, Machine};
use crate::rules::transition::{self, Claim};

/// A ready step as the readiness function reported it.
struct Candidate {
    step: i64,
    task: i64,
    named_step: Option<i32>,
    name: Option<String>,
    attempts: Option<i32>,
    retry_limit: Option<i32>,
}

type ClaimRow = (
    name!(workflow_step_id, i64),
    name!(task_id, i64),
    name!(named_step_id, Option<i32>),
    name!(name, Option<String>),
    name!(claimed_from, String),
    name!(attempts, Option<i32>),
    name!(retry_limit, Option<i32>),
    name!(transition_id, i64),
    name!(sort_key, i32),
);

fn candidates(task_id: i64, step_ids: Option<&[i64]>) -> Result<Vec<Candidate>, TaskerError> {
    let columns = "SELECT r.workflow_step_id, r.task_id, r.named_step_id, r.name::pg_catalog.text, \
                          r.attempts, r.retry_limit";
    let read = |rows: &spi::Rows| {
        (0..rows.len())
            .map(|r| Candidate {
                step: rows.i64(r, 1).unwrap_or_default(),
                task: rows.i64(r, 2).unwrap_or_default(),
                named_step: rows.i32(r, 3),
                name: rows.string(r, 4),
                attempts: rows.i32(r, 5),
                retry_limit: rows.i32(r, 6),
            })
            .collect()
    };
    match step_ids {
        None => spi::run(
            &format!(
                "{columns} FROM tasker_core.get_step_readiness_status($1) r \
                  WHERE r.ready_for_execution ORDER BY r.workflow_step_id"
            ),
            &[Arg::Int8(task_id)],
            false,
            read,
        ),
        Some(ids) => spi::run(
            &format!(
                "{columns} FROM tasker_core.get_step_readiness_status($1, $2) r \
                  WHERE r.ready_for_execution ORDER BY r.workflow_step_id"
            ),
            &[Arg::Int8(task_id), Arg::Int8Array(ids)],
            false,
            read,
        ),
    }
}

/// Locks up to `limit` of `ids` (all: None) in id order, skipping rows another transaction holds.
fn lock_some(w_steps: &str, ids: &[i64], limit: Option<usize>) -> Result<Vec<i64>, TaskerError> {
    let limit = limit.map_or(i64::MAX, |l| l as i64);
    let sql = format!(
        "SELECT workflow_step_id::pg_catalog.int8 FROM {w_steps} \
          WHERE workflow_step_id OPERATOR(pg_catalog.=) ANY ($1) \
          ORDER BY workflow_step_id LIMIT $2 FOR NO KEY UPDATE SKIP LOCKED"
    );
    spi::run(&sql, &[Arg::Int8Array(ids), Arg::Int8(limit)], false, |rows| {
        (0..rows.len()).filter_map(|r| rows.i64(r, 1)).collect()
    })
}

/// Claims one locked step if it is still claimable: (claimed_from, transition id, sort_key).
fn claim_one(
    w: &Writer,
    step: i64,
    metadata: &serde_json::Value,
    include_error_steps: bool,
) -> Result<Option<(&'static str, i64, i32)>, TaskerError> {
    let latest = w.latest(Machine::Step, step)?;
    let parents = w.guard_states(Machine::Step, step)?;
    let parents_done = transition::guard_holds(parents.iter().map(Option::as_deref));
    let claim = transition::claim(latest.state.as_deref(), parents_done, include_error_steps);
    let written = match claim {
        Claim::Skip => return Ok(None),
        Claim::FromPending => subxact::unless_lost_race(|| {
            w.append_row(Machine::Step, step, state::IN_PROGRESS, metadata, latest.max_sort_key)
        })?
        .map(|(id, key)| (state::PENDING, id, key)),
        Claim::FromError => {
            let mut retry = metadata.clone();
            if let serde_json::Value::Object(m) = &mut retry {
                m.insert("retry".into(), serde_json::Value::Bool(true));
            }
            subxact::unless_lost_race(|| {
                let (_, key) = w.append_row(Machine::Step, step, state::PENDING, &retry, latest.max_sort_key)?;
                w.append_row(Machine::Step, step, state::IN_PROGRESS, metadata, Some(key))
            })?
            .map(|(id, key)| (state::ERROR, id, key))
        }
    };
    Ok(written)
}

/// Claims the ready steps of a task for the caller: orchestration.md A.5.
#[pg_extern(volatile, parallel_unsafe)]
#[allow(clippy::type_complexity)] // pgrx reads the result columns from this literal type
fn claim_ready_steps(
    input_task_id: i64,
    max_steps: default!(Option<i32>, "NULL"),
    step_ids: default!(Option<Vec<Option<i64>>>, "NULL"),
    claim_metadata: default!(Option<JsonB>, "'{}'::jsonb"),
    include_error_steps: default!(bool, false),
) -> TableIterator<
    'static,
    (
        name!(workflow_step_id, i64),
        name!(task_id, i64),
        name!(named_step_id, Option<i32>),
        name!(name, Option<String>),
        name!(claimed_from, String),
        name!(attempts, Option<i32>),
        name!(retry_limit, Option<i32>),
        name!(transition_id, i64),
        name!(sort_key, i32),
    ),
> {
    let metadata = object_arg("claim_metadata", "stored as the transitions' metadata", claim_metadata).or_raise();
    let wanted = match max_steps {
        None => None,
        Some(n) if n <= 0 => return TableIterator::new(Vec::new()),
        Some(n) => Some(n as usize),
    };
    let step_ids: Option<Vec<i64>> = step_ids.map(|v| v.into_iter().flatten().collect());
    let rows = Spi::connect(|_| {
        let w = Writer::resolve()?;
        let mut remaining = candidates(input_task_id, step_ids.as_deref())?;
        let mut out: Vec<ClaimRow> = Vec::new();
        while !remaining.is_empty() && wanted.is_none_or(|n| out.len() < n) {
            let ids: Vec<i64> = remaining.iter().map(|c| c.step).collect();
            let locked = lock_some(w.steps(), &ids, wanted.map(|n| n - out.len()))?;
            if locked.is_empty() {
                break;
            }
            for step in &locked {
                if let Some((from, tid, key)) = claim_one(&w, *step, &metadata, include_error_steps)? {
                    let c = remaining.iter().find(|c| c.step == *step).expect("a locked step is a candidate");
                    out.push((
                        c.step,
                        c.task,
                        c.named_step,
                        c.name.clone(),
                        from.to_string(),
                        c.attempts,
                        c.retry_limit,
                        tid,
                        key,
                    ));
                }
            }
            remaining.retain(|c| !locked.contains(&c.step));
        }
        Ok::<_, TaskerError>(out)
    })
    .or_raise();
    TableIterator::new(rows)
}
