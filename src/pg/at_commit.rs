//! Work a transaction leaves for its commit: the step state's refresh (pg::step_state::deferred)
//! and the lifecycle events (pg::events); and what it must forget when it ends (the guards'
//! row locks held, pg::guards). One transaction callback, registered once per backend, runs
//! every registered `Hook` that has work:
//! - just before the transaction commits or prepares (`XACT_EVENT_PRE_COMMIT`,
//!   `XACT_EVENT_PRE_PREPARE`: after the deferred triggers, while the transaction can still
//!   fail; an error there aborts the commit), under one snapshot taken for it;
//! - and has every hook forget its work when the transaction ends, committed, prepared or
//!   aborted.

use std::cell::RefCell;

use pgrx::pg_sys;
use pgrx::prelude::*;

/// What a module leaves for the commit.
pub struct Hook {
    /// Whether this transaction left it work.
    pub pending: fn() -> bool,
    /// Does the work (runs before the commit, under a snapshot that sees the transaction's rows).
    pub run: fn(),
    /// Drops what is left (the transaction has ended).
    pub forget: fn(),
}

thread_local! {
    /// The hooks registered in this backend (the callback is registered with the first).
    static HOOKS: RefCell<Vec<&'static Hook>> = const { RefCell::new(Vec::new()) };
}

/// Registers `hook` for every transaction of this backend from now on (a second call for the
/// same hook does nothing).
pub fn register(hook: &'static Hook) {
    let (first, known) = HOOKS.with(|h| {
        let h = h.borrow();
        (h.is_empty(), h.iter().any(|k| std::ptr::eq(*k, hook)))
    });
    if known {
        return;
    }
    if first {
        // SAFETY: registers a function PostgreSQL calls at each transaction event; it is never
        // unregistered (the library is not unloaded).
        unsafe { pg_sys::RegisterXactCallback(Some(at_transaction_end), std::ptr::null_mut()) };
    }
    HOOKS.with(|h| h.borrow_mut().push(hook));
}

#[pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    let hooks = HOOKS.with(|h| h.borrow().clone());
    match event {
        pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT | pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE => {
            let due: Vec<&Hook> = hooks.into_iter().filter(|h| (h.pending)()).collect();
            if due.is_empty() {
                return;
            }
            // The portal that ran the last statement is gone: the work runs under the
            // transaction's snapshot (READ COMMITTED: a new one, as each statement takes),
            // taken after the command counter moves on, so it sees the last statement's rows.
            // SAFETY: pushed and popped around the work; an error in between aborts the
            // transaction, whose cleanup pops it.
            unsafe {
                pg_sys::CommandCounterIncrement();
                pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
            }
            for hook in due {
                (hook.run)();
            }
            // SAFETY: the snapshot pushed above.
            unsafe { pg_sys::PopActiveSnapshot() };
        }
        pg_sys::XactEvent::XACT_EVENT_COMMIT
        | pg_sys::XactEvent::XACT_EVENT_ABORT
        | pg_sys::XactEvent::XACT_EVENT_PREPARE
        | pg_sys::XactEvent::XACT_EVENT_PARALLEL_COMMIT
        | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT => {
            for hook in hooks {
                (hook.forget)();
            }
        }
        _ => {}
    }
}
