//! The guard triggers (`tasker_core.guard_*()`, declared `LANGUAGE c` in sql/guards.sql) and
//! `tasker_core.guard_mode`. The rules are in `rules::guards`; this layer takes the locks, reads
//! the rows those rules need, fills `from_state` and `sort_key` into a new transition, and
//! refuses a row with SQLSTATE 23514 and the constraint, table and schema fields set
//! (`report::TableReport`), as `RAISE ... USING CONSTRAINT` would.
//!
//! They were PL/pgSQL functions calling a Rust set-returning check and a PL/pgSQL raise: three
//! function calls, each with its own `search_path`, and an executor run for the check, per row.
//!
//! Locks: each check first locks the owner's row `FOR NO KEY UPDATE` (the step whose history
//! grows, or the task whose history or graph grows), then reads in read-write SPI mode so that,
//! under READ COMMITTED, it sees whatever a competing transaction committed while it waited.
//!
//! Every query names its table with the trigger's schema (quoted) and its operators and
//! functions with `pg_catalog`, and the functions run with `search_path = pg_catalog, pg_temp`:
//! nothing a writer creates or puts on its search_path takes part in a check.

use pgrx::heap_tuple::PgHeapTuple;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use pgrx::trigger_support::PgTrigger;
use pgrx::PgMemoryContexts;

use crate::error::TaskerError;
use crate::pg::report::TableReport;
use crate::pg::settings::{GuardMode, GUARD_MODE};
use crate::pg::spi::{self, Arg};
use crate::rules::guards::{self, Accepted, History, Refusal, TransitionKey};
use crate::rules::state::Machine;

/// The tables of one machine.
struct Tables {
    machine: Machine,
    transitions: &'static str,
    owner_col: &'static str,
    owner_table: &'static str,
}

const STEP: Tables = Tables {
    machine: Machine::Step,
    transitions: "tasker_workflow_step_transitions",
    owner_col: "workflow_step_id",
    owner_table: "tasker_workflow_steps",
};
const TASK: Tables = Tables {
    machine: Machine::Task,
    transitions: "tasker_task_transitions",
    owner_col: "task_id",
    owner_table: "tasker_tasks",
};

/// Whether the transaction keeps one snapshot (REPEATABLE READ or SERIALIZABLE).
fn snapshot_per_transaction() -> bool {
    // SAFETY: reads a backend global set at transaction start.
    unsafe { pg_sys::XactIsoLevel >= pg_sys::XACT_REPEATABLE_READ as i32 }
}

/// Locks the rows of `table` of schema `s` (quoted) where `column` is the value of `key` (SQL
/// over `$1`). Row locks live in the tuple, not in the shared lock table, so a transaction may
/// write any number of transitions or edges. Under READ COMMITTED a `FOR NO KEY UPDATE`
/// suffices: the reads that follow take a fresh snapshot and see what the previous holder
/// committed. Under REPEATABLE READ or SERIALIZABLE the reads keep the transaction's snapshot,
/// so the lock is taken by a no-op UPDATE instead: if another transaction changed the row since
/// our snapshot, PostgreSQL raises 40001 (could not serialize) rather than letting both moves
/// through. A missing row locks nothing: the foreign key refuses the new row anyway.
/// Returns whether it locked a row.
fn lock_where(s: &str, table: &str, column: &str, key: &str, id: i64) -> Result<bool, TaskerError> {
    let sql = if snapshot_per_transaction() {
        format!(
            "UPDATE {s}.{table} SET updated_at = updated_at WHERE {column} OPERATOR(pg_catalog.=) {key} RETURNING 1"
        )
    } else {
        format!("SELECT 1 FROM {s}.{table} WHERE {column} OPERATOR(pg_catalog.=) {key} FOR NO KEY UPDATE")
    };
    spi::run(&sql, &[Arg::Int8(id)], false, |rows| !rows.is_empty())
}

/// Locks the row of `table` whose `column` is `id`, unless this transaction already holds that
/// lock (`held`): a transaction that moves a step three times locks its row once.
fn lock(s: &str, table: &'static str, column: &str, id: i64) -> Result<(), TaskerError> {
    let key = held::Key { schema: s.to_string(), table, id };
    if held::holds(&key) {
        return Ok(());
    }
    // A row not found (not yet visible to this snapshot, say) is not locked, and not noted.
    if lock_where(s, table, column, "$1", id)? {
        held::took(key);
    }
    Ok(())
}

