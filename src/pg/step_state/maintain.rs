//! Keeping `tasker_core.step_state` exact (sql/step_state.sql, docs/step_state.md).
//!
//! One query (`Mirrored::expected_sql`) says what a step's row must be, computed from the
//! Tasker tables; the maintenance triggers (`step_state_refresh*`), `step_state_rebuild` and
//! `step_state_verify` all use it, so there is one definition to trust. Table names come from
//! the OIDs recorded in `step_state_source` and are quoted; values are parameters. These
//! functions run with `search_path = pg_catalog, pg_temp` and qualify what they name.

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error::TaskerError;
use crate::pg::access::{Bool, OidCol, Rel, SeqScan, Snap, Text};
use crate::pg::call::distinct_ids;
use crate::pg::report::OrRaise;
use crate::pg::sandbox::{as_owner, owner_of};
use crate::pg::spi::{self, Arg, Rows};
use crate::pg::step_state::system_identifier;
use crate::pg::tasker::{self, Tables, EDGES, NAMED_STEPS, STEPS, TASKS, TASK_TRANSITIONS, TRANSITIONS};
use crate::pg::texts;

/// The quoted, schema-qualified name of a mirrored table, or the error that it is gone.
fn mirrored(oid: pg_sys::Oid) -> Result<String, TaskerError> {
    match tasker::relkind(oid) {
        Some(_) => Ok(tasker::qualified(oid)),
        None => Err(TaskerError::MirroredTableGone(oid.to_u32())),
    }
}

/// What the task's own row of step_state must hold, for the tasks `filter` (a WHERE clause on
/// `t`, or empty) selects.
fn expected_tasks_sql(tasks: &str, task_transitions: &str, filter: &str) -> String {
    format!(
        "SELECT NULL::pg_catalog.int8 AS workflow_step_id, t.task_id, '{{}}'::pg_catalog.int8[] AS parents, \
                tr.to_state::pg_catalog.text AS current_state, tr.created_at::pg_catalog.\"timestamp\" AS state_since, \
                NULL::pg_catalog.int4 AS named_step_id, NULL::pg_catalog.text AS name, NULL::pg_catalog.bool AS retryable, \
                NULL::pg_catalog.int4 AS retry_limit, NULL::pg_catalog.bool AS in_process, NULL::pg_catalog.bool AS processed, \
                NULL::pg_catalog.int4 AS attempts, NULL::pg_catalog.\"timestamp\" AS last_attempted_at, \
                NULL::pg_catalog.int4 AS backoff_request_seconds, t.named_task_id, \
                0 AS total_parents, 0 AS done_parents, NULL::pg_catalog.\"timestamp\" AS step_created_at \
           FROM {tasks} t \
           LEFT JOIN LATERAL (SELECT x.to_state, x.created_at FROM {task_transitions} x \
                               WHERE x.task_id OPERATOR(pg_catalog.=) t.task_id AND x.most_recent \
                               LIMIT 1) tr ON true {filter}"
    )
}

/// What step_state must hold, in its column order, for the steps `filter` selects (a WHERE
/// clause on `ws`, or empty for all steps).
///
/// The step's name: for a few steps (`filter` given), looked up by the named steps' primary key
/// per step; for all of them, by a join. Both give the name of the one named step or NULL. A
/// join in the refresh's generic plan read and hashed every named step on every refresh (0.4 ms
/// of a 0.8 ms refresh of one step, with 1,000 named steps).
///
/// A step has at most one most_recent transition (the unique index step_state_problem requires).
/// `LIMIT 1` only keeps a second one from reaching ON CONFLICT; it has no ORDER BY on purpose:
/// ordering by id made the planner walk the transitions' primary key backwards for every step
/// instead of using the index.
fn expected_steps_sql(steps: &str, named: &str, transitions: &str, edges: &str, filter: &str) -> String {
    let counters = parent_counters_sql("ws.workflow_step_id", transitions, edges);
    let (name, join) = if filter.is_empty() {
        (
            "ns.name::pg_catalog.text".to_string(),
            format!("LEFT JOIN {named} ns ON ns.named_step_id OPERATOR(pg_catalog.=) ws.named_step_id"),
        )
    } else {
        (
            format!(
                "(SELECT ns.name::pg_catalog.text FROM {named} ns \
                   WHERE ns.named_step_id OPERATOR(pg_catalog.=) ws.named_step_id)"
            ),
            String::new(),
        )
    };
    format!(
        "SELECT ws.workflow_step_id, ws.task_id, \
                ARRAY(SELECT e.from_step_id FROM {edges} e \
                       WHERE e.to_step_id OPERATOR(pg_catalog.=) ws.workflow_step_id ORDER BY e.from_step_id) AS parents, \
                tr.to_state::pg_catalog.text AS current_state, tr.created_at::pg_catalog.\"timestamp\" AS state_since, \
                ws.named_step_id, {name} AS name, ws.retryable, ws.retry_limit, ws.in_process, \
                ws.processed, ws.attempts, ws.last_attempted_at, ws.backoff_request_seconds, \
                NULL::pg_catalog.int4 AS named_task_id, \
                {counters}, ws.created_at::pg_catalog.\"timestamp\" AS step_created_at \
           FROM {steps} ws {join} \
           LEFT JOIN LATERAL (SELECT t.to_state, t.created_at FROM {transitions} t \
                               WHERE t.workflow_step_id OPERATOR(pg_catalog.=) ws.workflow_step_id AND t.most_recent \
                               LIMIT 1) tr ON true {filter}"
    )
}

