//! Reading the Tasker tables with SQL (SPI, kept generic plans): the path every call can take,
//! used when the step state cannot answer (pg::paths). The queries read exactly what Rails'
//! functions read; the rules then run on the rows in Rust. For one task, a step's named step
//! is looked up by a correlated subquery rather than joined (name is NOT NULL in Rails'
//! schema, so a NULL means no named step, and the row is left out as Rails' inner join leaves
//! it out): a join let the kept generic plan hash the whole named-steps table on every call
//! once it held a thousand rows (2.5 times slower per task than Rails' function, measured).
//!
//! The tables are the ones the caller's search_path names (resolved by pg::tasker), written
//! into the text schema-qualified and quoted; every function, operator and type is written
//! with its `pg_catalog` schema, so nothing a user creates is picked up. Privileges and row
//! level security apply as to any query of the caller's. Integer columns are read as the
//! types Rails' functions return (a wider column raises 22003 for a value that does not fit).
//!
//! A superuser does not run these queries with its own rights: planning them evaluates what
//! the tables' owner attached to the tables (index predicates, statistics expressions), and
//! that code must not run as a superuser. Its reads run as the owner of tasker_workflow_steps
//! in a security-restricted operation (pg::sandbox), which sees every row, as the superuser
//! would (`Tables::reader` refuses when that owner cannot read all six in full). Any other
//! caller reads with its own rights, as its own SELECT would.

use crate::error::TaskerError;
use crate::pg::facts::{self, Steps, TaskGraph, TaskRow};
use crate::pg::report::OrRaise;
use crate::pg::sandbox;
use crate::pg::spi::{self, Arg, Rows};
use crate::pg::tasker::{self, Tables, EDGES, STEPS, TASKS, TASK_TRANSITIONS, TRANSITIONS};
use crate::rules::analytics::{Facts, PeriodStep, StepKind, StepState, TaskFact};
use crate::rules::dag;
use crate::rules::health::HealthCounts;
use crate::rules::idhash::IdSet;
use crate::rules::preflight::Anomaly;
use crate::rules::readiness::{ParentTally, StepFacts};
use crate::rules::state::Machine;

/// `column = $1` for one id, `column = ANY ($1)` for many (the argument `run_by_ids` passes).
fn by_ids(column: &str, ids: &[i64]) -> String {
    match ids {
        [_] => format!("{column} OPERATOR(pg_catalog.=) $1"),
        _ => format!("{column} OPERATOR(pg_catalog.=) ANY ($1)"),
    }
}

/// Runs `f` (the queries of one read) with the rights the module's header describes.
fn reading<R>(tables: &Tables, f: impl FnOnce() -> R) -> R {
    // SAFETY: a check of the current user.
    if !unsafe { pgrx::pg_sys::superuser() } {
        return f();
    }
    let reader = tables.reader().or_raise();
    sandbox::as_owner(reader, f)
}

fn run_by_ids<R>(tables: &Tables, sql: &str, ids: &[i64], each: impl FnOnce(&Rows) -> R) -> Result<R, TaskerError> {
    let arg = match ids {
        [one] => Arg::Int8(*one),
        many => Arg::Int8Array(many),
    };
    reading(tables, || pgrx::spi::Spi::connect(|_| spi::run(sql, &[arg], true, each)))
}