/// The owner rows this transaction has locked (`lock`), and in which subtransaction. A row lock
/// lasts until the transaction ends, or until the subtransaction that took it rolls back (a
/// savepoint rolled back releases it): so a lock is forgotten when its subtransaction aborts,
/// passed to the parent when it commits, and all are forgotten when the transaction ends.
mod held {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use pgrx::pg_sys;

    /// A locked row: its table (the quoted schema, the table's name) and its id.
    #[derive(PartialEq, Eq, Hash)]
    pub struct Key {
        pub schema: String,
        pub table: &'static str,
        pub id: i64,
    }

    thread_local! {
        static HELD: RefCell<HashMap<Key, pg_sys::SubTransactionId>> = RefCell::new(HashMap::new());
        static SUBXACT_CALLBACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// Forgets every lock when the transaction ends (pg::at_commit; nothing to do before).
    static AT_END: crate::pg::at_commit::Hook =
        crate::pg::at_commit::Hook { pending: || false, run: || {}, forget: || HELD.with(|h| h.borrow_mut().clear()) };

    /// Whether this transaction holds the lock on `key`'s row.
    pub fn holds(key: &Key) -> bool {
        HELD.with(|h| h.borrow().contains_key(key))
    }

    /// Notes that the current subtransaction locked `key`'s row.
    pub fn took(key: Key) {
        crate::pg::at_commit::register(&AT_END);
        if !SUBXACT_CALLBACK.with(|c| c.get()) {
            // SAFETY: registers a function PostgreSQL calls at each subtransaction event; it is
            // never unregistered (the library is not unloaded). Marked registered only once the
            // call returned: nothing is noted without the callbacks that forget it.
            unsafe { pg_sys::RegisterSubXactCallback(Some(at_subtransaction_end), std::ptr::null_mut()) };
            SUBXACT_CALLBACK.with(|c| c.set(true));
        }
        // SAFETY: reads the current subtransaction's id.
        let sub = unsafe { pg_sys::GetCurrentSubTransactionId() };
        HELD.with(|h| h.borrow_mut().insert(key, sub));
    }

    #[pgrx::pg_guard]
    unsafe extern "C-unwind" fn at_subtransaction_end(
        event: pg_sys::SubXactEvent::Type,
        sub: pg_sys::SubTransactionId,
        parent: pg_sys::SubTransactionId,
        _arg: *mut std::ffi::c_void,
    ) {
        match event {
            // Its locks (and those of its children, committed into it already) are released.
            pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB => HELD.with(|h| h.borrow_mut().retain(|_, s| *s != sub)),
            // Its locks are now the parent's.
            pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB => HELD.with(|h| {
                for s in h.borrow_mut().values_mut().filter(|s| **s == sub) {
                    *s = parent;
                }
            }),
            _ => {}
        }
    }
}

/// `(id, state by highest sort_key)` rows of a query taking one bigint (read-write mode: a
/// fresh snapshot after the lock).
fn id_states(sql: &str, id: i64) -> Result<Vec<(i64, Option<String>)>, TaskerError> {
    spi::run(sql, &[Arg::Int8(id)], false, |rows| {
        (0..rows.len()).map(|r| (rows.i64(r, 1).unwrap_or_default(), rows.string(r, 2))).collect()
    })
}

/// A new transition row, as its BEFORE INSERT trigger sees it.
struct NewTransition<'a> {
    owner: i64,
    to_state: &'a str,
    from_state: Option<&'a str>,
    sort_key: Option<i32>,
    most_recent: bool,
}

