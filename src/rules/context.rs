//! "What should this task do next": the tallies and decision ladders of
//! `get_task_execution_context` (functions.md).

use crate::rules::state;

/// Per-task step counts, accumulated one readiness row at a time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskTally {
    pub total: i64,
    pub pending: i64,
    pub in_progress: i64,
    pub completed: i64,
    pub failed: i64,
    pub ready: i64,
    /// In `error` with (COALESCE'd) attempts >= (COALESCE'd) retry_limit.
    pub blocked: i64,
}

impl TaskTally {
    pub fn add(&mut self, current_state: &str, ready: bool, retries_exhausted: bool) {
        self.total += 1;
        match current_state {
            state::PENDING => self.pending += 1,
            state::IN_PROGRESS => self.in_progress += 1,
            s if state::is_done(s) => self.completed += 1,
            state::ERROR => {
                self.failed += 1;
                if retries_exhausted {
                    self.blocked += 1;
                }
            }
            _ => {}
        }
        if ready {
            self.ready += 1;
        }
    }

    /// Adds the counts of `other` (tallies of two runs of the same task's steps).
    pub fn merge(&mut self, other: &TaskTally) {
        self.total += other.total;
        self.pending += other.pending;
        self.in_progress += other.in_progress;
        self.completed += other.completed;
        self.failed += other.failed;
        self.ready += other.ready;
        self.blocked += other.blocked;
    }

    /// Index into the shared ladder of execution_status / recommended_action.
    fn rung(&self) -> usize {
        if self.ready > 0 {
            0
        } else if self.in_progress > 0 {
            1
        } else if self.blocked > 0 {
            2
        } else if self.completed == self.total && self.total > 0 {
            3
        } else {
            4
        }
    }

    pub fn execution_status(&self) -> &'static str {
        ["has_ready_steps", "processing", "blocked_by_failures", "all_complete", "waiting_for_dependencies"]
            [self.rung()]
    }

    pub fn recommended_action(&self) -> &'static str {
        ["execute_ready_steps", "wait_for_completion", "handle_failures", "finalize_task", "wait_for_dependencies"]
            [self.rung()]
    }

    pub fn health_status(&self) -> &'static str {
        if self.failed == 0 {
            "healthy"
        } else if self.ready > 0 {
            "recovering"
        } else if self.blocked > 0 {
            "blocked"
        } else {
            // failed > 0, blocked = 0, ready = 0
            "recovering"
        }
    }

    /// `ROUND(completed::numeric / total::numeric * 100, 2)` as numeric text, or `0.0` for
    /// a task without steps. Exact: rounds half away from zero on the exact quotient.
    pub fn completion_percentage(&self) -> String {
        if self.total == 0 {
            return "0.0".to_string();
        }
        let (c, t) = (i128::from(self.completed), i128::from(self.total));
        let hundredths = (c * 10_000 * 2 + t) / (2 * t); // round half up, c >= 0
        format!("{}.{:02}", hundredths / 100, hundredths % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(rows: &[(&str, bool, bool)]) -> TaskTally {
        let mut t = TaskTally::default();
        for &(s, r, e) in rows {
            t.add(s, r, e);
        }
        t
    }

    #[test]
    fn merged_runs_equal_one_tally() {
        let rows = [
            ("pending", true, false),
            ("complete", false, false),
            ("error", false, true),
            ("error", false, false),
            ("in_progress", false, false),
            ("resolved_manually", false, false),
        ];
        for split in 0..=rows.len() {
            let mut merged = tally(&rows[..split]);
            merged.merge(&tally(&rows[split..]));
            assert_eq!(merged, tally(&rows), "split at {split}");
        }
    }

    #[test]
    fn empty_task() {
        let t = TaskTally::default();
        assert_eq!(t.execution_status(), "waiting_for_dependencies");
        assert_eq!(t.recommended_action(), "wait_for_dependencies");
        assert_eq!(t.health_status(), "healthy");
        assert_eq!(t.completion_percentage(), "0.0");
    }

    #[test]
    fn ladder_order() {
        let t = tally(&[("pending", true, false), ("in_progress", false, false)]);
        assert_eq!((t.execution_status(), t.recommended_action()), ("has_ready_steps", "execute_ready_steps"));
        let t = tally(&[("in_progress", false, false), ("error", false, true)]);
        assert_eq!((t.execution_status(), t.health_status()), ("processing", "blocked"));
        let t = tally(&[("error", false, true), ("complete", false, false)]);
        assert_eq!((t.execution_status(), t.recommended_action()), ("blocked_by_failures", "handle_failures"));
        let t = tally(&[("complete", false, false), ("resolved_manually", false, false)]);
        assert_eq!((t.execution_status(), t.recommended_action()), ("all_complete", "finalize_task"));
        assert_eq!(t.completion_percentage(), "100.00");
    }

    #[test]
    fn non_retryable_error_within_limit_waits_forever() {
        // retryable = false, attempts < limit: failed but neither ready nor blocked.
        let t = tally(&[("error", false, false)]);
        assert_eq!(t.execution_status(), "waiting_for_dependencies");
        assert_eq!(t.health_status(), "recovering");
    }

    #[test]
    fn unknown_states_count_only_in_total() {
        let t = tally(&[("bogus", false, false), ("complete", false, false)]);
        assert_eq!((t.total, t.pending, t.completed), (2, 0, 1));
        assert_eq!(t.completion_percentage(), "50.00");
    }

    #[test]
    fn percentage_rounds_half_away_from_zero() {
        let pct = |c, t| TaskTally { completed: c, total: t, ..Default::default() }.completion_percentage();
        assert_eq!(pct(1, 3), "33.33");
        assert_eq!(pct(2, 3), "66.67");
        assert_eq!(pct(1, 8), "12.50");
        assert_eq!(pct(1, 800), "0.13"); // 0.125 -> 0.13
        assert_eq!(pct(0, 7), "0.00");
        assert_eq!(pct(1, 1), "100.00");
    }
}