/// The steps of the tasks `ids` (ascending, distinct), as `step_state::read::steps` reads them.
pub fn steps(tables: &Tables, ids: &[i64], with_tasks: bool, out: &mut Steps) {
    out.clear();
    if ids.is_empty() {
        out.tasks = with_tasks.then(Vec::new);
        return;
    }
    let [steps, named, transitions, edges, _, _] = tables.qualified();
    let filter = by_ids("ws.task_id", ids);
    // One task: the name by a lookup per step; many: a join (hashing the named steps once).
    let (name, join) = match ids {
        [_] => (
            format!(
                "(SELECT ns.name::pg_catalog.text FROM {named} ns \
                   WHERE ns.named_step_id OPERATOR(pg_catalog.=) ws.named_step_id)"
            ),
            String::new(),
        ),
        _ => (
            "ns.name::pg_catalog.text".to_string(),
            format!("JOIN {named} ns ON ns.named_step_id OPERATOR(pg_catalog.=) ws.named_step_id"),
        ),
    };
    let sql = format!(
        "SELECT ws.workflow_step_id::pg_catalog.int8, ws.task_id::pg_catalog.int8, \
                ws.named_step_id::pg_catalog.int4, {name}, ws.retryable::pg_catalog.bool, \
                ws.retry_limit::pg_catalog.int4, ws.in_process::pg_catalog.bool, ws.processed::pg_catalog.bool, \
                ws.attempts::pg_catalog.int4, ws.last_attempted_at::pg_catalog.\"timestamp\", \
                ws.backoff_request_seconds::pg_catalog.int4, tr.to_state::pg_catalog.text, \
                tr.created_at::pg_catalog.\"timestamp\", \
                (SELECT pg_catalog.count(*) FROM {edges} e \
                  WHERE e.to_step_id OPERATOR(pg_catalog.=) ws.workflow_step_id), \
                (SELECT pg_catalog.count(*) FROM {edges} e \
                   JOIN {transitions} pt ON pt.workflow_step_id OPERATOR(pg_catalog.=) e.from_step_id \
                                        AND pt.most_recent \
                  WHERE e.to_step_id OPERATOR(pg_catalog.=) ws.workflow_step_id \
                    AND pt.to_state::pg_catalog.text OPERATOR(pg_catalog.=) \
                        ANY ('{{complete,resolved_manually}}'::pg_catalog.text[])) \
           FROM {steps} ws {join} \
           LEFT JOIN {transitions} tr ON tr.workflow_step_id OPERATOR(pg_catalog.=) ws.workflow_step_id \
                                     AND tr.most_recent \
          WHERE {filter} \
          ORDER BY ws.task_id, ws.workflow_step_id"
    );
    run_by_ids(tables, &sql, ids, |rows| {
        for r in 0..rows.len() {
            // No such named step: left out, as the inner join of Rails' functions leaves it out.
            let Some(name) = rows.bytes(r, 4) else {
                continue;
            };
            out.names.push(name);
            out.facts.push(StepFacts {
                workflow_step_id: rows.i64(r, 1).unwrap_or_default(),
                task_id: rows.i64(r, 2).unwrap_or_default(),
                named_step_id: rows.i32(r, 3).unwrap_or_default(),
                retryable: rows.bool(r, 5),
                retry_limit: rows.i32(r, 6),
                in_process: rows.bool(r, 7),
                processed: rows.bool(r, 8),
                attempts: rows.i32(r, 9),
                last_attempted_at: rows.timestamp(r, 10),
                backoff_request_seconds: rows.i32(r, 11),
                state: rows.bytes(r, 12).map(facts::state_of),
                state_since: rows.timestamp(r, 13),
            });
            out.tallies.push(ParentTally { total: rows.i64(r, 14).unwrap_or(0), done: rows.i64(r, 15).unwrap_or(0) });
        }
    })
    .or_raise();
    out.tasks = with_tasks.then(|| tasks(tables, ids));
}

/// The tasks' own rows with their most_recent state, by task_id.
pub fn tasks(tables: &Tables, ids: &[i64]) -> Vec<TaskRow> {
    if ids.is_empty() {
        return Vec::new();
    }
    let q = tables.qualified();
    let filter = by_ids("t.task_id", ids);
    let sql = format!(
        "SELECT t.task_id::pg_catalog.int8, t.named_task_id::pg_catalog.int4, tt.to_state::pg_catalog.text \
           FROM {tasks} t \
           LEFT JOIN {task_transitions} tt ON tt.task_id OPERATOR(pg_catalog.=) t.task_id AND tt.most_recent \
          WHERE {filter} ORDER BY t.task_id",
        tasks = q[TASKS],
        task_transitions = q[TASK_TRANSITIONS],
    );
    run_by_ids(tables, &sql, ids, |rows| {
        (0..rows.len())
            .map(|r| TaskRow {
                task_id: rows.i64(r, 1).unwrap_or_default(),
                named_task_id: rows.i32(r, 2).unwrap_or_default(),
                state: rows.bytes(r, 3).map(facts::state_of),
            })
            .collect()
    })
    .or_raise()
}