/// `total_parents` and `done_parents` of the step `step`: its parent edges (duplicates and
/// other tasks' steps count), and those whose parent's most_recent state is complete or
/// resolved_manually, as Rails' readiness function counts them.
fn parent_counters_sql(step: &str, transitions: &str, edges: &str) -> String {
    format!(
        "(SELECT pg_catalog.count(*) FROM {edges} e \
           WHERE e.to_step_id OPERATOR(pg_catalog.=) {step})::pg_catalog.int4 AS total_parents, \
         (SELECT pg_catalog.count(*) FROM {edges} e \
            JOIN {transitions} pt ON pt.workflow_step_id OPERATOR(pg_catalog.=) e.from_step_id AND pt.most_recent \
           WHERE e.to_step_id OPERATOR(pg_catalog.=) {step} \
             AND pt.to_state::pg_catalog.text OPERATOR(pg_catalog.=) \
                 ANY ('{{complete,resolved_manually}}'::pg_catalog.text[]))::pg_catalog.int4 AS done_parents"
    )
}

/// Everything step_state must hold: the step rows, then the task rows.
fn expected_all_sql(t: &[String; 6]) -> String {
    format!(
        "{} UNION ALL {}",
        expected_steps_sql(&t[STEPS], &t[NAMED_STEPS], &t[TRANSITIONS], &t[EDGES], ""),
        expected_tasks_sql(&t[TASKS], &t[TASK_TRANSITIONS], "")
    )
}

const COLUMNS: &str = "task_id, parents, current_state, state_since, named_step_id, name, retryable, retry_limit, \
                       in_process, processed, attempts, last_attempted_at, backoff_request_seconds, named_task_id, \
                       total_parents, done_parents, step_created_at";

/// Whether step_state has the columns 0.4.0 added (the parent counters and step_created_at).
/// Between installing a new library and
/// `ALTER EXTENSION tasker_core UPDATE` the table still has the 0.3.0 columns, and the 0.3.0
/// maintenance triggers call these functions: they then write the columns that exist.
fn has_counters() -> bool {
    let Some(oid) = crate::pg::step_state::own_table(c"step_state") else {
        return false;
    };
    Rel::try_open(oid)
        .is_some_and(|rel| ["total_parents", "done_parents", "step_created_at"].iter().all(|c| rel.column(c).is_some()))
}

/// Runs `f` with the rights of `table`'s owner, sandboxed (pg::sandbox): enable() granted that
/// role its rights on step_state. Between installing this library and `ALTER EXTENSION
/// tasker_core UPDATE` from 0.3.0 (a step_state without the counters) the owner has none, and
/// the work runs as it did under 0.3.0, with the rights of the extension's SECURITY DEFINER
/// trigger, until the update grants them.
fn as_maintainer<R>(table: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    if !has_counters() {
        return f();
    }
    as_owner(owner_of(table).or_raise(), f)
}

/// The columns written: all of `COLUMNS`, or those of 0.3.0.
fn columns() -> String {
    if has_counters() {
        COLUMNS.to_string()
    } else {
        COLUMNS.replace(", total_parents, done_parents, step_created_at", "")
    }
}

/// `SET c = EXCLUDED.c, ...` and `(d.c, ...) IS DISTINCT FROM (EXCLUDED.c, ...)` over `columns`.
fn upsert_clauses(columns: &str) -> (String, String) {
    let cols: Vec<&str> = columns.split(", ").collect();
    let set: Vec<String> = cols.iter().map(|c| format!("{c} = EXCLUDED.{c}")).collect();
    let old: Vec<String> = cols.iter().map(|c| format!("d.{c}")).collect();
    let new: Vec<String> = cols.iter().map(|c| format!("EXCLUDED.{c}")).collect();
    (set.join(", "), format!("({}) IS DISTINCT FROM ({})", old.join(", "), new.join(", ")))
}

/// Locks the step rows of step_state for `$1`, in id order.
const LOCK_STEPS: &str = "SELECT workflow_step_id, current_state FROM tasker_core.step_state \
                          WHERE workflow_step_id OPERATOR(pg_catalog.=) ANY ($1) ORDER BY workflow_step_id FOR UPDATE";
/// Locks the task rows of step_state for `$1`, in id order.
const LOCK_TASKS: &str = "SELECT 1 FROM tasker_core.step_state WHERE workflow_step_id IS NULL \
                          AND task_id OPERATOR(pg_catalog.=) ANY ($1) ORDER BY task_id FOR UPDATE";

/// Locks the rows a refresh will recompute (`lock`), then recomputes them (`sql`) in a second
/// statement, which under READ COMMITTED takes a snapshot that includes whatever a concurrent
/// writer of those rows committed while we waited (see `step_state_refresh`). Both run with the
/// rights of `table`'s owner, sandboxed (pg::sandbox).
fn lock_then_run(table: pg_sys::Oid, lock: &str, sql: &str, ids: &[i64]) {
    as_maintainer(table, || {
        Spi::connect(|_| {
            spi::run(lock, &[Arg::Int8Array(ids)], false, |_| ())?;
            spi::run(sql, &[Arg::Int8Array(ids)], false, |_| ())
        })
        .or_raise()
    })
}

