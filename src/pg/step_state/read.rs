//! Reading the step state. A task's rows are one range of the index `step_state_by_task`, in
//! (task_id, workflow_step_id) order with the task's own row last; every step row carries its
//! parent counts, so a row is evaluated and written the moment it is read. A batch of many
//! tasks either walks the same index over runs of consecutive task ids or, when it asks for
//! most of the table (`tasker_core.batch_scan`, judged as the planner would), reads the table
//! in one pass and puts the rows in order afterwards.

use crate::error::TaskerError;
use crate::pg::access::{IndexRows, IndexScan, Rel, Row, SeqScan};
use crate::pg::facts::{self, Steps, TaskRow};
use crate::pg::settings::{BatchScan, BATCH_SCAN};
use crate::pg::step_state::Layout;
use crate::pg::tasker::{Tables, STEPS};
use crate::pg::{sandbox, spi};
use crate::rules::health::HealthCounts;
use crate::rules::readiness::{ParentTally, StepFacts};
use crate::rules::state;

/// One step as the readers hand it on.
pub struct StepRow<'a> {
    pub facts: StepFacts,
    pub tally: ParentTally,
    /// The named step's name.
    pub name: &'a [u8],
}

/// Where the rows of a read go, in (task_id, workflow_step_id) order, each task's steps before
/// the task's own row.
pub trait Sink {
    fn step(&mut self, row: StepRow<'_>);
    fn task(&mut self, task: TaskRow);

    /// Whether the sink takes the steps of a sequential pass in the order read
    /// (`step_unordered`, each with its (place of the task among those asked for, step id)),
    /// and puts them in order itself (`finish_unordered`). Tasks' own rows are not asked for
    /// then. False: the reader buffers the rows and hands them over in order.
    fn unordered(&self) -> bool {
        false
    }

    fn step_unordered(&mut self, _key: (u32, i64), _row: StepRow<'_>) {}

    fn finish_unordered(&mut self, _tasks_asked: usize) {}
}

/// Hands a sequential pass's steps to a sink that puts them in order itself.
struct Unordered<'s, S: Sink> {
    sink: &'s mut S,
    place: u32,
}

impl<S: Sink> Sink for Unordered<'_, S> {
    fn step(&mut self, row: StepRow<'_>) {
        let key = (self.place, row.facts.workflow_step_id);
        self.sink.step_unordered(key, row);
    }

    fn task(&mut self, _task: TaskRow) {}
}

/// A step_state row that does not have the shape its maintenance writes: only a hand-made
/// change to the extension's own table can do that.
fn broken(what: &str) -> TaskerError {
    TaskerError::StepStateCorrupted(what.to_string())
}

/// Hands one row of a task asked for to `sink`: a step (when it has a named step: the inner
/// join of Rails' functions) or, with `with_tasks`, the task's own row.
fn take(layout: &Layout, row: &Row<'_>, with_tasks: bool, sink: &mut impl Sink) -> Result<(), TaskerError> {
    let task = row.i64(layout.task).ok_or_else(|| broken("a row without task_id"))?;
    let Some(step) = row.i64(layout.step) else {
        if with_tasks {
            sink.task(TaskRow {
                task_id: task,
                named_task_id: row.i32(layout.named_task).ok_or_else(|| broken("a task row without named_task_id"))?,
                state: row.bytes(layout.state).map(facts::state_of),
            });
        }
        return Ok(());
    };
    let Some(name) = row.bytes(layout.name) else {
        return Ok(()); // no such named step: left out, as Rails' inner join leaves it out
    };
    let facts = StepFacts {
        workflow_step_id: step,
        task_id: task,
        named_step_id: row.i32(layout.named_step).ok_or_else(|| broken("a step row without named_step_id"))?,
        retryable: row.bool(layout.retryable),
        retry_limit: row.i32(layout.retry_limit),
        in_process: row.bool(layout.in_process),
        processed: row.bool(layout.processed),
        attempts: row.i32(layout.attempts),
        last_attempted_at: row.timestamp(layout.last_attempted_at),
        backoff_request_seconds: row.i32(layout.backoff),
        state: row.bytes(layout.state).map(facts::state_of),
        state_since: row.timestamp(layout.state_since),
    };
    let tally = ParentTally {
        total: i64::from(row.i32(layout.total_parents).ok_or_else(|| broken("a step row without total_parents"))?),
        done: i64::from(row.i32(layout.done_parents).ok_or_else(|| broken("a step row without done_parents"))?),
    };
    sink.step(StepRow { facts, tally, name });
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
        BatchScan::Auto => sequential_by_statistics(layout, requested),
    }
}

