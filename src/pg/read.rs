//! Reading the Tasker tables through SPI, with kept generic plans (`pg::plans`). Table names
//! are unqualified and resolved through the caller's search_path, as the Rails functions
//! resolve them; no SQL is ever built from values (everything is a parameter).

use std::collections::HashMap;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::pg::direct::{Columns, Index, Lookup, Want};
use crate::pg::plans::{self, Rows, INT8, INT8_ARRAY};
use crate::rules::health::HealthCounts;
use crate::rules::readiness::{ParentTally, StepFacts};

/// Both forms of a query: `before` + `column = $1` (or `= ANY($1)`) + `after`, as
/// compile-time constants.
macro_rules! by_task {
    ($before:literal, $column:literal, $after:literal) => {
        (concat!($before, $column, " = $1", $after), concat!($before, $column, " = ANY($1)", $after))
    };
}

/// Which tasks a query reads. One task uses the `task_id = $1` form, many the one-pass
/// `task_id = ANY($1)` form.
#[derive(Clone, Copy)]
pub enum TaskIds<'a> {
    One(i64),
    Many(&'a [i64]),
}

impl<'a> TaskIds<'a> {
    pub fn of(ids: &'a [i64]) -> Self {
        match ids {
            [one] => TaskIds::One(*one),
            many => TaskIds::Many(many),
        }
    }

