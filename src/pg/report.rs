//! Turning `TaskerError` into PostgreSQL errors with explicit SQLSTATEs.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::error::TaskerError;

fn code_for(sqlstate: &str) -> PgSqlErrorCode {
    match sqlstate {
        "22003" => PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
        "22008" => PgSqlErrorCode::ERRCODE_DATETIME_FIELD_OVERFLOW,
        "22000" => PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
        _ => PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
    }
}

/// Raises `err` as an ERROR. Never returns.
#[track_caller]
pub fn raise(err: TaskerError, function: &'static str) -> ! {
    let mut report = ErrorReport::new(code_for(err.sqlstate()), err.to_string(), function);
    if let Some(detail) = err.detail() {
        report = report.set_detail(detail);
    }
    if let Some(hint) = err.hint() {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("an ERROR report does not return")
}

/// `Result` helpers for the pgrx layer.
pub trait OrRaise<T> {
    fn or_raise(self, function: &'static str) -> T;
}

impl<T> OrRaise<T> for Result<T, TaskerError> {
    #[track_caller]
    fn or_raise(self, function: &'static str) -> T {
        self.unwrap_or_else(|e| raise(e, function))
    }
}