/// Recomputes the step_state rows of `ids` (steps that a statement inserted, changed or deleted,
/// or whose edges or named step changed), after what this transaction noted for its commit
/// (pg::step_state::deferred). The online build's replay calls it; the maintenance trigger notes
/// steps instead, refreshed at commit by `refresh_steps_now`.
///
/// The rows are locked first, in id order, and recomputed by a second statement: under READ
/// COMMITTED that statement's snapshot sees whatever a concurrent writer of the same steps
/// committed while we waited for its lock, so no change is lost; under REPEATABLE READ the lock
/// raises 40001 instead (the writer retries).
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn step_state_refresh(
    ids: Option<Vec<Option<i64>>>,
    steps: pg_sys::Oid,
    named_steps: pg_sys::Oid,
    transitions: pg_sys::Oid,
    edges: pg_sys::Oid,
) {
    let ids = distinct_ids(ids);
    if ids.is_empty() {
        return;
    }
    // What this transaction's own writes left for its commit first (pg::step_state::deferred).
    crate::pg::step_state::deferred::apply();
    refresh_steps_now(&ids, steps, named_steps, transitions, edges, MayBeGone::Yes);
}

/// The work of `step_state_refresh` for `ids` (sorted, distinct). A step whose row existed and
/// whose done-ness the refresh flips (a transition written in the same transaction and noted
/// with it: pg::step_state::deferred) has its children's counters recounted, as
/// `refresh_transitions_now` does; a new step has no children yet whose rows would not be
/// refreshed too (an edge to a child refreshes the child).
pub(super) fn refresh_steps_now(
    ids: &[i64],
    steps: pg_sys::Oid,
    named_steps: pg_sys::Oid,
    transitions: pg_sys::Oid,
    edges: pg_sys::Oid,
    gone: MayBeGone,
) {
    if ids.is_empty() {
        return;
    }
    let kind = match gone {
        MayBeGone::Yes => "step_state: steps upsert, deleting the gone",
        MayBeGone::No => "step_state: steps upsert",
    };
    let upsert = texts::text(kind, &[steps, named_steps, transitions, edges], || {
        let columns = columns();
        let (set, changed) = upsert_clauses(&columns);
        let delete_gone = match gone {
            MayBeGone::Yes => {
                ", gone AS (DELETE FROM tasker_core.step_state d \
                             WHERE d.workflow_step_id OPERATOR(pg_catalog.=) ANY ($1) \
                               AND NOT EXISTS (SELECT 1 FROM src WHERE src.workflow_step_id OPERATOR(pg_catalog.=) d.workflow_step_id))"
            }
            MayBeGone::No => "",
        };
        Ok(format!(
            "WITH src AS ({expected}){delete_gone} \
             INSERT INTO tasker_core.step_state AS d (workflow_step_id, {columns}) SELECT workflow_step_id, {columns} FROM src \
             ON CONFLICT (workflow_step_id) WHERE workflow_step_id IS NOT NULL DO UPDATE SET {set} WHERE {changed} \
             RETURNING d.workflow_step_id, d.current_state",
            expected = expected_steps_sql(
                &mirrored(steps)?,
                &mirrored(named_steps)?,
                &mirrored(transitions)?,
                &mirrored(edges)?,
                "WHERE ws.workflow_step_id OPERATOR(pg_catalog.=) ANY ($1)"
            ),
        ))
    })
    .or_raise();
    refresh_recounting(steps, &upsert, ids, transitions, edges, NewRows::Unflipped);
}

/// Whether a step being refreshed may have been deleted (or its id changed), so that its row
/// must go. The upsert deletes such rows in a CTE; a plan without it starts faster (58k of the
/// whole write stack's 4.85M instructions per transaction, docs/benchmarks.md), and the
/// maintenance trigger knows when no step row went away: only inserts, and updates that kept
/// every id.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum MayBeGone {
    Yes,
    No,
}

/// What a row that a refresh returns but that its lock did not find (a row it inserted) counts
/// as: `Flipped` (its children are recounted when it is done) or `Unflipped`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NewRows {
    Flipped,
    Unflipped,
}

/// Locks the step rows of `ids` (reading their done-ness), runs `refresh` (which returns each
/// row it wrote: workflow_step_id, current_state) in a statement of its own, then recounts the
/// children of the steps whose done-ness flipped; with the rights of `table`'s owner, sandboxed.
fn refresh_recounting(
    table: pg_sys::Oid,
    refresh: &str,
    ids: &[i64],
    transitions: pg_sys::Oid,
    edges: pg_sys::Oid,
    new: NewRows,
) {
    let counters = has_counters();
    as_maintainer(table, || {
        Spi::connect(|_| {
            let before = spi::run(LOCK_STEPS, &[Arg::Int8Array(ids)], false, done_of)?;
            let after = spi::run(refresh, &[Arg::Int8Array(ids)], false, done_of)?;
            if !counters {
                return Ok(());
            }
            let flipped: Vec<i64> = after
                .iter()
                .filter(|(id, done)| match before.iter().find(|(b, _)| b == id) {
                    Some((_, was)) => was != done,
                    None => new == NewRows::Flipped,
                })
                .map(|&(id, _)| id)
                .collect();
            recount_children(flipped, transitions, edges)
        })
        .or_raise()
    })
}

