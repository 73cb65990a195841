//! The six states and the step/task state machines (state-machines.md).

pub const PENDING: &str = "pending";
pub const IN_PROGRESS: &str = "in_progress";
pub const COMPLETE: &str = "complete";
pub const ERROR: &str = "error";
pub const CANCELLED: &str = "cancelled";
pub const RESOLVED_MANUALLY: &str = "resolved_manually";

/// Every legal state string (exact spelling; anything else is not a state).
pub const ALL: [&str; 6] = [PENDING, IN_PROGRESS, COMPLETE, ERROR, CANCELLED, RESOLVED_MANUALLY];

/// The `'static` spelling of a known state name (no allocation for the usual states).
pub fn known(state: &str) -> Option<&'static str> {
    ALL.iter().copied().find(|s| *s == state)
}

/// A state name read from a row: borrowed when it is one of the known states.
pub fn name_of(state: &str) -> std::borrow::Cow<'static, str> {
    match known(state) {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(state.to_string()),
    }
}

/// A parent (or a task's step) counts as finished in these states.
pub fn is_done(state: &str) -> bool {
    state == COMPLETE || state == RESOLVED_MANUALLY
}

/// What owns a transition history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    Step,
    Task,
}

impl Machine {
    /// The states reachable in one move from `from` (`None`: no transition rows yet).
    /// Unknown `from` strings allow nothing.
    pub fn allowed_from(self, from: Option<&str>) -> &'static [&'static str] {
        match (self, from) {
            // From "no rows": pending itself, or any move allowed from pending.
            (Machine::Step, None) => &[PENDING, IN_PROGRESS, ERROR, CANCELLED, RESOLVED_MANUALLY],
            (Machine::Step, Some(PENDING)) => &[IN_PROGRESS, ERROR, CANCELLED, RESOLVED_MANUALLY],
            (Machine::Step, Some(IN_PROGRESS)) => &[COMPLETE, ERROR, CANCELLED],
            (Machine::Step, Some(ERROR)) => &[PENDING, RESOLVED_MANUALLY],
            (Machine::Task, None) => &[PENDING, IN_PROGRESS, CANCELLED, ERROR],
            (Machine::Task, Some(PENDING)) => &[IN_PROGRESS, CANCELLED, ERROR],
            (Machine::Task, Some(IN_PROGRESS)) => &[COMPLETE, ERROR, CANCELLED, PENDING],
            (Machine::Task, Some(ERROR)) => &[PENDING, RESOLVED_MANUALLY],
            (Machine::Task, Some(COMPLETE | RESOLVED_MANUALLY)) => &[CANCELLED],
            _ => &[],
        }
    }

    pub fn allows(self, from: Option<&str>, to: &str) -> bool {
        self.allowed_from(from).contains(&to)
    }

    /// The lifecycle event Rails publishes for a move.
    pub fn event(self, from: Option<&str>, to: &str) -> Option<&'static str> {
        let prefix_step = matches!(self, Machine::Step);
        let name = match (from, to) {
            (None, PENDING) => "initialize_requested",
            (Some(PENDING), IN_PROGRESS) => {
                if prefix_step {
                    "execution_requested"
                } else {
                    "start_requested"
                }
            }
            (Some(IN_PROGRESS), COMPLETE) => "completed",
            (_, ERROR) => "failed",
            (_, CANCELLED) => "cancelled",
            (_, RESOLVED_MANUALLY) => "resolved_manually",
            (Some(ERROR), PENDING) => "retry_requested",
            (_, COMPLETE) if !prefix_step => "completed",
            _ => return None,
        };
        Some(match (self, name) {
            (Machine::Step, "initialize_requested") => "step.initialize_requested",
            (Machine::Step, "execution_requested") => "step.execution_requested",
            (Machine::Step, "completed") => "step.completed",
            (Machine::Step, "failed") => "step.failed",
            (Machine::Step, "cancelled") => "step.cancelled",
            (Machine::Step, "resolved_manually") => "step.resolved_manually",
            (Machine::Step, "retry_requested") => "step.retry_requested",
            (Machine::Task, "initialize_requested") => "task.initialize_requested",
            (Machine::Task, "start_requested") => "task.start_requested",
            (Machine::Task, "completed") => "task.completed",
            (Machine::Task, "failed") => "task.failed",
            (Machine::Task, "cancelled") => "task.cancelled",
            (Machine::Task, "resolved_manually") => "task.resolved_manually",
            (Machine::Task, "retry_requested") => "task.retry_requested",
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_table_matches_spec() {
        let m = Machine::Step;
        assert!(m.allows(None, PENDING));
        assert!(m.allows(None, IN_PROGRESS));
        assert!(m.allows(Some(PENDING), ERROR));
        assert!(!m.allows(Some(PENDING), COMPLETE));
        assert!(!m.allows(Some(PENDING), PENDING));
        assert!(m.allows(Some(ERROR), PENDING));
        assert!(!m.allows(Some(ERROR), IN_PROGRESS));
        for terminal in [COMPLETE, CANCELLED, RESOLVED_MANUALLY] {
            for to in ALL {
                assert!(!m.allows(Some(terminal), to));
            }
        }
        assert!(!m.allows(Some("bogus"), PENDING));
        assert!(!m.allows(None, "Pending"));
    }

    #[test]
    fn task_table_matches_spec() {
        let m = Machine::Task;
        assert!(m.allows(Some(IN_PROGRESS), PENDING));
        assert!(m.allows(Some(COMPLETE), CANCELLED));
        assert!(m.allows(Some(RESOLVED_MANUALLY), CANCELLED));
        assert!(!m.allows(Some(PENDING), RESOLVED_MANUALLY));
        assert!(!m.allows(None, COMPLETE));
        for to in ALL {
            assert!(!m.allows(Some(CANCELLED), to));
        }
    }

    #[test]
    fn no_same_state_move_is_allowed() {
        for m in [Machine::Step, Machine::Task] {
            for s in ALL {
                assert!(!m.allows(Some(s), s), "{m:?} {s}");
            }
        }
    }

    #[test]
    fn events() {
        assert_eq!(Machine::Step.event(Some(PENDING), IN_PROGRESS), Some("step.execution_requested"));
        assert_eq!(Machine::Step.event(None, PENDING), Some("step.initialize_requested"));
        assert_eq!(Machine::Step.event(Some(ERROR), PENDING), Some("step.retry_requested"));
        assert_eq!(Machine::Task.event(Some(PENDING), IN_PROGRESS), Some("task.start_requested"));
        assert_eq!(Machine::Task.event(Some(IN_PROGRESS), COMPLETE), Some("task.completed"));
        assert_eq!(Machine::Task.event(Some(IN_PROGRESS), ERROR), Some("task.failed"));
    }
}
