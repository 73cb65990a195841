//! Reading the Tasker tables through SPI. Each query is prepared once per backend and kept
//! (`SPI_keepplan`): PostgreSQL's plan cache re-plans it when the tables or the search_path
//! change. Table names are unqualified and resolved through the caller's search_path, as the
//! Rails functions resolve them; no SQL is ever built from values (everything is a parameter).

use std::cell::RefCell;
use std::collections::HashMap;

use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiTupleTable};
use pgrx::{pg_sys, PgOid};

use crate::pg::report::raise_spi;
use crate::rules::readiness::{ParentTally, StepFacts};

/// Both forms of a query: `before` + `column = $1` (or `= ANY($1)`) + `after`, as
/// compile-time constants.
macro_rules! by_task {
    ($before:literal, $column:literal, $after:literal) => {
        (concat!($before, $column, " = $1", $after), concat!($before, $column, " = ANY($1)", $after))
    };
}

thread_local! {
    static PLANS: RefCell<HashMap<&'static str, OwnedPreparedStatement>> = RefCell::new(HashMap::new());
}

/// Which tasks a query reads. One task uses a query with `task_id = $1`: its generic plan is
/// costed for one task's rows, so the plan cache keeps it and skips planning on every call
/// (with `= ANY($1)` the generic plan looks costlier than a custom one, and every call was
/// planned afresh: 7x slower). Many tasks use `task_id = ANY($1)`, one pass for all.
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
}

/// A query in its two forms: `(one task, many tasks)`.
type Sql = (&'static str, &'static str);

/// Runs the kept plan of `sql` for `ids` (preparing it on first use).
fn select_with_ids<'conn, R>(
    client: &SpiClient<'conn>,
    sql: Sql,
    ids: TaskIds,
    function: &'static str,
    mut each: impl FnMut(SpiTupleTable<'conn>) -> R,
) -> R {
    let (text, oid) = match ids {
        TaskIds::One(_) => (sql.0, pg_sys::BuiltinOid::INT8OID),
        TaskIds::Many(_) => (sql.1, pg_sys::BuiltinOid::INT8ARRAYOID),
    };
    PLANS.with(|plans| {
        let mut plans = plans.borrow_mut();
        if !plans.contains_key(text) {
            let plan =
                client.prepare(text, &[PgOid::BuiltIn(oid)]).unwrap_or_else(|e| raise_spi(e, text, function)).keep();
            plans.insert(text, plan);
        }
        let plan = &plans[text];
        let arg = match ids {
            TaskIds::One(id) => id.into(),
            TaskIds::Many(many) => many.to_vec().into(),
        };
        let table = client.select(plan, None, &[arg]).unwrap_or_else(|e| raise_spi(e, text, function));
        each(table)
    })
}

