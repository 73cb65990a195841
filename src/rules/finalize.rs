//! TaskFinalizer's decision (orchestration.md C.2 to C.5), as a plan of task moves that the
//! writer tries in order, and the decision it reports once it knows which moves were made.
//!
//! The engine's two defects on this path are not reproduced (C.3): a task already `complete`
//! gets its flag set and reports `complete` (the engine raises an ArgumentError), and
//! `task.completed` is the caller's to publish only when the decision is `complete`.

use crate::rules::backoff::BackoffConfig;
use crate::rules::state;

/// One move the writer tries (a `transition_task` without expectation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    pub to: &'static str,
    /// Also `UPDATE tasker_tasks SET complete = true`, in the same all-or-nothing write.
    pub set_complete: bool,
    /// A refusal ends the plan (the complete path); otherwise the next move is still tried.
    pub required: bool,
}

impl Move {
    fn required(to: &'static str) -> Move {
        Move { to, set_complete: false, required: true }
    }
    fn optional(to: &'static str) -> Move {
        Move { to, set_complete: false, required: false }
    }
}

/// What the finalizer decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Complete,
    CompleteRefused,
    Error,
    Ready,
    Pending,
    Reenqueue,
    Noop,
}

impl Decision {
    pub fn code(self) -> &'static str {
        match self {
            Decision::Complete => "complete",
            Decision::CompleteRefused => "complete_refused",
            Decision::Error => "error",
            Decision::Ready => "ready",
            Decision::Pending => "pending",
            Decision::Reenqueue => "reenqueue",
            Decision::Noop => "noop",
        }
    }
}

/// The plan for one finalization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub moves: Vec<Move>,
    /// Set `complete = true` without a move (the task is already `complete`).
    pub set_complete_only: bool,
    /// The decision when every required move was made (and, for a path whose single move is
    /// its point, that move was made too).
    pub decision: Decision,
    /// The decision otherwise.
    pub fallback: Decision,
    /// The engine's reason constant (TaskFinalization::PendingReasons / ReenqueueReasons), or
    /// its error message for the error path.
    pub reason: Option<&'static str>,
    /// Seconds until the caller runs the task again (reenqueue only; 0 = now).
    pub delay_seconds: Option<i64>,
}

impl Plan {
    /// The decision, given for each move of `moves` whether it was made.
    pub fn outcome(&self, made: &[bool]) -> Decision {
        let all_required =
            self.moves.iter().zip(made).all(|(m, &ok)| ok || !m.required) && made.len() == self.moves.len();
        let point_made = match self.decision {
            // The error and pending paths are their one move: not made, nothing happened.
            Decision::Error | Decision::Pending => made.first().copied().unwrap_or(false),
            _ => true,
        };
        if all_required && point_made {
            self.decision
        } else {
            self.fallback
        }
    }
}

/// The finalizer's plan for a task whose context says `execution_status` and whose current
/// state (highest sort_key; None: no transition) is `task_state`. `retry_waits` as in
/// `BackoffConfig::reenqueue_delay`.
pub fn plan(
    execution_status: &str,
    task_state: Option<&str>,
    synchronous: bool,
    config: &BackoffConfig,
    retry_waits: &[i64],
) -> Plan {
    let cur = task_state.unwrap_or(state::PENDING);
    let simple = |decision, fallback, moves, reason| Plan {
        moves,
        set_complete_only: false,
        decision,
        fallback,
        reason,
        delay_seconds: None,
    };
    match execution_status {
        "all_complete" => complete_path(cur),
        "blocked_by_failures" => {
            simple(Decision::Error, Decision::Noop, vec![Move::required(state::ERROR)], Some("steps_in_error_state"))
        }
        "has_ready_steps" => {
            let mut moves = Vec::new();
            if cur != state::IN_PROGRESS && cur != state::COMPLETE {
                moves.push(Move::optional(state::IN_PROGRESS));
            }
            if synchronous {
                simple(Decision::Ready, Decision::Ready, moves, Some("ready_for_processing"))
            } else {
                reenqueue(moves, execution_status, "ready_steps_available", config, retry_waits)
            }
        }
        "waiting_for_dependencies" if synchronous => simple(
            Decision::Pending,
            Decision::Noop,
            vec![Move::required(state::PENDING)],
            Some("waiting_for_dependencies"),
        ),
        "waiting_for_dependencies" => {
            reenqueue(Vec::new(), execution_status, "awaiting_dependencies", config, retry_waits)
        }
        "processing" if synchronous => simple(
            Decision::Pending,
            Decision::Noop,
            vec![Move::required(state::PENDING)],
            Some("waiting_for_step_completion"),
        ),
        "processing" => reenqueue(Vec::new(), execution_status, "steps_in_progress", config, retry_waits),
        // Unreachable with the context function's five statuses (UnclearStateHandler).
        _ => reenqueue(Vec::new(), execution_status, "continuing_workflow", config, retry_waits),
    }
}

/// `TaskFinalizer#complete_task` (C.3) by the task's current state.
fn complete_path(cur: &str) -> Plan {
    let finish = Move { to: state::COMPLETE, set_complete: true, required: true };
    let (moves, set_complete_only) = match cur {
        state::COMPLETE => (Vec::new(), true),
        state::ERROR => (vec![Move::required(state::PENDING), Move::required(state::IN_PROGRESS), finish], false),
        state::IN_PROGRESS => (vec![finish], false),
        // pending; cancelled and resolved_manually are refused the move to in_progress.
        _ => (vec![Move::required(state::IN_PROGRESS), finish], false),
    };
    Plan {
        moves,
        set_complete_only,
        decision: Decision::Complete,
        fallback: Decision::CompleteRefused,
        reason: None,
        delay_seconds: None,
    }
}

