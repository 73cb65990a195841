//! Every refusal tasker_core can give, with its SQLSTATE. No pgrx types here: the pgrx
//! layer (`pg::report`) turns these into PostgreSQL errors.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TaskerError {
    /// `float8` overflow in `power(2, attempts)` (SQLSTATE 22003), as PostgreSQL raises it.
    #[error("value out of range: overflow")]
    FloatOverflow,
    /// `float8` underflow in `power(2, attempts)` (SQLSTATE 22003).
    #[error("value out of range: underflow")]
    FloatUnderflow,
    /// `interval` arithmetic overflow (SQLSTATE 22008).
    #[error("interval out of range")]
    IntervalOutOfRange,
    /// `timestamp` arithmetic overflow (SQLSTATE 22008).
    #[error("timestamp out of range")]
    TimestampOutOfRange,
    /// A count does not fit the `integer` result column (SQLSTATE 22003).
    #[error("integer out of range")]
    IntegerOutOfRange,
    /// A cycle reachable from a root (SQLSTATE 22000): the original function never ends here.
    #[error("workflow step graph of task {task_id} has a cycle reachable from a root step: {}", path_text(.path))]
    CycleReachable { task_id: i64, path: Vec<i64> },
}

pub fn path_text(path: &[i64]) -> String {
    path.iter().map(i64::to_string).collect::<Vec<_>>().join(" -> ")
}

impl TaskerError {
    /// The five-character SQLSTATE.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            TaskerError::FloatOverflow | TaskerError::FloatUnderflow | TaskerError::IntegerOutOfRange => "22003",
            TaskerError::IntervalOutOfRange | TaskerError::TimestampOutOfRange => "22008",
            TaskerError::CycleReachable { .. } => "22000",
        }
    }

    pub fn detail(&self) -> Option<String> {
        match self {
            TaskerError::CycleReachable { path, .. } => Some(format!(
                "Step {} is reached again by following edges from it; dependency levels are undefined on a cycle.",
                path.first().copied().unwrap_or_default()
            )),
            _ => None,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            TaskerError::CycleReachable { path, .. } => Some(format!(
                "Delete one of the edges on the path {} from tasker_workflow_step_edges; tasker_core.enable() installs triggers that refuse new cycles.",
                path_text(path)
            )),
            _ => None,
        }
    }
}
