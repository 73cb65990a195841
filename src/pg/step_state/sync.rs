//! The maintenance trigger (`tasker_core.step_state_sync()`, declared in sql/step_state.sql):
//! statement level, with transition tables, on each of the six Tasker tables. It finds the rows
//! a statement touched and notes them for the refresh at commit (`deferred`, which says why)
//! or, while an online build captures writes, logs them for it to replay.
//!
//! It was PL/pgSQL; here it reads the statement's transition tables directly (PostgreSQL's
//! tuplestore and slot APIs) instead of querying them: the queries were most of a
//! transition write's maintenance cost once the refresh moved to commit. What it decides, and
//! when, is unchanged:
//! - the source row is read as the PL/pgSQL function read it (one SPI query: under READ
//!   COMMITTED a new snapshot, otherwise the transaction's);
//! - a writer not under READ COMMITTED whose snapshot saw the copy otherwise than the latest
//!   committed source row gets 40001 (`step_state_check_snapshot`);
//! - TRUNCATE marks the copy stale; renaming a named step under another isolation level too;
//! - an UPDATE counts only rows whose mirrored columns changed. Rows are compared by their
//!   stored bytes (as a multiset: old rows not among the new, and new rows not among the old,
//!   as `EXCEPT ALL` both ways did): equal bytes are equal values, and values equal in other
//!   ways (none of these columns has such a type) would only cost a refresh that changes
//!   nothing.

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error::TaskerError;
use crate::pg::access::{transition_rows, Side, Snap, TransitionRows};
use crate::pg::report::OrRaise;
use crate::pg::spi::{self, Arg};
use crate::pg::step_state::deferred::{self, Kind};
use crate::pg::step_state::maintain::{self, Source};
use crate::pg::tasker::qualified;

const STEPS: usize = 0;
const NAMED_STEPS: usize = 1;
const TRANSITIONS: usize = 2;
const EDGES: usize = 3;
const TASKS: usize = 4;
const TASK_TRANSITIONS: usize = 5;

/// The source row, read as the PL/pgSQL trigger read it with a query: under READ COMMITTED a
/// new snapshot, otherwise the transaction's (`Snap::Statement`).
fn read_source() -> Source {
    maintain::source_row(Snap::Statement).or_raise()
}

/// What a statement touched (`touched`).
struct Touched {
    /// The ids of the rows touched.
    ids: Vec<i64>,
    /// Whether an id of the rows before is missing after: a DELETE, or an UPDATE that changed an
    /// id (for the steps: their rows in the copy must go, `Kind::GoneSteps`).
    removed: bool,
}

/// The ids (column `id`) of the rows the statement touched: every inserted or deleted row, and
/// for an UPDATE the rows whose columns `cols` changed (see the module comment). Whether an id
/// was removed is worked out only when `watch_removed` (false otherwise); the tables other than
/// the steps' take `touched_ids`.
fn touched(data: &pg_sys::TriggerData, id: &str, cols: &[&str], watch_removed: bool) -> Result<Touched, TaskerError> {
    let event = data.tg_event;
    let ids = |rows: TransitionRows| rows.into_iter().filter_map(|(id, _)| id).collect();
    if pgrx::trigger_support::trigger_fired_by_insert(event) {
        return Ok(Touched { ids: ids(transition_rows(data, Side::New, id, &[])?), removed: false });
    }
    if pgrx::trigger_support::trigger_fired_by_delete(event) {
        return Ok(Touched { ids: ids(transition_rows(data, Side::Old, id, &[])?), removed: watch_removed });
    }
    let mut old = transition_rows(data, Side::Old, id, cols)?;
    let mut new = transition_rows(data, Side::New, id, cols)?;
    let removed = watch_removed && {
        let mut new_ids: Vec<Option<i64>> = new.iter().map(|(id, _)| *id).collect();
        new_ids.sort_unstable();
        old.iter().any(|(id, _)| new_ids.binary_search(id).is_err())
    };
    // Sorted by the columns' bytes, the multiset difference is one merge.
    old.sort_unstable_by(|a, b| (&a.1, a.0).cmp(&(&b.1, b.0)));
    new.sort_unstable_by(|a, b| (&a.1, a.0).cmp(&(&b.1, b.0)));
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) if a.1 == b.1 => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a.1 < b.1 => {
                out.extend(a.0);
                i += 1;
            }
            (Some(_), Some(b)) => {
                out.extend(b.0);
                j += 1;
            }
            (Some(a), None) => {
                out.extend(a.0);
                i += 1;
            }
            (None, Some(b)) => {
                out.extend(b.0);
                j += 1;
            }
            (None, None) => break,
        }
    }
    Ok(Touched { ids: out, removed })
}

/// The ids of the rows the statement touched (`touched`), without watching for removed ids.
fn touched_ids(data: &pg_sys::TriggerData, id: &str, cols: &[&str]) -> Result<Vec<i64>, TaskerError> {
    touched(data, id, cols, false).map(|t| t.ids)
}

fn invalidate(why: String) {
    spi::query("SELECT tasker_core.step_state_invalidate($1)", &[Arg::Text(&why)], false, |_| ())
}

