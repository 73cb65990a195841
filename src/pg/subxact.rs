//! A write that may lose a race: run it in an internal subtransaction and turn a lost race
//! into `None`, as PL/pgSQL's `EXCEPTION WHEN ... THEN` does, with the same calls in the same
//! order (BeginInternalSubTransaction; on success ReleaseCurrentSubTransaction, on error
//! RollbackAndReleaseCurrentSubTransaction; the memory context and resource owner restored on
//! every path).
//!
//! A lost race is one of three errors, each raised only by another writer getting there first:
//! - 23505 unique_violation: a writer without locks appended the owner's next transition;
//! - 55P03 lock_not_available: a `NOWAIT` lock on a row another writer is changing;
//! - 23514 check_violation: the guard trigger, re-checking under its locks, refused the move
//!   our own check allowed a moment before (an edge or a parent's state changed in between).
//!
//! Every other error, and a Rust panic, rolls the subtransaction back and goes on up, so the
//! caller's own error handling (a PL/pgSQL EXCEPTION block, a savepoint) finds the transaction
//! as it left it. A write that returns `Err` is rolled back too.

use std::panic::AssertUnwindSafe;

use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::{PgSqlErrorCode, PgTryBuilder};

use crate::error::TaskerError;

/// Runs `write` in a subtransaction: `Ok(None)` when another writer won the race (everything
/// `write` did is rolled back), its own result otherwise.
pub fn unless_lost_race<R>(write: impl FnOnce() -> Result<R, TaskerError>) -> Result<Option<R>, TaskerError> {
    // SAFETY: the caller is inside a transaction (a SQL function call). The context and owner
    // are restored on every path exactly as plpgsql's exec_stmt_block restores them; pgrx has
    // copied the caught error's data and flushed the error state before a handler runs.
    unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
        let restore = move |commit: bool| {
            if commit {
                pg_sys::ReleaseCurrentSubTransaction();
            } else {
                pg_sys::RollbackAndReleaseCurrentSubTransaction();
            }
            pg_sys::MemoryContextSwitchTo(context);
            pg_sys::CurrentResourceOwner = owner;
        };
        let write = AssertUnwindSafe(write);
        let lost = move |_: CaughtError| {
            restore(false);
            Ok(None)
        };
        PgTryBuilder::new(move || {
            let write = write;
            let result = (write.0)();
            restore(result.is_ok());
            result.map(Some)
        })
        .catch_when(PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION, lost)
        .catch_when(PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE, lost)
        .catch_when(PgSqlErrorCode::ERRCODE_CHECK_VIOLATION, lost)
        .catch_others(move |e: CaughtError| {
            restore(false);
            e.rethrow()
        })
        .execute()
    }
}