/// A task's step ids (not joined to named steps) and every edge into them.
pub fn graph(tables: &Tables, task_id: i64) -> TaskGraph {
    let q = tables.qualified();
    let steps_sql = format!(
        "SELECT ws.workflow_step_id::pg_catalog.int8 FROM {steps} ws WHERE ws.task_id OPERATOR(pg_catalog.=) $1",
        steps = q[STEPS]
    );
    let edges_sql = format!(
        "SELECT e.from_step_id::pg_catalog.int8, e.to_step_id::pg_catalog.int8 \
           FROM {steps} ws JOIN {edges} e ON e.to_step_id OPERATOR(pg_catalog.=) ws.workflow_step_id \
          WHERE ws.task_id OPERATOR(pg_catalog.=) $1",
        steps = q[STEPS],
        edges = q[EDGES]
    );
    reading(tables, || {
        pgrx::spi::Spi::connect(|_| {
            let steps = spi::run(&steps_sql, &[Arg::Int8(task_id)], true, |rows| {
                (0..rows.len()).map(|r| rows.i64(r, 1).unwrap_or_default()).collect::<Vec<_>>()
            })?;
            let edges = spi::run(&edges_sql, &[Arg::Int8(task_id)], true, |rows| {
                (0..rows.len())
                    .map(|r| (rows.i64(r, 1).unwrap_or_default(), rows.i64(r, 2).unwrap_or_default()))
                    .collect()
            })?;
            Ok((steps, edges))
        })
    })
    .or_raise()
}

/// `min_depth_from_root` of step `step` as Rails' view computes it (rules::dag): one query per
/// level of the search, for the edges into that level's steps (the caller knows the step exists).
pub fn min_depth_from_root(tables: &Tables, step: i64) -> Option<i32> {
    let q = tables.qualified();
    let one_sql = format!(
        "SELECT e.to_step_id::pg_catalog.int8, e.from_step_id::pg_catalog.int8 FROM {edges} e \
          WHERE {}",
        by_ids("e.to_step_id", &[step]),
        edges = q[EDGES]
    );
    let many_sql = format!(
        "SELECT e.to_step_id::pg_catalog.int8, e.from_step_id::pg_catalog.int8 FROM {edges} e \
          WHERE {}",
        by_ids("e.to_step_id", &[step, step]),
        edges = q[EDGES]
    );
    reading(tables, || {
        pgrx::spi::Spi::connect(|_| {
            dag::min_depth_from_root(step, |frontier, out| {
                let (sql, arg) = match frontier {
                    [one] => (&one_sql, Arg::Int8(*one)),
                    many => (&many_sql, Arg::Int8Array(many)),
                };
                spi::run(sql, &[arg], true, |rows| {
                    // Both columns are NOT NULL in Rails' schema.
                    out.extend((0..rows.len()).filter_map(|r| Some((rows.i64(r, 1)?, rows.i64(r, 2)?))));
                })
            })
        })
    })
    .or_raise()
}