/// Checks a new transition row: the refusal (if any) and what to fill in (None: nothing).
fn check_new_transition(
    mode: GuardMode,
    t: &Tables,
    s: &str,
    row: &NewTransition<'_>,
) -> Result<(Option<Refusal>, Option<Accepted>), TaskerError> {
    let (owner, to_state) = (row.owner, row.to_state);
    let (table, owner_col) = (t.transitions, t.owner_col);
    Spi::connect(|_| {
        lock(s, t.owner_table, owner_col, owner)?;
        // The latest transition, and whether any is flagged most recent (one query, always one
        // row: a missing history reads as NULLs).
        let latest = format!(
            "SELECT l.to_state::pg_catalog.text, l.sort_key::pg_catalog.int4, \
                    EXISTS (SELECT 1 FROM {s}.{table} m \
                             WHERE m.{owner_col} OPERATOR(pg_catalog.=) $1 AND m.most_recent) \
               FROM (SELECT 1) one \
               LEFT JOIN LATERAL (SELECT to_state, sort_key FROM {s}.{table} \
                                   WHERE {owner_col} OPERATOR(pg_catalog.=) $1 \
                                   ORDER BY sort_key DESC LIMIT 1) l ON true"
        );
        let (history, flagged) = spi::run(&latest, &[Arg::Int8(owner)], false, |rows| {
            (History { current: rows.string(0, 1), max_sort_key: rows.i32(0, 2) }, rows.bool(0, 3).unwrap_or(false))
        })?;
        let mut result = guards::check_move(t.machine, owner, &history, to_state, row.from_state, row.sort_key);
        if result.is_ok() {
            let guard = match t.machine {
                Machine::Step if to_state == crate::rules::state::IN_PROGRESS => {
                    // Starting a step reads its parent edges: serialize with edge writers of the
                    // task, which lock the task row (step row first, then task row; never the
                    // reverse, so no deadlock).
                    lock_where(
                        s,
                        "tasker_tasks",
                        "task_id",
                        &format!(
                            "(SELECT ws.task_id FROM {s}.tasker_workflow_steps ws \
                               WHERE ws.workflow_step_id OPERATOR(pg_catalog.=) $1)"
                        ),
                        owner,
                    )?;
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
                    guards::check_step_parents(owner, to_state, &parents)
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
                    guards::check_task_steps(owner, to_state, &steps)
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
                let fill = Accepted {
                    from_state: row.from_state.map(str::to_string).or(history.current.clone()),
                    sort_key: row.sort_key.unwrap_or(next),
                };
                (Some(refusal), fill)
            }
        };
        if refusal.is_some() && mode == GuardMode::Enforce {
            return Ok((refusal, None));
        }
        if row.most_recent && flagged {
            // The new row becomes the most recent: clear the flag on the owner's other rows.
            // Statesman clears it itself before inserting, so this runs only for insert-first
            // writers (a statement that changes nothing would still fire the tables'
            // statement triggers).
            let clear = format!(
                "UPDATE {s}.{table} SET most_recent = false \
                  WHERE {owner_col} OPERATOR(pg_catalog.=) $1 AND most_recent"
            );
            spi::run(&clear, &[Arg::Int8(owner)], false, |_| ())?;
        }
        Ok((refusal, Some(fill)))
    })
}

/// Checks that setting `most_recent` on transition `id` (of `owner`, at `sort_key`) flags the
/// owner's latest transition.
fn check_new_flag(t: &Tables, s: &str, id: i64, owner: i64, sort_key: i32) -> Result<Option<Refusal>, TaskerError> {
    let (table, owner_col) = (t.transitions, t.owner_col);
    Spi::connect(|_| {
        // The same lock as a new transition takes: a concurrent insert cannot slip in between.
        lock(s, t.owner_table, owner_col, owner)?;
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
        Ok(guards::check_flag(t.machine, owner, sort_key, max).err())
    })
}

/// Checks a new or re-pointed edge `from -> to` (row `edge_id`, excluded from the search).
fn check_new_edge(s: &str, edge_id: i64, from: i64, to: i64) -> Result<Option<Refusal>, TaskerError> {
    Spi::connect(|_| {
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
        lock(s, "tasker_tasks", "task_id", task)?;
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
}

// ---------------------------------------------------------------------------------------------
// The trigger functions.

/// What a guard decided: the row to store, and the refusal to report (an ERROR under
/// `enforce`, a WARNING under `warn`) with its table and schema.
struct Outcome {
    row: pg_sys::Datum,
    report: Option<(bool, Refusal, String, String)>,
}

/// The trigger's table: (name, schema).
fn table_of(trigger: &PgTrigger<'_>) -> (String, String) {
    let rel = trigger.relation().expect("a trigger has a relation");
    (rel.name().to_string(), rel.namespace().to_string())
}

/// The outcome for `row` after `refusal`: reported as the mode says (nothing when accepted).
fn outcome(
    mode: GuardMode,
    trigger: &PgTrigger<'_>,
    row: PgHeapTuple<'_, impl pgrx::WhoAllocated>,
    refusal: Option<Refusal>,
) -> Outcome {
    let report = refusal.filter(|_| mode != GuardMode::Off).map(|r| {
        let (table, schema) = table_of(trigger);
        (mode == GuardMode::Enforce, r, table, schema)
    });
    // (A NULL here would make PostgreSQL skip the row silently.)
    let row = row.into_trigger_datum().expect("a row trigger returns its row");
    Outcome { row, report }
}

/// A column of a Tasker row, read as `T`; a column missing or of another type is an error
/// naming it (42804).
fn column<T: pgrx::FromDatum + pgrx::IntoDatum + for<'t> pgrx::datum::UnboxDatum<As<'t> = T> + 'static>(
    row: &PgHeapTuple<'_, impl pgrx::WhoAllocated>,
    trigger: &PgTrigger<'_>,
    name: &'static str,
) -> Result<Option<T>, TaskerError> {
    row.get_by_name::<T>(name).map_err(|e| column_error(trigger, name, e))
}

/// A column the guard could not read or fill (42804), named with its table.
fn column_error(trigger: &PgTrigger<'_>, column: &'static str, e: pgrx::datum::TryFromDatumError) -> TaskerError {
    let (table, schema) = table_of(trigger);
    TaskerError::GuardColumn { table: format!("{schema}.{table}"), column, why: e.to_string() }
}

fn transition_insert(trigger: &PgTrigger<'_>, t: &Tables) -> Result<Outcome, TaskerError> {
    let mode = GUARD_MODE.get();
    let new = trigger.new().expect("a BEFORE INSERT row trigger has a new row");
    if mode == GuardMode::Off {
        return Ok(outcome(mode, trigger, new, None));
    }
    let owner = column::<i64>(&new, trigger, t.owner_col)?;
    let to_state = column::<String>(&new, trigger, "to_state")?;
    let (Some(owner), Some(to_state)) = (owner, to_state) else {
        // A NULL owner or to_state: the NOT NULL constraints refuse the row.
        return Ok(outcome(mode, trigger, new, None));
    };
    let from_state = column::<String>(&new, trigger, "from_state")?;
    let sort_key = column::<i32>(&new, trigger, "sort_key")?;
    let most_recent = column::<bool>(&new, trigger, "most_recent")?.unwrap_or(false);
    let (_, schema) = table_of(trigger);
    let row = NewTransition { owner, to_state: &to_state, from_state: from_state.as_deref(), sort_key, most_recent };
    let (refusal, fill) = check_new_transition(mode, t, &quote_identifier(&schema), &row)?;
    let Some(fill) = fill.filter(|f| f.from_state.as_deref() != row.from_state || Some(f.sort_key) != row.sort_key)
    else {
        // Nothing to fill in: the row as written.
        return Ok(outcome(mode, trigger, new, refusal));
    };
    let mut filled = new.into_owned();
    if let Some(from_state) = fill.from_state {
        // (None means none was given and there is no history: the column is NULL already.)
        filled.set_by_name("from_state", from_state).map_err(|e| column_error(trigger, "from_state", e))?;
    }
    filled.set_by_name("sort_key", fill.sort_key).map_err(|e| column_error(trigger, "sort_key", e))?;
    Ok(outcome(mode, trigger, filled, refusal))
}

fn transition_update(trigger: &PgTrigger<'_>, t: &Tables) -> Result<Outcome, TaskerError> {
    let mode = GUARD_MODE.get();
    let new = trigger.new().expect("a BEFORE UPDATE row trigger has a new row");
    if mode == GuardMode::Off {
        return Ok(outcome(mode, trigger, new, None));
    }
    let old = trigger.old().expect("a BEFORE UPDATE row trigger has an old row");
    let key = |row: &PgHeapTuple<'_, AllocatedByPostgres>| -> Result<TransitionKey, TaskerError> {
        Ok(TransitionKey {
            owner: column::<i64>(row, trigger, t.owner_col)?,
            to_state: column::<String>(row, trigger, "to_state")?,
            from_state: column::<String>(row, trigger, "from_state")?,
            sort_key: column::<i32>(row, trigger, "sort_key")?,
        })
    };
    let refusal = guards::check_update(t.machine, &key(&old)?, &key(&new)?).err();
    Ok(outcome(mode, trigger, new, refusal))
}

fn transition_flag(trigger: &PgTrigger<'_>, t: &Tables) -> Result<Outcome, TaskerError> {
    let mode = GUARD_MODE.get();
    let new = trigger.new().expect("a BEFORE UPDATE row trigger has a new row");
    if mode == GuardMode::Off {
        return Ok(outcome(mode, trigger, new, None));
    }
    let (Some(id), Some(owner), Some(sort_key)) = (
        column::<i64>(&new, trigger, "id")?,
        column::<i64>(&new, trigger, t.owner_col)?,
        column::<i32>(&new, trigger, "sort_key")?,
    ) else {
        return Ok(outcome(mode, trigger, new, None));
    };
    let (_, schema) = table_of(trigger);
    let refusal = check_new_flag(t, &quote_identifier(&schema), id, owner, sort_key)?;
    Ok(outcome(mode, trigger, new, refusal))
}

fn step_edge(trigger: &PgTrigger<'_>) -> Result<Outcome, TaskerError> {
    let mode = GUARD_MODE.get();
    let new = trigger.new().expect("a BEFORE INSERT OR UPDATE row trigger has a new row");
    if mode == GuardMode::Off {
        return Ok(outcome(mode, trigger, new, None));
    }
    let from = column::<i64>(&new, trigger, "from_step_id")?;
    let to = column::<i64>(&new, trigger, "to_step_id")?;
    if let Some(old) = trigger.old() {
        // An UPDATE that leaves both ends as they were.
        if column::<i64>(&old, trigger, "from_step_id")? == from && column::<i64>(&old, trigger, "to_step_id")? == to {
            return Ok(outcome(mode, trigger, new, None));
        }
    }
    let (Some(from), Some(to)) = (from, to) else {
        return Ok(outcome(mode, trigger, new, None)); // NOT NULL refuses it
    };
    let edge_id = column::<i64>(&new, trigger, "id")?.unwrap_or(i64::MIN);
    let (_, schema) = table_of(trigger);
    let refusal = check_new_edge(&quote_identifier(&schema), edge_id, from, to)?;
    Ok(outcome(mode, trigger, new, refusal))
}

/// Runs a guard under pgrx's guard (a panic or a PostgreSQL error inside becomes an ERROR, as
/// for any pgrx function), then reports its refusal from this, the outermost, frame.
///
/// # Safety
/// `fcinfo` is PostgreSQL's call of a trigger function.
unsafe fn enter(
    fcinfo: pg_sys::FunctionCallInfo,
    body: fn(&PgTrigger<'_>) -> Result<Outcome, TaskerError>,
) -> pg_sys::Datum {
    // SAFETY: called at the top of an extern "C-unwind" function, as pgrx's own wrappers do;
    // fcinfo is PostgreSQL's valid call of a trigger function (SQL cannot call a function
    // returning trigger otherwise).
    let (row, report) = unsafe {
        pg_sys::submodules::panic::pgrx_extern_c_guard(move || {
            // The trigger's call context: PostgreSQL resets it only after this call returns.
            let call_context = pg_sys::CurrentMemoryContext;
            let fcinfo = fcinfo.as_ref().expect("fcinfo");
            let trigger = PgTrigger::from_fcinfo(fcinfo).expect("called as a trigger");
            let Outcome { row, report } = body(&trigger).unwrap_or_else(|e| crate::pg::report::raise(e));
            // The report's texts are copied into the call context, whatever context the body
            // left current, so they outlive the guard.
            let report = report.map(|(error, r, table, schema)| {
                let (detail, hint) = r.detail_and_hint();
                PgMemoryContexts::For(call_context)
                    .switch_to(|_| TableReport::new(error, &r.message, &detail, &hint, r.constraint, &table, &schema))
            });
            (row, report)
        })
    };
    if let Some(report) = report {
        // SAFETY: this frame holds nothing with a destructor, and the report's texts are in the
        // trigger's call context, alive until PostgreSQL resets it after this call.
        unsafe { report.emit() };
    }
    row
}

macro_rules! guard_trigger {
    ($($symbol:ident, $finfo:ident => $body:expr;)*) => {$(
        #[no_mangle]
        #[doc(hidden)]
        pub extern "C" fn $finfo() -> &'static pg_sys::Pg_finfo_record {
            const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }

        /// A guard trigger function (sql/guards.sql).
        ///
        /// # Safety
        /// Called by PostgreSQL as a trigger.
        #[no_mangle]
        pub unsafe extern "C-unwind" fn $symbol(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
            // SAFETY: PostgreSQL's trigger call.
            unsafe { enter(fcinfo, $body) }
        }
    )*};
}

guard_trigger! {
    guard_step_transition_insert_wrapper, pg_finfo_guard_step_transition_insert_wrapper =>
        |trigger| transition_insert(trigger, &STEP);
    guard_task_transition_insert_wrapper, pg_finfo_guard_task_transition_insert_wrapper =>
        |trigger| transition_insert(trigger, &TASK);
    guard_step_transition_update_wrapper, pg_finfo_guard_step_transition_update_wrapper =>
        |trigger| transition_update(trigger, &STEP);
    guard_task_transition_update_wrapper, pg_finfo_guard_task_transition_update_wrapper =>
        |trigger| transition_update(trigger, &TASK);
    guard_step_transition_flag_wrapper, pg_finfo_guard_step_transition_flag_wrapper =>
        |trigger| transition_flag(trigger, &STEP);
    guard_task_transition_flag_wrapper, pg_finfo_guard_task_transition_flag_wrapper =>
        |trigger| transition_flag(trigger, &TASK);
    guard_step_edge_wrapper, pg_finfo_guard_step_edge_wrapper => step_edge;
}

// ---------------------------------------------------------------------------------------------
// The checks the PL/pgSQL trigger functions of 0.2.0 and 0.3.0 call. This library serves those
// versions' SQL between a package upgrade and ALTER EXTENSION UPDATE (and their update scripts
// declare these functions), so the symbols stay; 0.4.0's SQL no longer declares them.

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
            let (detail, hint) = r.detail_and_hint();
            (Some(r.constraint.to_string()), Some(r.message), Some(detail), Some(hint))
        }
    };
    let (from_state, sort_key) = match fill {
        Some(a) => (a.from_state, Some(a.sort_key)),
        None => (None, None),
    };
    (mode.name().to_string(), constraint, message, detail, hint, from_state, sort_key)
}