/// `sequential_is_cheaper` for `requested` tasks, with step_state's statistics (false when it
/// cannot be opened).
fn sequential_by_statistics(layout: &Layout, requested: usize) -> bool {
    let (Some(heap), Some(index)) = (Rel::try_open(layout.heap), Rel::try_open(layout.task_rows)) else {
        return false;
    };
    let (blocks, _, pages) = heap.size();
    let (_, index_tuples, _) = index.size();
    sequential_is_cheaper(requested, index_tuples, pages, blocks)
}

/// The rows of a sequential pass, kept until they are put in order.
#[derive(Default)]
pub struct Gathered {
    steps: Steps,
    /// (place of the task among those asked for, step id) of each step, in the order read.
    keys: Vec<(u32, i64)>,
    order: Vec<u32>,
    ends: Vec<u32>,
}

impl Gathered {
    fn clear(&mut self) {
        if self.keys.capacity() > 1 << 20 {
            *self = Gathered::default();
        }
        self.steps.clear();
        self.keys.clear();
        self.order.clear();
        self.ends.clear();
    }
}

/// Collects a sequential pass's rows for `Gathered`.
struct Collect<'g> {
    g: &'g mut Gathered,
    place: u32,
    tasks: Vec<TaskRow>,
}

impl Sink for Collect<'_> {
    fn step(&mut self, row: StepRow<'_>) {
        self.g.keys.push((self.place, row.facts.workflow_step_id));
        self.g.steps.facts.push(row.facts);
        self.g.steps.tallies.push(row.tally);
        self.g.steps.names.push(row.name);
    }

    fn task(&mut self, task: TaskRow) {
        self.tasks.push(task);
    }
}

