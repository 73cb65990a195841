//! Raising a `TaskerError` as a PostgreSQL ERROR (through `From<TaskerError> for ErrorReport`).

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::PgLogLevel;

use crate::error::TaskerError;

/// Raises `err` as an ERROR. Never returns.
#[track_caller]
pub fn raise(err: TaskerError) -> ! {
    ErrorReport::from(err).report(PgLogLevel::ERROR);
    unreachable!("an ERROR report does not return")
}

/// `Result` helpers for the pgrx layer.
pub trait OrRaise<T> {
    fn or_raise(self) -> T;
}

impl<T> OrRaise<T> for Result<T, TaskerError> {
    #[track_caller]
    fn or_raise(self) -> T {
        self.unwrap_or_else(|e| raise(e))
    }
}