/// (workflow_step_id, whether current_state is done) of each row (columns 1 and 2).
fn done_of(rows: &Rows) -> Vec<(i64, bool)> {
    (0..rows.len()).map(|r| (rows.i64(r, 1).unwrap_or_default(), rows.bytes(r, 2).is_some_and(is_done))).collect()
}

/// Recounts `total_parents` and `done_parents` of the children of the steps `flipped` (whose
/// done-ness changed): their rows locked first, in id order, then recounted in a statement of
/// its own (which under READ COMMITTED sees what a concurrent writer committed meanwhile).
fn recount_children(mut flipped: Vec<i64>, transitions: pg_sys::Oid, edges: pg_sys::Oid) -> Result<(), TaskerError> {
    if flipped.is_empty() {
        return Ok(());
    }
    flipped.sort_unstable();
    let children = || -> Result<String, TaskerError> {
        Ok(format!(
            "SELECT e.to_step_id FROM {} e WHERE e.from_step_id OPERATOR(pg_catalog.=) ANY ($1)",
            mirrored(edges)?
        ))
    };
    let lock_children = texts::text("step_state: lock children", &[edges], || {
        Ok(format!(
            "SELECT 1 FROM tasker_core.step_state WHERE workflow_step_id IN ({}) \
              ORDER BY workflow_step_id FOR UPDATE",
            children()?
        ))
    })?;
    let recount = texts::text("step_state: recount children", &[transitions, edges], || {
        Ok(format!(
            "UPDATE tasker_core.step_state d SET total_parents = x.total_parents, done_parents = x.done_parents \
               FROM (SELECT c.id, {counters} FROM (SELECT DISTINCT x.to_step_id AS id FROM ({children}) x) c) x \
              WHERE d.workflow_step_id OPERATOR(pg_catalog.=) x.id \
                AND (d.total_parents, d.done_parents) IS DISTINCT FROM (x.total_parents, x.done_parents)",
            counters = parent_counters_sql("c.id", &mirrored(transitions)?, &mirrored(edges)?),
            children = children()?,
        ))
    })?;
    spi::run(&lock_children, &[Arg::Int8Array(&flipped)], false, |_| ())?;
    spi::run(&recount, &[Arg::Int8Array(&flipped)], false, |_| ())
}

/// The 0.3.0 refresh of the state columns, kept (without an SQL declaration of its own) for the
/// 0.3.0 maintenance trigger that calls it until `ALTER EXTENSION tasker_core UPDATE` runs.
#[pg_extern(volatile, parallel_unsafe, sql = false)]
fn step_state_refresh_states(ids: Option<Vec<Option<i64>>>, transitions: pg_sys::Oid) {
    let ids = distinct_ids(ids);
    if ids.is_empty() {
        return;
    }
    lock_then_run(transitions, LOCK_STEPS, &states_update_sql(&mirrored(transitions).or_raise(), ""), &ids);
}

/// Sets `current_state` and `state_since` of the step rows of `$1` from their most_recent
/// transitions, exactly as `expected_steps_sql` reads them; `returning` is appended.
fn states_update_sql(transitions: &str, returning: &str) -> String {
    format!(
        "UPDATE tasker_core.step_state d \
            SET current_state = x.current_state, state_since = x.state_since \
           FROM (SELECT i.id, tr.to_state::pg_catalog.text AS current_state, \
                        tr.created_at::pg_catalog.\"timestamp\" AS state_since \
                   FROM pg_catalog.unnest($1::pg_catalog.int8[]) AS i(id) \
                   LEFT JOIN LATERAL (SELECT t.to_state, t.created_at FROM {transitions} t \
                                       WHERE t.workflow_step_id OPERATOR(pg_catalog.=) i.id AND t.most_recent \
                                       LIMIT 1) tr ON true) x \
          WHERE d.workflow_step_id OPERATOR(pg_catalog.=) x.id \
            AND (d.current_state, d.state_since) IS DISTINCT FROM (x.current_state, x.state_since) {returning}"
    )
}

/// Recomputes the state columns of the steps `ids` from their transitions (and recounts the
/// children of those whose done-ness flips), after what this transaction noted for its commit.
/// The maintenance trigger notes transition writes instead (pg::step_state::deferred), which
/// calls `refresh_transitions_now` at commit.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn step_state_refresh_transitions(ids: Option<Vec<Option<i64>>>, transitions: pg_sys::Oid, edges: pg_sys::Oid) {
    let ids = distinct_ids(ids);
    if ids.is_empty() {
        return;
    }
    crate::pg::step_state::deferred::apply();
    refresh_transitions_now(&ids, transitions, edges);
}

/// What a write to the step transitions can change: `current_state` and `state_since` of the
/// steps `ids`, and, where a step became done or stopped being done, `done_parents` of its
/// children. `ids` sorted and distinct; pg::step_state::deferred calls it.
///
/// Locks as `step_state_refresh` does: the steps' rows first (the lock also reads their state
/// before the change), then the update in a statement of its own; then the children's rows, and
/// their recount in another statement. Under READ COMMITTED each recount sees what a concurrent
/// writer of the same rows committed while we waited, so two parents finishing at once both
/// count; under REPEATABLE READ the lock raises 40001 instead (the writer retries).
pub(super) fn refresh_transitions_now(ids: &[i64], transitions: pg_sys::Oid, edges: pg_sys::Oid) {
    if ids.is_empty() {
        return;
    }
    let update = texts::text("step_state: states update", &[transitions], || {
        Ok(states_update_sql(&mirrored(transitions)?, "RETURNING d.workflow_step_id, d.current_state"))
    })
    .or_raise();
    refresh_recounting(transitions, &update, ids, transitions, edges, NewRows::Flipped);
}