/// What `preflight()` counts in the Tasker tables, each as (the machine whose transitions were
/// read, or None for the edges; the anomaly; count; one example): for the steps' and then the
/// tasks' transitions every history anomaly (`IllegalMoves` judged by `step_moves` /
/// `task_moves`, jsonb arrays of {from_state, to_state}; `UnknownStates` counts and lists the
/// states), then the edges' `SelfLoops` and `AcrossTasks`.
pub fn anomalies(
    tables: &Tables,
    step_moves: &serde_json::Value,
    task_moves: &serde_json::Value,
) -> Vec<(Option<Machine>, Anomaly, i64, Option<String>)> {
    let q = tables.qualified();
    let known =
        "ARRAY['pending', 'in_progress', 'complete', 'error', 'cancelled', 'resolved_manually']::pg_catalog.text[]";
    let mut queries: Vec<(Option<Machine>, Anomaly, String)> = Vec::new();
    for (machine, rel, owner) in
        [(Machine::Step, &q[TRANSITIONS], "workflow_step_id"), (Machine::Task, &q[TASK_TRANSITIONS], "task_id")]
    {
        queries.push((
            Some(machine),
            Anomaly::SeveralMostRecent,
            format!(
                "SELECT pg_catalog.count(*), pg_catalog.min(d.o)::pg_catalog.text FROM \
                   (SELECT x.{owner} AS o FROM {rel} x WHERE x.most_recent \
                     GROUP BY x.{owner} HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 1) d"
            ),
        ));
        queries.push((
            Some(machine),
            Anomaly::NoMostRecent,
            format!(
                "SELECT pg_catalog.count(*), pg_catalog.min(d.o)::pg_catalog.text FROM \
                   (SELECT x.{owner} AS o FROM {rel} x GROUP BY x.{owner} \
                     HAVING NOT COALESCE(pg_catalog.bool_or(x.most_recent), false)) d"
            ),
        ));
        queries.push((
            Some(machine),
            Anomaly::MostRecentNotLast,
            format!(
                "SELECT pg_catalog.count(*), pg_catalog.min(x.{owner})::pg_catalog.text FROM {rel} x \
                  WHERE x.most_recent AND EXISTS (SELECT 1 FROM {rel} y WHERE y.{owner} OPERATOR(pg_catalog.=) x.{owner} \
                                                    AND y.sort_key OPERATOR(pg_catalog.>) x.sort_key)"
            ),
        ));
        queries.push((
            Some(machine),
            Anomaly::UnknownStates,
            format!(
                "SELECT pg_catalog.count(DISTINCT x.to_state), \
                        pg_catalog.string_agg(DISTINCT pg_catalog.quote_literal(x.to_state::pg_catalog.text), ', ') FROM {rel} x \
                  WHERE x.to_state::pg_catalog.text OPERATOR(pg_catalog.<>) ALL ({known})"
            ),
        ));
        queries.push((
            Some(machine),
            Anomaly::IllegalMoves,
            format!(
                "SELECT pg_catalog.count(DISTINCT h.o), \
                        pg_catalog.min(pg_catalog.format('%s %s: %s -> %s', '{owner}', h.o, COALESCE(h.prev, '(none)'), h.to_state)) \
                   FROM (SELECT x.{owner} AS o, x.to_state::pg_catalog.text AS to_state, \
                                pg_catalog.lag(x.to_state::pg_catalog.text) OVER (PARTITION BY x.{owner} ORDER BY x.sort_key) AS prev \
                           FROM {rel} x) h \
                  WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.jsonb_to_recordset($1) AS mv(from_state pg_catalog.text, to_state pg_catalog.text) \
                                     WHERE mv.from_state IS NOT DISTINCT FROM h.prev AND mv.to_state OPERATOR(pg_catalog.=) h.to_state)"
            ),
        ));
    }
    queries.push((
        None,
        Anomaly::SelfLoops,
        format!(
            "SELECT pg_catalog.count(*), pg_catalog.min(e.from_step_id)::pg_catalog.text FROM {edges} e \
              WHERE e.from_step_id OPERATOR(pg_catalog.=) e.to_step_id",
            edges = q[EDGES]
        ),
    ));
    queries.push((
        None,
        Anomaly::AcrossTasks,
        format!(
            "SELECT pg_catalog.count(*), \
                    pg_catalog.min(pg_catalog.format('%s (task %s) -> %s (task %s)', e.from_step_id, a.task_id, e.to_step_id, b.task_id)) \
               FROM {edges} e JOIN {steps} a ON a.workflow_step_id OPERATOR(pg_catalog.=) e.from_step_id \
               JOIN {steps} b ON b.workflow_step_id OPERATOR(pg_catalog.=) e.to_step_id \
              WHERE a.task_id OPERATOR(pg_catalog.<>) b.task_id",
            edges = q[EDGES],
            steps = q[STEPS]
        ),
    ));
    reading(tables, || {
        pgrx::spi::Spi::connect(|_| {
            let mut out = Vec::with_capacity(queries.len());
            for (machine, anomaly, sql) in &queries {
                let moves = if *machine == Some(Machine::Step) { step_moves } else { task_moves };
                let args: Vec<Arg<'_>> =
                    if *anomaly == Anomaly::IllegalMoves { vec![Arg::Jsonb(Some(moves))] } else { vec![] };
                let (n, ex) =
                    spi::run(sql, &args, true, |rows| (rows.i64(0, 1).unwrap_or_default(), rows.string(0, 2)))?;
                out.push((*machine, *anomaly, n, ex));
            }
            Ok(out)
        })
    })
    .or_raise()
}

