//! The analytics functions (orchestration.md F): the counts behind `get_analytics_metrics_v01`
//! (rules::analytics), read from the step state when pg::paths allows it, and otherwise with SQL
//! over the Tasker tables. From the step state: the steps of the period's and the last hour's
//! tasks by index, and the active tasks from the index of unsettled steps
//! (`step_state_unsettled`); or, when those tasks are many (`tasker_core.batch_scan`), one pass
//! over all of it instead of Rails' joins over every step's transitions. `read_path_stats()`
//! names the three ways `step_state`, `step_state_scan` and `sql`.
//! sql/analytics.sql turns the counts into Rails' row (its rounding and rates, in numeric), and
//! holds `get_slowest_steps_v01` and `get_slowest_tasks_v01`, which are plain SQL.
//!
//! Like the read functions, these find the Tasker tables through the caller's search_path
//! (docs/security.md), qualify every function and operator, and read with the caller's rights
//! (a superuser's reads run as the tables' owner, sandboxed: pg::sql_read).

use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::pg::paths::{self, ReadFn};
use crate::pg::report::OrRaise;
use crate::pg::sql_read;
use crate::pg::step_state::read;
use crate::rules::analytics::{fold, Active, Fold, Metrics, StepKind, StepState};
use crate::rules::idhash::IdSet;

/// The counts of `get_analytics_metrics_v01` for the period after `start`: the tasks with a
/// step in an unsettled state, the named tasks' namespaces and names, the tasks of the last
/// hour with a complete / an error step, the period's tasks, those with a complete / an error
/// step, their steps, and the sums (microseconds, as text) and counts of the two durations.
#[pg_extern(stable, parallel_safe)]
#[allow(clippy::type_complexity)]
fn analytics_counts(
    start: TimestampWithTimeZone,
) -> TableIterator<
    'static,
    (
        name!(active_tasks, i64),
        name!(namespaces, i64),
        name!(task_types, i64),
        name!(recent_completed, i64),
        name!(recent_errors, i64),
        name!(throughput, i64),
        name!(completions, i64),
        name!(errors, i64),
        name!(step_count, i64),
        name!(task_us, String),
        name!(task_n, i64),
        name!(step_us, String),
        name!(step_n, i64),
    ),
> {
    let start = pg_sys::TimestampTz::from(start);
    let mut site = paths::Site::default();
    // SAFETY: CurrentMemoryContext is the call's; the site's lookups live as long as `site`.
    let context = unsafe { pg_sys::CurrentMemoryContext };
    let choice = paths::choose(&mut site, context).or_raise();
    let facts = sql_read::analytics_facts(&choice.tables, start, choice.step_state.is_none());
    let m: Metrics = match choice.step_state {
        Some(layout) => {
            // The tasks the period and the last hour need the steps of, ascending.
            let mut wanted: Vec<i64> =
                facts.tasks.iter().filter(|t| t.in_period || t.in_last_hour).map(|t| t.task_id).collect();
            wanted.sort_unstable();
            wanted.dedup();
            let mut f = Fold::new(&facts.tasks);
            let mut step = |r: &read::StateRow<'_>| {
                let Some(workflow_step_id) = r.step else { return };
                let s = StepState { workflow_step_id, task_id: r.task, kind: StepKind::of(r.state), since: r.since };
                match r.step_created_at {
                    Some(created_at) => f.step_created(s, created_at),
                    // Not one of the period's steps, as a step with no creation time is not in SQL.
                    None => f.step(s),
                }
            };
            if read::analytics_reads_all(&layout, wanted.len()) {
                // One pass: every step, and the task rows (the tasks that exist: Rails' inner join).
                paths::count(ReadFn::Analytics, "step_state_scan");
                let mut tasks = IdSet::default();
                read::current_states(&layout, |r| match r.step {
                    Some(_) => step(r),
                    None => {
                        tasks.insert(r.task);
                    }
                })
                .or_raise();
                f.finish(&[], Active::SeenIn(&tasks))
            } else {
                // The wanted tasks' steps by index; the active tasks from the unsettled steps' index.
                paths::count(ReadFn::Analytics, "step_state");
                read::states_of_tasks(&layout, &wanted, step).or_raise();
                let active = read::active_tasks(&choice.tables).or_raise();
                f.finish(&[], Active::Counted(active))
            }
        }
        None => {
            paths::count(ReadFn::Analytics, "sql");
            let steps = sql_read::current_states(&choice.tables);
            fold(&facts.tasks, steps, &facts.period_steps)
        }
    };
    TableIterator::once((
        m.active_tasks,
        facts.namespaces,
        facts.task_types,
        m.recent_completed,
        m.recent_errors,
        m.throughput,
        m.completions,
        m.errors,
        m.step_count,
        m.task_us.to_string(),
        m.task_n,
        m.step_us.to_string(),
        m.step_n,
    ))
}