/// `ReenqueueManager.reenqueue_with_context` (C.5): a delay of 0 moves the task to `pending`
/// first (`TaskReenqueuer#reenqueue_task`); a positive one leaves its state alone.
fn reenqueue(
    mut moves: Vec<Move>,
    execution_status: &str,
    reason: &'static str,
    config: &BackoffConfig,
    retry_waits: &[i64],
) -> Plan {
    let delay = config.reenqueue_delay(Some(execution_status), retry_waits);
    if delay <= 0 {
        moves.push(Move::optional(state::PENDING));
    }
    Plan {
        moves,
        set_complete_only: false,
        decision: Decision::Reenqueue,
        fallback: Decision::Reenqueue,
        reason: Some(reason),
        delay_seconds: Some(delay.max(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::state::*;

    fn tos(p: &Plan) -> Vec<&'static str> {
        p.moves.iter().map(|m| m.to).collect()
    }

    #[test]
    fn complete_path_by_state() {
        let c = BackoffConfig::default();
        let p = plan("all_complete", Some(ERROR), true, &c, &[]);
        assert_eq!(tos(&p), [PENDING, IN_PROGRESS, COMPLETE]);
        assert!(p.moves[2].set_complete && !p.moves[0].set_complete);
        assert_eq!(p.outcome(&[true, true, true]), Decision::Complete);
        assert_eq!(p.outcome(&[true, true, false]), Decision::CompleteRefused);
        assert_eq!(p.outcome(&[false]), Decision::CompleteRefused);
        assert_eq!(tos(&plan("all_complete", None, true, &c, &[])), [IN_PROGRESS, COMPLETE]);
        assert_eq!(tos(&plan("all_complete", Some(PENDING), false, &c, &[])), [IN_PROGRESS, COMPLETE]);
        assert_eq!(tos(&plan("all_complete", Some(IN_PROGRESS), true, &c, &[])), [COMPLETE]);
        let done = plan("all_complete", Some(COMPLETE), true, &c, &[]);
        assert!(done.moves.is_empty() && done.set_complete_only);
        assert_eq!(done.outcome(&[]), Decision::Complete);
        let cancelled = plan("all_complete", Some(CANCELLED), true, &c, &[]);
        assert_eq!(cancelled.outcome(&[false]), Decision::CompleteRefused);
    }

    #[test]
    fn error_and_pending_paths() {
        let c = BackoffConfig::default();
        let e = plan("blocked_by_failures", Some(IN_PROGRESS), true, &c, &[]);
        assert_eq!(tos(&e), [ERROR]);
        assert_eq!(e.reason, Some("steps_in_error_state"));
        assert_eq!(e.outcome(&[true]), Decision::Error);
        assert_eq!(e.outcome(&[false]), Decision::Noop);
        let w = plan("waiting_for_dependencies", Some(IN_PROGRESS), true, &c, &[5]);
        assert_eq!((tos(&w), w.reason, w.delay_seconds), (vec![PENDING], Some("waiting_for_dependencies"), None));
        assert_eq!(w.outcome(&[false]), Decision::Noop);
        let p = plan("processing", Some(IN_PROGRESS), true, &c, &[]);
        assert_eq!((p.reason, p.outcome(&[true])), (Some("waiting_for_step_completion"), Decision::Pending));
    }

    #[test]
    fn ready_steps() {
        let c = BackoffConfig::default();
        let s = plan("has_ready_steps", Some(PENDING), true, &c, &[]);
        assert_eq!((tos(&s), s.outcome(&[false])), (vec![IN_PROGRESS], Decision::Ready));
        assert!(plan("has_ready_steps", Some(IN_PROGRESS), true, &c, &[]).moves.is_empty());
        assert!(plan("has_ready_steps", Some(COMPLETE), true, &c, &[]).moves.is_empty());
        // Asynchronous: delay 0, so in_progress then pending (the engine's two rows).
        let a = plan("has_ready_steps", Some(PENDING), false, &c, &[]);
        assert_eq!(
            (tos(&a), a.delay_seconds, a.reason),
            (vec![IN_PROGRESS, PENDING], Some(0), Some("ready_steps_available"))
        );
        assert_eq!(a.outcome(&[true, false]), Decision::Reenqueue);
        // A configured positive delay leaves the state alone after the start.
        let slow = BackoffConfig {
            reenqueue_delays: crate::rules::backoff::ReenqueueDelays { has_ready_steps: 2, ..Default::default() },
            ..c.clone()
        };
        assert_eq!(tos(&plan("has_ready_steps", Some(PENDING), false, &slow, &[])), [IN_PROGRESS]);
    }

    #[test]
    fn asynchronous_waits() {
        let c = BackoffConfig::default();
        let w = plan("waiting_for_dependencies", Some(IN_PROGRESS), false, &c, &[12]);
        assert_eq!((tos(&w).len(), w.delay_seconds, w.reason), (0, Some(17), Some("awaiting_dependencies")));
        assert_eq!(plan("waiting_for_dependencies", Some(IN_PROGRESS), false, &c, &[]).delay_seconds, Some(45));
        let p = plan("processing", Some(IN_PROGRESS), false, &c, &[]);
        assert_eq!((p.delay_seconds, p.reason), (Some(10), Some("steps_in_progress")));
        let u = plan("something_new", Some(IN_PROGRESS), true, &c, &[]);
        assert_eq!(
            (u.decision, u.delay_seconds, u.reason),
            (Decision::Reenqueue, Some(30), Some("continuing_workflow"))
        );
    }
}
