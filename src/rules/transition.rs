//! Compare-and-swap moves (orchestration.md B.5) and the claim of a ready step (A.5): what a
//! native writer does, decided from the owner's current state under its row lock. Expected
//! outcomes are values, never errors: a lost race is an answer, not a failure.

use crate::rules::state::{self, Machine};

/// The answer of a transition call (B.5), in the order the rules are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The owner row does not exist.
    NotFound,
    /// `to_state` is not a state, or the move is not in the machine's table.
    InvalidTransition,
    /// Already in `to_state`: nothing written (Rails' `safe_transition_to` returns false).
    AlreadyInState,
    /// `expected_from_state` was given and the current state is another (the CAS failed).
    StateMismatch,
    /// The move is legal but its guard refuses it (a parent not done, a step not done).
    GuardFailed,
    /// A writer that takes no lock wrote the owner's history first (a unique violation).
    Conflict,
    /// The rows were written.
    Transitioned,
}

impl Outcome {
    pub fn code(self) -> &'static str {
        match self {
            Outcome::NotFound => "not_found",
            Outcome::InvalidTransition => "invalid_transition",
            Outcome::AlreadyInState => "already_in_state",
            Outcome::StateMismatch => "state_mismatch",
            Outcome::GuardFailed => "guard_failed",
            Outcome::Conflict => "conflict",
            Outcome::Transitioned => "transitioned",
        }
    }
}

/// The current state for a write decision: the to_state of the highest sort_key, else pending.
pub fn current(latest: Option<&str>) -> &str {
    latest.unwrap_or(state::PENDING)
}

/// B.5 rules 3 to 6, before the guard: None when the move may go on to its guard.
/// `latest` is the to_state of the owner's highest-sort_key transition (None: no rows).
pub fn check(machine: Machine, latest: Option<&str>, to_state: &str, expected_from: Option<&str>) -> Option<Outcome> {
    if !state::ALL.contains(&to_state) {
        return Some(Outcome::InvalidTransition);
    }
    let cur = current(latest);
    if cur == to_state {
        return Some(Outcome::AlreadyInState);
    }
    if expected_from.is_some_and(|e| e != cur) {
        return Some(Outcome::StateMismatch);
    }
    if !machine.allows(latest, to_state) {
        return Some(Outcome::InvalidTransition);
    }
    None
}

/// Whether a move needs its guard read: a step starting, or a task completing.
pub fn guarded(machine: Machine, to_state: &str) -> bool {
    matches!((machine, to_state), (Machine::Step, state::IN_PROGRESS) | (Machine::Task, state::COMPLETE))
}

/// The guard of a guarded move, from the states of the step's parents or of the task's steps
/// (None: no transition row, i.e. pending): every one done.
pub fn guard_holds<'a>(states: impl IntoIterator<Item = Option<&'a str>>) -> bool {
    states.into_iter().all(|s| s.is_some_and(state::is_done))
}

/// How a ready step is claimed (A.5 rule 3), from its state re-read under the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// `pending`: one `in_progress` row.
    FromPending,
    /// `error`, with error steps included: `pending`, then `in_progress`.
    FromError,
    /// Anything else (claimed by someone else, cancelled, an error step not asked for).
    Skip,
}

pub fn claim(latest: Option<&str>, parents_done: bool, include_error_steps: bool) -> Claim {
    if !parents_done {
        return Claim::Skip;
    }
    match current(latest) {
        state::PENDING => Claim::FromPending,
        state::ERROR if include_error_steps => Claim::FromError,
        _ => Claim::Skip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::state::*;

    #[test]
    fn rules_in_order() {
        let m = Machine::Step;
        assert_eq!(check(m, None, "Complete", None), Some(Outcome::InvalidTransition));
        // Already there wins over a mismatching expectation (rule 4 before 5).
        assert_eq!(check(m, Some(IN_PROGRESS), IN_PROGRESS, Some(PENDING)), Some(Outcome::AlreadyInState));
        assert_eq!(check(m, None, PENDING, None), Some(Outcome::AlreadyInState));
        assert_eq!(check(m, Some(PENDING), IN_PROGRESS, Some(ERROR)), Some(Outcome::StateMismatch));
        // No rows is pending for the expectation too.
        assert_eq!(check(m, None, IN_PROGRESS, Some(PENDING)), None);
        assert_eq!(check(m, Some(PENDING), COMPLETE, None), Some(Outcome::InvalidTransition));
        assert_eq!(check(m, Some(PENDING), COMPLETE, Some(PENDING)), Some(Outcome::InvalidTransition));
        assert_eq!(check(m, Some(IN_PROGRESS), COMPLETE, Some(IN_PROGRESS)), None);
        assert_eq!(check(Machine::Task, Some(COMPLETE), CANCELLED, None), None);
        assert_eq!(check(Machine::Task, Some(CANCELLED), PENDING, None), Some(Outcome::InvalidTransition));
    }

    #[test]
    fn check_agrees_with_the_machine_for_every_pair() {
        for m in [Machine::Step, Machine::Task] {
            for from in std::iter::once(None).chain(ALL.iter().map(|s| Some(*s))) {
                for to in ALL {
                    let got = check(m, from, to, None);
                    let want = if current(from) == to {
                        Some(Outcome::AlreadyInState)
                    } else if m.allows(from, to) {
                        None
                    } else {
                        Some(Outcome::InvalidTransition)
                    };
                    assert_eq!(got, want, "{m:?} {from:?} -> {to}");
                }
            }
        }
    }

    #[test]
    fn guards() {
        assert!(guarded(Machine::Step, IN_PROGRESS));
        assert!(guarded(Machine::Task, COMPLETE));
        assert!(!guarded(Machine::Step, COMPLETE));
        assert!(!guarded(Machine::Task, IN_PROGRESS));
        assert!(guard_holds([]));
        assert!(guard_holds([Some(COMPLETE), Some(RESOLVED_MANUALLY)]));
        assert!(!guard_holds([Some(COMPLETE), None]));
        assert!(!guard_holds([Some(ERROR)]));
    }

    #[test]
    fn claims() {
        assert_eq!(claim(None, true, false), Claim::FromPending);
        assert_eq!(claim(Some(PENDING), true, false), Claim::FromPending);
        assert_eq!(claim(Some(PENDING), false, false), Claim::Skip);
        assert_eq!(claim(Some(ERROR), true, false), Claim::Skip);
        assert_eq!(claim(Some(ERROR), true, true), Claim::FromError);
        assert_eq!(claim(Some(ERROR), false, true), Claim::Skip);
        for s in [IN_PROGRESS, COMPLETE, CANCELLED, RESOLVED_MANUALLY] {
            assert_eq!(claim(Some(s), true, true), Claim::Skip, "{s}");
        }
        assert_eq!(Outcome::Transitioned.code(), "transitioned");
    }
}