/// Locks the named steps `named` (FOR UPDATE, in id order) of `named_steps`: a rename then waits
/// for, or is waited for by, a step inserted or re-pointed at the same named step (see the
/// named-steps branch of pg::step_state::sync). With the table owner's rights, sandboxed.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn step_state_lock_named(named: Option<Vec<Option<i32>>>, named_steps: pg_sys::Oid) {
    let mut ids: Vec<i32> = named.unwrap_or_default().into_iter().flatten().collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return;
    }
    let table = named_steps;
    let sql = format!(
        "SELECT 1 FROM {} WHERE named_step_id OPERATOR(pg_catalog.=) ANY ($1) ORDER BY named_step_id FOR UPDATE",
        mirrored(named_steps).or_raise()
    );
    as_maintainer(table, || spi::query(&sql, &[Arg::Int4Array(&ids)], false, |_| ()));
}

/// Whether a state (as bytes) makes a parent done.
fn is_done(state: &[u8]) -> bool {
    crate::pg::facts::is_done(state)
}

/// Recomputes the task rows of step_state for `ids` (tasks inserted, changed or deleted, or
/// whose transitions changed); the maintenance trigger notes tasks instead, refreshed at commit
/// by `refresh_tasks_now`. Locks as `step_state_refresh` does.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn step_state_refresh_tasks(ids: Option<Vec<Option<i64>>>, tasks: pg_sys::Oid, task_transitions: pg_sys::Oid) {
    refresh_tasks_now(&distinct_ids(ids), tasks, task_transitions);
}

/// The work of `step_state_refresh_tasks` for `ids` (sorted, distinct).
pub(super) fn refresh_tasks_now(ids: &[i64], tasks: pg_sys::Oid, task_transitions: pg_sys::Oid) {
    if ids.is_empty() {
        return;
    }
    let upsert = texts::text("step_state: tasks upsert", &[tasks, task_transitions], || {
        let (set, changed) = upsert_clauses("current_state, state_since, named_task_id");
        let columns = columns();
        Ok(format!(
            "WITH src AS ({expected}), \
                  gone AS (DELETE FROM tasker_core.step_state d \
                            WHERE d.workflow_step_id IS NULL AND d.task_id OPERATOR(pg_catalog.=) ANY ($1) \
                              AND NOT EXISTS (SELECT 1 FROM src WHERE src.task_id OPERATOR(pg_catalog.=) d.task_id)) \
             INSERT INTO tasker_core.step_state AS d (workflow_step_id, {columns}) SELECT workflow_step_id, {columns} FROM src \
             ON CONFLICT (task_id) WHERE workflow_step_id IS NULL DO UPDATE SET {set} WHERE {changed}",
            expected = expected_tasks_sql(
                &mirrored(tasks)?,
                &mirrored(task_transitions)?,
                "WHERE t.task_id OPERATOR(pg_catalog.=) ANY ($1)"
            ),
        ))
    })
    .or_raise();
    lock_then_run(tasks, LOCK_TASKS, &upsert, ids);
}

/// What the maintenance trigger does with a write, by `step_state_source`'s `valid` and
/// `building` (sql/step_state.sql, step_state_sync).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Upkeep {
    /// Nothing: the copy is not in use nor being built.
    Nothing,
    /// Logs what the write touched (an online build reading the tables).
    Log,
    /// Refreshes the copy's rows.
    Refresh,
}

impl Upkeep {
    fn of(valid: bool, building: Option<&[u8]>) -> Upkeep {
        match building {
            Some(b"capture") => Upkeep::Log,
            Some(_) => Upkeep::Refresh,
            None if valid => Upkeep::Refresh,
            None => Upkeep::Nothing,
        }
    }
}

/// Raises 40001 when the maintenance trigger of a REPEATABLE READ or SERIALIZABLE writer read
/// `step_state_source` as (`valid`, `building`) with its snapshot and would treat the write
/// otherwise than the latest committed row says, while the copy is in use or being built: an
/// enable, a rebuild, or a step of an online build committed after the snapshot was taken. The
/// write would then be left out of a copy everyone else trusts (or of the online build's log).
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn step_state_check_snapshot(valid: bool, building: Option<&str>) {
    let latest = latest_upkeep();
    if latest != Upkeep::Nothing && latest != Upkeep::of(valid, building.map(str::as_bytes)) {
        crate::pg::report::raise(TaskerError::StaleSnapshot);
    }
}

/// The 0.3.0 check, kept (without an SQL declaration of its own) for the 0.3.0 maintenance
/// trigger that calls it until `ALTER EXTENSION tasker_core UPDATE` runs: 40001 when the copy is
/// in use in the latest committed state (that trigger calls it only when its snapshot says not).
#[pg_extern(volatile, parallel_unsafe, sql = false)]
fn step_state_check_not_missed() {
    if latest_upkeep() != Upkeep::Nothing {
        crate::pg::report::raise(TaskerError::StaleSnapshot);
    }
}

