//! The step state's work a transaction leaves for its commit.
//!
//! Statesman writes each move as two statements on the step transitions (the old row's
//! `most_recent` cleared, the new row inserted), and a transaction often moves a step more than
//! once. Refreshing the copy after every statement refreshed the same rows again and again: in a
//! transaction that moved a new step pending -> in_progress -> complete, five times. So the
//! maintenance trigger of the step transitions only notes the steps
//! (`step_state_refresh_transitions`), and their rows are refreshed once, with what the
//! transaction finally wrote:
//! - just before the transaction commits or prepares (a transaction callback, at
//!   `XACT_EVENT_PRE_COMMIT` / `XACT_EVENT_PRE_PREPARE`: after the deferred triggers, while the
//!   transaction can still fail; an error there aborts the commit);
//! - and before any other refresh of step rows in the same transaction (`apply`), so a refresh
//!   always starts from rows that show every earlier write, as when each statement refreshed
//!   its own (a step that became done is seen to flip, and its children are recounted).
//!
//! Until then this backend's copy does not show its own transaction's moves; the read functions
//! read with SQL while any are noted (`noted`, paths.rs), and `read_paths()` says why. Other
//! sessions see the moves only once committed, with the copy refreshed in the same commit, as
//! before. Notes survive a rolled-back subtransaction (refreshing a step that did not change
//! recomputes the same row) and are dropped when the transaction ends. An `apply` inside a
//! subtransaction refreshes but keeps the notes, so that if the subtransaction rolls back, the
//! commit refreshes again from what is left.
//!
//! What the commit does with the notes is what the trigger would do at that moment: refresh the
//! rows while the copy is in use, log the steps while an online build captures writes, nothing
//! once the copy was disabled.

use std::cell::{Cell, RefCell};

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::pg::report::OrRaise;
use crate::pg::sandbox::{as_owner, owner_of};
use crate::pg::spi::{self, Arg};
use crate::pg::step_state::maintain::{self, Upkeep};

/// Steps whose transitions this transaction wrote, not yet refreshed in the copy.
struct Noted {
    transitions: pg_sys::Oid,
    edges: pg_sys::Oid,
    steps: Vec<i64>,
}

thread_local! {
    static NOTED: RefCell<Option<Noted>> = const { RefCell::new(None) };
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// Whether this transaction has step moves the copy does not show yet.
pub fn noted() -> bool {
    NOTED.with(|n| n.borrow().is_some())
}

/// Notes the steps `ids` (sorted, distinct) of the step transitions `transitions` (with their
/// edges `edges`) for the refresh at commit.
pub fn note(ids: Vec<i64>, transitions: pg_sys::Oid, edges: pg_sys::Oid) {
    if ids.is_empty() {
        return;
    }
    register();
    // The copy mirrors one set of tables; notes of others (the source re-pointed within this
    // transaction) are applied first.
    let other = NOTED.with(|n| n.borrow().as_ref().is_some_and(|n| n.transitions != transitions || n.edges != edges));
    if other {
        apply();
    }
    NOTED.with(|n| {
        let mut n = n.borrow_mut();
        match n.as_mut() {
            Some(n) => n.steps.extend(ids),
            None => *n = Some(Noted { transitions, edges, steps: ids }),
        }
    });
}

/// Refreshes the noted steps now (see the module comment).
pub fn apply() {
    // SAFETY: reads the transaction's nesting level.
    let nested = unsafe { pg_sys::GetCurrentTransactionNestLevel() } > 1;
    let taken = NOTED.with(|n| {
        let mut n = n.borrow_mut();
        if nested {
            n.as_ref().map(|n| Noted { transitions: n.transitions, edges: n.edges, steps: n.steps.clone() })
        } else {
            n.take()
        }
    });
    let Some(Noted { transitions, edges, mut steps }) = taken else {
        return;
    };
    steps.sort_unstable();
    steps.dedup();
    match maintain::latest_upkeep() {
        Upkeep::Refresh => maintain::refresh_transitions_now(&steps, transitions, edges),
        Upkeep::Log => {
            let Some(log) = crate::pg::step_state::own_table(c"step_state_log") else {
                return;
            };
            as_owner(owner_of(log).or_raise(), || {
                spi::query(
                    "INSERT INTO tasker_core.step_state_log (kind, id) SELECT 'x', i FROM pg_catalog.unnest($1::pg_catalog.int8[]) i",
                    &[Arg::Int8Array(&steps)],
                    false,
                    |_| (),
                )
            })
        }
        Upkeep::Nothing => {}
    }
}

/// Registers the transaction callback, once per backend (PostgreSQL keeps it for the backend's
/// life; it does nothing in a transaction without notes).
fn register() {
    if REGISTERED.get() {
        return;
    }
    // SAFETY: registers a function PostgreSQL calls at each transaction event; it is never
    // unregistered (the library is not unloaded).
    unsafe { pg_sys::RegisterXactCallback(Some(at_transaction_end), std::ptr::null_mut()) };
    REGISTERED.set(true);
}

#[pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT | pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE if noted() => {
            // The portal that ran the last statement is gone: SQL needs a snapshot to run
            // under, the transaction's (READ COMMITTED: a new one, as each statement takes).
            // SAFETY: pushed and popped around the work; an error in between aborts the
            // transaction, whose cleanup pops it.
            unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot()) };
            apply();
            unsafe { pg_sys::PopActiveSnapshot() };
        }
        // After the end (committed, prepared or aborted) nothing is left to do; an abort (an
        // error in the refresh above included) drops the notes.
        pg_sys::XactEvent::XACT_EVENT_COMMIT
        | pg_sys::XactEvent::XACT_EVENT_ABORT
        | pg_sys::XactEvent::XACT_EVENT_PREPARE
        | pg_sys::XactEvent::XACT_EVENT_PARALLEL_COMMIT
        | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT => {
            NOTED.with(|n| n.borrow_mut().take());
        }
        _ => {}
    }
}
