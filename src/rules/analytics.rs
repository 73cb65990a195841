//! The counts behind `get_analytics_metrics_v01` (orchestration.md F.2), folded from one row
//! per task and one per step with its current state. Rails' query joins tasks, steps and the
//! steps' `most_recent` transitions; with at most one such transition per step (what Rails'
//! unique index on `(workflow_step_id, most_recent) WHERE most_recent` guarantees) its numbers
//! are these:
//! - active tasks: tasks with a step whose current state is not complete, error, skipped or
//!   resolved_manually (any other text counts, cancelled and unknown states included; a step
//!   with no transition does not);
//! - recent tasks (created within the last hour) with a complete step, with an error step;
//! - period tasks (created after the start): how many, with a complete step, with an error
//!   step, how many steps, and the sums and counts for the two average durations, over the
//!   period tasks' complete steps: (the complete transition's time - the task's creation) and
//!   (that time - the step's creation), in microseconds.
//!
//! The rounding and the rates are left to PostgreSQL's numeric (pg::analytics), so the numbers
//! are Rails' to the digit.

use crate::rules::idhash::{IdMap, IdSet};
/// A task as the metrics need it; the time comparisons are PostgreSQL's (session TimeZone).
#[derive(Clone, Copy, Debug)]
pub struct TaskFact {
    pub task_id: i64,
    /// `created_at` in microseconds.
    pub created_at: i64,
    /// `created_at > start`.
    pub in_period: bool,
    /// `created_at > now() - 1 hour`.
    pub in_last_hour: bool,
}

/// What a step's current state (the `to_state` of its most_recent transition) counts as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepKind {
    /// No transition: counts nowhere (Rails' inner join).
    None,
    Complete,
    Error,
    /// skipped or resolved_manually.
    Settled,
    /// Any other text: pending, in_progress, cancelled, unknown states.
    Active,
}

impl StepKind {
    pub fn of(state: Option<&[u8]>) -> StepKind {
        match state {
            None => StepKind::None,
            Some(b"complete") => StepKind::Complete,
            Some(b"error") => StepKind::Error,
            Some(b"skipped" | b"resolved_manually") => StepKind::Settled,
            Some(_) => StepKind::Active,
        }
    }
}

/// A step whose task exists, with what its current state counts as and that state's time
/// (the transition's `created_at`, microseconds).
#[derive(Clone, Copy, Debug)]
pub struct StepState {
    pub workflow_step_id: i64,
    pub task_id: i64,
    pub kind: StepKind,
    pub since: Option<i64>,
}

/// A step of a period task: its creation time (microseconds).
#[derive(Clone, Copy, Debug)]
pub struct PeriodStep {
    pub workflow_step_id: i64,
    pub task_id: i64,
    pub created_at: i64,
}

/// What the metrics read besides the steps' states.
#[derive(Default, Debug, Clone)]
pub struct Facts {
    /// Every task of the period or the last hour.
    pub tasks: Vec<TaskFact>,
    pub period_steps: Vec<PeriodStep>,
    pub namespaces: i64,
    pub task_types: i64,
}

#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    pub active_tasks: i64,
    pub recent_completed: i64,
    pub recent_errors: i64,
    pub throughput: i64,
    pub completions: i64,
    pub errors: i64,
    pub step_count: i64,
    /// Sum (microseconds) and count of (complete transition - task creation).
    pub task_us: i128,
    pub task_n: i64,
    /// Sum (microseconds) and count of (complete transition - step creation).
    pub step_us: i128,
    pub step_n: i64,
}

/// How the active tasks are counted.
#[derive(Clone, Copy, Debug)]
pub enum Active<'a> {
    /// The tasks of the steps folded that have an active step (the steps are those of every
    /// task that exists).
    Seen,
    /// As `Seen`, of the tasks in the set only (the tasks that exist).
    SeenIn(&'a IdSet<i64>),
    /// Counted elsewhere.
    Counted(i64),
}

