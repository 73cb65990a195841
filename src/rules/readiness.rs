//! "Which steps can run now": the readiness rules of `get_step_readiness_status`
//! (functions.md), computed from plain facts about one step.

use crate::error::TaskerError;
use crate::rules::pgtime::{self, PgTimestamp};
use crate::rules::state;

/// One row of `tasker_workflow_steps` (joined to its named step), as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFacts {
    pub workflow_step_id: i64,
    pub task_id: i64,
    pub named_step_id: i32,
    pub retryable: Option<bool>,
    pub retry_limit: Option<i32>,
    pub in_process: Option<bool>,
    pub processed: Option<bool>,
    pub attempts: Option<i32>,
    pub last_attempted_at: Option<PgTimestamp>,
    pub backoff_request_seconds: Option<i32>,
    /// `to_state` of the step's `most_recent` transition (None: no such row).
    pub state: Option<std::borrow::Cow<'static, str>>,
    /// `created_at` of that transition.
    pub state_since: Option<PgTimestamp>,
}

impl StepFacts {
    /// `state(s)`: the most_recent transition's `to_state`, or `pending`.
    pub fn current_state(&self) -> &str {
        self.state.as_deref().unwrap_or(state::PENDING)
    }

    /// `last_failure_at(s)`
    pub fn last_failure_at(&self) -> Option<PgTimestamp> {
        match self.state.as_deref() {
            Some(state::ERROR) => self.state_since,
            _ => None,
        }
    }

    pub fn attempts_or_zero(&self) -> i32 {
        self.attempts.unwrap_or(0)
    }

    pub fn retry_limit_or_default(&self) -> i32 {
        self.retry_limit.unwrap_or(3)
    }

    /// `COALESCE(attempts,0) < COALESCE(retry_limit,3)`
    pub fn retry_eligible(&self) -> bool {
        self.attempts_or_zero() < self.retry_limit_or_default()
    }

    /// The step's retries are used up (used by the "blocked" count of the execution context).
    pub fn retries_exhausted(&self) -> bool {
        !self.retry_eligible()
    }
}

/// Parent edges of a step: one per edge row (duplicates and cross-task parents count).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParentTally {
    pub total: i64,
    pub done: i64,
}

impl ParentTally {
    pub fn add(&mut self, parent_state: Option<&str>) {
        self.add_done(state::is_done(parent_state.unwrap_or(state::PENDING)));
    }

    /// Counts one parent edge whose parent is (or is not) done.
    pub fn add_done(&mut self, done: bool) {
        self.total += 1;
        if done {
            self.done += 1;
        }
    }

    pub fn satisfied(&self) -> bool {
        self.total == 0 || self.done == self.total
    }
}

/// Compares a stored local timestamp with the transaction's `now()`, the way PostgreSQL
/// compares `timestamp <= timestamptz`: the timestamp is read in the session's TimeZone.
pub trait Clock {
    /// `local::timestamptz <= now()`
    fn reached(&self, local: PgTimestamp) -> bool;
}

/// The computed columns of one readiness row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub dependencies_satisfied: bool,
    pub retry_eligible: bool,
    pub ready_for_execution: bool,
    pub last_failure_at: Option<PgTimestamp>,
    pub next_retry_at: Option<PgTimestamp>,
    pub total_parents: i32,
    pub completed_parents: i32,
}

fn explicit_backoff_end(step: &StepFacts) -> Result<Option<PgTimestamp>, TaskerError> {
    match (step.backoff_request_seconds, step.last_attempted_at) {
        (Some(seconds), Some(at)) => Ok(Some(pgtime::add_usecs(at, pgtime::request_backoff_usecs(seconds)?)?)),
        _ => Ok(None),
    }
}

fn failure_backoff_end(step: &StepFacts, failed_at: PgTimestamp) -> Result<PgTimestamp, TaskerError> {
    pgtime::add_usecs(failed_at, pgtime::failure_backoff_usecs(step.attempts)?)
}

fn to_int4(count: i64) -> Result<i32, TaskerError> {
    i32::try_from(count).map_err(|_| TaskerError::IntegerOutOfRange)
}

