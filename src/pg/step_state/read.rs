//! Reading the step state: a task's rows are one index range of `step_state_by_task`; a batch
//! of many tasks reads the whole table in one pass when that costs less (as the planner would
//! judge it, `tasker_core.batch_scan`).

use crate::pg::access::{IndexScan, Rel, Row, SeqScan};
use crate::pg::facts::{self, Steps, TaskGraph, TaskRow};
use crate::pg::settings::{BatchScan, BATCH_SCAN};
use crate::pg::step_state::Layout;
use crate::rules::health::HealthCounts;
use crate::rules::readiness::{ParentTally, StepFacts};
use crate::rules::state;

/// A row of step_state that does not have the shape its maintenance writes (a NULL task_id,
/// a step without named_step_id, a NULL parents array). The caller then reads the Tasker
/// tables instead; `step_state_verify()` names such rows.
#[derive(Debug)]
pub struct Broken;

/// Where the rows of one read go before they are put in order.
#[derive(Default)]
struct Taken {
    /// (place of the task among those asked for, step id) of each step, in the order read.
    keys: Vec<(u32, i64)>,
    parent_ranges: Vec<(u32, u32)>,
    parent_ids: Vec<i64>,
    named: Vec<bool>,
}

/// Takes one row of a task asked for into `out` (steps) or `tasks` (the task's own row).
fn take(
    layout: &Layout,
    row: &Row<'_>,
    place: u32,
    with_tasks: bool,
    out: &mut Steps,
    tasks: &mut Vec<TaskRow>,
    t: &mut Taken,
) -> Result<(), Broken> {
    let task = row.i64(layout.task).ok_or(Broken)?;
    let Some(step) = row.i64(layout.step) else {
        if with_tasks {
            tasks.push(TaskRow {
                task_id: task,
                named_task_id: row.i32(layout.named_task).ok_or(Broken)?,
                state: row.bytes(layout.state).map(facts::state_of),
            });
        }
        return Ok(());
    };
    let named_step_id = row.i32(layout.named_step).ok_or(Broken)?;
    let start = t.parent_ids.len() as u32;
    if !row.extend_ids(layout.parents, &mut t.parent_ids) {
        return Err(Broken);
    }
    t.parent_ranges.push((start, t.parent_ids.len() as u32));
    let name = row.bytes(layout.name);
    t.named.push(name.is_some());
    out.names.push(name.unwrap_or_default());
    t.keys.push((place, step));
    out.facts.push(StepFacts {
        workflow_step_id: step,
        task_id: task,
        named_step_id,
        retryable: row.bool(layout.retryable),
        retry_limit: row.i32(layout.retry_limit),
        in_process: row.bool(layout.in_process),
        processed: row.bool(layout.processed),
        attempts: row.i32(layout.attempts),
        last_attempted_at: row.timestamp(layout.last_attempted_at),
        backoff_request_seconds: row.i32(layout.backoff),
        state: row.bytes(layout.state).map(facts::state_of),
        state_since: row.timestamp(layout.state_since),
    });
    Ok(())
}

/// Which of the tasks asked for (ascending, distinct) a task id is: its place among them.
enum Rank<'a> {
    /// Every id of `lo..lo + n`.
    Dense { lo: i64, n: usize },
    /// The place of each id of `lo..` (u32::MAX: not asked for); for ids not far apart.
    Table { lo: i64, places: Vec<u32> },
    /// Found by binary search.
    Search(&'a [i64]),
}

impl<'a> Rank<'a> {
    fn new(task_ids: &'a [i64]) -> Rank<'a> {
        let (Some(&lo), Some(&hi)) = (task_ids.first(), task_ids.last()) else {
            return Rank::Search(task_ids);
        };
        let span = hi.saturating_sub(lo).saturating_add(1);
        if span == task_ids.len() as i64 {
            Rank::Dense { lo, n: task_ids.len() }
        } else if span <= 16 * task_ids.len() as i64 + 65536 {
            let mut places = vec![u32::MAX; span as usize];
            for (i, &id) in task_ids.iter().enumerate() {
                places[(id - lo) as usize] = i as u32;
            }
            Rank::Table { lo, places }
        } else {
            Rank::Search(task_ids)
        }
    }

    fn of(&self, id: i64) -> Option<u32> {
        match self {
            Rank::Dense { lo, n } => {
                let d = id.wrapping_sub(*lo);
                (id >= *lo && (d as u64) < *n as u64).then_some(d as u32)
            }
            Rank::Table { lo, places } => {
                let p = *places.get(usize::try_from(id.checked_sub(*lo)?).ok()?)?;
                (p != u32::MAX).then_some(p)
            }
            Rank::Search(ids) => ids.binary_search(&id).ok().map(|i| i as u32),
        }
    }
}

/// Groups ascending, distinct ids into `(lo, hi)` ranges of consecutive ids: one index range
/// scan each, reading no task that was not asked for.
pub fn runs(sorted: &[i64]) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for &id in sorted {
        match out.last_mut() {
            Some((_, hi)) if id.checked_sub(*hi) == Some(1) => *hi = id,
            _ => out.push((id, id)),
        }
    }
    out
}