/// Every step edge `(from_step_id, to_step_id)` but self-loops.
pub fn all_edges(tables: &Tables) -> Vec<(i64, i64)> {
    let q = tables.qualified();
    let sql = format!(
        "SELECT e.from_step_id::pg_catalog.int8, e.to_step_id::pg_catalog.int8 FROM {edges} e \
          WHERE e.from_step_id OPERATOR(pg_catalog.<>) e.to_step_id",
        edges = q[EDGES]
    );
    reading(tables, || {
        pgrx::spi::Spi::connect(|_| {
            spi::run(&sql, &[], true, |rows| {
                (0..rows.len()).filter_map(|r| Some((rows.i64(r, 1)?, rows.i64(r, 2)?))).collect()
            })
        })
    })
    .or_raise()
}

/// The steps of the task of step `step`, each with the step an edge into it comes from (None
/// for a step without one; one row per edge): what `rules::dag::depths_of_closed_set` needs.
/// Empty when there is no such step.
pub fn task_parents_of_step(tables: &Tables, step: i64) -> Vec<(i64, Option<i64>)> {
    let q = tables.qualified();
    let sql = format!(
        "SELECT ws.workflow_step_id::pg_catalog.int8, e.from_step_id::pg_catalog.int8 \
           FROM {steps} ws LEFT JOIN {edges} e ON e.to_step_id OPERATOR(pg_catalog.=) ws.workflow_step_id \
          WHERE ws.task_id OPERATOR(pg_catalog.=) \
                (SELECT s.task_id FROM {steps} s WHERE s.workflow_step_id OPERATOR(pg_catalog.=) $1)",
        steps = q[STEPS],
        edges = q[EDGES]
    );
    run_by_ids(tables, &sql, &[step], |rows| {
        (0..rows.len()).filter_map(|r| Some((rows.i64(r, 1)?, rows.i64(r, 2)))).collect()
    })
    .or_raise()
}