/// What `step_state_source` says under the latest snapshot (not the transaction's).
pub(super) fn latest_upkeep() -> Upkeep {
    source_row(Snap::Latest)
        .map_or(Upkeep::Nothing, |s| Upkeep::of(s.valid == Some(true), s.building.as_deref().map(str::as_bytes)))
}

/// The row of `step_state_source` (every field None: no row, or no table).
#[derive(Default)]
pub(super) struct Source {
    pub valid: Option<bool>,
    pub building: Option<String>,
    /// steps, named_steps, transitions, edges, tasks, task_transitions (None: no source row).
    pub tables: Option<[pg_sys::Oid; 6]>,
}

/// The row of `step_state_source` under `snap`, read by a scan of the one-row table: read by a
/// query, its executor start-up was a sixth of what the whole write stack adds per statement
/// of the maintenance trigger (docs/benchmarks.md). Refused (XX001) when the table lacks a
/// column every version of it has; the 0.3.0 table has no `building`.
pub(super) fn source_row(snap: Snap) -> Result<Source, TaskerError> {
    let Some(oid) = crate::pg::step_state::own_table(c"step_state_source") else {
        return Ok(Source::default());
    };
    let Some(rel) = Rel::try_open(oid) else {
        return Ok(Source::default());
    };
    let tables =
        ["steps", "named_steps", "transitions", "edges", "tasks", "task_transitions"].map(|c| rel.col::<OidCol>(c));
    let (Ok(valid), [Ok(c0), Ok(c1), Ok(c2), Ok(c3), Ok(c4), Ok(c5)]) = (rel.col::<Bool>("valid"), tables) else {
        return Err(TaskerError::StepStateCorrupted(format!(
            "{} is not the table this library reads",
            tasker::qualified(oid)
        )));
    };
    let building = rel.col::<Text>("building").ok();
    let mut src = Source::default();
    if let Some(mut scan) = SeqScan::open_with(oid, rel.natts(), snap) {
        scan.each(|row| {
            if src.tables.is_some() {
                return;
            }
            let oid = |c| row.oid(c).unwrap_or(pg_sys::InvalidOid);
            src = Source {
                valid: row.bool(valid),
                building: building.and_then(|b| row.bytes(b)).map(|b| String::from_utf8_lossy(b).into_owned()),
                tables: Some([oid(c0), oid(c1), oid(c2), oid(c3), oid(c4), oid(c5)]),
            };
        });
    }
    Ok(src)
}

/// The recorded source tables and what `step_state_problem` says about them.
fn recorded_source() -> Result<(Tables, Option<String>), TaskerError> {
    let found = spi::run(
        "SELECT s.steps::pg_catalog.oid, s.named_steps::pg_catalog.oid, s.transitions::pg_catalog.oid, \
                s.edges::pg_catalog.oid, s.tasks::pg_catalog.oid, s.task_transitions::pg_catalog.oid, \
                tasker_core.step_state_problem(s)::pg_catalog.text \
           FROM tasker_core.step_state_source s",
        &[],
        true,
        |rows| {
            (!rows.is_empty()).then(|| {
                let oid = |c| rows.oid(0, c).unwrap_or(pg_sys::InvalidOid);
                (Tables([oid(1), oid(2), oid(3), oid(4), oid(5), oid(6)]), rows.string(0, 7))
            })
        },
    )?;
    found.ok_or(TaskerError::StepStateNotEnabled)
}

/// Rebuilds every step_state row from the Tasker tables and marks it valid (built on this
/// server); returns the number of steps. Blocks writers of the six tables while it runs
/// (SHARE ROW EXCLUSIVE), so nothing can change between reading them and marking the result
/// valid; `CALL tasker_core.step_state_rebuild_concurrently()` does not (sql/step_state.sql).
/// Maintenance triggers that a data-only restore turned into ordinary ones (its ENABLE
/// TRIGGER ALL leaves them ENABLE instead of ENABLE ALWAYS) are set back to ENABLE ALWAYS
/// first; triggers disabled outright stay so, and the rebuild refuses. An online build under way
/// stops (its log is emptied; the procedure then says so).
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn step_state_rebuild() -> i64 {
    require_read_committed("step_state_rebuild");
    Spi::connect(|_| {
        // Between installing this library and ALTER EXTENSION UPDATE, the 0.3.0 SQL calls it:
        // its step_state_source has no built_on, fingerprint nor building, and no trigger repair.
        let current = spi::run(
            "SELECT pg_catalog.to_regprocedure('tasker_core.step_state_enable_always(tasker_core.step_state_source)') IS NOT NULL",
            &[],
            false,
            |rows| rows.bool(0, 1).unwrap_or_default(),
        )?;
        if current {
            spi::run(
                "SELECT tasker_core.step_state_enable_always(s) FROM tasker_core.step_state_source s",
                &[],
                false,
                |_| (),
            )?;
        }
        let (tables, problem) = recorded_source()?;
        if let Some(reason) = problem {
            return Err(TaskerError::StepStateUnusable { action: "rebuild", reason });
        }
        let n = fill(&tables, if current { Lock::GivingWay } else { Lock::Plain })?;
        let identity = if current {
            format!(
                ", building = NULL, built_on = {}, fingerprint = tasker_core.step_state_fingerprint(s)",
                pgrx::spi::quote_literal(system_identifier())
            )
        } else {
            String::new()
        };
        spi::run(
            &format!(
                "UPDATE tasker_core.step_state_source s SET valid = true, reason = NULL, changed_at = pg_catalog.now(){identity}"
            ),
            &[],
            false,
            |_| (),
        )?;
        if current {
            spi::run("DELETE FROM tasker_core.step_state_log", &[], false, |_| ())?;
        }
        Ok(n)
    })
    .or_raise()
}