    /// The ids, ascending and without duplicates.
    pub fn distinct(self) -> Vec<i64> {
        let mut v = match self {
            TaskIds::One(id) => vec![id],
            TaskIds::Many(many) => many.to_vec(),
        };
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// A query in its two forms: `(one task, many tasks)`.
type Sql = (&'static str, &'static str);

/// Runs `sql` (read-only, the caller's snapshot) for `ids`.
fn by_ids<R>(sql: Sql, ids: TaskIds, function: &'static str, each: impl FnOnce(&Rows) -> R) -> R {
    match ids {
        TaskIds::One(id) => plans::run(sql.0, &[INT8], &[plans::int8(id)], true, function, each),
        TaskIds::Many(many) => plans::run(sql.1, &[INT8_ARRAY], &[plans::int8_array(many)], true, function, each),
    }
}

fn ts(rows: &Rows, r: usize, c: usize) -> Option<i64> {
    rows.get::<Timestamp>(r, c).map(i64::from)
}

const STEPS_SQL: Sql = by_task!(
    "SELECT ws.workflow_step_id, ws.task_id, ws.named_step_id, ns.name::text, ws.retryable, \
            ws.retry_limit, ws.in_process, ws.processed, ws.attempts, ws.last_attempted_at, \
            ws.backoff_request_seconds, tr.to_state::text, tr.created_at::timestamp \
       FROM tasker_workflow_steps ws \
       JOIN tasker_named_steps ns ON ns.named_step_id = ws.named_step_id \
       LEFT JOIN tasker_workflow_step_transitions tr \
              ON tr.workflow_step_id = ws.workflow_step_id AND tr.most_recent \
      WHERE ",
    "ws.task_id",
    " ORDER BY ws.task_id, ws.workflow_step_id"
);

const PARENTS_SQL: Sql = by_task!(
    "SELECT e.to_step_id, pt.to_state::text \
       FROM tasker_workflow_steps ws \
       JOIN tasker_workflow_step_edges e ON e.to_step_id = ws.workflow_step_id \
       LEFT JOIN tasker_workflow_step_transitions pt \
              ON pt.workflow_step_id = e.from_step_id AND pt.most_recent \
      WHERE ",
    "ws.task_id",
    ""
);

const TASKS_SQL: Sql = by_task!(
    "SELECT t.task_id, t.named_task_id, tt.to_state::text \
       FROM tasker_tasks t \
       LEFT JOIN tasker_task_transitions tt ON tt.task_id = t.task_id AND tt.most_recent \
      WHERE ",
    "t.task_id",
    ""
);

const LEVEL_STEPS_SQL: Sql =
    by_task!("SELECT ws.workflow_step_id FROM tasker_workflow_steps ws WHERE ", "ws.task_id", "");

const LEVEL_EDGES_SQL: Sql = by_task!(
    "SELECT e.from_step_id, e.to_step_id \
       FROM tasker_workflow_steps ws \
       JOIN tasker_workflow_step_edges e ON e.to_step_id = ws.workflow_step_id \
      WHERE ",
    "ws.task_id",
    ""
);

/// The steps of some tasks (joined to their named steps) with their current state, ordered by
/// (task_id, workflow_step_id), and the parent tally of every step that has parent edges.
#[derive(Default)]
pub struct StepsAndParents {
    pub steps: Vec<StepFacts>,
    /// The parent tally of each step, in the order of `steps`.
    pub tallies: Vec<ParentTally>,
    /// The named step's name of each step, in the order of `steps`.
    pub names: Names,
    /// The tasks' own rows, when the source had them (the step state); else the caller reads
    /// them (`tasks`).
    pub tasks: Option<Vec<TaskRow>>,
    /// When not empty, the steps in (task_id, workflow_step_id) order are `steps[order[0]]`,
    /// `steps[order[1]]`, ... (a sequential pass over the step state takes them as they lie
    /// in the table, and putting `steps` itself in order cost more than reading through this);
    /// when empty, `steps` is in that order.
    pub order: Vec<u32>,
}

impl StepsAndParents {
    /// Empties it, keeping the buffers (dropping ones that grew very large).
    pub fn clear(&mut self) {
        if self.steps.capacity() > 1 << 20 {
            *self = StepsAndParents::default();
        }
        self.steps.clear();
        self.tallies.clear();
        self.names.clear();
        self.tasks = None;
        self.order.clear();
    }

    /// The indexes of `steps` in (task_id, workflow_step_id) order.
    pub fn ordered(&self) -> impl Iterator<Item = usize> + '_ {
        let identity = self.order.is_empty();
        let n = if identity { self.steps.len() } else { self.order.len() };
        (0..n).map(move |p| if identity { p } else { self.order[p] as usize })
    }

    /// Keeps the steps whose flag in `keep` (in the order of `steps`) is set.
    pub fn keep_only(&mut self, keep: &[bool]) {
        if !self.order.is_empty() {
            self.order.retain(|&i| keep[i as usize]);
            return;
        }
        let old = std::mem::take(self);
        self.tasks = old.tasks;
        for (i, (s, t)) in old.steps.into_iter().zip(old.tallies).enumerate() {
            if keep[i] {
                self.names.push(old.names.get(i));
                self.steps.push(s);
                self.tallies.push(t);
            }
        }
    }

    fn new(steps: Vec<StepFacts>, names: Names, parents: &HashMap<i64, ParentTally>) -> Self {
        let tallies = steps.iter().map(|s| parents.get(&s.workflow_step_id).copied().unwrap_or_default()).collect();
        StepsAndParents { steps, tallies, names, tasks: None, order: Vec::new() }
    }
}

/// Strings kept end to end in one buffer (one allocation instead of one per step).
#[derive(Default)]
pub struct Names {
    buf: String,
    ends: Vec<usize>,
}

impl Names {
    pub fn with_capacity(n: usize) -> Names {
        Names { buf: String::with_capacity(16 * n), ends: Vec::with_capacity(n) }
    }

    pub fn push(&mut self, s: &str) {
        self.buf.push_str(s);
        self.ends.push(self.buf.len());
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }

    pub fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.buf[start..self.ends[i]]
    }
}

/// Fills `out` (see StepsAndParents) from step_state, the direct index reads, or SQL.
pub fn steps_and_parents(task_ids: TaskIds, with_tasks: bool, function: &'static str, out: &mut StepsAndParents) {
    if crate::pg::derived::steps_and_parents(task_ids, with_tasks, out) {
        return;
    }
    *out = read_steps_and_parents(task_ids, function);
}