/// The (task place, step id) order of the keys (in the order read): a counting sort by task,
/// then each task's few steps by id. Empty when they were read in order.
pub fn order_by_task(keys: &[(u32, i64)], tasks_asked: usize, order: &mut Vec<u32>, ends: &mut Vec<u32>) {
    order.clear();
    if keys.windows(2).all(|w| w[0] < w[1]) {
        return;
    }
    ends.clear();
    ends.resize(tasks_asked + 1, 0);
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

/// Hands each row of a sequential pass whose task is one of `rank`'s to `each`, with the task's
/// place, until `each` fails; the scan ends before the result is returned.
fn each_ranked(
    mut scan: SeqScan,
    layout: &Layout,
    rank: &Rank,
    mut each: impl FnMut(&Row<'_>, u32) -> Result<(), TaskerError>,
) -> Result<(), TaskerError> {
    let mut result = Ok(());
    scan.each(|row| {
        if result.is_err() {
            return;
        }
        match row.i64(layout.task) {
            None => result = Err(broken("a row without task_id")),
            Some(task) => {
                if let Some(place) = rank.of(task) {
                    result = each(row, place);
                }
            }
        }
    });
    drop(scan);
    result
}

/// Hands every step of the tasks `task_ids` (ascending, distinct) to `sink` in (task_id,
/// workflow_step_id) order, each task's own row after its steps when `with_tasks`. `gathered`
/// is the buffer a sequential pass uses.
pub fn steps(
    layout: &Layout,
    task_ids: &[i64],
    with_tasks: bool,
    sink: &mut impl Sink,
    gathered: &mut Gathered,
) -> Result<(), TaskerError> {
    if task_ids.is_empty() {
        return Ok(());
    }
    let rank = Rank::new(task_ids);
    let mut result = Ok(());
    if !read_sequentially(layout, task_ids.len()) {
        // In index order: every row goes on as it is read.
        // Without the task rows (NULL workflow_step_id), the index skips them unfetched.
        let rows = if with_tasks { IndexRows::All } else { IndexRows::SecondKeyNotNull };
        let mut scan = IndexScan::open(layout.heap, layout.by_task, layout.ncols, rows)
            .ok_or_else(|| broken("tasker_core.step_state could not be opened"))?;
        for (lo, hi) in runs(task_ids) {
            scan.range(lo, hi, |row| {
                if result.is_ok() {
                    result = take(layout, row, with_tasks, sink);
                }
            });
            result.as_ref().map_err(Clone::clone)?;
        }
        return Ok(());
    }
    let scan =
        SeqScan::open(layout.heap, layout.ncols).ok_or_else(|| broken("tasker_core.step_state could not be opened"))?;
    if !with_tasks && sink.unordered() {
        let mut direct = Unordered { sink: &mut *sink, place: 0 };
        each_ranked(scan, layout, &rank, |row, place| {
            direct.place = place;
            take(layout, row, false, &mut direct)
        })?;
        sink.finish_unordered(task_ids.len());
        return Ok(());
    }
    gathered.clear();
    let mut collect = Collect { g: gathered, place: 0, tasks: Vec::new() };
    each_ranked(scan, layout, &rank, |row, place| {
        collect.place = place;
        take(layout, row, with_tasks, &mut collect)
    })?;
    let Collect { g, mut tasks, .. } = collect;
    order_by_task(&g.keys, task_ids.len(), &mut g.order, &mut g.ends);
    tasks.sort_unstable_by_key(|t| t.task_id);
    replay(&g.steps, &g.order, tasks, sink);
    Ok(())
}

/// Hands buffered steps to `sink` in the order `order` gives (identity when empty), each
/// task's own row (from `tasks`, by task_id) after its steps and tasks without steps in place.
pub fn replay(steps: &Steps, order: &[u32], tasks: Vec<TaskRow>, sink: &mut impl Sink) {
    let n = steps.facts.len();
    let mut tasks = tasks.into_iter().peekable();
    for p in 0..n {
        let i = if order.is_empty() { p } else { order[p] as usize };
        let facts = &steps.facts[i];
        // Tasks before this step's task (and this task's row once its steps are done).
        while let Some(t) = tasks.next_if(|t| t.task_id < facts.task_id) {
            sink.task(t);
        }
        sink.step(StepRow { facts: facts.clone(), tally: steps.tallies[i], name: steps.names.get(i) });
    }
    for t in tasks {
        sink.task(t);
    }
}

/// A task's graph as `graph` reads it, in buffers kept by the call site.
#[derive(Default)]
pub struct Graph {
    /// The task's step ids.
    pub steps: Vec<i64>,
    /// `(from_step_id, to_step_id)` of every edge into them.
    pub edges: Vec<(i64, i64)>,
    parents: Vec<i64>,
}

/// The graph of one task (step ids and the edges into them) from its rows, into `out`.
pub fn graph(layout: &Layout, task_id: i64, out: &mut Graph) -> Result<(), TaskerError> {
    let mut scan = IndexScan::open(layout.heap, layout.by_task, layout.graph_ncols, IndexRows::SecondKeyNotNull)
        .ok_or_else(|| broken("tasker_core.step_state could not be opened"))?;
    let Graph { steps, edges, parents } = out;
    steps.clear();
    edges.clear();
    let mut ok = true;
    scan.range(task_id, task_id, |row| {
        let Some(step) = row.i64(layout.step) else {
            return; // the task's own row
        };
        steps.push(step);
        // A root (no parent edge: 40% of the steps of the benchmark's tasks) needs no array read.
        if row.i32(layout.total_parents) == Some(0) {
            return;
        }
        parents.clear();
        ok &= row.extend_ids(layout.parents, parents);
        edges.extend(parents.iter().map(|&p| (p, step)));
    });
    if ok {
        Ok(())
    } else {
        Err(broken("a step row whose parents are not a bigint[] without NULLs"))
    }
}

/// The task and step counts of `get_system_health_counts_v01` from one pass over step_state.
/// The same counts as SQL over the Tasker tables: while step_state is valid every task and step
/// has exactly one row with its current state and the step's retry columns as stored.
pub fn health(layout: &Layout) -> Result<HealthCounts, TaskerError> {
    let mut h = HealthCounts::default();
    let mut ok = true;
    let mut scan =
        SeqScan::open(layout.heap, layout.ncols).ok_or_else(|| broken("tasker_core.step_state could not be opened"))?;
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
            ok = false;
        }
    });
    if ok {
        Ok(h)
    } else {
        Err(broken("a row without task_id"))
    }
}

/// A row of step_state as the analytics read it.
pub struct StateRow<'a> {
    /// None: the task's own row.
    pub step: Option<i64>,
    pub task: i64,
    pub state: Option<&'a [u8]>,
    pub since: Option<i64>,
    pub step_created_at: Option<i64>,
}

