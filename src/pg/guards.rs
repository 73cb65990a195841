//! The trigger side: `tasker_core.guard_mode`, and the checks the trigger functions
//! (sql/guards.sql) call for each new or changed row. The rules are in `rules::guards`; this
//! layer takes the locks, reads the rows those rules need, and hands back a verdict that the
//! PL/pgSQL trigger raises with its SQLSTATE, constraint, table and schema fields set.
//!
//! Locks: each check first locks the owner's row `FOR NO KEY UPDATE` (the step whose history
//! grows, or the task whose history or graph grows), then reads in read-write SPI mode so that,
//! under READ COMMITTED, it sees whatever a competing transaction committed while it waited.
//!
//! Every query names its table with the trigger's schema (quoted) and its operators and
//! functions with `pg_catalog`, and the functions run with `search_path = pg_catalog, pg_temp`:
//! nothing a writer creates or puts on its search_path takes part in a check.

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

use crate::error::TaskerError;
use crate::pg::report::OrRaise;
use crate::pg::settings::{GuardMode, GUARD_MODE};
use crate::pg::spi::{self, Arg};
use crate::rules::guards::{self, Accepted, History, Refusal, TransitionKey};
use crate::rules::state::Machine;

type Verdict = (
    String,         // mode
    Option<String>, // constraint_name
    Option<String>, // message
    Option<String>, // detail
    Option<String>, // hint
    Option<String>, // from_state to store
    Option<i32>,    // sort_key to store
);

fn verdict(mode: GuardMode, refusal: Option<Refusal>, fill: Option<Accepted>) -> Verdict {
    let (constraint, message, detail, hint) = match refusal {
        None => (None, None, None, None),
        Some(r) => {
            let detail = r.detail.unwrap_or_else(|| format!("Rule {} of tasker_core.", r.constraint));
            let hint =
                r.hint.unwrap_or_else(|| "See docs/guards.md for the rules and tasker_core.guard_mode.".to_string());
            (Some(r.constraint.to_string()), Some(r.message), Some(detail), Some(hint))
        }
    };
    let (from_state, sort_key) = match fill {
        Some(a) => (a.from_state, Some(a.sort_key)),
        None => (None, None),
    };
    (mode.name().to_string(), constraint, message, detail, hint, from_state, sort_key)
}

/// The tables of one machine: (transitions, owner id column, owner table).
fn machine_of(machine: &str) -> Result<(Machine, &'static str, &'static str, &'static str), TaskerError> {
    match machine {
        "step" => Ok((Machine::Step, "tasker_workflow_step_transitions", "workflow_step_id", "tasker_workflow_steps")),
        "task" => Ok((Machine::Task, "tasker_task_transitions", "task_id", "tasker_tasks")),
        other => Err(TaskerError::UnknownMachine(other.to_string())),
    }
}

/// Locks the owner's row in `table` of schema `s` (quoted), keyed by `column`. Row locks live in
/// the tuple, not in the shared lock table, so a transaction may write any number of
/// transitions or edges. Under READ COMMITTED a `FOR NO KEY UPDATE` suffices: the reads that
/// follow take a fresh snapshot and see what the previous holder committed. Under REPEATABLE
/// READ or SERIALIZABLE the reads keep the transaction's snapshot, so the lock is taken by a
/// no-op UPDATE instead: if another transaction changed the owner since our snapshot, PostgreSQL
/// raises 40001 (could not serialize) rather than letting both moves through. A missing row
/// locks nothing: the foreign key refuses the new row anyway.
fn lock(s: &str, table: &str, column: &str, id: i64) -> Result<(), TaskerError> {
    // SAFETY: reads a backend global set at transaction start.
    let snapshot_per_transaction = unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32;
    let sql = if snapshot_per_transaction {
        format!("UPDATE {s}.{table} SET updated_at = updated_at WHERE {column} OPERATOR(pg_catalog.=) $1")
    } else {
        format!("SELECT 1 FROM {s}.{table} WHERE {column} OPERATOR(pg_catalog.=) $1 FOR NO KEY UPDATE")
    };
    spi::run(&sql, &[Arg::Int8(id)], false, |_| ())
}