/// The trigger. SECURITY DEFINER with `search_path = pg_catalog, pg_temp` (sql/step_state.sql):
/// writers of the Tasker tables get no privilege on the extension's tables.
#[pg_trigger(sql = false)]
fn step_state_sync<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, TaskerError> {
    let data = trigger.trigger_data();
    let relid = trigger.relid().map_err(|e| TaskerError::StepStateCorrupted(e.to_string())).or_raise();
    sync(data, relid);
    Ok(None)
}

fn sync(data: &pg_sys::TriggerData, relid: pg_sys::Oid) {
    let src = read_source();
    let mirrors = src.tables.is_some_and(|t| t.contains(&relid));
    // Under REPEATABLE READ the snapshot may predate a rebuild, or a step of an online build,
    // that committed since: this write would then be left out of a copy everyone else trusts
    // (or is about to). Refuse (40001) then. Writers of tables it does not mirror, as far as
    // the snapshot knows, are left alone.
    // SAFETY: reads the transaction's isolation level.
    let read_committed = unsafe { pg_sys::XactIsoLevel } == pg_sys::XACT_READ_COMMITTED as i32;
    if !read_committed && (src.tables.is_none() || mirrors) {
        maintain::check_snapshot(src.valid.unwrap_or(false), src.building.as_deref());
    }
    if !(src.valid.unwrap_or(false) || src.building.is_some()) {
        return;
    }
    // An online build reading the tables: log what this write touched, for it to replay.
    let logging = src.building.as_deref() == Some("capture");
    let Some(t) = src.tables.filter(|_| mirrors) else {
        return;
    };
    if pgrx::trigger_support::trigger_fired_by_truncate(data.tg_event) {
        invalidate(format!("{} was truncated", qualified(relid)));
        return;
    }
    // Which rows the statement touched, and what they are to the copy.
    let (kind, ids) = if relid == t[STEPS] {
        let steps = touched(
            data,
            "workflow_step_id",
            &[
                "workflow_step_id",
                "task_id",
                "named_step_id",
                "retryable",
                "retry_limit",
                "in_process",
                "processed",
                "attempts",
                "last_attempted_at",
                "backoff_request_seconds",
                "created_at",
            ],
            true,
        )
        .or_raise();
        // A step deleted, or its id changed: the refresh also deletes the rows of steps gone.
        (if steps.removed { Kind::GoneSteps } else { Kind::Steps }, Ok(steps.ids))
    } else if relid == t[TRANSITIONS] {
        // Transitions decide only the state columns (and the children's done_parents where a
        // step became done or stopped being done).
        (
            Kind::Moved,
            touched_ids(data, "workflow_step_id", &["id", "workflow_step_id", "to_state", "most_recent", "created_at"]),
        )
    } else if relid == t[EDGES] {
        (Kind::Steps, touched_ids(data, "to_step_id", &["id", "from_step_id", "to_step_id"]))
    } else if relid == t[TASKS] {
        (Kind::Tasks, touched_ids(data, "task_id", &["task_id", "named_task_id"]))
    } else if relid == t[TASK_TRANSITIONS] {
        (Kind::Tasks, touched_ids(data, "task_id", &["id", "task_id", "to_state", "most_recent", "created_at"]))
    } else if relid == t[NAMED_STEPS] {
        let named = touched_ids(data, "named_step_id", &["named_step_id", "name"]).or_raise();
        if named.is_empty() {
            return;
        }
        if logging {
            // The build renames the steps of these named steps that it finds when it replays
            // the log; a step inserted since is in the log itself.
            deferred::log("n", &named);
            return;
        }
        // A step inserted (or re-pointed) concurrently with this rename must not keep the old
        // name. Its foreign key check holds FOR KEY SHARE on the named step, which FOR UPDATE
        // waits for (then, under READ COMMITTED, the query below sees that step); a later one
        // waits for this transaction. Under REPEATABLE READ this snapshot could not see such a
        // step, so a rename there marks the copy stale instead (renames are rare).
        if !read_committed {
            // SAFETY: reads the setting's current value.
            let level = unsafe {
                std::ffi::CStr::from_ptr(pg_sys::GetConfigOptionByName(
                    c"transaction_isolation".as_ptr(),
                    std::ptr::null_mut(),
                    false,
                ))
            };
            invalidate(format!("a named step of {} was renamed under {}", qualified(relid), level.to_string_lossy()));
            return;
        }
        let named: Vec<i32> = named.into_iter().map(|n| n as i32).collect();
        maintain::lock_named(&named, t[NAMED_STEPS]);
        (
            Kind::Steps,
            Ok(spi::query(
                "SELECT s.workflow_step_id FROM tasker_core.step_state s WHERE s.named_step_id OPERATOR(pg_catalog.=) ANY ($1)",
                &[Arg::Int4Array(&named)],
                false,
                |rows| (0..rows.len()).filter_map(|r| rows.i64(r, 1)).collect::<Vec<i64>>(),
            )),
        )
    } else {
        return;
    };
    let ids = ids.or_raise();
    // An online build capturing writes replays the log; otherwise the rows are refreshed at
    // commit.
    if logging {
        deferred::log(kind.letter(), &ids);
    } else {
        deferred::note(kind, ids, t);
    }
}
