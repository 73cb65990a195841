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
use crate::rules::preflight::{judge, moves, DataCheck, Finding, Status};
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

/// The data checks, by the keys of `sql_read::anomalies`.
fn check(key: &str) -> DataCheck {
    let (machine, rest) = key.split_once(' ').unwrap_or(("", key));
    let step = machine == "step";
    match (machine, rest) {
        (_, "several") => DataCheck {
            name: if step { "step histories: several most_recent rows" } else { "task histories: several most_recent rows" },
            bad: Status::Fail,
            counts: if step { "steps with more than one most_recent transition" } else { "tasks with more than one most_recent transition" },
            clean: "one most_recent transition at most per owner",
            action: "keep most_recent = true on the highest sort_key only: the read functions assume one, the guards refuse a second",
        },
        (_, "none") => DataCheck {
            name: if step { "step histories: no most_recent row" } else { "task histories: no most_recent row" },
            bad: Status::Warn,
            counts: if step { "steps with transitions but none most_recent" } else { "tasks with transitions but none most_recent" },
            clean: "every history has its most_recent row",
            action: "set most_recent on each one's highest sort_key: Rails reads such an owner as never moved",
        },
        (_, "not last") => DataCheck {
            name: if step { "step histories: most_recent not the last" } else { "task histories: most_recent not the last" },
            bad: Status::Warn,
            counts: if step { "steps whose most_recent row is not the highest sort_key" } else { "tasks whose most_recent row is not the highest sort_key" },
            clean: "every most_recent row is its history's highest sort_key",
            action: "move most_recent to the highest sort_key: the guards refuse a new row below it",
        },
        (_, "unknown") => DataCheck {
            name: if step { "step histories: unknown states" } else { "task histories: unknown states" },
            bad: Status::Warn,
            counts: "to_state values that are not states of the machine",
            clean: "every to_state is a state of the machine",
            action: "the guards refuse any move from these states; the read functions count them as Rails does (not ready, not done)",
        },
        (_, "illegal") => DataCheck {
            name: if step { "step histories: illegal moves" } else { "task histories: illegal moves" },
            bad: Status::Warn,
            counts: if step { "steps whose history has a move the state machine does not allow" } else { "tasks whose history has a move the state machine does not allow" },
            clean: "every history is a legal path of the state machine",
            action: "rows already written stay; the guards judge only new moves, from the current state (docs/state-machines.md)",
        },
        (_, "self-loops") => DataCheck {
            name: "edges: self-loops",
            bad: Status::Fail,
            counts: "edges from a step to itself",
            clean: "no edge from a step to itself",
            action: "delete them: such a step is never ready, and its depth in the DAG view is NULL",
        },
        _ => DataCheck {
            name: "edges: across tasks",
            bad: Status::Warn,
            counts: "edges between steps of two tasks",
            clean: "every edge joins two steps of one task",
            action: "Rails never writes these; the read functions count them as Rails' SQL does, and the guards refuse new ones",
        },
    }
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
        .map(|(key, n, example)| judge(&check(key), n, example.as_deref()))
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