/// Evaluates one step. Errors are the ones the original SQL raises for the same row
/// (out-of-range backoff arithmetic); rule 8 is only evaluated when rules 1-7 hold,
/// as the original's `AND` chain does.
pub fn evaluate(step: &StepFacts, parents: ParentTally, clock: &impl Clock) -> Result<Readiness, TaskerError> {
    let last_failure_at = step.last_failure_at();
    let explicit_end = explicit_backoff_end(step)?;
    let next_retry_at = match (explicit_end, last_failure_at) {
        (Some(end), _) => Some(end),
        (None, Some(failed_at)) => Some(failure_backoff_end(step, failed_at)?),
        (None, None) => None,
    };
    let dependencies_satisfied = parents.satisfied();
    let retry_eligible = step.retry_eligible();

    let ready_for_execution = matches!(step.current_state(), state::PENDING | state::ERROR)
        && !step.processed.unwrap_or(false)
        && dependencies_satisfied
        && retry_eligible
        && step.retryable.unwrap_or(true)
        && !step.in_process.unwrap_or(false)
        && explicit_end.is_none_or(|end| clock.reached(end))
        && match last_failure_at {
            None => true,
            Some(failed_at) => clock.reached(failure_backoff_end(step, failed_at)?),
        };

    Ok(Readiness {
        dependencies_satisfied,
        retry_eligible,
        ready_for_execution,
        last_failure_at,
        next_retry_at,
        total_parents: to_int4(parents.total)?,
        completed_parents: to_int4(parents.done)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock at a fixed instant in UTC: local time == UTC.
    struct Fixed(PgTimestamp);
    impl Clock for Fixed {
        fn reached(&self, local: PgTimestamp) -> bool {
            local <= self.0
        }
    }

    const SEC: i64 = 1_000_000;
    const NOW: PgTimestamp = 800_000_000 * SEC;

    fn step() -> StepFacts {
        StepFacts {
            workflow_step_id: 1,
            task_id: 1,
            named_step_id: 1,
            retryable: Some(true),
            retry_limit: Some(3),
            in_process: Some(false),
            processed: Some(false),
            attempts: Some(0),
            last_attempted_at: None,
            backoff_request_seconds: None,
            state: None,
            state_since: None,
        }
    }

    fn ready(s: &StepFacts, parents: ParentTally) -> bool {
        evaluate(s, parents, &Fixed(NOW)).unwrap().ready_for_execution
    }

    #[test]
    fn fresh_step_without_parents_is_ready() {
        let r = evaluate(&step(), ParentTally::default(), &Fixed(NOW)).unwrap();
        assert!(r.ready_for_execution && r.dependencies_satisfied && r.retry_eligible);
        assert_eq!((r.total_parents, r.completed_parents), (0, 0));
        assert_eq!(r.next_retry_at, None);
    }

    #[test]
    fn only_pending_and_error_states_can_run() {
        for (st, expect) in [
            ("pending", true),
            ("error", true),
            ("in_progress", false),
            ("complete", false),
            ("cancelled", false),
            ("resolved_manually", false),
            ("bogus", false),
            ("", false),
            ("Pending", false),
        ] {
            let s = StepFacts { state: Some(st.into()), state_since: Some(0), ..step() };
            assert_eq!(ready(&s, ParentTally::default()), expect, "state {st:?}");
        }
    }

    #[test]
    fn parents_must_all_be_done() {
        let mut p = ParentTally::default();
        p.add(Some("complete"));
        p.add(Some("resolved_manually"));
        assert!(ready(&step(), p));
        p.add(None);
        assert!(!ready(&step(), p));
        assert_eq!((p.total, p.done), (3, 2));
    }

    #[test]
    fn flags_and_retries_block() {
        assert!(!ready(&StepFacts { processed: Some(true), ..step() }, ParentTally::default()));
        assert!(ready(&StepFacts { processed: None, ..step() }, ParentTally::default()));
        assert!(!ready(&StepFacts { in_process: Some(true), ..step() }, ParentTally::default()));
        assert!(!ready(&StepFacts { retryable: Some(false), ..step() }, ParentTally::default()));
        assert!(!ready(&StepFacts { attempts: Some(3), ..step() }, ParentTally::default()));
        assert!(ready(&StepFacts { attempts: None, retry_limit: None, ..step() }, ParentTally::default()));
        assert!(!ready(&StepFacts { attempts: Some(3), retry_limit: None, ..step() }, ParentTally::default()));
    }

    #[test]
    fn explicit_backoff_boundary_is_inclusive() {
        let at = |offset: i64| StepFacts {
            backoff_request_seconds: Some(10),
            last_attempted_at: Some(NOW - 10 * SEC + offset),
            ..step()
        };
        assert!(ready(&at(0), ParentTally::default()));
        assert!(!ready(&at(1), ParentTally::default()));
        let r = evaluate(&at(1), ParentTally::default(), &Fixed(NOW)).unwrap();
        assert_eq!(r.next_retry_at, Some(NOW + 1));
    }

    #[test]
    fn failure_backoff_uses_raw_attempts() {
        // NULL attempts: 2 s; 0 attempts: 1 s.
        let failed = |attempts, ago: i64| StepFacts {
            attempts,
            state: Some("error".into()),
            state_since: Some(NOW - ago),
            ..step()
        };
        assert!(ready(&failed(None, 2 * SEC), ParentTally::default()));
        assert!(!ready(&failed(None, 2 * SEC - 1), ParentTally::default()));
        assert!(ready(&failed(Some(0), SEC), ParentTally::default()));
        assert!(!ready(&failed(Some(0), SEC - 1), ParentTally::default()));
        let r = evaluate(&failed(Some(2), 0), ParentTally::default(), &Fixed(NOW)).unwrap();
        assert_eq!(r.last_failure_at, Some(NOW));
        assert_eq!(r.next_retry_at, Some(NOW + 4 * SEC));
    }

    #[test]
    fn explicit_backoff_wins_next_retry_at() {
        let s = StepFacts {
            backoff_request_seconds: Some(100),
            last_attempted_at: Some(NOW),
            state: Some("error".into()),
            state_since: Some(NOW),
            ..step()
        };
        let r = evaluate(&s, ParentTally::default(), &Fixed(NOW)).unwrap();
        assert_eq!(r.next_retry_at, Some(NOW + 100 * SEC));
        assert!(!r.ready_for_execution);
    }

    #[test]
    fn overflowing_failure_backoff_errors_only_when_evaluated() {
        let s = StepFacts {
            attempts: Some(50),
            retry_limit: Some(99),
            state: Some("error".into()),
            state_since: Some(NOW),
            ..step()
        };
        assert_eq!(evaluate(&s, ParentTally::default(), &Fixed(NOW)), Err(TaskerError::IntervalOutOfRange));
        // With an explicit backoff next_retry_at does not need it, and an earlier rule fails first.
        let s =
            StepFacts { backoff_request_seconds: Some(1), last_attempted_at: Some(NOW), processed: Some(true), ..s };
        assert!(!evaluate(&s, ParentTally::default(), &Fixed(NOW)).unwrap().ready_for_execution);
    }
}