fn read_steps_and_parents(task_ids: TaskIds, function: &'static str) -> StepsAndParents {
    if let Some(found) = direct_steps_and_parents(task_ids) {
        return found;
    }
    Spi::connect(|_| {
        let mut names = Names::default();
        let steps = by_ids(STEPS_SQL, task_ids, function, |rows| {
            (0..rows.len())
                .map(|r| StepFacts {
                    workflow_step_id: rows.get(r, 1).unwrap_or_default(),
                    task_id: rows.get(r, 2).unwrap_or_default(),
                    named_step_id: {
                        names.push(&rows.get::<String>(r, 4).unwrap_or_default());
                        rows.get(r, 3).unwrap_or_default()
                    },
                    retryable: rows.get(r, 5),
                    retry_limit: rows.get(r, 6),
                    in_process: rows.get(r, 7),
                    processed: rows.get(r, 8),
                    attempts: rows.get(r, 9),
                    last_attempted_at: ts(rows, r, 10),
                    backoff_request_seconds: rows.get(r, 11),
                    state: rows.get::<String>(r, 12).map(|s| crate::rules::state::name_of(&s)),
                    state_since: ts(rows, r, 13),
                })
                .collect::<Vec<_>>()
        });
        let mut parents: HashMap<i64, ParentTally> = HashMap::new();
        by_ids(PARENTS_SQL, task_ids, function, |rows| {
            for r in 0..rows.len() {
                let child: i64 = rows.get(r, 1).unwrap_or_default();
                let parent_state: Option<String> = rows.get(r, 2);
                parents.entry(child).or_default().add(parent_state.as_deref());
            }
        });
        StepsAndParents::new(steps, names, &parents)
    })
}

/// A task row with its most_recent task state.
pub struct TaskRow {
    pub task_id: i64,
    pub named_task_id: i32,
    /// The most_recent task state (None: no transition); borrowed for the known states.
    pub state: Option<std::borrow::Cow<'static, str>>,
}

pub fn tasks(task_ids: TaskIds, function: &'static str) -> Vec<TaskRow> {
    if let Some(found) = direct_tasks(task_ids) {
        return found;
    }
    Spi::connect(|_| {
        by_ids(TASKS_SQL, task_ids, function, |rows| {
            (0..rows.len())
                .map(|r| TaskRow {
                    task_id: rows.get(r, 1).unwrap_or_default(),
                    named_task_id: rows.get(r, 2).unwrap_or_default(),
                    state: rows.get::<String>(r, 3).map(std::borrow::Cow::Owned),
                })
                .collect()
        })
    })
}

/// A task's step ids and the `(from, to)` edges into them.
pub type TaskGraph = (Vec<i64>, Vec<(i64, i64)>);

/// The task's step ids (not joined to named steps) and every edge into them.
pub fn task_graph(task_id: i64, function: &'static str) -> TaskGraph {
    if let Some(found) = crate::pg::derived::task_graph(task_id) {
        return found;
    }
    if let Some(found) = direct_task_graph(task_id) {
        return found;
    }
    Spi::connect(|_| {
        let ids = TaskIds::One(task_id);
        let steps = by_ids(LEVEL_STEPS_SQL, ids, function, |rows| {
            (0..rows.len()).map(|r| rows.get(r, 1).unwrap_or_default()).collect()
        });
        let edges = by_ids(LEVEL_EDGES_SQL, ids, function, |rows| {
            (0..rows.len()).map(|r| (rows.get(r, 1).unwrap_or_default(), rows.get(r, 2).unwrap_or_default())).collect()
        });
        (steps, edges)
    })
}

const HEALTH_TASKS_SQL: &str = "\
SELECT tt.to_state::text, count(*) \
  FROM tasker_tasks t \
  LEFT JOIN tasker_task_transitions tt ON tt.task_id = t.task_id AND tt.most_recent \
 GROUP BY 1";