/// `(id, state by highest sort_key)` rows of a query taking one bigint (read-write mode: a
/// fresh snapshot after the lock).
fn id_states(sql: &str, id: i64) -> Result<Vec<(i64, Option<String>)>, TaskerError> {
    spi::run(sql, &[Arg::Int8(id)], false, |rows| {
        (0..rows.len()).map(|r| (rows.i64(r, 1).unwrap_or_default(), rows.string(r, 2))).collect()
    })
}

/// Checks a new transition row. Called by the BEFORE INSERT trigger functions.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::type_complexity)]
fn check_transition(
    machine: &str,
    schema: &str,
    owner: i64,
    to_state: Option<String>,
    from_state: Option<String>,
    sort_key: Option<i32>,
    most_recent: Option<bool>,
) -> TableIterator<
    'static,
    (
        name!(mode, String),
        name!(constraint_name, Option<String>),
        name!(message, Option<String>),
        name!(detail, Option<String>),
        name!(hint, Option<String>),
        name!(from_state, Option<String>),
        name!(sort_key, Option<i32>),
    ),
> {
    let mode = GUARD_MODE.get();
    let (machine, table, owner_col, owner_table) = machine_of(machine).or_raise();
    let Some(to_state) = to_state.filter(|_| mode != GuardMode::Off) else {
        // Off, or a NULL to_state that the NOT NULL constraint will refuse.
        return TableIterator::once(verdict(mode, None, None));
    };
    let s = quote_identifier(schema);
    let out = Spi::connect(|_| -> Result<Verdict, TaskerError> {
        lock(&s, owner_table, owner_col, owner)?;
        let latest = format!(
            "SELECT to_state::pg_catalog.text, sort_key::pg_catalog.int4 FROM {s}.{table} \
              WHERE {owner_col} OPERATOR(pg_catalog.=) $1 ORDER BY sort_key DESC LIMIT 1"
        );
        let history = spi::run(&latest, &[Arg::Int8(owner)], false, |rows| {
            if rows.is_empty() {
                History::default()
            } else {
                History { current: rows.string(0, 1), max_sort_key: rows.i32(0, 2) }
            }
        })?;
        let mut result = guards::check_move(machine, owner, &history, &to_state, from_state.as_deref(), sort_key);
        if result.is_ok() {
            let guard = match machine {
                Machine::Step if to_state == crate::rules::state::IN_PROGRESS => {
                    // Starting a step reads its parent edges: serialize with edge writers of the
                    // task, which lock the task row (step row first, then task row; never the
                    // reverse, so no deadlock).
                    let task_sql = format!(
                        "SELECT task_id::pg_catalog.int8 FROM {s}.tasker_workflow_steps \
                          WHERE workflow_step_id OPERATOR(pg_catalog.=) $1"
                    );
                    let task = spi::run(&task_sql, &[Arg::Int8(owner)], false, |rows| {
                        if rows.is_empty() {
                            None
                        } else {
                            rows.i64(0, 1)
                        }
                    })?;
                    if let Some(task) = task {
                        lock(&s, "tasker_tasks", "task_id", task)?;
                    }
                    let parents = id_states(
                        &format!(
                            "SELECT e.from_step_id::pg_catalog.int8, \
                                    (SELECT t.to_state::pg_catalog.text FROM {s}.tasker_workflow_step_transitions t \
                                      WHERE t.workflow_step_id OPERATOR(pg_catalog.=) e.from_step_id \
                                      ORDER BY t.sort_key DESC LIMIT 1) \
                               FROM {s}.tasker_workflow_step_edges e \
                              WHERE e.to_step_id OPERATOR(pg_catalog.=) $1 ORDER BY 1"
                        ),
                        owner,
                    )?;
                    guards::check_step_parents(owner, &to_state, &parents)
                }
                Machine::Task if to_state == crate::rules::state::COMPLETE => {
                    let steps = id_states(
                        &format!(
                            "SELECT ws.workflow_step_id::pg_catalog.int8, \
                                    (SELECT t.to_state::pg_catalog.text FROM {s}.tasker_workflow_step_transitions t \
                                      WHERE t.workflow_step_id OPERATOR(pg_catalog.=) ws.workflow_step_id \
                                      ORDER BY t.sort_key DESC LIMIT 1) \
                               FROM {s}.tasker_workflow_steps ws \
                              WHERE ws.task_id OPERATOR(pg_catalog.=) $1 ORDER BY 1"
                        ),
                        owner,
                    )?;
                    guards::check_task_steps(owner, &to_state, &steps)
                }
                _ => Ok(()),
            };
            if let Err(refusal) = guard {
                result = Err(refusal);
            }
        }
        let (refusal, fill) = match result {
            Ok(accepted) => (None, accepted),
            // warn: accept the row as written, filling only what is missing.
            Err(refusal) => {
                let next = history.max_sort_key.map_or(10, |k| k.saturating_add(10));
                (
                    Some(refusal),
                    Accepted {
                        from_state: from_state.clone().or(history.current.clone()),
                        sort_key: sort_key.unwrap_or(next),
                    },
                )
            }
        };
        if refusal.is_some() && mode == GuardMode::Enforce {
            return Ok(verdict(mode, refusal, None));
        }
        if most_recent.unwrap_or(false) {
            // The new row becomes the most recent: clear the flag on the owner's other rows
            // (a no-op after Statesman's own UPDATE; needed for insert-first writers).
            let clear = format!(
                "UPDATE {s}.{table} SET most_recent = false \
                  WHERE {owner_col} OPERATOR(pg_catalog.=) $1 AND most_recent"
            );
            spi::run(&clear, &[Arg::Int8(owner)], false, |_| ())?;
        }
        Ok(verdict(mode, refusal, Some(fill)))
    })
    .or_raise();
    TableIterator::once(out)
}