/// The tasks, the period's steps (when `with_period_steps`; the step state holds what they
/// give) and the name counts of `get_analytics_metrics_v01` for the period after `start`
/// (rules::analytics): the time comparisons are PostgreSQL's, as in Rails' query (a stored
/// timestamp against a timestamptz, in the session's TimeZone).
pub fn analytics_facts(tables: &Tables, start: i64, with_period_steps: bool) -> Facts {
    let q = tables.qualified();
    let named_tasks = tasker::qualified(tasker::resolve_table("tasker_named_tasks", None).or_raise());
    let namespaces = tasker::qualified(tasker::resolve_table("tasker_task_namespaces", None).or_raise());
    let recent = "(pg_catalog.now() OPERATOR(pg_catalog.-) '1 hour'::pg_catalog.interval)";
    let tasks_sql = format!(
        "SELECT t.task_id::pg_catalog.int8, t.created_at, t.created_at OPERATOR(pg_catalog.>) $1, \
                t.created_at OPERATOR(pg_catalog.>) {recent} \
           FROM {tasks} t \
          WHERE t.created_at OPERATOR(pg_catalog.>) $1 OR t.created_at OPERATOR(pg_catalog.>) {recent}",
        tasks = q[TASKS]
    );
    // By the period's task ids when they are few (a kept generic plan cannot tell how many
    // tasks `created_at > $1` leaves, and would hash every step), else every step in one pass.
    let steps_by_ids_sql = format!(
        "SELECT ws.workflow_step_id::pg_catalog.int8, ws.task_id::pg_catalog.int8, ws.created_at \
           FROM {steps} ws WHERE ws.task_id OPERATOR(pg_catalog.=) ANY ($1)",
        steps = q[STEPS]
    );
    let all_steps_sql = format!(
        "SELECT ws.workflow_step_id::pg_catalog.int8, ws.task_id::pg_catalog.int8, ws.created_at FROM {steps} ws",
        steps = q[STEPS]
    );
    let names_sql = format!(
        "SELECT (SELECT pg_catalog.count(DISTINCT tn.name) FROM {namespaces} tn \
                   JOIN {named_tasks} nt ON nt.task_namespace_id OPERATOR(pg_catalog.=) tn.task_namespace_id \
                  WHERE EXISTS (SELECT 1 FROM {tasks} t WHERE t.named_task_id OPERATOR(pg_catalog.=) nt.named_task_id)), \
                (SELECT pg_catalog.count(DISTINCT nt.name) FROM {named_tasks} nt \
                  WHERE EXISTS (SELECT 1 FROM {tasks} t WHERE t.named_task_id OPERATOR(pg_catalog.=) nt.named_task_id))",
        tasks = q[TASKS]
    );
    reading(tables, || {
        pgrx::spi::Spi::connect(|_| {
            let tasks: Vec<TaskFact> = spi::run(&tasks_sql, &[Arg::TimestampTz(start)], true, |rows| {
                (0..rows.len())
                    .filter_map(|r| {
                        Some(TaskFact {
                            task_id: rows.i64(r, 1)?,
                            created_at: rows.timestamp(r, 2)?,
                            in_period: rows.bool(r, 3) == Some(true),
                            in_last_hour: rows.bool(r, 4) == Some(true),
                        })
                    })
                    .collect()
            })?;
            let period_steps = if with_period_steps {
                let period: IdSet<i64> = tasks.iter().filter(|t| t.in_period).map(|t| t.task_id).collect();
                let ids: Vec<i64> = period.iter().copied().collect();
                let all_tasks = crate::pg::access::Rel::try_open(tables.0[TASKS]).map_or(0.0, |r| r.size().1);
                let (sql, args) = if (ids.len() as f64) * 8.0 > all_tasks {
                    (&all_steps_sql, vec![])
                } else {
                    (&steps_by_ids_sql, vec![Arg::Int8Array(&ids)])
                };
                spi::run(sql, &args, true, |rows| {
                    (0..rows.len())
                        .filter_map(|r| {
                            Some(PeriodStep {
                                workflow_step_id: rows.i64(r, 1)?,
                                task_id: rows.i64(r, 2)?,
                                created_at: rows.timestamp(r, 3)?,
                            })
                        })
                        .filter(|s| period.contains(&s.task_id))
                        .collect()
                })?
            } else {
                Vec::new()
            };
            let (namespaces, task_types) = spi::run(&names_sql, &[], true, |rows| {
                (rows.i64(0, 1).unwrap_or_default(), rows.i64(0, 2).unwrap_or_default())
            })?;
            Ok(Facts { tasks, period_steps, namespaces, task_types })
        })
    })
    .or_raise()
}