/// The second step of an online build (`CALL tasker_core.step_state_enable_concurrently()`,
/// sql/step_state.sql): with the maintenance triggers logging what each write touches
/// (`building` = 'capture'), rebuilds every step_state row from one snapshot without locking the Tasker
/// tables; returns the number of steps. The copy stays not valid until the log is replayed.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn step_state_build_online() -> i64 {
    require_read_committed("step_state_build_online");
    Spi::connect(|_| {
        let stopped = spi::run(
            "SELECT s.building OPERATOR(pg_catalog.=) 'capture', s.reason FROM tasker_core.step_state_source s",
            &[],
            false,
            |rows| match rows.bool(0, 1) {
                Some(true) => None,
                _ => Some(rows.string(0, 2).unwrap_or_else(|| {
                    "it was not started, or step_state_rebuild() or step_state_enable() ran meanwhile".into()
                })),
            },
        )?;
        if let Some(reason) = stopped {
            return Err(TaskerError::StepStateUnusable {
                action: "build",
                reason: format!("the online build stopped: {reason}"),
            });
        }
        let (tables, problem) = recorded_source()?;
        if let Some(reason) = problem {
            return Err(TaskerError::StepStateUnusable { action: "build", reason });
        }
        fill(&tables, Lock::None)
    })
    .or_raise()
}

/// Raises 25001 inside a transaction block (or a subtransaction): the online build commits
/// between its steps (`CALL tasker_core.step_state_enable_concurrently()` checks first, before
/// anything changes). Raises 25000 when this transaction or the ones its COMMITs start would not
/// be READ COMMITTED (`default_transaction_isolation`): the build's steps read with one snapshot
/// per statement.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn step_state_check_top_level() {
    // SAFETY: plain reads of the transaction state and of two settings' variables.
    let (in_block, isolation, default) = unsafe {
        (pg_sys::IsTransactionBlock() || pg_sys::IsSubTransaction(), pg_sys::XactIsoLevel, pg_sys::DefaultXactIsoLevel)
    };
    if in_block {
        crate::pg::report::raise(TaskerError::InTransactionBlock);
    }
    if isolation.max(default) > pg_sys::XACT_READ_COMMITTED as i32 {
        crate::pg::report::raise(TaskerError::NeedsReadCommitted { function: "step_state_enable_concurrently" });
    }
}

/// Raises 25000 unless the transaction is READ COMMITTED: under REPEATABLE READ or SERIALIZABLE
/// a build's snapshot could predate writes it must include.
fn require_read_committed(function: &'static str) {
    // SAFETY: a plain read of the transaction's isolation level.
    if unsafe { pg_sys::XactIsoLevel } > pg_sys::XACT_READ_COMMITTED as i32 {
        crate::pg::report::raise(TaskerError::NeedsReadCommitted { function });
    }
}

/// How `fill` locks the Tasker tables against writers first.
#[derive(Clone, Copy)]
enum Lock {
    /// Not at all (the online build).
    None,
    /// `tasker_core.lock_briefly`: tries of at most 20 ms that give way to writers.
    GivingWay,
    /// One LOCK TABLE (0.3.0's SQL has no lock_briefly).
    Plain,
}

/// Replaces every row of step_state with what the Tasker tables say, read with one snapshot
/// (one INSERT ... SELECT), after locking the tables against writers as `lock` says; analyzes
/// step_state and returns the number of steps.
fn fill(tables: &Tables, lock: Lock) -> Result<i64, TaskerError> {
    let t: [String; 6] = {
        let mut names: [String; 6] = Default::default();
        for (n, &oid) in names.iter_mut().zip(tables.0.iter()) {
            *n = mirrored(oid)?;
        }
        names
    };
    let once = |sql: String| spi::run(&sql, &[], false, |_| ());
    // Reading the Tasker tables (and writing the copy) with their owner's rights, sandboxed.
    as_maintainer(tables.0[STEPS], || -> Result<(), TaskerError> {
        match lock {
            Lock::None => {}
            Lock::GivingWay => {
                let oids: Vec<String> =
                    tables.0.iter().map(|oid| format!("{}::pg_catalog.oid", oid.to_u32())).collect();
                once(format!("SELECT tasker_core.lock_briefly(ARRAY[{}]::pg_catalog.regclass[])", oids.join(", ")))?;
            }
            Lock::Plain => once(format!("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE", t.join(", ")))?,
        }
        once("DELETE FROM tasker_core.step_state".into())?;
        // In index order, so a task's rows (its steps, then its own row) share heap pages.
        let columns = columns();
        once(format!(
            "INSERT INTO tasker_core.step_state (workflow_step_id, {columns}) \
             SELECT workflow_step_id, {columns} FROM ({}) e ORDER BY e.task_id, e.workflow_step_id NULLS LAST",
            expected_all_sql(&t)
        ))
    })?;
    // Statistics now rather than when autovacuum gets to it: the batch functions choose how
    // to read step_state from them (tasker_core.batch_scan = auto), and so does the planner.
    // Only an owner may analyze a table (others would get a WARNING and nothing else).
    let may_analyze = spi::run(
        "SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE') FROM pg_catalog.pg_class c \
          WHERE c.oid OPERATOR(pg_catalog.=) 'tasker_core.step_state'::pg_catalog.regclass",
        &[],
        false,
        |rows| rows.bool(0, 1).unwrap_or_default(),
    )?;
    // Only if the lock ANALYZE needs is free now: an autovacuum worker already processing
    // step_state holds it, and (PostgreSQL 15.9, 16.5 and later) waits for this transaction
    // before it updates step_state's pg_class row, which step_state_enable() changed (its
    // GRANT): waiting here was a deadlock (40P01, seen three times while benchmarking writes).
    // Then autovacuum's statistics stand.
    // SAFETY: a lock request that does not wait; once taken it is held to the end of the
    // transaction, as ANALYZE's own would be.
    let free = may_analyze
        && crate::pg::step_state::own_table(c"step_state").is_some_and(|oid| unsafe {
            pg_sys::ConditionalLockRelationOid(oid, pg_sys::ShareUpdateExclusiveLock as pg_sys::LOCKMODE)
        });
    if free {
        once("ANALYZE tasker_core.step_state".into())?;
    }
    spi::run(
        "SELECT pg_catalog.count(*) FROM tasker_core.step_state WHERE workflow_step_id IS NOT NULL",
        &[],
        false,
        |rows| rows.i64(0, 1).unwrap_or_default(),
    )
}