/// Checks an UPDATE of a transition row: history is append-only.
#[pg_extern(stable)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn check_transition_update(
    machine: &str,
    old_owner: i64,
    new_owner: i64,
    old_to_state: String,
    new_to_state: String,
    old_from_state: Option<String>,
    new_from_state: Option<String>,
    old_sort_key: i32,
    new_sort_key: i32,
) -> TableIterator<
    'static,
    (
        name!(mode, String),
        name!(constraint_name, Option<String>),
        name!(message, Option<String>),
        name!(detail, Option<String>),
        name!(hint, Option<String>),
        name!(from_state, Option<String>),
        name!(sort_key, Option<i32>),
    ),
> {
    let mode = GUARD_MODE.get();
    if mode == GuardMode::Off {
        return TableIterator::once(verdict(mode, None, None));
    }
    let (machine, _, _, _) = machine_of(machine).or_raise();
    let old =
        TransitionKey { owner: old_owner, to_state: old_to_state, from_state: old_from_state, sort_key: old_sort_key };
    let new =
        TransitionKey { owner: new_owner, to_state: new_to_state, from_state: new_from_state, sort_key: new_sort_key };
    TableIterator::once(verdict(mode, guards::check_update(machine, &old, &new).err(), None))
}

/// Checks an UPDATE that sets `most_recent` on a transition (`id`, of `owner`, at `sort_key`):
/// allowed only on the owner's latest transition. Called by the BEFORE UPDATE OF most_recent
/// trigger functions, whose WHEN clause lets only a false-to-true move through.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::type_complexity)]
fn check_flag(
    machine: &str,
    schema: &str,
    id: i64,
    owner: i64,
    sort_key: i32,
) -> TableIterator<
    'static,
    (
        name!(mode, String),
        name!(constraint_name, Option<String>),
        name!(message, Option<String>),
        name!(detail, Option<String>),
        name!(hint, Option<String>),
        name!(from_state, Option<String>),
        name!(sort_key, Option<i32>),
    ),
> {
    let mode = GUARD_MODE.get();
    if mode == GuardMode::Off {
        return TableIterator::once(verdict(mode, None, None));
    }
    let (machine, table, owner_col, owner_table) = machine_of(machine).or_raise();
    let s = quote_identifier(schema);
    let refusal = Spi::connect(|_| -> Result<Option<Refusal>, TaskerError> {
        // The same lock as a new transition takes: a concurrent insert cannot slip in between.
        lock(&s, owner_table, owner_col, owner)?;
        let highest = format!(
            "SELECT pg_catalog.max(sort_key)::pg_catalog.int4 FROM {s}.{table} \
              WHERE {owner_col} OPERATOR(pg_catalog.=) $1 AND id OPERATOR(pg_catalog.<>) $2"
        );
        let max = spi::run(&highest, &[Arg::Int8(owner), Arg::Int8(id)], false, |rows| {
            if rows.is_empty() {
                None
            } else {
                rows.i32(0, 1)
            }
        })?;
        Ok(guards::check_flag(machine, owner, sort_key, max).err())
    })
    .or_raise();
    TableIterator::once(verdict(mode, refusal, None))
}