/// Whether reading all of step_state costs less than an index scan of `requested` tasks: as the
/// planner judges it, when they are at least half of the tasks in the table. The number of tasks
/// is the task-row index's statistics (`reltuples`, from the last VACUUM or ANALYZE) scaled by
/// how the table grew since (its blocks now against `relpages`); without statistics the index
/// is used.
fn sequential_is_cheaper(requested: usize, index_tuples: f64, stat_pages: f64, current_blocks: f64) -> bool {
    if index_tuples.is_nan() || index_tuples <= 0.0 {
        return false;
    }
    let tasks = if stat_pages > 0.0 { index_tuples * (current_blocks / stat_pages) } else { index_tuples };
    requested as f64 >= 0.5 * tasks
}

fn read_sequentially(layout: &Layout, requested: usize) -> bool {
    match BATCH_SCAN.get() {
        BatchScan::Index => false,
        BatchScan::Sequential => requested >= 2,
        BatchScan::Auto if requested < 2 => false,
        BatchScan::Auto => {
            let (Some(heap), Some(index)) = (Rel::try_open(layout.heap), Rel::try_open(layout.task_rows)) else {
                return false;
            };
            let (blocks, _, pages) = heap.size();
            let (_, index_tuples, _) = index.size();
            sequential_is_cheaper(requested, index_tuples, pages, blocks)
        }
    }
}

/// The order of the steps `t.keys` describes (in the order read) by (task place, step id), as
/// an index scan returns them: a counting sort by task, then each task's few steps by id. Empty
/// when they were read in order.
fn order_by_task(keys: &[(u32, i64)], tasks_asked: usize, order: &mut Vec<u32>) {
    order.clear();
    if keys.windows(2).all(|w| w[0] < w[1]) {
        return;
    }
    let mut ends = vec![0u32; tasks_asked + 1];
    for k in keys {
        ends[k.0 as usize + 1] += 1;
    }
    for i in 1..ends.len() {
        ends[i] += ends[i - 1];
    }
    order.resize(keys.len(), 0);
    for (i, k) in keys.iter().enumerate() {
        let at = &mut ends[k.0 as usize];
        order[*at as usize] = i as u32;
        *at += 1;
    }
    let mut start = 0usize;
    for &end in &ends[..tasks_asked] {
        order[start..end as usize].sort_unstable_by_key(|&i| keys[i as usize].1);
        start = end as usize;
    }
}

/// Reads every step of the tasks `task_ids` (ascending, distinct) into `out`, in (task_id,
/// workflow_step_id) order, with their parent tallies; with `with_tasks`, the tasks' own rows
/// too. Err when a row is broken (the caller then reads the Tasker tables).
pub fn steps(layout: &Layout, task_ids: &[i64], with_tasks: bool, out: &mut Steps) -> Result<(), Broken> {
    out.clear();
    let mut tasks = Vec::with_capacity(if with_tasks { task_ids.len() } else { 0 });
    let mut t = Taken::default();
    if task_ids.is_empty() {
        out.tasks = with_tasks.then_some(tasks);
        return Ok(());
    }
    let mut result = Ok(());
    let rank = Rank::new(task_ids);
    let mut each = |row: &Row<'_>| {
        if result.is_err() {
            return;
        }
        let Some(task) = row.i64(layout.task) else {
            result = Err(Broken);
            return;
        };
        if let Some(place) = rank.of(task) {
            result = take(layout, row, place, with_tasks, out, &mut tasks, &mut t);
        }
    };
    if read_sequentially(layout, task_ids.len()) {
        SeqScan::open(layout.heap, layout.ncols).ok_or(Broken)?.each(&mut each);
    } else {
        let mut scan = IndexScan::open(layout.heap, layout.by_task, layout.ncols).ok_or(Broken)?;
        for (lo, hi) in runs(task_ids) {
            scan.range(lo, hi, &mut each);
        }
    }
    result?;
    let mut order = Vec::new();
    order_by_task(&t.keys, task_ids.len(), &mut order);
    tasks.sort_unstable_by_key(|r| r.task_id);
    out.tasks = with_tasks.then_some(tasks);
    tally_parents(layout, out, &t, &order)?;
    put_in_order(out, &t.named, &order);
    Ok(())
}

