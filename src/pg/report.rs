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

/// A refusal of a row, reported as `RAISE ... USING CONSTRAINT, TABLE, SCHEMA` reports one:
/// SQLSTATE 23514 (check_violation) with the constraint, table and schema fields set, which
/// pgrx's reports cannot carry. Its texts are copied into the current memory context when it is
/// made (inside pgrx's guard, where running out of memory is an ordinary ERROR), so that
/// [`TableReport::emit`] only hands them to PostgreSQL.
pub struct TableReport {
    error: bool,
    texts: [*mut std::ffi::c_char; 6], // message, detail, hint, constraint, table, schema
}

// `ThrowErrorData`, declared here without pgrx's guard: an ERROR must longjmp from the
// trigger's own frame to PostgreSQL's handler, not come back into Rust as a panic that pgrx
// would report again without the constraint fields.
unsafe extern "C-unwind" {
    #[link_name = "ThrowErrorData"]
    fn throw_error_data(edata: *mut pgrx::pg_sys::ErrorData);
}

impl TableReport {
    /// `error`: an ERROR (the row is refused) or a WARNING (`tasker_core.guard_mode = warn`).
    pub fn new(
        error: bool,
        message: &str,
        detail: &str,
        hint: &str,
        constraint: &str,
        table: &str,
        schema: &str,
    ) -> TableReport {
        // SAFETY: pnstrdup copies len bytes (NUL bytes cut the copy short, as C would read it)
        // into a NUL-terminated palloc'd string of the current context.
        let copy = |s: &str| unsafe { pgrx::pg_sys::pnstrdup(s.as_ptr().cast(), s.len()) };
        TableReport {
            error,
            texts: [copy(message), copy(detail), copy(hint), copy(constraint), copy(table), copy(schema)],
        }
    }

    /// Reports it: a WARNING returns, an ERROR does not.
    ///
    /// # Safety
    /// Only from the outermost frame of a function PostgreSQL called, outside pgrx's guard,
    /// with no value holding a destructor alive in that frame: an ERROR's longjmp skips the
    /// frame. The texts must still be allocated (made in the trigger's call context).
    pub unsafe fn emit(self) {
        let [message, detail, hint, constraint, table, schema] = self.texts;
        // SAFETY: a zeroed ErrorData is "no field set" for ThrowErrorData, which copies each
        // non-NULL field into the error stack's own context before errfinish.
        let mut e: pgrx::pg_sys::ErrorData = unsafe { std::mem::zeroed() };
        e.elevel = if self.error { PgLogLevel::ERROR as i32 } else { PgLogLevel::WARNING as i32 };
        // A WARNING keeps errstart's default SQLSTATE (01000), as RAISE WARNING without ERRCODE.
        if self.error {
            e.sqlerrcode = pgrx::PgSqlErrorCode::ERRCODE_CHECK_VIOLATION as i32;
        }
        e.message = message;
        e.detail = detail;
        e.hint = hint;
        e.constraint_name = constraint;
        e.table_name = table;
        e.schema_name = schema;
        e.filename = c"report.rs".as_ptr();
        e.lineno = line!() as i32;
        e.funcname = c"TableReport::emit".as_ptr();
        // SAFETY: see the function's contract; e lives across the call.
        unsafe { throw_error_data(&mut e) };
    }
}