const HEALTH_STEPS_SQL: &str = "\
SELECT st.to_state::text, ws.attempts, ws.retry_limit, ws.retryable, \
       ws.last_attempted_at IS NOT NULL, count(*) \
  FROM tasker_workflow_steps ws \
  LEFT JOIN tasker_workflow_step_transitions st \
         ON st.workflow_step_id = ws.workflow_step_id AND st.most_recent \
 GROUP BY 1, 2, 3, 4, 5";

const HEALTH_CONNECTIONS_SQL: &str = "\
SELECT (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'active'), \
       COALESCE((SELECT setting::bigint FROM pg_settings WHERE name = 'max_connections'), 0)";

/// Whole-database state counts, grouped by the server (these are full-table aggregates).
pub fn health(function: &'static str) -> (HealthCounts, i64, i64) {
    let derived = crate::pg::derived::health();
    Spi::connect(|_| {
        let h = derived.unwrap_or_else(|| health_from_tables(function));
        let (active, max) = plans::run(HEALTH_CONNECTIONS_SQL, &[], &[], true, function, |rows| {
            if rows.is_empty() {
                (0, 0)
            } else {
                (rows.get(0, 1).unwrap_or_default(), rows.get(0, 2).unwrap_or_default())
            }
        });
        (h, active, max)
    })
}

/// The task and step counts from the Tasker tables (grouped by the server). Inside Spi::connect.
fn health_from_tables(function: &'static str) -> HealthCounts {
    let mut h = HealthCounts::default();
    plans::run(HEALTH_TASKS_SQL, &[], &[], true, function, |rows| {
        for r in 0..rows.len() {
            let state: Option<String> = rows.get(r, 1);
            h.add_tasks(state.as_deref(), rows.get(r, 2).unwrap_or_default());
        }
    });
    plans::run(HEALTH_STEPS_SQL, &[], &[], true, function, |rows| {
        for r in 0..rows.len() {
            let state: Option<String> = rows.get(r, 1);
            h.add_steps(
                state.as_deref(),
                rows.get(r, 2),
                rows.get(r, 3),
                rows.get(r, 4),
                rows.get(r, 5).unwrap_or(false),
                rows.get(r, 6).unwrap_or_default(),
            );
        }
    });
    h
}

// ---------------------------------------------------------------------------------------
// The direct path (pg::direct): the same rows as the SQL above, read by index without the
// executor. Each function returns None when a table cannot be read directly (see direct.rs),
// and the caller then runs the SQL.

const TIMESTAMP: &[pg_sys::Oid] = &[pg_sys::TIMESTAMPOID];
const BIGINT: &[pg_sys::Oid] = &[pg_sys::INT8OID];
const INTEGER: &[pg_sys::Oid] = &[pg_sys::INT4OID];
const BOOLEAN: &[pg_sys::Oid] = &[pg_sys::BOOLOID];
const TEXT: &[pg_sys::Oid] = &[pg_sys::VARCHAROID, pg_sys::TEXTOID];

/// The current state of steps by their most_recent transition: `(to_state, created_at)`.
struct States {
    lookup: Lookup,
    known: HashMap<i64, Option<(String, i64)>>,
}

impl States {
    fn open() -> Option<States> {
        let lookup = Lookup::open(
            "tasker_workflow_step_transitions",
            "workflow_step_id",
            pg_sys::INT8OID,
            &[
                Want { name: "to_state", types: TEXT, not_null: true },
                Want { name: "created_at", types: TIMESTAMP, not_null: true },
                Want { name: "most_recent", types: BOOLEAN, not_null: true },
                Want { name: "workflow_step_id", types: BIGINT, not_null: true },
            ],
            Index::UniqueWhere("most_recent"),
        )?;
        Some(States { lookup, known: HashMap::new() })
    }