fn state_row<'a>(layout: &Layout, row: &Row<'a>) -> Option<StateRow<'a>> {
    Some(StateRow {
        step: row.i64(layout.step),
        task: row.i64(layout.task)?,
        state: row.bytes(layout.state),
        since: row.timestamp(layout.state_since),
        step_created_at: row.timestamp(layout.step_created_at),
    })
}

fn state_ncols(layout: &Layout) -> usize {
    [
        layout.step.attno(),
        layout.task.attno(),
        layout.state.attno(),
        layout.state_since.attno(),
        layout.step_created_at.attno(),
    ]
    .into_iter()
    .max()
    .unwrap_or(1)
}

/// Whether the analytics read all of step_state in one pass rather than the `requested` tasks'
/// rows by index (and the unsettled steps by their index): `tasker_core.batch_scan` decides as
/// for the batch functions (auto: when they are at least half of the tasks).
pub fn analytics_reads_all(layout: &Layout, requested: usize) -> bool {
    match BATCH_SCAN.get() {
        BatchScan::Index => false,
        BatchScan::Sequential => true,
        BatchScan::Auto => sequential_by_statistics(layout, requested),
    }
}

/// Every row of step_state (the steps' most_recent transitions and the tasks that exist, while
/// it is valid), from one pass, to `each`.
pub fn current_states(layout: &Layout, mut each: impl FnMut(&StateRow<'_>)) -> Result<(), TaskerError> {
    let mut scan = SeqScan::open(layout.heap, state_ncols(layout))
        .ok_or_else(|| broken("tasker_core.step_state could not be opened"))?
        .prefix_only();
    let mut ok = true;
    scan.each(|row| match state_row(layout, row) {
        Some(r) => each(&r),
        None => ok = false,
    });
    if ok {
        Ok(())
    } else {
        Err(broken("a row without task_id"))
    }
}

/// The step rows of the tasks `tasks` (ascending, distinct), by index, to `each`.
pub fn states_of_tasks(layout: &Layout, tasks: &[i64], mut each: impl FnMut(&StateRow<'_>)) -> Result<(), TaskerError> {
    if tasks.is_empty() {
        return Ok(());
    }
    let mut scan = IndexScan::open(layout.heap, layout.by_task, state_ncols(layout), IndexRows::SecondKeyNotNull)
        .ok_or_else(|| broken("tasker_core.step_state could not be opened"))?;
    let mut ok = true;
    for (lo, hi) in runs(tasks) {
        scan.range(lo, hi, |row| match state_row(layout, row) {
            Some(r) => each(&r),
            None => ok = false,
        });
    }
    if ok {
        Ok(())
    } else {
        Err(broken("a row without task_id"))
    }
}

/// How many tasks that exist (have their own row in step_state) have a step whose current
/// state is not settled. PostgreSQL counts them from the index of unsettled steps and the task
/// rows' index (index-only scans where the visibility map allows), with the rights of the Tasker
/// tables' owner, who may read step_state (step_state_enable() granted it), sandboxed
/// (pg::sandbox): the caller may read the Tasker tables (pg::paths decided so), and the count is
/// what it would compute from them.
pub fn active_tasks(tables: &Tables) -> Result<i64, TaskerError> {
    const SQL: &str = "SELECT pg_catalog.count(*) FROM \
        (SELECT DISTINCT s.task_id FROM tasker_core.step_state s \
          WHERE s.workflow_step_id IS NOT NULL \
            AND s.current_state OPERATOR(pg_catalog.<>) ALL ('{complete,error,skipped,resolved_manually}'::pg_catalog.text[])) a \
        WHERE EXISTS (SELECT 1 FROM tasker_core.step_state t \
                       WHERE t.task_id OPERATOR(pg_catalog.=) a.task_id AND t.workflow_step_id IS NULL)";
    let owner = sandbox::owner_of(tables.0[STEPS])?;
    sandbox::as_owner(owner, || {
        pgrx::spi::Spi::connect(|_| spi::run(SQL, &[], true, |rows| rows.i64(0, 1).unwrap_or_default()))
    })
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
        let mut ends = Vec::new();
        order_by_task(&keys, 3, &mut order, &mut ends);
        let sorted: Vec<(u32, i64)> = order.iter().map(|&i| keys[i as usize]).collect();
        assert_eq!(sorted, vec![(0, 10), (0, 11), (1, 10), (1, 20), (2, 5)]);
        order_by_task(&[(0, 1), (0, 2), (1, 1)], 2, &mut order, &mut ends);
        assert!(order.is_empty(), "already in order");
    }
}