/// Column `ordinal` (1-based) of a row of `sql`.
fn col<T: FromDatum + IntoDatum>(
    row: &pgrx::spi::SpiHeapTupleData,
    ordinal: usize,
    sql: &str,
    function: &'static str,
) -> Option<T> {
    row.get::<T>(ordinal).unwrap_or_else(|e| raise_spi(e, &format!("column {ordinal} of `{sql}`"), function))
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
pub struct StepsAndParents {
    pub steps: Vec<StepFacts>,
    pub parents: HashMap<i64, ParentTally>,
}

pub fn steps_and_parents(task_ids: TaskIds, function: &'static str) -> StepsAndParents {
    Spi::connect(|client| {
        let steps = select_with_ids(client, STEPS_SQL, task_ids, function, |table| {
            table
                .map(|row| StepFacts {
                    workflow_step_id: col(&row, 1, STEPS_SQL.0, function).unwrap_or_default(),
                    task_id: col(&row, 2, STEPS_SQL.0, function).unwrap_or_default(),
                    named_step_id: col(&row, 3, STEPS_SQL.0, function).unwrap_or_default(),
                    name: col(&row, 4, STEPS_SQL.0, function).unwrap_or_default(),
                    retryable: col(&row, 5, STEPS_SQL.0, function),
                    retry_limit: col(&row, 6, STEPS_SQL.0, function),
                    in_process: col(&row, 7, STEPS_SQL.0, function),
                    processed: col(&row, 8, STEPS_SQL.0, function),
                    attempts: col(&row, 9, STEPS_SQL.0, function),
                    last_attempted_at: col::<Timestamp>(&row, 10, STEPS_SQL.0, function).map(i64::from),
                    backoff_request_seconds: col(&row, 11, STEPS_SQL.0, function),
                    state: col(&row, 12, STEPS_SQL.0, function),
                    state_since: col::<Timestamp>(&row, 13, STEPS_SQL.0, function).map(i64::from),
                })
                .collect::<Vec<_>>()
        });
        let mut parents: HashMap<i64, ParentTally> = HashMap::new();
        select_with_ids(client, PARENTS_SQL, task_ids, function, |table| {
            for row in table {
                let child: i64 = col(&row, 1, PARENTS_SQL.0, function).unwrap_or_default();
                let parent_state: Option<String> = col(&row, 2, PARENTS_SQL.0, function);
                parents.entry(child).or_default().add(parent_state.as_deref());
            }
        });
        StepsAndParents { steps, parents }
    })
}

/// A task row with its most_recent task state.
pub struct TaskRow {
    pub task_id: i64,
    pub named_task_id: i32,
    pub state: Option<String>,
}

pub fn tasks(task_ids: TaskIds, function: &'static str) -> Vec<TaskRow> {
    Spi::connect(|client| {
        select_with_ids(client, TASKS_SQL, task_ids, function, |table| {
            table
                .map(|row| TaskRow {
                    task_id: col(&row, 1, TASKS_SQL.0, function).unwrap_or_default(),
                    named_task_id: col(&row, 2, TASKS_SQL.0, function).unwrap_or_default(),
                    state: col(&row, 3, TASKS_SQL.0, function),
                })
                .collect()
        })
    })
}

/// The task's step ids (not joined to named steps) and every edge into them.
pub fn task_graph(task_id: i64, function: &'static str) -> (Vec<i64>, Vec<(i64, i64)>) {
    Spi::connect(|client| {
        let ids = TaskIds::One(task_id);
        let steps = select_with_ids(client, LEVEL_STEPS_SQL, ids, function, |table| {
            table.map(|row| col(&row, 1, LEVEL_STEPS_SQL.0, function).unwrap_or_default()).collect()
        });
        let edges = select_with_ids(client, LEVEL_EDGES_SQL, ids, function, |table| {
            table
                .map(|row| {
                    (
                        col(&row, 1, LEVEL_EDGES_SQL.0, function).unwrap_or_default(),
                        col(&row, 2, LEVEL_EDGES_SQL.0, function).unwrap_or_default(),
                    )
                })
                .collect()
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
pub fn health(function: &'static str) -> (crate::rules::health::HealthCounts, i64, i64) {
    Spi::connect(|client| {
        let mut h = crate::rules::health::HealthCounts::default();
        let run = |sql: &'static str| client.select(sql, None, &[]).unwrap_or_else(|e| raise_spi(e, sql, function));
        for row in run(HEALTH_TASKS_SQL) {
            let state: Option<String> = col(&row, 1, HEALTH_TASKS_SQL, function);
            let n: i64 = col(&row, 2, HEALTH_TASKS_SQL, function).unwrap_or_default();
            h.add_tasks(state.as_deref(), n);
        }
        for row in run(HEALTH_STEPS_SQL) {
            let state: Option<String> = col(&row, 1, HEALTH_STEPS_SQL, function);
            h.add_steps(
                state.as_deref(),
                col(&row, 2, HEALTH_STEPS_SQL, function),
                col(&row, 3, HEALTH_STEPS_SQL, function),
                col(&row, 4, HEALTH_STEPS_SQL, function),
                col(&row, 5, HEALTH_STEPS_SQL, function).unwrap_or(false),
                col(&row, 6, HEALTH_STEPS_SQL, function).unwrap_or_default(),
            );
        }
        let mut conn = run(HEALTH_CONNECTIONS_SQL);
        let (active, max) = match conn.next() {
            Some(row) => (
                col(&row, 1, HEALTH_CONNECTIONS_SQL, function).unwrap_or_default(),
                col(&row, 2, HEALTH_CONNECTIONS_SQL, function).unwrap_or_default(),
            ),
            None => (0, 0),
        };
        (h, active, max)
    })
}