/// Every row of step_state that is not what the Tasker tables say it must be: missing, extra,
/// or with the differing columns named (workflow_step_id NULL: the task's own row). No rows:
/// step_state is exact for this snapshot. In a transaction that wrote step transitions, their
/// refresh (otherwise done at commit: pg::step_state::deferred) is done first, so the answer is
/// about the copy as the transaction will commit it.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn step_state_verify(
) -> TableIterator<'static, (name!(workflow_step_id, Option<i64>), name!(task_id, i64), name!(problem, String))> {
    // Moves this transaction wrote are refreshed now rather than at commit, and the comparison
    // then reads under a snapshot that sees that refresh.
    let applied = crate::pg::step_state::deferred::noted();
    if applied {
        crate::pg::step_state::deferred::apply();
    }
    let rows = Spi::connect(|_| {
        let (tables, _) = recorded_source()?;
        let mut t: [String; 6] = Default::default();
        for (n, &oid) in t.iter_mut().zip(tables.0.iter()) {
            *n = mirrored(oid)?;
        }
        // Rows are matched by step id, or for the tasks' own rows by task id; the columns
        // compared are step_state's own (a column added to it by hand is not compared).
        let columns = columns();
        let columns_d = format!("d.workflow_step_id, d.{}", columns.replace(", ", ", d."));
        let columns_e = format!("e.workflow_step_id, e.{}", columns.replace(", ", ", e."));
        let sql = format!(
            "WITH e AS (SELECT {columns_e} FROM ({expected}) e), \
                  d AS (SELECT {columns_d} FROM tasker_core.step_state d) \
             SELECT COALESCE(e.workflow_step_id, d.workflow_step_id), COALESCE(e.task_id, d.task_id), \
                    CASE WHEN d.task_id IS NULL THEN 'missing from step_state' \
                         WHEN e.task_id IS NULL THEN 'in step_state but not in the Tasker tables' \
                         ELSE 'differs in ' OPERATOR(pg_catalog.||) \
                              (SELECT pg_catalog.string_agg(x.k, ', ' ORDER BY x.k) \
                                 FROM pg_catalog.jsonb_each(pg_catalog.to_jsonb(e)) x(k, v) \
                                WHERE x.v IS DISTINCT FROM (pg_catalog.to_jsonb(d) OPERATOR(pg_catalog.->) x.k)) END \
               FROM e FULL JOIN d ON (e.workflow_step_id IS NULL) OPERATOR(pg_catalog.=) (d.workflow_step_id IS NULL) \
                                 AND COALESCE(e.workflow_step_id, e.task_id) OPERATOR(pg_catalog.=) COALESCE(d.workflow_step_id, d.task_id) \
              WHERE pg_catalog.to_jsonb(e) IS DISTINCT FROM pg_catalog.to_jsonb(d) ORDER BY 2, 1 NULLS LAST",
            expected = expected_all_sql(&t),
        );
        as_maintainer(tables.0[STEPS], || {
            spi::run(&sql, &[], !applied, |rows| {
                (0..rows.len())
                    .map(|r| (rows.i64(r, 1), rows.i64(r, 2).unwrap_or_default(), rows.string(r, 3).unwrap_or_default()))
                    .collect::<Vec<_>>()
            })
        })
    })
    .or_raise();
    TableIterator::new(rows)
}

/// `step_state_lock_named` for the maintenance trigger.
pub(super) fn lock_named(named: &[i32], named_steps: pg_sys::Oid) {
    step_state_lock_named(Some(named.iter().copied().map(Some).collect()), named_steps);
}

/// `step_state_check_snapshot` for the maintenance trigger.
pub(super) fn check_snapshot(valid: bool, building: Option<&str>) {
    step_state_check_snapshot(valid, building);
}
