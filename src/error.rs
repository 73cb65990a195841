//! Every refusal tasker_core can give, with its SQLSTATE, and the one place that turns it into a
//! PostgreSQL error report (`From<TaskerError> for ErrorReport`, an exhaustive match: a new
//! variant does not compile until it has a code). The rules (`crate::rules`) only construct
//! these; the pgrx layer raises them with `pg::report`.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::PgSqlErrorCode;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TaskerError {
    /// `float8` overflow in `power(2, attempts)`, as PostgreSQL raises it.
    #[error("value out of range: overflow")]
    FloatOverflow,
    /// `float8` underflow in `power(2, attempts)`.
    #[error("value out of range: underflow")]
    FloatUnderflow,
    /// `interval` arithmetic overflow.
    #[error("interval out of range")]
    IntervalOutOfRange,
    /// `timestamp` arithmetic overflow.
    #[error("timestamp out of range")]
    TimestampOutOfRange,
    /// A count does not fit the `integer` result column.
    #[error("integer out of range")]
    IntegerOutOfRange,
    /// A cycle reachable from a root: the original function never ends here.
    #[error("workflow step graph of task {task_id} has a cycle reachable from a root step: {}", path_text(.path))]
    CycleReachable { task_id: i64, path: Vec<i64> },
    /// A set-returning function called where no set can be returned.
    #[error("set-valued function called in context that cannot accept a set")]
    NotInSetContext,
    /// The SQL declaration of a function does not match this library.
    #[error("tasker_core.{function} is declared with other result columns than this library writes")]
    DeclarationMismatch { function: &'static str },
    /// A Tasker table the read functions need is some other kind of relation.
    #[error("tasker_core reads only tables: {relation} is a {kind}")]
    NotATable { relation: String, kind: &'static str },
    /// The guard machinery was called with a machine name it does not know.
    #[error("unknown state machine {0:?} (expected 'step' or 'task')")]
    UnknownMachine(String),
    /// The step state has not been enabled.
    #[error("the step state is not enabled")]
    StepStateNotEnabled,
    /// A table the step state mirrors no longer exists.
    #[error("the table with OID {0} that the step state mirrors no longer exists")]
    MirroredTableGone(u32),
    /// The step state cannot be built or kept for the recorded tables.
    #[error("cannot {action} the step state: {reason}")]
    StepStateUnusable { action: &'static str, reason: String },
    /// A row of the extension's own step_state table that its maintenance cannot have written.
    #[error("tasker_core.step_state is damaged: {0}")]
    StepStateCorrupted(String),
    /// A rebuild or an online switch needs READ COMMITTED.
    #[error("tasker_core.{function}() must run under READ COMMITTED")]
    NeedsReadCommitted { function: &'static str },
    /// A snapshot older than a step-state rebuild would write outside the copy everyone trusts.
    #[error(
        "could not serialize access: the step state was enabled, rebuilt or switched to an online build after this transaction's snapshot was taken"
    )]
    StaleSnapshot,
    /// The online build commits between its steps: not inside a transaction block.
    #[error("CALL tasker_core.step_state_enable_concurrently() cannot run inside a transaction block")]
    InTransactionBlock,
    /// An event trigger function called some other way.
    #[error("tasker_core.before_drop() can only be called as an event trigger")]
    NotAnEventTrigger,
    /// A Tasker table the caller's search_path does not find.
    #[error("relation \"{0}\" does not exist")]
    UndefinedTable(&'static str),
    /// A schema named to an admin function does not exist.
    #[error("schema \"{0}\" does not exist")]
    UndefinedSchema(String),
    /// The caller may not act as a function's owner.
    #[error("must be a member of role {role} (the owner of the function)")]
    NotOwner { role: String },
    /// A function named by OID does not exist.
    #[error("function with OID {0} does not exist")]
    NoSuchFunction(u32),
    /// A function's definition cannot be copied under another name.
    #[error("cannot keep a copy of {0}: it has a SQL-standard body (BEGIN ATOMIC)")]
    CannotCopyFunction(String),
    /// A superuser's read on the SQL path runs as the owner of tasker_workflow_steps, who
    /// cannot read another of the tables in full.
    #[error("a superuser reads the Tasker tables as their owner {reader}, who cannot read {table} in full ({why})")]
    NoSafeReader { reader: String, table: String, why: &'static str },
    /// An argument of an orchestration function that no call may pass.
    #[error("invalid {argument}: {reason}")]
    InvalidArgument { argument: &'static str, reason: String },
    /// A task the caller named does not exist.
    #[error("task {0} does not exist")]
    TaskNotFound(i64),
    /// A transition whose step or task the event trigger cannot find.
    #[error("no event for transition {transition} of {table}: its {owner} is not there")]
    EventWithoutOwner { transition: i64, table: String, owner: &'static str },
    /// A transitions table whose `id` the event trigger cannot read as a bigint.
    #[error("tasker_core events: column id of {0} is not a bigint")]
    EventIdNotBigint(String),
    /// A column of a Tasker table the guards read or fill, missing or of a type they cannot use.
    #[error("tasker_core guards: cannot use column {column} of {table}: {why}")]
    GuardColumn { table: String, column: &'static str, why: String },
    /// SPI failed in a way that is a bug of tasker_core, not of the caller.
    #[error("internal error: {what} failed (SPI code {code})")]
    Spi { what: &'static str, code: i32 },
}

pub fn path_text(path: &[i64]) -> String {
    path.iter().map(i64::to_string).collect::<Vec<_>>().join(" -> ")
}

impl TaskerError {
    /// The SQLSTATE of this error (the one match every report goes through).
    pub fn code(&self) -> PgSqlErrorCode {
        use PgSqlErrorCode::*;
        match self {
            TaskerError::FloatOverflow | TaskerError::FloatUnderflow | TaskerError::IntegerOutOfRange => {
                ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE
            }
            TaskerError::IntervalOutOfRange | TaskerError::TimestampOutOfRange => ERRCODE_DATETIME_FIELD_OVERFLOW,
            TaskerError::CycleReachable { .. } => ERRCODE_DATA_EXCEPTION,
            TaskerError::NotInSetContext => ERRCODE_FEATURE_NOT_SUPPORTED,
            TaskerError::DeclarationMismatch { .. } => ERRCODE_DATATYPE_MISMATCH,
            TaskerError::NotATable { .. } => ERRCODE_WRONG_OBJECT_TYPE,
            TaskerError::UnknownMachine(_) => ERRCODE_INVALID_PARAMETER_VALUE,
            TaskerError::StepStateNotEnabled | TaskerError::StepStateUnusable { .. } => {
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
            }
            TaskerError::MirroredTableGone(_) => ERRCODE_UNDEFINED_TABLE,
            TaskerError::StepStateCorrupted(_) => ERRCODE_DATA_CORRUPTED,
            TaskerError::NeedsReadCommitted { .. } => ERRCODE_INVALID_TRANSACTION_STATE,
            TaskerError::StaleSnapshot => ERRCODE_T_R_SERIALIZATION_FAILURE,
            TaskerError::InTransactionBlock => ERRCODE_ACTIVE_SQL_TRANSACTION,
            TaskerError::NotAnEventTrigger => ERRCODE_E_R_I_E_EVENT_TRIGGER_PROTOCOL_VIOLATED,
            TaskerError::UndefinedTable(_) => ERRCODE_UNDEFINED_TABLE,
            TaskerError::UndefinedSchema(_) => ERRCODE_INVALID_SCHEMA_NAME,
            TaskerError::NotOwner { .. } => ERRCODE_INSUFFICIENT_PRIVILEGE,
            TaskerError::NoSuchFunction(_) => ERRCODE_UNDEFINED_FUNCTION,
            TaskerError::CannotCopyFunction(_) => ERRCODE_FEATURE_NOT_SUPPORTED,
            TaskerError::NoSafeReader { .. } => ERRCODE_INSUFFICIENT_PRIVILEGE,
            TaskerError::InvalidArgument { .. } => ERRCODE_INVALID_PARAMETER_VALUE,
            TaskerError::TaskNotFound(_) => ERRCODE_NO_DATA_FOUND,
            TaskerError::EventWithoutOwner { .. } => ERRCODE_FOREIGN_KEY_VIOLATION,
            TaskerError::EventIdNotBigint(_) => ERRCODE_DATATYPE_MISMATCH,
            TaskerError::GuardColumn { .. } => ERRCODE_DATATYPE_MISMATCH,
            TaskerError::Spi { .. } => ERRCODE_INTERNAL_ERROR,
        }
    }

    /// The five-character SQLSTATE (for messages and tests).
    pub fn sqlstate(&self) -> String {
        let code = self.code() as i32;
        // MAKE_SQLSTATE packs five 6-bit characters, the first in the lowest bits.
        (0..5).map(|i| (((code >> (6 * i)) & 0x3f) as u8 + b'0') as char).collect()
    }

    pub fn detail(&self) -> Option<String> {
        match self {
            TaskerError::CycleReachable { path, .. } => Some(format!(
                "Step {} is reached again by following edges from it; dependency levels are undefined on a cycle.",
                path.first().copied().unwrap_or_default()
            )),
            TaskerError::DeclarationMismatch { .. } => {
                Some("The installed SQL objects and the loaded library are of different versions.".into())
            }
            TaskerError::StaleSnapshot => Some(
                "This REPEATABLE READ or SERIALIZABLE transaction started before the step state was last rebuilt \
                 (or before an online build started or finished); its write would be missing from the copy."
                    .into(),
            ),
            _ => None,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            TaskerError::CycleReachable { path, .. } => Some(format!(
                "Delete one of the edges on the path {} from tasker_workflow_step_edges; tasker_core.enable() installs triggers that refuse new cycles.",
                path_text(path)
            )),
            TaskerError::DeclarationMismatch { .. } => {
                Some("Run ALTER EXTENSION tasker_core UPDATE, or reinstall the extension's files.".into())
            }
            TaskerError::UndefinedTable(_) => Some(
                "The read functions find the Tasker tables through the search_path, as Rails' functions do.".into(),
            ),
            TaskerError::NotATable { .. } => Some(
                "The read functions find the Tasker tables through the search_path, as Rails' functions do; \
                 put the schema of the Tasker tables first."
                    .into(),
            ),
            TaskerError::StepStateNotEnabled => Some(
                "Run SELECT * FROM tasker_core.step_state_enable('public') with the schema of the Tasker tables.".into(),
            ),
            TaskerError::MirroredTableGone(_) => Some(
                "Run SELECT * FROM tasker_core.step_state_disable(), then step_state_enable() for the Tasker schema."
                    .into(),
            ),
            TaskerError::NotOwner { .. } => Some(
                "Run tasker_core.enable() and disable() as the role that owns the Rails functions (or a member of it).".into(),
            ),
            TaskerError::CannotCopyFunction(_) => Some(
                "Rewrite it with a string body (AS '...'), or drop it and let tasker_core.enable() create the function.".into(),
            ),
            TaskerError::StepStateCorrupted(_) => Some(
                "Only a hand-made change to tasker_core.step_state can do this: run SELECT tasker_core.step_state_rebuild(), \
                 or SET tasker_core.direct_reads = off to read the Tasker tables meanwhile."
                    .into(),
            ),
            TaskerError::StepStateUnusable { .. } => {
                Some("SELECT * FROM tasker_core.status() says why; docs/step_state.md explains each requirement.".into())
            }
            TaskerError::NeedsReadCommitted { .. } => Some(
                "Under REPEATABLE READ or SERIALIZABLE its snapshot could predate writes it must include: run it under READ \
                 COMMITTED (for a CALL, SET default_transaction_isolation = 'read committed' first)."
                    .into(),
            ),
            TaskerError::StaleSnapshot => Some("Retry the transaction.".into()),
            TaskerError::InTransactionBlock => Some(
                "Each of its steps commits, as CREATE INDEX CONCURRENTLY does: run the CALL on its own. Inside a transaction, \
                 SELECT * FROM tasker_core.step_state_enable() builds the step state while blocking writers."
                    .into(),
            ),
            TaskerError::NoSafeReader { reader, table, .. } => Some(format!(
                "Grant {reader} SELECT on {table} (with no row level security applying to it), or call the function as a \
                 role that is not a superuser; docs/security.md explains why a superuser does not read with its own rights."
            )),
            TaskerError::Spi { .. } => Some("This is a bug of tasker_core; please report it with the statement that ran.".into()),
            TaskerError::EventIdNotBigint(_) => Some(
                "Rails' transitions tables have a bigint id; restore it, or disable the events (disable()).".into(),
            ),
            TaskerError::GuardColumn { .. } => Some(
                "The guards read the transitions and edges as Rails' schema has them (bigint ids, text states, an integer \
                 sort_key, a boolean most_recent); restore the column, or disable the guards (disable())."
                    .into(),
            ),
            TaskerError::EventWithoutOwner { owner, .. } => Some(format!(
                "The event trigger reads the {owner} (and its name) when the transition is inserted, so every transition gets \
                 its event; insert the {owner} first (a deferred or dropped foreign key lets the transition come first)."
            )),
            TaskerError::InvalidArgument { argument: "backoff config", .. } => Some(
                "Keys are BackoffConfig's: default_backoff_seconds, max_backoff_seconds, backoff_multiplier, jitter_enabled, \
                 jitter_max_percentage, reenqueue_delays {has_ready_steps, waiting_for_dependencies, processing}, \
                 default_reenqueue_delay, buffer_seconds."
                    .into(),
            ),
            _ => None,
        }
    }
}

impl From<TaskerError> for ErrorReport {
    fn from(err: TaskerError) -> ErrorReport {
        let mut report = ErrorReport::new(err.code(), err.to_string(), "tasker_core");
        if let Some(detail) = err.detail() {
            report = report.set_detail(detail);
        }
        if let Some(hint) = err.hint() {
            report = report.set_hint(hint);
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::TaskerError;

    #[test]
    fn sqlstates_are_the_documented_ones() {
        assert_eq!(TaskerError::FloatOverflow.sqlstate(), "22003");
        assert_eq!(TaskerError::IntervalOutOfRange.sqlstate(), "22008");
        assert_eq!(TaskerError::CycleReachable { task_id: 1, path: vec![1, 1] }.sqlstate(), "22000");
        assert_eq!(TaskerError::NotInSetContext.sqlstate(), "0A000");
        assert_eq!(TaskerError::NotATable { relation: "x".into(), kind: "view" }.sqlstate(), "42809");
        assert_eq!(TaskerError::StepStateNotEnabled.sqlstate(), "55000");
        assert_eq!(TaskerError::MirroredTableGone(1).sqlstate(), "42P01");
        assert_eq!(TaskerError::NeedsReadCommitted { function: "x" }.sqlstate(), "25000");
        assert_eq!(TaskerError::StaleSnapshot.sqlstate(), "40001");
        assert_eq!(TaskerError::InTransactionBlock.sqlstate(), "25001");
        assert_eq!(TaskerError::UnknownMachine("x".into()).sqlstate(), "22023");
    }
}
