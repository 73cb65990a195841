//! The Rust half of `tasker_core.preflight()` (sql/preflight.sql, docs/adoption.md): the checks
//! that read the Tasker tables' rows (transition histories, edges), and the state machines'
//! legal moves as a table. The catalog checks are SQL. Everything here is read-only; the rows
//! are read with the caller's rights, or for a superuser as the tables' owner, sandboxed
//! (pg::sql_read), so nothing a table's owner attached to it runs as the DBA.

use pgrx::prelude::*;

use crate::pg::report::OrRaise;
use crate::pg::sql_read;
use crate::pg::tasker::Tables;
use crate::rules::dag;
use crate::rules::preflight::{data_check, judge, moves, Finding, Status};
use crate::rules::state::Machine;

/// Every legal move of the two state machines (state-machines.md): `from_state` NULL is the
/// first transition of a history.
#[pg_extern(immutable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn state_machine_moves(
) -> TableIterator<'static, (name!(machine, String), name!(from_state, Option<String>), name!(to_state, String))> {
    let rows: Vec<_> = [(Machine::Step, "step"), (Machine::Task, "task")]
        .into_iter()
        .flat_map(|(machine, name)| {
            moves(machine)
                .into_iter()
                .map(move |m| (name.to_string(), m.from_state.map(str::to_string), m.to_state.to_string()))
        })
        .collect();
    TableIterator::new(rows)
}

/// The checks of `preflight()` that read the rows of the Tasker tables of schema `tasker_schema`:
/// transition histories (several, no or a misplaced most_recent row; unknown states; moves the
/// state machine does not allow), self-loops, edges across tasks and one cycle of the edges.
/// Each reads its table once.
#[pg_extern(stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::type_complexity)]
fn preflight_data(
    tasker_schema: &str,
) -> TableIterator<
    'static,
    (name!(name, String), name!(status, String), name!(detail, String), name!(action, Option<String>)),
> {
    let tables = Tables::resolve_in(Some(tasker_schema)).or_raise();
    let as_json = |m: Machine| serde_json::to_value(moves(m)).unwrap_or_default();
    let mut findings: Vec<Finding> = sql_read::anomalies(&tables, &as_json(Machine::Step), &as_json(Machine::Task))
        .into_iter()
        .map(|(machine, anomaly, n, example)| judge(&data_check(machine, anomaly), n, example.as_deref()))
        .collect();
    let cycle = dag::a_cycle(&sql_read::all_edges(&tables));
    findings.push(match cycle {
        None => Finding {
            name: "edges: cycles".into(),
            status: Status::Ok,
            detail: "the step edges are acyclic (self-loops aside)".into(),
            action: None,
        },
        Some(path) => Finding {
            name: "edges: cycles".into(),
            status: Status::Fail,
            detail: format!("a cycle: {}", path.iter().map(i64::to_string).collect::<Vec<_>>().join(" -> ")),
            action: Some(
                "break it: its steps are never ready, and calculate_dependency_levels raises for its task".into(),
            ),
        },
    });
    TableIterator::new(findings.into_iter().map(|f| (f.name, f.status.as_str().to_string(), f.detail, f.action)))
}