/// Checks a new or re-pointed edge `from -> to` (row `edge_id`, excluded from the search).
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::type_complexity)]
fn check_edge(
    schema: &str,
    edge_id: Option<i64>,
    from_step: Option<i64>,
    to_step: Option<i64>,
) -> TableIterator<
    'static,
    (
        name!(mode, String),
        name!(constraint_name, Option<String>),
        name!(message, Option<String>),
        name!(detail, Option<String>),
        name!(hint, Option<String>),
        name!(from_state, Option<String>),
        name!(sort_key, Option<i32>),
    ),
> {
    let mode = GUARD_MODE.get();
    let (Some(from), Some(to)) = (from_step, to_step) else {
        return TableIterator::once(verdict(mode, None, None)); // NOT NULL refuses it
    };
    if mode == GuardMode::Off {
        return TableIterator::once(verdict(mode, None, None));
    }
    let s = quote_identifier(schema);
    let edge_id = edge_id.unwrap_or(i64::MIN);
    let refusal = Spi::connect(|_| -> Result<Option<Refusal>, TaskerError> {
        let owners = format!(
            "SELECT workflow_step_id::pg_catalog.int8, task_id::pg_catalog.int8 FROM {s}.tasker_workflow_steps \
              WHERE workflow_step_id OPERATOR(pg_catalog.=) ANY ($1)"
        );
        let tasks: Vec<(i64, i64)> = spi::run(&owners, &[Arg::Int8Array(&[from, to])], false, |rows| {
            (0..rows.len()).filter_map(|r| Some((rows.i64(r, 1)?, rows.i64(r, 2)?))).collect()
        })?;
        let task_of = |id: i64| tasks.iter().find(|(step, _)| *step == id).map(|&(_, task)| task);
        let (from_task, to_task) = (task_of(from), task_of(to));
        if let Err(r) = guards::check_edge_ends(from, to, from_task, to_task) {
            return Ok(Some(r));
        }
        let Some(task) = from_task.or(to_task) else {
            return Ok(None); // neither step exists: the foreign keys refuse the row
        };
        lock(&s, "tasker_tasks", "task_id", task)?;
        let children_sql = format!(
            "SELECT from_step_id::pg_catalog.int8, to_step_id::pg_catalog.int8 FROM {s}.tasker_workflow_step_edges \
              WHERE from_step_id OPERATOR(pg_catalog.=) ANY ($1) AND id OPERATOR(pg_catalog.<>) $2"
        );
        let parents_sql = format!(
            "SELECT from_step_id::pg_catalog.int8, to_step_id::pg_catalog.int8 FROM {s}.tasker_workflow_step_edges \
              WHERE to_step_id OPERATOR(pg_catalog.=) ANY ($1) AND id OPERATOR(pg_catalog.<>) $2"
        );
        // The searches run inside the rule's callbacks; an error of one is kept and raised after.
        let mut failed: Option<TaskerError> = None;
        let mut edges_of = |sql: &str, frontier: &[i64]| -> Vec<(i64, i64)> {
            if failed.is_some() {
                return Vec::new();
            }
            let found = spi::run(sql, &[Arg::Int8Array(frontier), Arg::Int8(edge_id)], false, |rows| {
                (0..rows.len()).filter_map(|r| Some((rows.i64(r, 1)?, rows.i64(r, 2)?))).collect()
            });
            found.unwrap_or_else(|e| {
                failed = Some(e);
                Vec::new()
            })
        };
        let cell = std::cell::RefCell::new(&mut edges_of);
        let result = guards::check_acyclic(
            from,
            to,
            |frontier| (cell.borrow_mut())(&children_sql, frontier),
            |frontier| (cell.borrow_mut())(&parents_sql, frontier),
        );
        if let Some(e) = failed {
            return Err(e);
        }
        Ok(result.err())
    })
    .or_raise();
    TableIterator::once(verdict(mode, refusal, None))
}