/// The parent tally of every step: parents are nearly always steps of the same task, adjacent
/// in (task, step) order; the others are read by step id.
fn tally_parents(layout: &Layout, out: &mut Steps, t: &Taken, order: &[u32]) -> Result<(), Broken> {
    let n = out.facts.len();
    let identity: Vec<u32>;
    let order: &[u32] = if order.is_empty() {
        identity = (0..n as u32).collect();
        &identity
    } else {
        order
    };
    let facts = &out.facts;
    let mut tallies = vec![ParentTally::default(); n];
    let mut elsewhere: Vec<(u32, i64)> = Vec::new();
    let mut task_start = 0usize;
    let mut task_end = 0usize;
    for (p, &i) in order.iter().enumerate() {
        if p == task_end {
            task_start = p;
            let task = facts[i as usize].task_id;
            task_end = p + order[p..].iter().take_while(|&&j| facts[j as usize].task_id == task).count();
        }
        let own = &order[task_start..task_end];
        let first = facts[own[0] as usize].workflow_step_id;
        let (a, b) = t.parent_ranges[i as usize];
        for &parent in &t.parent_ids[a as usize..b as usize] {
            // A task's steps usually have consecutive ids: try the parent's place by its id.
            let guess = usize::try_from(parent.wrapping_sub(first))
                .ok()
                .filter(|&g| own.get(g).is_some_and(|&j| facts[j as usize].workflow_step_id == parent));
            let found = match guess {
                Some(g) => Ok(g),
                None => own.binary_search_by_key(&parent, |&j| facts[j as usize].workflow_step_id),
            };
            match found {
                Ok(g) => tallies[i as usize].add_done(state::is_done(facts[own[g] as usize].current_state())),
                Err(_) => elsewhere.push((i, parent)),
            }
        }
    }
    if !elsewhere.is_empty() {
        // Parents in other tasks (rare): their state by step id, under the same snapshot.
        let mut missing: Vec<i64> = elsewhere.iter().map(|&(_, p)| p).collect();
        missing.sort_unstable();
        missing.dedup();
        let mut done: Vec<(i64, bool)> = Vec::with_capacity(missing.len());
        let mut scan = IndexScan::open(layout.heap, layout.by_step, layout.ncols).ok_or(Broken)?;
        for &id in &missing {
            scan.range(id, id, |row| {
                done.push((id, row.bytes(layout.state).is_some_and(facts::is_done)));
            });
        }
        // A parent without a step row is only possible without the foreign keys: let the
        // Tasker tables answer.
        if done.len() != missing.len() {
            return Err(Broken);
        }
        for &(i, p) in &elsewhere {
            let j = done.binary_search_by_key(&p, |&(s, _)| s).map_err(|_| Broken)?;
            tallies[i as usize].add_done(done[j].1);
        }
    }
    out.tallies = tallies;
    Ok(())
}

/// Puts `out.facts`, `tallies` and `names` in (task, step) order, leaving out steps without a
/// named step (the inner join of Rails' functions).
fn put_in_order(out: &mut Steps, named: &[bool], order: &[u32]) {
    if order.is_empty() && named.iter().all(|&n| n) {
        return;
    }
    let n = out.facts.len();
    let positions: Vec<usize> =
        if order.is_empty() { (0..n).collect() } else { order.iter().map(|&i| i as usize).collect() };
    let facts = std::mem::take(&mut out.facts);
    let tallies = std::mem::take(&mut out.tallies);
    let names = std::mem::take(&mut out.names);
    let mut slots: Vec<Option<StepFacts>> = facts.into_iter().map(Some).collect();
    for i in positions {
        if !named[i] {
            continue;
        }
        if let Some(f) = slots[i].take() {
            out.facts.push(f);
            out.tallies.push(tallies[i]);
            out.names.push(names.get(i));
        }
    }
}

/// The graph of one task (step ids and the edges into them) from its rows.
pub fn graph(layout: &Layout, task_id: i64) -> Result<TaskGraph, Broken> {
    let mut scan = IndexScan::open(layout.heap, layout.by_task, layout.graph_ncols).ok_or(Broken)?;
    let mut steps = Vec::new();
    let mut edges = Vec::new();
    let mut parents = Vec::new();
    let mut broken = false;
    scan.range(task_id, task_id, |row| {
        let Some(step) = row.i64(layout.step) else {
            return; // the task's own row
        };
        parents.clear();
        broken |= !row.extend_ids(layout.parents, &mut parents);
        steps.push(step);
        edges.extend(parents.iter().map(|&p| (p, step)));
    });
    if broken {
        Err(Broken)
    } else {
        Ok((steps, edges))
    }
}