    /// Reads the states of many steps (ascending, distinct ids) in range scans.
    fn prefetch(&mut self, sorted: &[i64]) {
        let known = &mut self.known;
        self.lookup.each_of_i64(
            sorted,
            |row| row.i64(3),
            |step, row| {
                if row.bool(2) == Some(true) {
                    known.insert(step, Some((row.string(0).unwrap_or_default(), row.i64(1).unwrap_or_default())));
                }
            },
        );
        for &step in sorted {
            known.entry(step).or_insert(None);
        }
    }

    fn of(&mut self, step: i64) -> Option<(String, i64)> {
        if !self.known.contains_key(&step) {
            self.prefetch(&[step]);
        }
        self.known[&step].clone()
    }
}

/// Edges by `to_step_id`: the parents of steps (`from_step_id`, then `to_step_id`).
fn parent_edges() -> Option<Lookup> {
    Lookup::open(
        "tasker_workflow_step_edges",
        "to_step_id",
        pg_sys::INT8OID,
        &[
            Want { name: "from_step_id", types: BIGINT, not_null: true },
            Want { name: "to_step_id", types: BIGINT, not_null: true },
        ],
        Index::Any,
    )
}

fn direct_steps_and_parents(task_ids: TaskIds) -> Option<StepsAndParents> {
    let mut steps_l = Lookup::open(
        "tasker_workflow_steps",
        "task_id",
        pg_sys::INT8OID,
        &[
            Want { name: "workflow_step_id", types: BIGINT, not_null: true },
            Want { name: "task_id", types: BIGINT, not_null: true },
            Want { name: "named_step_id", types: INTEGER, not_null: true },
            Want { name: "retryable", types: BOOLEAN, not_null: false },
            Want { name: "retry_limit", types: INTEGER, not_null: false },
            Want { name: "in_process", types: BOOLEAN, not_null: false },
            Want { name: "processed", types: BOOLEAN, not_null: false },
            Want { name: "attempts", types: INTEGER, not_null: false },
            Want { name: "last_attempted_at", types: TIMESTAMP, not_null: false },
            Want { name: "backoff_request_seconds", types: INTEGER, not_null: false },
        ],
        Index::Any,
    )?;
    let mut names_l = Lookup::open(
        "tasker_named_steps",
        "named_step_id",
        pg_sys::INT4OID,
        &[
            Want { name: "name", types: TEXT, not_null: true },
            Want { name: "named_step_id", types: INTEGER, not_null: true },
        ],
        Index::Unique,
    )?;
    let mut states = States::open()?;
    let mut edges_l = parent_edges()?;

    let tasks = task_ids.distinct();
    let mut steps: Vec<StepFacts> = Vec::new();
    steps_l.each_of_i64(
        &tasks,
        |row| row.i64(1),
        |_, row| {
            steps.push(StepFacts {
                workflow_step_id: row.i64(0).unwrap_or_default(),
                task_id: row.i64(1).unwrap_or_default(),
                named_step_id: row.i32(2).unwrap_or_default(),
                retryable: row.bool(3),
                retry_limit: row.i32(4),
                in_process: row.bool(5),
                processed: row.bool(6),
                attempts: row.i32(7),
                last_attempted_at: row.i64(8),
                backoff_request_seconds: row.i32(9),
                state: None,
                state_since: None,
            });
        },
    );
    steps.sort_unstable_by_key(|s| (s.task_id, s.workflow_step_id));
    let mut step_ids: Vec<i64> = steps.iter().map(|s| s.workflow_step_id).collect();
    step_ids.sort_unstable();
    step_ids.dedup();

    states.prefetch(&step_ids);
    let mut named: Vec<i64> = steps.iter().map(|s| i64::from(s.named_step_id)).collect();
    named.sort_unstable();
    named.dedup();
    let mut names: HashMap<i32, String> = HashMap::with_capacity(named.len());
    names_l.each_of_i64(
        &named,
        |row| row.i32(1).map(i64::from),
        |id, row| {
            if let Some(n) = row.string(0) {
                names.insert(id as i32, n);
            }
        },
    );
    let mut parents_of: HashMap<i64, Vec<i64>> = HashMap::new();
    edges_l.each_of_i64(
        &step_ids,
        |row| row.i64(1),
        |to, row| {
            parents_of.entry(to).or_default().push(row.i64(0).unwrap_or_default());
        },
    );

    let mut parents: HashMap<i64, ParentTally> = HashMap::with_capacity(parents_of.len());
    for (to, froms) in &parents_of {
        let tally = parents.entry(*to).or_default();
        for &from in froms {
            tally.add(states.of(from).map(|(state, _)| state).as_deref());
        }
    }
    // The inner join to tasker_named_steps: steps whose named step is missing are left out.
    let mut kept_names = Names::with_capacity(steps.len());
    let steps = steps
        .into_iter()
        .filter_map(|mut s| {
            kept_names.push(names.get(&s.named_step_id)?);
            if let Some((state, since)) = states.known.get(&s.workflow_step_id).cloned().flatten() {
                s.state = Some(crate::rules::state::name_of(&state));
                s.state_since = Some(since);
            }
            Some(s)
        })
        .collect();
    Some(StepsAndParents::new(steps, kept_names, &parents))
}