/// The metrics folded one step at a time: `tasks` is at least every task of the period or the
/// last hour; every step of those tasks is handed to `step` (a step with no transition may be
/// left out) or, with its creation time, to `step_created`; then `finish` takes the period's
/// steps that `step` did not count (each step of a period task once in all).
pub struct Fold<'a> {
    tasks: &'a [TaskFact],
    by_id: IdMap<i64, TaskFact>,
    active: IdSet<i64>,
    complete: IdSet<i64>,
    error: IdSet<i64>,
    /// Complete transitions of the period tasks' steps: step -> time.
    completed_at: IdMap<i64, i64>,
    m: Metrics,
}

impl<'a> Fold<'a> {
    pub fn new(tasks: &'a [TaskFact]) -> Fold<'a> {
        Fold {
            tasks,
            by_id: tasks.iter().map(|t| (t.task_id, *t)).collect(),
            active: IdSet::default(),
            complete: IdSet::default(),
            error: IdSet::default(),
            completed_at: IdMap::default(),
            m: Metrics::default(),
        }
    }

    fn state(&mut self, s: &StepState) {
        match s.kind {
            StepKind::None | StepKind::Settled => {}
            StepKind::Active => {
                self.active.insert(s.task_id);
            }
            StepKind::Error => {
                self.error.insert(s.task_id);
            }
            StepKind::Complete => {
                self.complete.insert(s.task_id);
            }
        }
    }

    /// A step and its current state.
    pub fn step(&mut self, s: StepState) {
        self.state(&s);
        if let (StepKind::Complete, Some(at), Some(true)) =
            (s.kind, s.since, self.by_id.get(&s.task_id).map(|t| t.in_period))
        {
            self.completed_at.insert(s.workflow_step_id, at);
        }
    }

    /// A step, its current state and its creation time: also one of the period's steps when its
    /// task is a period task.
    pub fn step_created(&mut self, s: StepState, created_at: i64) {
        self.state(&s);
        let Some(task) = self.by_id.get(&s.task_id).filter(|t| t.in_period) else {
            return;
        };
        let task_created = task.created_at;
        self.m.step_count += 1;
        if let (StepKind::Complete, Some(at)) = (s.kind, s.since) {
            self.add_durations(at, task_created, created_at);
        }
    }

    fn add_durations(&mut self, at: i64, task_created: i64, step_created: i64) {
        self.m.task_us += i128::from(at) - i128::from(task_created);
        self.m.task_n += 1;
        self.m.step_us += i128::from(at) - i128::from(step_created);
        self.m.step_n += 1;
    }

    /// The metrics, with the period's steps `step` was handed without their creation time.
    pub fn finish(mut self, period_steps: &[PeriodStep], active: Active<'_>) -> Metrics {
        for s in period_steps {
            self.m.step_count += 1;
            let (Some(&at), Some(task)) = (self.completed_at.get(&s.workflow_step_id), self.by_id.get(&s.task_id))
            else {
                continue;
            };
            let task_created = task.created_at;
            self.add_durations(at, task_created, s.created_at);
        }
        let mut m = self.m;
        m.active_tasks = match active {
            Active::Seen => self.active.len() as i64,
            Active::SeenIn(exist) => self.active.iter().filter(|t| exist.contains(t)).count() as i64,
            Active::Counted(n) => n,
        };
        for t in self.tasks {
            if t.in_last_hour {
                m.recent_completed += i64::from(self.complete.contains(&t.task_id));
                m.recent_errors += i64::from(self.error.contains(&t.task_id));
            }
            if t.in_period {
                m.throughput += 1;
                m.completions += i64::from(self.complete.contains(&t.task_id));
                m.errors += i64::from(self.error.contains(&t.task_id));
            }
        }
        m
    }
}

/// Folds the metrics from `steps` (every step whose task exists; a step with no transition may
/// be left out) and `period_steps` (every step of a period task).
pub fn fold(tasks: &[TaskFact], steps: impl IntoIterator<Item = StepState>, period_steps: &[PeriodStep]) -> Metrics {
    let mut f = Fold::new(tasks);
    for s in steps {
        f.step(s);
    }
    f.finish(period_steps, Active::Seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(task_id: i64, created_at: i64, in_period: bool, in_last_hour: bool) -> TaskFact {
        TaskFact { task_id, created_at, in_period, in_last_hour }
    }

    fn step(workflow_step_id: i64, task_id: i64, state: Option<&'static str>, since: i64) -> StepState {
        StepState { workflow_step_id, task_id, kind: StepKind::of(state.map(str::as_bytes)), since: Some(since) }
    }

    #[test]
    fn worked_by_hand() {
        // Task 1 (old): a pending step and a cancelled one: active. Task 2 (period and last
        // hour, created at 100): complete at 400 (created 150) and error. Task 3 (period,
        // created at 1000): complete at 1600 (created 1100), and a step with no transition.
        // Task 4 (period) has no steps.
        let tasks =
            [task(1, 0, false, false), task(2, 100, true, true), task(3, 1000, true, false), task(4, 5, true, true)];
        let steps = [
            step(10, 1, Some("pending"), 1),
            step(11, 1, Some("cancelled"), 1),
            step(20, 2, Some("complete"), 400),
            step(21, 2, Some("error"), 500),
            step(30, 3, Some("complete"), 1600),
            step(31, 3, None, 0),
        ];
        let period = [
            PeriodStep { workflow_step_id: 20, task_id: 2, created_at: 150 },
            PeriodStep { workflow_step_id: 21, task_id: 2, created_at: 150 },
            PeriodStep { workflow_step_id: 30, task_id: 3, created_at: 1100 },
            PeriodStep { workflow_step_id: 31, task_id: 3, created_at: 1100 },
        ];
        let m = fold(&tasks, steps, &period);
        assert_eq!(
            m,
            Metrics {
                active_tasks: 1,
                recent_completed: 1,
                recent_errors: 1,
                throughput: 3,
                completions: 2,
                errors: 1,
                step_count: 4,
                task_us: (400 - 100) + (1600 - 1000),
                task_n: 2,
                step_us: (400 - 150) + (1600 - 1100),
                step_n: 2,
            }
        );
    }

    proptest::proptest! {
        /// Handing each step with its creation time (as the step state holds them) gives the
        /// numbers of handing the states and the period's steps apart (as SQL reads them), and
        /// counting the active tasks among those that exist gives those of their steps alone.
        #[test]
        fn step_created_equals_the_separate_reads(
            tasks in proptest::collection::vec((0i64..1000, proptest::bool::ANY, proptest::bool::ANY), 0..12),
            steps in proptest::collection::vec((0i64..14, 0usize..6, 0i64..5000, 0i64..1000), 0..60),
            exist in proptest::collection::vec(0i64..14, 0..14),
        ) {
            let tasks: Vec<TaskFact> = tasks.iter().enumerate()
                .map(|(i, &(c, p, h))| task(i as i64, c, p, h)).collect();
            let states = [None, Some("pending"), Some("complete"), Some("error"), Some("skipped"), Some("cancelled")];
            let steps: Vec<(StepState, i64)> = steps.iter().enumerate()
                .map(|(i, &(t, k, since, created))| (step(i as i64, t, states[k], since), created)).collect();
            let period: Vec<PeriodStep> = steps.iter()
                .filter(|(s, _)| tasks.iter().any(|t| t.task_id == s.task_id && t.in_period))
                .map(|(s, c)| PeriodStep { workflow_step_id: s.workflow_step_id, task_id: s.task_id, created_at: *c })
                .collect();
            let apart = fold(&tasks, steps.iter().map(|(s, _)| *s), &period);
            let mut f = Fold::new(&tasks);
            for (s, c) in &steps {
                f.step_created(*s, *c);
            }
            proptest::prop_assert_eq!(f.finish(&[], Active::Seen), apart);
            let exist: IdSet<i64> = exist.into_iter().collect();
            let among = fold(&tasks, steps.iter().map(|(s, _)| *s).filter(|s| exist.contains(&s.task_id)), &[]);
            let mut f = Fold::new(&tasks);
            for (s, _) in &steps {
                f.step(*s);
            }
            proptest::prop_assert_eq!(f.finish(&[], Active::SeenIn(&exist)).active_tasks, among.active_tasks);
        }
    }

    #[test]
    fn settled_states_are_not_active_and_unknown_ones_are() {
        let tasks = [];
        let m = fold(
            &tasks,
            [step(1, 1, Some("resolved_manually"), 0), step(2, 2, Some("skipped"), 0), step(3, 3, Some("Complete"), 0)],
            &[],
        );
        assert_eq!(m.active_tasks, 1);
    }
}