fn tables_of(machine: &str) -> &'static Tables {
    match machine {
        "step" => &STEP,
        "task" => &TASK,
        other => crate::pg::report::raise(TaskerError::UnknownMachine(other.to_string())),
    }
}

// (pgrx resolves a function's result type from its text: no alias for the verdict row.)

#[pg_extern(sql = false)]
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
    use crate::pg::report::OrRaise;
    let mode = GUARD_MODE.get();
    let t = tables_of(machine);
    let Some(to_state) = to_state.filter(|_| mode != GuardMode::Off) else {
        return TableIterator::once(verdict(mode, None, None));
    };
    let row = NewTransition {
        owner,
        to_state: &to_state,
        from_state: from_state.as_deref(),
        sort_key,
        most_recent: most_recent.unwrap_or(false),
    };
    let (refusal, fill) = check_new_transition(mode, t, &quote_identifier(schema), &row).or_raise();
    TableIterator::once(verdict(mode, refusal, fill))
}

#[pg_extern(sql = false)]
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
    let t = tables_of(machine);
    let old = TransitionKey {
        owner: Some(old_owner),
        to_state: Some(old_to_state),
        from_state: old_from_state,
        sort_key: Some(old_sort_key),
    };
    let new = TransitionKey {
        owner: Some(new_owner),
        to_state: Some(new_to_state),
        from_state: new_from_state,
        sort_key: Some(new_sort_key),
    };
    TableIterator::once(verdict(mode, guards::check_update(t.machine, &old, &new).err(), None))
}

#[pg_extern(sql = false)]
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
    use crate::pg::report::OrRaise;
    let mode = GUARD_MODE.get();
    let (Some(from), Some(to)) = (from_step, to_step) else {
        return TableIterator::once(verdict(mode, None, None));
    };
    if mode == GuardMode::Off {
        return TableIterator::once(verdict(mode, None, None));
    }
    let refusal = check_new_edge(&quote_identifier(schema), edge_id.unwrap_or(i64::MIN), from, to).or_raise();
    TableIterator::once(verdict(mode, refusal, None))
}