/// The task and step counts of `get_system_health_counts_v01` from one pass over step_state.
/// The same counts as SQL over the Tasker tables: while step_state is valid every task and step
/// has exactly one row with its current state and the step's retry columns as stored.
pub fn health(layout: &Layout) -> Result<HealthCounts, Broken> {
    let mut h = HealthCounts::default();
    let mut broken = false;
    let mut scan = SeqScan::open(layout.heap, layout.ncols).ok_or(Broken)?;
    scan.each(|row| {
        // An unknown state counts only in the totals, as no state at all does.
        let current = row.bytes(layout.state).and_then(|b| std::str::from_utf8(b).ok()).and_then(state::known);
        if row.i64(layout.step).is_some() {
            let has_last_attempt = row.timestamp(layout.last_attempted_at).is_some();
            h.add_steps(
                current,
                row.i32(layout.attempts),
                row.i32(layout.retry_limit),
                row.bool(layout.retryable),
                has_last_attempt,
                1,
            );
        } else if row.i64(layout.task).is_some() {
            h.add_tasks(current, 1);
        } else {
            broken = true;
        }
    });
    if broken {
        Err(Broken)
    } else {
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::{order_by_task, runs, sequential_is_cheaper, Rank};

    #[test]
    fn a_batch_of_half_the_tasks_or_more_is_read_sequentially() {
        assert!(sequential_is_cheaper(5000, 5000.0, 900.0, 900.0));
        assert!(sequential_is_cheaper(2500, 5000.0, 900.0, 900.0));
        assert!(!sequential_is_cheaper(2499, 5000.0, 900.0, 900.0));
        // the table grew tenfold since the statistics: 50,000 tasks
        assert!(!sequential_is_cheaper(5000, 5000.0, 900.0, 9000.0));
        // no statistics (never vacuumed or analyzed): by index
        assert!(!sequential_is_cheaper(5000, -1.0, 0.0, 900.0));
        assert!(!sequential_is_cheaper(5000, 0.0, 0.0, 900.0));
        assert!(!sequential_is_cheaper(5000, f64::NAN, 0.0, 900.0));
        assert!(sequential_is_cheaper(10, 12.0, 0.0, 1.0));
    }

    #[test]
    fn rank_is_the_place_among_the_tasks_asked_for() {
        let cases: [Vec<i64>; 4] = [
            (100..200).collect(),
            (0..100).map(|i| i * 3 + 7).collect(),
            (0..100).map(|i| i * 10_000_000 - 500_000_000).collect(),
            vec![i64::MIN, -1, 0, i64::MAX],
        ];
        for ids in &cases {
            let rank = Rank::new(ids);
            for (i, &id) in ids.iter().enumerate() {
                assert_eq!(rank.of(id), Some(i as u32), "{id}");
            }
            let lo = ids[0];
            let hi = ids[ids.len() - 1];
            for probe in [lo.wrapping_sub(1), hi.wrapping_add(1), lo.saturating_add(1), i64::MIN, i64::MAX] {
                assert_eq!(rank.of(probe), ids.binary_search(&probe).ok().map(|i| i as u32), "{probe}");
            }
        }
        assert_eq!(Rank::new(&[]).of(5), None);
    }

    #[test]
    fn runs_are_consecutive_ids() {
        assert_eq!(runs(&[]), vec![]);
        assert_eq!(runs(&[5]), vec![(5, 5)]);
        assert_eq!(runs(&[1, 2, 3, 5, 6, 9]), vec![(1, 3), (5, 6), (9, 9)]);
        assert_eq!(runs(&[i64::MAX - 1, i64::MAX]), vec![(i64::MAX - 1, i64::MAX)]);
        assert_eq!(runs(&[i64::MIN, i64::MAX]), vec![(i64::MIN, i64::MIN), (i64::MAX, i64::MAX)]);
    }

    #[test]
    fn order_by_task_sorts_by_place_then_step() {
        let keys = vec![(1, 20), (0, 11), (1, 10), (0, 10), (2, 5)];
        let mut order = Vec::new();
        order_by_task(&keys, 3, &mut order);
        let sorted: Vec<(u32, i64)> = order.iter().map(|&i| keys[i as usize]).collect();
        assert_eq!(sorted, vec![(0, 10), (0, 11), (1, 10), (1, 20), (2, 5)]);
        order_by_task(&[(0, 1), (0, 2), (1, 1)], 2, &mut order);
        assert!(order.is_empty(), "already in order");
    }
}