fn direct_tasks(task_ids: TaskIds) -> Option<Vec<TaskRow>> {
    let mut tasks_l = Lookup::open(
        "tasker_tasks",
        "task_id",
        pg_sys::INT8OID,
        &[
            Want { name: "task_id", types: BIGINT, not_null: true },
            Want { name: "named_task_id", types: INTEGER, not_null: true },
        ],
        Index::Unique,
    )?;
    let mut trans_l = Lookup::open(
        "tasker_task_transitions",
        "task_id",
        pg_sys::INT8OID,
        &[
            Want { name: "to_state", types: TEXT, not_null: true },
            Want { name: "most_recent", types: BOOLEAN, not_null: true },
            Want { name: "task_id", types: BIGINT, not_null: true },
        ],
        Index::UniqueWhere("most_recent"),
    )?;
    let ids = task_ids.distinct();
    let mut out = Vec::with_capacity(ids.len());
    tasks_l.each_of_i64(
        &ids,
        |row| row.i64(0),
        |_, row| {
            out.push(TaskRow {
                task_id: row.i64(0).unwrap_or_default(),
                named_task_id: row.i32(1).unwrap_or_default(),
                state: None,
            })
        },
    );
    let mut states: HashMap<i64, String> = HashMap::new();
    trans_l.each_of_i64(
        &ids,
        |row| row.i64(2),
        |task, row| {
            if row.bool(1) == Some(true) {
                if let Some(s) = row.string(0) {
                    states.insert(task, s);
                }
            }
        },
    );
    for t in &mut out {
        t.state = states.remove(&t.task_id).map(std::borrow::Cow::Owned);
    }
    Some(out)
}

fn direct_task_graph(task_id: i64) -> Option<TaskGraph> {
    let mut steps_l = Lookup::open(
        "tasker_workflow_steps",
        "task_id",
        pg_sys::INT8OID,
        &[Want { name: "workflow_step_id", types: BIGINT, not_null: true }],
        Index::Any,
    )?;
    let mut edges_l = parent_edges()?;
    let mut steps = Vec::new();
    steps_l.each_i64(task_id, |row| steps.push(row.i64(0).unwrap_or_default()));
    let mut sorted = steps.clone();
    sorted.sort_unstable();
    sorted.dedup();
    let mut edges = Vec::new();
    edges_l.each_of_i64(&sorted, |row| row.i64(1), |to, row| edges.push((row.i64(0).unwrap_or_default(), to)));
    Some((steps, edges))
}