/// Every step (of a task that exists) with a most_recent transition: what its state counts as
/// for the analytics, and that transition's time.
pub fn current_states(tables: &Tables) -> Vec<StepState> {
    let q = tables.qualified();
    let sql = format!(
        "SELECT ws.workflow_step_id::pg_catalog.int8, ws.task_id::pg_catalog.int8, st.to_state::pg_catalog.text, st.created_at \
           FROM {steps} ws \
           JOIN {tasks} t ON t.task_id OPERATOR(pg_catalog.=) ws.task_id \
           JOIN {transitions} st ON st.workflow_step_id OPERATOR(pg_catalog.=) ws.workflow_step_id AND st.most_recent",
        steps = q[STEPS],
        tasks = q[TASKS],
        transitions = q[TRANSITIONS]
    );
    reading(tables, || {
        pgrx::spi::Spi::connect(|_| {
            spi::run(&sql, &[], true, |rows| {
                (0..rows.len())
                    .filter_map(|r| {
                        Some(StepState {
                            workflow_step_id: rows.i64(r, 1)?,
                            task_id: rows.i64(r, 2)?,
                            kind: StepKind::of(rows.bytes(r, 3)),
                            since: rows.timestamp(r, 4),
                        })
                    })
                    .collect()
            })
        })
    })
    .or_raise()
}

/// Whole-database task and step counts by state (grouped by the server).
pub fn health(tables: &Tables) -> HealthCounts {
    let q = tables.qualified();
    let tasks_sql = format!(
        "SELECT tt.to_state::pg_catalog.text, pg_catalog.count(*) \
           FROM {tasks} t \
           LEFT JOIN {tt} tt ON tt.task_id OPERATOR(pg_catalog.=) t.task_id AND tt.most_recent \
          GROUP BY 1",
        tasks = q[TASKS],
        tt = q[TASK_TRANSITIONS]
    );
    let steps_sql = format!(
        "SELECT st.to_state::pg_catalog.text, ws.attempts::pg_catalog.int4, ws.retry_limit::pg_catalog.int4, \
                ws.retryable::pg_catalog.bool, ws.last_attempted_at IS NOT NULL, pg_catalog.count(*) \
           FROM {steps} ws \
           LEFT JOIN {transitions} st ON st.workflow_step_id OPERATOR(pg_catalog.=) ws.workflow_step_id \
                                     AND st.most_recent \
          GROUP BY 1, 2, 3, 4, 5",
        steps = q[STEPS],
        transitions = q[TRANSITIONS]
    );
    reading(tables, || {
        pgrx::spi::Spi::connect(|_| {
            let mut h = HealthCounts::default();
            spi::run(&tasks_sql, &[], true, |rows| {
                for r in 0..rows.len() {
                    h.add_tasks(rows.string(r, 1).as_deref(), rows.i64(r, 2).unwrap_or_default());
                }
            })?;
            spi::run(&steps_sql, &[], true, |rows| {
                for r in 0..rows.len() {
                    h.add_steps(
                        rows.string(r, 1).as_deref(),
                        rows.i32(r, 2),
                        rows.i32(r, 3),
                        rows.bool(r, 4),
                        rows.bool(r, 5).unwrap_or(false),
                        rows.i64(r, 6).unwrap_or_default(),
                    );
                }
            })?;
            Ok(h)
        })
    })
    .or_raise()
}

/// `(active connections of this database, max_connections)`, as Rails' function counts them.
pub fn connections() -> (i64, i64) {
    const SQL: &str = "\
SELECT (SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity \
         WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database() \
           AND state OPERATOR(pg_catalog.=) 'active'), \
       COALESCE((SELECT setting::pg_catalog.int8 FROM pg_catalog.pg_settings \
                  WHERE name OPERATOR(pg_catalog.=) 'max_connections'), 0)";
    spi::query(SQL, &[], true, |rows| {
        if rows.is_empty() {
            (0, 0)
        } else {
            (rows.i64(0, 1).unwrap_or(0), rows.i64(0, 2).unwrap_or(0))
        }
    })
}
