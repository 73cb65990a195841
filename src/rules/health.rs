//! `get_system_health_counts_v01`: whole-database counts by most_recent state.
//! Here attempts and retry_limit are compared RAW: a NULL on either side counts nowhere.

use crate::rules::state;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HealthCounts {
    pub total_tasks: i64,
    pub pending_tasks: i64,
    pub in_progress_tasks: i64,
    pub complete_tasks: i64,
    pub error_tasks: i64,
    pub cancelled_tasks: i64,
    pub total_steps: i64,
    pub pending_steps: i64,
    pub in_progress_steps: i64,
    pub complete_steps: i64,
    pub error_steps: i64,
    pub retryable_error_steps: i64,
    pub exhausted_retry_steps: i64,
    pub in_backoff_steps: i64,
}

impl HealthCounts {
    /// `n` tasks with this most_recent `to_state` (None: no transition row, counted only in
    /// the total).
    pub fn add_tasks(&mut self, most_recent: Option<&str>, n: i64) {
        self.total_tasks += n;
        match most_recent {
            Some(state::PENDING) => self.pending_tasks += n,
            Some(state::IN_PROGRESS) => self.in_progress_tasks += n,
            Some(state::COMPLETE) => self.complete_tasks += n,
            Some(state::ERROR) => self.error_tasks += n,
            Some(state::CANCELLED) => self.cancelled_tasks += n,
            _ => {}
        }
    }

    /// `n` steps with this most_recent `to_state` and these retry columns.
    pub fn add_steps(
        &mut self,
        most_recent: Option<&str>,
        attempts: Option<i32>,
        retry_limit: Option<i32>,
        retryable: Option<bool>,
        has_last_attempt: bool,
        n: i64,
    ) {
        self.total_steps += n;
        match most_recent {
            Some(state::PENDING) => self.pending_steps += n,
            Some(state::IN_PROGRESS) => self.in_progress_steps += n,
            Some(state::COMPLETE) => self.complete_steps += n,
            Some(state::ERROR) => {
                self.error_steps += n;
                if let (Some(a), Some(l)) = (attempts, retry_limit) {
                    if a < l && retryable.unwrap_or(true) {
                        self.retryable_error_steps += n;
                        if has_last_attempt {
                            self.in_backoff_steps += n;
                        }
                    }
                    if a >= l {
                        self.exhausted_retry_steps += n;
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_without_transitions_only_count_in_total() {
        let mut h = HealthCounts::default();
        h.add_tasks(None, 1);
        h.add_tasks(Some("pending"), 1);
        h.add_tasks(Some("resolved_manually"), 1);
        assert_eq!((h.total_tasks, h.pending_tasks, h.complete_tasks), (3, 1, 0));
    }

    #[test]
    fn raw_comparisons_skip_nulls() {
        let mut h = HealthCounts::default();
        h.add_steps(Some("error"), None, Some(3), None, true, 1);
        h.add_steps(Some("error"), Some(1), None, None, true, 1);
        assert_eq!((h.error_steps, h.retryable_error_steps, h.exhausted_retry_steps), (2, 0, 0));
        h.add_steps(Some("error"), Some(1), Some(3), Some(true), true, 1);
        h.add_steps(Some("error"), Some(1), Some(3), Some(false), true, 1);
        h.add_steps(Some("error"), Some(3), Some(3), Some(true), false, 1);
        assert_eq!((h.retryable_error_steps, h.in_backoff_steps, h.exhausted_retry_steps), (1, 1, 1));
        h.add_steps(None, None, None, None, false, 4);
        assert_eq!((h.total_steps, h.pending_steps), (9, 0));
    }
}
